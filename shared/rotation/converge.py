"""Converge one cloud service on the desired version of one certificate: the act step.

What to do is decided by the pure stages of :mod:`shared.domain.convergence` (each with a
reason constant); this module reads what each stage needs, only when it is needed, and
carries out the decision: it finishes an earlier journaled write first, plans
(:mod:`shared.domain.planner`), and hands a write to :func:`shared.rotation.executor.execute`
with a :class:`ServiceWrite` as its caller (re-planning under the lease, recording the run
as updating once Azure accepted the PUT, keeping the backoff when the write ends).

One service's failure never escapes: every error becomes its outcome (the table at the
end of :meth:`Converger.converge`), so the other services of the run go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.domain import convergence, planner
from shared.domain.convergence import Decision, Reason
from shared.domain.errors import (
    BackingOff,
    InvalidInput,
    NotFound,
    PlanRefused,
    PlatformRejected,
    PreconditionFailed,
    RotationError,
    TransientError,
    Waiting,
)
from shared.domain.model import Certificate, CloudServiceSnapshot, Plan
from shared.domain.outcomes import Outcome, WriteStatus
from shared.domain.runs import Execution, Run, ServiceResult, WriteResult
from shared.rotation.executor import Write, execute, package_of
from shared.rotation.ports import Certificates, Ports
from shared.rotation.recording import RunRecorder
from shared.rotation.writing import Ended

log = logging.getLogger("certrotate")

# Finish a service's journaled write: (service id, seconds to wait, asking run, look only).
Finish = Callable[[str, float, str | None, bool], WriteResult | None]
# What the executor tells once a journaled write ended: (service id, asking run).
EndedFor = Callable[[str, str | None], Ended]


class Converger:
    def __init__(
        self,
        ports: Ports,
        keyvault: Certificates,
        records: RunRecorder,
        finish: Finish,
        ended_for: EndedFor,
    ) -> None:
        self.ports = ports
        self.settings = ports.settings
        self.compute = ports.compute
        self.storage = ports.storage
        self.keyvault = keyvault
        self.records = records
        self.finish = finish
        self.ended_for = ended_for

    def now(self) -> datetime:
        return self.ports.now()

    def converge(
        self,
        run: Run,
        service: CloudServiceSnapshot,
        cert: Certificate,
        remaining: Callable[[], float],
        pending: set[str],
    ) -> ServiceResult:
        """The service's result in ``run``; ``pending``: ids (lower case) of services with
        a journaled write to finish first."""
        result = ServiceResult(service.id, Outcome.PENDING)
        try:
            self._converge(result, run, service, cert, remaining, pending)
        except BackingOff as exc:  # before the lock, or under it (recorded meanwhile)
            result.outcome, result.message = Outcome.BACKOFF, str(exc)
            log.warning("%s: %s", service.name, exc)
        except (PlanRefused, PreconditionFailed, InvalidInput) as exc:
            result.outcome, result.message = Outcome.REFUSED, str(exc)
            log.error("%s: refused: %s", service.name, exc)
        except TransientError as exc:
            result.outcome, result.message = Outcome.TRANSIENT, str(exc)
            result.waiting = isinstance(exc, Waiting)
            log.warning("%s: will retry: %s", service.name, exc)
        except (PlatformRejected, NotFound, RotationError) as exc:
            result.outcome, result.message = Outcome.FAILED, str(exc)
            log.error("%s: failed: %s", service.name, exc)
        except Exception as exc:  # one service's bug must not stop the others
            result.outcome = Outcome.FAILED
            result.message = f"unexpected {type(exc).__name__} while converging {service.name}"
            log.exception("%s: %s", service.name, result.message)
        return result

    def _converge(
        self,
        result: ServiceResult,
        run: Run,
        service: CloudServiceSnapshot,
        cert: Certificate,
        remaining: Callable[[], float],
        pending: set[str],
    ) -> None:
        admitted = convergence.admit(service, untagged=self.settings.untagged)
        if not admitted.writes:
            _decided(result, service, admitted)
            return
        if service.id.lower() in pending and not run.dry_run:
            # An earlier write is journaled: finish it before planning anything new (a
            # run that does not wait looks: finished if it has ended, else it waits).
            wait = remaining()
            earlier = convergence.after_earlier_write(
                self.finish(service.id, wait, run.id, wait <= 0), this_run=run.id
            )
            if earlier.reason is Reason.STILL_RUNNING:
                raise Waiting(earlier.message)
            if not earlier.writes:
                # This run's own write, sent by an earlier attempt of it (a queued manual
                # run keeps its id): how it ended is this run's result.
                _decided(result, service, earlier)
                return
            service = self.compute.get(service.id)
        # A tag anyone with tag-write can set: parsed strictly before anything is read.
        package_of(service, self.settings)
        write = ServiceWrite(
            self, run, result, cert, self._thumbprints(service),
            self.ended_for(service.id, run.id),
        )
        result.plan = write.plan(service, cert)
        for warning in result.plan.warnings:
            log.warning("%s: %s", service.name, warning)
        decided = convergence.after_plan(service, result.plan, dry_run=run.dry_run)
        if decided.reason not in (Reason.FAILED_STATE, Reason.NOOP):
            _log_plan(service, result.plan)
        if not decided.writes:
            _decided(result, service, decided, cert)
            return
        # A version whose write failed is not written again before its backoff ends.
        self.check_backoff(service.id, result.plan, run.force)
        result.plan, result.execution = execute(
            Write(result.plan, service, run.id, remaining()), self.ports, write
        )
        execution = result.execution
        if execution.status is WriteStatus.EARLIER_FAILED and execution.resumed is not None:
            # The write this run found in flight was the same version and failed.
            failed = self.storage.failure(service.id, cert.name)
            result.outcome = Outcome.BACKOFF
            result.message = failed.describe() if failed else execution.resumed.message
            log.warning("%s: %s", service.name, result.message)
            return
        result.outcome, result.message = convergence.after_write(
            execution.status, execution.message
        )
        if result.outcome.failed_write:
            log.error("%s: %s: %s", service.name, result.outcome, result.message)

    def check_backoff(self, service_id: str, plan: Plan, force: bool) -> None:
        """Raise BackingOff while the plan's version waits out an earlier failure."""
        decided = convergence.before_write(
            self.storage.failure(service_id, plan.certificate), plan, self.now(), force=force
        )
        if decided.reason is Reason.BACKOFF:
            raise BackingOff(decided.message)

    def _thumbprints(self, service: CloudServiceSnapshot) -> dict[str, str]:
        out: dict[str, str] = {}
        for group in service.secrets:
            for url in group.certificate_urls:
                tp = self.keyvault.thumbprint(url)
                if tp:
                    out[url] = tp
        return out


@dataclass
class ServiceWrite:
    """The converger's side of one service's write (:class:`shared.rotation.executor.Caller`)."""

    converger: Converger
    run: Run
    result: ServiceResult
    cert: Certificate
    thumbprints: dict[str, str]  # of the service as first read, by secret URL
    ended: Ended  # see Caller.ended

    def plan(self, snapshot: CloudServiceSnapshot, certificate: Certificate) -> Plan:
        c = self.converger
        now = c.now()
        desired = planner.desired_version(certificate, now)
        secret = (
            c.keyvault.secret_facts(desired.secret_id)
            if desired is not None
            and desired.thumbprint is not None
            and not planner.references(snapshot, desired.secret_id)
            else None
        )
        return planner.plan_rotation(
            snapshot,
            certificate,
            self.thumbprints | c._thumbprints(snapshot),
            now,
            rewrite_settings=c.settings.rewrite_settings,
            secret=secret,
        )

    def replan(self, fresh: CloudServiceSnapshot) -> Plan:
        # Under the lock the certificate is read again as well as the service: this run
        # may be minutes old (earlier services, long updates), and planning with its
        # snapshot would write back a version a newer one has since replaced.
        cert = self.cert
        plan = self.plan(
            fresh, self.converger.keyvault.certificate(cert.vault_id, cert.vault_url, cert.name)
        )
        if not plan.is_noop:
            # Again under the lock: a failure may have been recorded since the check before
            # it (the write that failed held this lease until it was recorded).
            self.converger.check_backoff(fresh.id, plan, self.run.force)
        return plan

    def sent(self, execution: Execution) -> None:
        self.result.execution, self.result.outcome = execution, Outcome.UPDATING
        self.converger.records.save(self.run, extra=self.result)


def _decided(
    result: ServiceResult,
    service: CloudServiceSnapshot,
    decided: Decision,
    cert: Certificate | None = None,
) -> None:
    """Record a decision that ends the service's convergence, and log it."""
    assert decided.outcome is not None
    result.outcome, result.message = decided.outcome, decided.message
    if decided.reason is Reason.UNMANAGED:
        log.warning("%s", decided.message)
    elif decided.reason is Reason.FAILED_STATE:
        log.error("%s", decided.message)
    elif decided.reason is Reason.NOOP and cert is not None and result.plan is not None:
        log.info("%s: already on %s/%s", service.name, cert.name, result.plan.desired.version)


def _log_plan(service: CloudServiceSnapshot, plan: Plan) -> None:
    for change in plan.changes:
        log.info(
            "%s: plan %s/%s %s -> %s",
            service.name,
            change.role,
            change.certificate,
            change.old,
            change.new,
        )
    for url in plan.secrets_added:
        log.info("%s: plan osProfile + %s", service.name, url)
    for url in plan.secrets_removed:
        log.info("%s: plan osProfile - %s", service.name, url)
