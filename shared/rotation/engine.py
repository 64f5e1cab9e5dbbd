"""The rotation engine: from a hint (vault + certificate name) to converged services.

Flow for one hint: discover the cloud services in scope whose ``osProfile.secrets``
reference the certificate; take the vault URL from those references (never from an
event); read the certificate's versions once; then, per service and isolated from the
others, plan (pure) and, unless it is a no-op or a dry run, execute. Each run is stored as
a JSON record. A transient failure of any service makes :meth:`Engine.rotate` report
``transient`` so event handlers can fail the invocation and let Event Grid retry; the
retry is safe because planning starts again from the truth.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from shared.adapters.clients import Clients
from shared.adapters.compute import Compute
from shared.adapters.keyvault import KeyVault
from shared.adapters.queues import Queues
from shared.adapters.storage import Storage
from shared.config import Settings
from shared.domain import backoff, planner, renewal
from shared.domain.compute_ids import split_service_id
from shared.domain.errors import (
    BackingOff,
    Busy,
    ConfigError,
    InvalidInput,
    NotFound,
    PlanRefused,
    PlatformRejected,
    PreconditionFailed,
    RotationError,
    TransientError,
    VaultAccessDenied,
    Waiting,
)
from shared.domain.events import EXPIRED, NEAR_EXPIRY, CertificateEvent
from shared.domain.journal import Pending
from shared.domain.messages import (
    FOLLOW_QUEUE,
    MAX_FOLLOWS,
    MAX_WAITS,
    SERVICES_QUEUE,
    Follow,
    Hint,
    Origin,
    Requested,
    ServiceBatch,
    batches,
    follows,
    source,
    to_text,
    wait_delay,
)
from shared.domain.model import (
    PACKAGE_TAG,
    Certificate,
    CloudServiceSnapshot,
    Plan,
    SecretUrl,
)
from shared.domain.outcomes import Outcome, RunStatus, WriteStatus
from shared.domain.records import (
    Action,
    RunRecord,
    ServiceEntry,
    Trigger,
    WriteFacts,
    keep_finished,
)
from shared.domain.runs import Execution, Rollout, Run, ServiceResult, WriteResult
from shared.observability import logcontext
from shared.rotation.executor import execute, package_of, resume

log = logging.getLogger("certrotate")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Engine:
    def __init__(
        self,
        settings: Settings,
        compute: Compute,
        keyvault: KeyVault,
        storage: Storage,
        now: Callable[[], datetime] = utcnow,
        notify: Callable[[Run], None] | None = None,
        queues: Queues | None = None,
    ) -> None:
        self.settings = settings
        self.compute = compute
        self.keyvault = keyvault
        self.storage = storage
        self.now = now
        self.notify = notify
        self.queues = queues
        self.destinations = settings.destinations()

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        from shared.observability.notify import (
            observer,  # imported here: notify reads this module's Run
        )

        clients = Clients(settings)
        return cls(
            settings,
            Compute(clients),
            KeyVault(clients),
            Storage(clients),
            notify=observer(settings, clients),
            queues=Queues(clients) if settings.queue_url else None,
        )

    # -- discovery -----------------------------------------------------------------------

    def services_using(
        self, vault_id: str, certificate: str, only: Iterable[str] = ()
    ) -> list[CloudServiceSnapshot]:
        wanted = {s.lower() for s in only}
        found = [s for s in self.compute.list_services() if s.references(vault_id, certificate)]
        if wanted:
            found = [s for s in found if s.id.lower() in wanted]
        return found

    def read_certificate(
        self, vault_id: str, certificate: str, services: list[CloudServiceSnapshot]
    ) -> Certificate:
        """Read the certificate from the vault URL the services themselves reference."""
        urls = {
            parsed.vault_url
            for s in services
            for g in s.secrets
            if g.source_vault_id.lower() == vault_id.lower()
            for u in g.certificate_urls
            if (parsed := SecretUrl.parse(u))
            and parsed.name.lower() == certificate.lower()
            and self.destinations.allows(parsed.vault_url)
        }
        if not urls:
            raise NotFound(
                f"no cloud service in scope references certificate '{certificate}' "
                f"of vault {vault_id}"
            )
        return self.keyvault.certificate(vault_id, sorted(urls)[0], certificate)

    # -- rotation ------------------------------------------------------------------------

    def handle_event(self, event: CertificateEvent) -> Run | None:
        """Act on a Key Vault certificate event (a hint) for every service using the
        certificate, in this invocation; None if nothing uses it.

        Updates are followed for ``EVENT_WAIT_SECONDS`` in all, so one worker is not held
        for minutes; what is left is journaled and finished by :meth:`finish_pending` (the
        ``follow_updates`` timer).
        """
        return self._handle(event, None)[0]

    def handle_hint(self, hint: Hint) -> tuple[Run | None, list[ServiceBatch]]:
        """Run the rotation a queued :class:`Hint` names for the first
        ``SERVICES_PER_MESSAGE`` services using the certificate (each attempt is a run of its
        own), and return the batches to queue: the other services, and those of this run
        that hit a transient failure (their retry is the batch's, so one busy service does
        not hold back the rest)."""
        if not self._vault_in_scope(hint.vault_id):
            return None, []
        event = _event_of(hint.origin, hint.vault_id, hint.certificate, hint.version)
        size = self.settings.services_per_message
        run, rest = self._handle(event, size)
        again = [r.service_id for r in run.results if r.outcome == "transient"] if run else []
        ids = again + [s.id for s in rest]
        return run, batches(hint.vault_id, hint.certificate, hint.origin, ids, size)

    def handle_batch(self, batch: ServiceBatch) -> Run | None:
        """Converge the services a :class:`ServiceBatch` names, as a run of its own; None if
        none of them (still) uses the certificate.

        The ids come from a queue message: each must be in scope before it is read, and
        must still reference the certificate (a service changed or deleted since the hint
        is skipped, as discovery would have).
        """
        if not self._vault_in_scope(batch.vault_id):
            return None
        run_id, force = None, False
        if isinstance(batch.origin, Requested):  # checked before anything is read from Azure
            asked = self._requested(batch)
            if asked is None:
                return None
            run_id, force = batch.origin.run_id, asked
        services = []
        for service_id in batch.services:
            if not self._in_scope(service_id):
                log.warning("batch names %s, which is out of scope: skipped", service_id)
                continue
            try:
                snapshot = self.compute.get(service_id)
            except NotFound:
                log.info("%s no longer exists: skipped", service_id)
                continue
            if snapshot.references(batch.vault_id, batch.certificate):
                services.append(snapshot)
        if not services:
            if run_id is not None:  # the operator follows this run: it must end
                self._nothing_left(run_id, batch)
            return None
        trigger = _trigger_of(batch.origin)
        try:
            cert = self.read_certificate(batch.vault_id, batch.certificate, services)
        except VaultAccessDenied as exc:
            return self._vault_refused(trigger, batch.vault_id, batch.certificate, services, exc)
        return self.rotate(
            batch.vault_id,
            batch.certificate,
            trigger,
            services=services,
            certificate_state=cert,
            wait_seconds=self.settings.event_wait_seconds,
            force=force,
            run_id=run_id,
        )

    def _requested(self, batch: ServiceBatch) -> bool | None:
        """For a batch an operator's request queued: its ``force``, read from the queued
        run's record; None (refused, logged) unless that record is a manual run of this
        vault and certificate, naming these services, that has not ended (a forged or
        duplicate message must neither overwrite a finished run's record nor lift a
        backoff nobody lifted)."""
        assert isinstance(batch.origin, Requested)
        run_id = batch.origin.run_id
        try:
            record: RunRecord | None = self.storage.load_record(run_id)
        except NotFound:
            record = None
        if (
            record is None
            or record.trigger.kind != "manual"
            or record.vault.lower() != batch.vault_id.lower()
            or record.certificate.lower() != batch.certificate.lower()
            or not all(record.names(s) for s in batch.services)
        ):
            log.error("batch for manual run %s refused: no such queued run of %s/%s naming "
                      "its services", run_id, batch.vault_id.rsplit("/", 1)[-1],
                      batch.certificate)
            return None
        if not record.status.resumable:
            log.info("manual run %s is %s already: its batch has nothing to do", run_id,
                     record.status)
            return None
        return record.force

    def _nothing_left(self, run_id: str, batch: ServiceBatch) -> None:
        """End a queued manual run none of whose services still uses the certificate."""
        message = f"no longer uses certificate '{batch.certificate}': nothing to do"

        def ended(record: RunRecord | None) -> RunRecord | None:
            if record is None:
                return None
            return replace(
                record,
                services=tuple(
                    replace(e, outcome=Outcome.NOOP, message=message) for e in record.services
                ),
                status=RunStatus.DONE,
                finished=self.now().isoformat(),
            )

        self.storage.update_record(run_id, ended)
        log.info("manual run %s: %s", run_id, message)

    def queue_rotation(
        self, vault_id: str, certificate: str, only: Iterable[str] = (), force: bool = False
    ) -> list[Run]:
        """An operator's rotation, queued: the services are checked and the certificate
        read here (an unknown vault, certificate or service is NotFound at once), then each
        batch of ``SERVICES_PER_MESSAGE`` services is a ``queued`` run whose record is
        written before its message is sent, so the answer's run ids can be followed at
        once, and the workers, on any instance, do the PUTs. A message that cannot be sent
        leaves its run ``transient`` (saying so) and raises TransientError."""
        if self.queues is None:
            raise ConfigError("no queue endpoint to queue the rotation with")
        services = self._asked_for(vault_id, certificate, only)
        self.read_certificate(vault_id, certificate, services)
        size = self.settings.services_per_message
        runs = []
        for i in range(0, len(services), size):
            run_id = new_run_id(self.now())
            run = Run(
                id=run_id, trigger=Trigger("manual"), vault_id=vault_id,
                certificate=certificate, dry_run=False, started=self.now(), status=RunStatus.QUEUED,
                force=force, waiting=tuple(s.id for s in services[i : i + size]),
            )
            self.storage.save_record(run.record())
            runs.append(run)
        for run in runs:
            batch = ServiceBatch(vault_id, certificate, Requested(run.id), run.waiting)
            try:
                self.queues.send_later(SERVICES_QUEUE, to_text(batch), 0)
            except RotationError as exc:
                self._not_queued(run, exc)
                raise
            log.info("manual run %s: %d service(s) queued", run.id, len(run.waiting))
        return runs

    def _not_queued(self, run: Run, exc: RotationError) -> None:
        """The run's message could not be sent: its record says so, and nothing runs."""
        run.status, run.finished = RunStatus.TRANSIENT, self.now()
        run.results = [
            ServiceResult(s, Outcome.TRANSIENT, f"could not be queued: {exc}") for s in run.waiting
        ]
        self.storage.save_record(run.record())

    def wait_again(self, batch: ServiceBatch, run: Run) -> bool:
        """Send ``batch`` again, for its services of ``run`` that are transient, with a
        visibility delay, when each of them only waits for something in progress (another
        invocation's lease, an update still running): True if sent, and the attempt ends
        there. Waiting is not failing, so it spends none of the message's attempts, as
        Event Grid's retries over hours spent none of a delivery's; after MAX_WAITS sends
        (about 2.5 h) it fails like any other attempt. False when something else failed,
        or the app has no queue endpoint to send with."""
        transient = [r for r in run.results if r.outcome == "transient"]
        if self.queues is None or not transient or not all(r.waiting for r in transient):
            return False
        again = batch.waits_again(tuple(r.service_id for r in transient))
        if again is None:
            return False
        delay = wait_delay(self.settings.wait_seconds, again.waited)
        self.queues.send_later(SERVICES_QUEUE, to_text(again), delay)
        log.info(
            "run %s: %d service(s) wait for work in progress; batch sent again, visible in "
            "%d s (wait %d of %d)", run.id, len(transient), delay, again.waited, MAX_WAITS,
        )
        return True

    def _vault_in_scope(self, vault_id: str) -> bool:
        """A queued message naming a vault outside ``ROTATION_SUBSCRIPTIONS`` (only someone
        with queue-write access can send one) is refused at once, without a request: a
        retry cannot bring it into scope."""
        if self.settings.in_scope(vault_id):
            return True
        log.error("message for vault %s refused: its subscription is not in "
                  "ROTATION_SUBSCRIPTIONS", vault_id.rsplit("/", 1)[-1])
        return False

    def _handle(
        self, event: CertificateEvent, first: int | None
    ) -> tuple[Run | None, list[CloudServiceSnapshot]]:
        """The event's run over its ``first`` services (all if None), and the others."""
        services = self.services_using(event.vault_id, event.certificate)
        if not services:
            log.info(
                "event %s: no cloud service in scope uses %s/%s; nothing to do",
                event.event_id,
                event.vault_name,
                event.certificate,
            )
            return None, []
        trigger = Trigger("event", event.kind, event.event_id)
        try:
            cert = self.read_certificate(event.vault_id, event.certificate, services)
        except VaultAccessDenied as exc:
            refused = self._vault_refused(
                trigger, event.vault_id, event.certificate, services, exc
            )
            return refused, []
        actions: list[Action] = []
        if event.kind == NEAR_EXPIRY:
            try:
                actions.append(self._near_expiry(event, cert, services))
            except VaultAccessDenied as exc:  # the services still converge on what exists
                log.error("event %s: %s", event.event_id, exc)
                actions.append(Action("renew-refused", str(exc)))
        elif event.kind == EXPIRED:
            actions.append(
                Action(
                    "expired",
                    f"EXPIRED: certificate '{cert.name}' version {event.version} in vault "
                    f"{event.vault_name} has expired; services: "
                    + ", ".join(s.name for s in services),
                )
            )
            log.error("%s", actions[-1].message)
        mine = services if first is None else services[:first]
        run = self.rotate(
            event.vault_id,
            event.certificate,
            trigger,
            services=mine,
            certificate_state=cert,
            actions=actions,
            wait_seconds=self.settings.event_wait_seconds,
        )
        return run, services[len(mine) :]

    def gave_up(
        self, vault_id: str, certificate: str, origin: Origin | Requested | None,
        services: tuple[str, ...],
    ) -> None:
        """Record and announce a message the queue gave up on (its poison queue got it): a
        hint (``services`` empty) or a batch of ``services``.

        A run of its own records a ``gave-up`` action (the attempts' runs, where they got
        that far, hold each attempt's errors), which status and notifications raise as an
        alert; the services themselves converge on reconcile's next tick.
        """
        which = (
            "the services " + ", ".join(s.rsplit("/", 1)[-1] for s in services)
            if services
            else "the services using it"
        )
        message = (
            f"GAVE UP: {source(origin)} for certificate '{certificate}' in vault "
            f"{vault_id.rsplit('/', 1)[-1]}: converging {which} failed every attempt the "
            "queue allows (host.json maxDequeueCount); the earlier runs say why each "
            "failed; reconcile converges them on its next tick"
        )
        run = Run(
            id=new_run_id(self.now()),
            trigger=_trigger_of(origin),
            vault_id=vault_id,
            certificate=certificate,
            dry_run=False,
            started=self.now(),
            status=RunStatus.TRANSIENT,
            finished=self.now(),
            actions=[Action("gave-up", message)],
        )
        log.error("run %s: %s", run.id, message)
        self.storage.save_record(run.record())
        if self.notify is not None:
            self.notify(run)

    def _vault_refused(
        self, trigger: Trigger, vault_id: str, certificate: str,
        services: list[CloudServiceSnapshot], exc: VaultAccessDenied,
    ) -> Run:
        """The vault refused to let the app read the certificate: a stored run in which every
        service is ``refused`` with Key Vault's reason, so the message is done (another
        attempt would be refused the same way) and the status page shows why."""
        run = Run(
            id=new_run_id(self.now()),
            trigger=trigger,
            vault_id=vault_id,
            certificate=certificate,
            dry_run=False,
            started=self.now(),
            status=RunStatus.DONE,
            results=[ServiceResult(s.id, Outcome.REFUSED, str(exc)) for s in services],
        )
        log.error("run %s: %s", run.id, exc)
        run.finished = self.now()
        self._save(run)
        if self.notify is not None:
            self.notify(run)
        return run

    def _near_expiry(
        self, event: CertificateEvent, cert: Certificate, services: list[CloudServiceSnapshot]
    ) -> Action:
        """Renew only when Key Vault's own data says the current version is due (the event
        is a hint: forged or replayed ones change nothing), and the issuer needs no person.
        """
        now = self.now()
        decision = renewal.decide(cert, event.version, now)
        if decision.reason is not renewal.RenewalReason.RENEW:
            log.info("event %s: %s", event.event_id, decision.message)
            return Action(decision.reason.value, decision.message)
        current = planner.desired_version(cert, now) or next(
            (v for v in cert.versions if v.version == event.version), None
        )
        expiry = current.expires.isoformat() if current and current.expires else "unknown"
        if self.settings.renew_on_near_expiry and self.keyvault.can_renew(cert):
            if self.keyvault.renew(cert.vault_url, cert.name):
                action = Action(
                    "renew-requested",
                    f"requested a new version of '{cert.name}' from issuer {cert.issuer}",
                )
            else:
                action = Action(
                    "renew-pending", f"a new version of '{cert.name}' is already being issued"
                )
            log.info("%s", action.message)
            return action
        why = (
            "its policy renews automatically"
            if cert.auto_renew
            else f"issuer '{cert.issuer}' needs a person"
            if cert.issuer
            else "renewal on NearExpiry is off"
        )
        msg = (
            f"ACTION REQUIRED: renew certificate '{cert.name}' in vault {event.vault_name} "
            f"(expires {expiry}; {why}); used by " + ", ".join(s.name for s in services)
        )
        log.warning("%s", msg)
        return Action("renew-required", msg)

    def rotate(
        self,
        vault_id: str,
        certificate: str,
        trigger: Trigger,
        *,
        only: Iterable[str] = (),
        dry_run: bool = False,
        services: list[CloudServiceSnapshot] | None = None,
        certificate_state: Certificate | None = None,
        actions: Iterable[Action] = (),
        wait_seconds: float | None = None,
        pending: set[str] | None = None,
        force: bool = False,
        run_id: str | None = None,
    ) -> Run:
        """Converge every service in scope using the certificate; never raises for one
        service's failure (it is in the run's results).

        ``wait_seconds`` bounds how long the run follows its updates, all services together
        (default ``OPERATION_WAIT_SECONDS``), so an invocation's length does not grow with
        the number of services: once it is spent, later updates are still sent but reported
        ``updating``, and their journal lets a later invocation finish them; the updates
        themselves go on in Azure. ``pending``: ids (lower case) of services with a journaled
        write to finish first (listed here unless the caller already did). ``force``: an
        operator's explicit request, which writes a version even while it backs off.
        """
        run = Run(
            id=run_id or new_run_id(self.now()),
            trigger=trigger,
            vault_id=vault_id,
            certificate=certificate,
            dry_run=dry_run,
            started=self.now(),
            actions=list(actions),
            force=force,
        )
        if services is None:
            services = self._asked_for(vault_id, certificate, only)
        else:
            _in_scope_or_not_found(self.settings, vault_id)
        if run_id is not None:
            run.waiting = tuple(s.id for s in services)
        with logcontext.bound(run_id=run.id):
            cert = certificate_state or self.read_certificate(vault_id, certificate, services)
            log.info(
                "run %s: %s/%s used by %d cloud service(s)",
                run.id,
                vault_id.rsplit("/", 1)[-1],
                certificate,
                len(services),
            )
            self._save(run)
            remaining = _budget(
                self.settings.operation_wait_seconds if wait_seconds is None else wait_seconds
            )
            if pending is None:
                pending = set() if dry_run else self.storage.pending_services()
            for service in services:
                with logcontext.bound(service_id=service.id):
                    result = self._converge(run, service, cert, remaining, pending)
                run.results.append(result)
                self._save(run)
            run.status = RunStatus.of((r.outcome for r in run.results), left_updating=False)
            run.finished = self.now()
            self._save(run)
            if self.notify is not None and not dry_run:
                self.notify(run)
            self._follow_later(run)
        return run

    def _asked_for(
        self, vault_id: str, certificate: str, only: Iterable[str]
    ) -> list[CloudServiceSnapshot]:
        """The services an operator's rotation covers: those in scope using the certificate
        (``only`` these, if given); NotFound for a vault out of scope or a service that
        does not use it."""
        _in_scope_or_not_found(self.settings, vault_id)
        only = tuple(only)
        services = self.services_using(vault_id, certificate, only)
        missing = {o.lower() for o in only} - {s.id.lower() for s in services}
        if missing:
            raise NotFound(
                f"cloud service(s) {sorted(missing)} do not reference certificate "
                f"'{certificate}' of vault {vault_id} (or are out of scope)"
            )
        return services

    # -- following updates by message ----------------------------------------------------

    def _follow_later(self, run: Run) -> None:
        """Queue a look at the run's updates still running, ``FOLLOW_POLL_SECONDS`` from
        now (:class:`Follow` messages), so no invocation sits in a poll loop for them.

        Best effort: the journals hold the updates whatever happens here, and the
        ``follow_updates`` sweep finishes any whose message was lost or never sent.
        """
        running = [r.service_id for r in run.results if r.outcome == "updating"]
        if not running or self.queues is None:
            return
        delay = int(self.settings.follow_seconds)
        try:
            for message in follows(running, self.settings.services_per_message):
                self.queues.send_later(FOLLOW_QUEUE, to_text(message), delay)
        except RotationError as exc:
            log.warning("run %s: updates not queued to follow (%s); the follow_updates "
                        "sweep follows them", run.id, exc)
            return
        log.info("run %s: %d update(s) still running; looked at again in %d s",
                 run.id, len(running), delay)

    def handle_follow(self, message: Follow) -> Follow | None:
        """Look once at each journaled update ``message`` names and finish those that ended
        (verify, walk the next update domain, record in the run that sent it, notify);
        return the look to queue for the rest, or None when nothing is left to follow.

        A look is one read while Azure still applies the update (no poller left running);
        a service another invocation holds (the sweep, a run) is looked at again too, as
        is one that could not be read now. Past MAX_FOLLOWS looks the update is left to
        the ``follow_updates`` sweep.
        """
        still: list[str] = []
        for service_id in message.services:
            if not self._in_scope(service_id):
                log.warning("follow message names %s, which is out of scope: skipped",
                            service_id)
                continue
            with logcontext.bound(service_id=service_id):
                try:
                    outcome = self._finish_pending(service_id, 0.0, None, look=True)
                except Busy:
                    log.info("%s: another invocation holds it; looked at again later",
                             service_id)
                    still.append(service_id)
                    continue
                except NotFound:
                    log.warning("%s no longer exists: its update is not looked at again",
                                service_id)
                    continue
                except RotationError as exc:
                    log.warning("%s: could not look at its update: %s", service_id, exc)
                    still.append(service_id)
                    continue
            if outcome is not None and outcome.status is WriteStatus.UPDATING:
                still.append(service_id)
        again = message.again(tuple(still))
        if still and again is None:
            log.warning("%d update(s) still running after %d looks; the follow_updates "
                        "sweep follows them", len(still), MAX_FOLLOWS)
        return again

    def follow_again(self, message: Follow) -> None:
        """Queue ``message`` (the next look), ``FOLLOW_POLL_SECONDS`` from now. Raises
        TransientError when storage cannot take it: the look that asked for it is then
        retried by the queue, nothing is lost."""
        if self.queues is None:
            raise ConfigError("no queue endpoint to send the next look with")
        self.queues.send_later(
            FOLLOW_QUEUE, to_text(message), int(self.settings.follow_seconds)
        )

    def _converge(
        self,
        run: Run,
        service: CloudServiceSnapshot,
        cert: Certificate,
        remaining: Callable[[], float],
        pending: set[str],
    ) -> ServiceResult:
        result = ServiceResult(service.id, Outcome.PENDING)
        try:
            if service.opted_out:
                result.outcome, result.message = Outcome.OPTED_OUT, "tag cert-rotation=off"
                return result
            if not service.package_url and self.settings.untagged != "update":
                result.outcome = Outcome.UNMANAGED
                result.message = (
                    f"{service.name} uses the certificate but has no "
                    f"'{PACKAGE_TAG}' tag: tag it with the blob URL (no SAS) of "
                    "its deployed .cspkg to let rotation manage it"
                )
                log.warning("%s", result.message)
                return result
            if service.id.lower() in pending and not run.dry_run:
                # An earlier write is journaled: finish it before planning anything new (a
                # run that does not wait looks: finished if it has ended, else it waits).
                wait = remaining()
                earlier = self._finish_pending(service.id, wait, run.id, look=wait <= 0)
                if earlier is not None and earlier.status is WriteStatus.UPDATING:
                    raise Waiting(f"the update sent by run {earlier.run_id} is still running")
                if (
                    earlier is not None
                    and earlier.run_id == run.id
                    and earlier.status in WRITE_ENDED
                ):
                    # This run's own write, sent by an earlier attempt of it (a queued
                    # manual run keeps its id): how it ended is this run's result.
                    result.outcome, result.message = earlier.status.outcome, earlier.message
                    return result
                service = self.compute.get(service.id)
            # A tag anyone with tag-write can set: parsed strictly before anything is read.
            package_of(service, self.settings)
            thumbprints = self._thumbprints(service)

            def replan(snapshot: CloudServiceSnapshot, certificate: Certificate = cert) -> Plan:
                now = self.now()
                desired = planner.desired_version(certificate, now)
                secret = (
                    self.keyvault.secret_facts(desired.secret_id)
                    if desired is not None
                    and desired.thumbprint is not None
                    and not planner.references(snapshot, desired.secret_id)
                    else None
                )
                return planner.plan_rotation(
                    snapshot,
                    certificate,
                    thumbprints | self._thumbprints(snapshot),
                    now,
                    rewrite_settings=self.settings.rewrite_settings,
                    secret=secret,
                )

            def replan_locked(snapshot: CloudServiceSnapshot) -> Plan:
                # Under the lock the certificate is read again as well as the service: this
                # run may be minutes old (earlier services, long updates), and planning with
                # its snapshot would write back a version a newer one has since replaced.
                plan = replan(
                    snapshot, self.keyvault.certificate(cert.vault_id, cert.vault_url, cert.name)
                )
                if not plan.is_noop:
                    # Again under the lock: a failure may have been recorded since the check
                    # below (the write that failed held this lease until it was recorded).
                    self._check_backoff(service.id, plan, run.force)
                return plan

            result.plan = replan(service)
            for warning in result.plan.warnings:
                log.warning("%s: %s", service.name, warning)
            if result.plan.is_noop and (service.provisioning_state or "").lower() == "failed":
                # The model names the desired version but the platform failed to apply it:
                # not converged, and re-sending the same PUT blindly would fail the same way.
                result.outcome = Outcome.FAILED
                result.message = (
                    f"{service.name} is in state Failed after its last update (its model "
                    "already names the desired version); see its activity log, fix the cause "
                    "and update it again; nothing was sent"
                )
                log.error("%s", result.message)
                return result
            if result.plan.is_noop:
                result.outcome, result.message = Outcome.NOOP, "already converged"
                log.info(
                    "%s: already on %s/%s", service.name, cert.name, result.plan.desired.version
                )
                return result
            self._log_plan(service, result.plan)
            if run.dry_run:
                result.outcome = Outcome.DRY_RUN
                return result
            # A version whose write failed is not written again before its backoff ends.
            self._check_backoff(service.id, result.plan, run.force)

            def progress(execution: Execution) -> None:
                result.execution, result.outcome = execution, Outcome.UPDATING
                self._save(run, extra=result)

            result.plan, result.execution = execute(
                result.plan,
                service,
                replan_locked,
                self.compute,
                self.storage,
                self.settings,
                self.now,
                progress,
                remaining(),
                run.id,
                ended=self._write_ended(service.id, run.id),
            )
            execution = result.execution
            if execution.status is WriteStatus.EARLIER_FAILED and execution.resumed is not None:
                # The write this run found in flight was the same version and failed.
                failed = self.storage.failure(service.id, cert.name)
                result.outcome = Outcome.BACKOFF
                result.message = failed.describe() if failed else execution.resumed.message
                log.warning("%s: %s", service.name, result.message)
                return result
            result.outcome = execution.status.outcome
            result.message = execution.message or {
                "noop": "already converged",
                "updating": "update still running",
            }.get(result.outcome, "")
            if result.outcome.failed_write:
                log.error("%s: %s: %s", service.name, result.outcome, result.message)
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

    def _check_backoff(self, service_id: str, plan: Plan, force: bool) -> None:
        """Raise BackingOff while the plan's version waits out an earlier failure."""
        blocked = backoff.blocking(
            self.storage.failure(service_id, plan.certificate),
            plan.desired.version,
            self.now(),
            force=force,
        )
        if blocked is not None:
            raise BackingOff(blocked.describe())

    def _write_ended(
        self, service_id: str, by_run: str | None = None
    ) -> Callable[[Pending, WriteResult], None]:
        """What the executor calls, under the service's lease, when a journaled write has
        ended, before anything else can happen (or fail) in that invocation: an earlier
        run's write (``by_run`` found it in flight) is recorded in that run's record, and
        the failure backoff is kept or cleared, before anyone else may act on the service.
        """

        def ended(entry: Pending, outcome: WriteResult) -> None:
            if by_run is not None and entry.run_id != by_run:
                self._record_resumed(service_id, outcome, by_run)
            if outcome.status not in WRITE_ENDED:
                return  # e.g. not-applied: the PUT never landed, nothing to back off from
            try:
                previous = self.storage.failure(service_id, entry.certificate)
            except RotationError as exc:
                log.warning("%s: could not read the failure record: %s", service_id, exc)
                return
            self._keep_backoff(
                service_id,
                entry.certificate,
                entry.version,
                outcome.status.outcome,
                outcome.message,
                previous,
            )

        return ended

    def _keep_backoff(
        self,
        service_id: str,
        certificate: str,
        version: str,
        outcome: Outcome,
        message: str,
        previous: backoff.Failure | None,
    ) -> None:
        """Record ``outcome`` of writing ``version`` of ``certificate`` for the backoff.

        Best effort: the outcome is already decided, and losing the record only means one
        more attempt sooner than the backoff would allow.
        """
        try:
            if outcome.failed_write:
                self.storage.record_failure(
                    service_id,
                    backoff.after_failure(
                        previous, certificate, version, outcome, message, self.now()
                    ),
                )
            elif outcome is Outcome.ROTATED and previous is not None:
                self.storage.clear_failure(service_id, certificate)
        except RotationError as exc:
            log.warning("%s: could not keep the failure record: %s", service_id, exc)

    # -- writes that outlived their invocation -------------------------------------------

    def _finish_pending(
        self, service_id: str, wait: float, by_run: str | None, look: bool = False
    ) -> WriteResult | None:
        """Follow the service's journaled write to its end and record it in its own run;
        ``look``: one read while Azure still applies it (a follow message's look)."""
        outcome = resume(
            service_id,
            self.compute,
            self.storage,
            self.settings,
            self.now,
            wait,
            ended=self._write_ended(service_id),
            look=look,
        )
        if outcome is not None:
            self._record_resumed(service_id, outcome, by_run)
        return outcome

    def _record_resumed(
        self, service_id: str, outcome: WriteResult, by_run: str | None
    ) -> None:
        """Write how an earlier run's write ended into that run's record."""
        if outcome.status is WriteStatus.UPDATING or not outcome.record:
            return
        message = outcome.message + (f" (finished by run {by_run})" if by_run else "")

        def finish(record: RunRecord | None) -> RunRecord | None:
            if record is None:
                return None
            # No entry: the run died before it could record the service at all.
            entry = record.entry(service_id) or ServiceEntry(service_id, Outcome.PENDING)
            write = entry.write or WriteFacts()
            record = record.with_entry(
                replace(
                    entry,
                    outcome=outcome.status.outcome,
                    message=message,
                    write=replace(
                        write,
                        continuation_token=None,
                        final_thumbprints=outcome.final_thumbprints or None,
                    ),
                )
            )
            outcomes = [e.outcome for e in record.services]
            # Also for a run still going (its own last write sets its status again) and
            # for one whose invocation died (nothing else would ever end it).
            if Outcome.UPDATING not in outcomes:
                record = replace(
                    record,
                    status=RunStatus.of(outcomes, left_updating=False),
                    finished=self.now().isoformat(),
                )
            return record

        record = self.storage.update_record(outcome.run_id, finish)
        if record is None:
            log.warning("run %s has no record; its write ended %s", outcome.run_id, outcome.status)
            return
        log.info("run %s: %s %s", outcome.run_id, service_id, message)
        entry = record.entry(service_id)
        if self.notify is not None and entry is not None:
            # The run was announced as ``updating``; this is how that update ended.
            self.notify(self._finished_part(record, entry))

    def _finished_part(self, record: RunRecord, entry: ServiceEntry) -> Run:
        """The part of a recorded run that a later invocation finished, as a Run to
        announce: its own id, trigger and start, the one service, no actions (those were
        announced with the run)."""
        return Run(
            id=record.id,
            trigger=record.trigger,
            vault_id=record.vault,
            certificate=record.certificate,
            dry_run=False,
            started=datetime.fromisoformat(record.started),
            status=record.status,
            finished=self.now(),
            results=[
                ServiceResult(
                    entry.cloud_service,
                    entry.outcome,
                    entry.message,
                    resumed=Rollout.from_record(entry.plan, record.certificate),
                )
            ],
        )

    def resume_run(self, run_id: str, wait_seconds: float) -> RunRecord:
        """The run's record, after following any of its updates still running (those
        another invocation follows right now are left to it)."""
        record = self.storage.load_record(run_id)
        if record.status is not RunStatus.UPDATING:
            return record
        with logcontext.bound(run_id=run_id):
            for entry in record.services:
                if entry.outcome is Outcome.UPDATING:
                    with logcontext.bound(service_id=entry.cloud_service):
                        try:
                            self._finish_pending(entry.cloud_service, wait_seconds, None)
                        except Busy:  # a follow look (or the sweep) is at it: it records
                            log.info("%s: another invocation is following its update",
                                     entry.cloud_service)
        return self.storage.load_record(run_id)

    # -- the backstop -------------------------------------------------------------------

    def finish_pending(
        self, wait_seconds: float | None = None, by: str = "follow_updates", look: bool = False
    ) -> Counter[str]:
        """Follow every journaled write in scope to its end and record it in the run that
        sent it; for ``wait_seconds`` in all (default ``OPERATION_WAIT_SECONDS``).
        ``look``: only look at each (the sweep for journals whose follow message was lost:
        it finishes those that ended and leaves the rest running, waiting for none).

        Counts ``resumed-<status>`` per write, ``busy`` where another invocation holds the
        service (it is following it already: not a failure) and ``transient`` where the
        write could not be followed now. One listing of journals when there is nothing to do.
        """
        remaining = _budget(
            self.settings.operation_wait_seconds if wait_seconds is None else wait_seconds
        )
        outcomes: Counter[str] = Counter()
        for service_id in sorted(filter(self._in_scope, self.storage.pending_services())):
            with logcontext.bound(service_id=service_id):
                try:
                    earlier = self._finish_pending(service_id, remaining(), by, look)
                except Busy:
                    log.info("%s: another invocation is following its update", service_id)
                    outcomes["busy"] += 1
                    continue
                except RotationError as exc:
                    log.warning("%s: could not finish its pending update: %s", service_id, exc)
                    outcomes["transient"] += 1
                    continue
            if earlier is not None:
                outcomes[f"resumed-{earlier.status}"] += 1
        return outcomes

    def reconcile(
        self, wait_seconds: float | None = None, fan_out: bool = False
    ) -> dict[str, Any]:
        """Converge every managed service in scope to the desired version of every
        certificate it uses, as events would have; finish journaled writes first.

        Cheap when nothing changed: one listing of services (paged), one of journals, one
        read per (vault, certificate) pair, thumbprints cached by versioned URL, and no
        write at all (runs with nothing but no-ops are not stored). ``wait_seconds`` is the
        whole run's budget for following updates, as in :meth:`rotate`.

        ``fan_out`` (the timer, when the app has its queue endpoint): each certificate's
        services are planned here, as a dry run (the same reads), and only those with a
        change to make are queued as :class:`ServiceBatch` messages (counted ``queued``),
        so the writes are spread over the instances like an event's, and the timer, which
        the host never runs twice at once, is not held for hundreds of PUTs; journaled
        writes are only looked at.
        """
        started = self.now()
        remaining = _budget(
            self.settings.operation_wait_seconds if wait_seconds is None else wait_seconds
        )
        fan_out = fan_out and self.queues is not None
        outcomes = self.finish_pending(remaining(), by="reconcile", look=fan_out)
        groups: dict[tuple[str, str], list[CloudServiceSnapshot]] = {}
        names: dict[tuple[str, str], tuple[str, str]] = {}
        services = 0
        for service in self.compute.list_services():
            if service.opted_out or not (
                service.package_url or self.settings.untagged == "update"
            ):
                outcomes["unmanaged" if not service.opted_out else "opted-out"] += 1
                continue
            services += 1
            for vault_id, certificate in service.certificates_used():
                key = (vault_id.lower(), certificate.lower())
                groups.setdefault(key, []).append(service)
                names.setdefault(key, (vault_id, certificate))
        runs: list[str] = []
        for key, members in sorted(groups.items()):
            vault_id, certificate = names[key]
            try:
                run = self.rotate(
                    vault_id,
                    certificate,
                    Trigger("reconcile"),
                    services=members,
                    wait_seconds=remaining(),
                    pending=set(),
                    dry_run=fan_out,
                )
                if fan_out:
                    self._queue_changes(run)
            except RotationError as exc:
                log.warning("reconcile: %s/%s: %s", vault_id, certificate, exc)
                outcomes["transient" if isinstance(exc, TransientError) else "failed"] += 1
                continue
            outcomes.update(
                "queued" if fan_out and r.outcome == "dry-run" else r.outcome
                for r in run.results
            )
            if not run.quiet and not fan_out:
                runs.append(run.id)
        report = {
            "started": started.isoformat(),
            "seconds": round((self.now() - started).total_seconds(), 3),
            "services": services,
            "certificates": len(groups),
            "outcomes": dict(sorted(outcomes.items())),
            "runs": runs,
        }
        log.info("reconcile: %s", report)
        return report

    def _queue_changes(self, run: Run) -> None:
        """Queue, in batches, the services of a reconcile dry ``run`` that have a change to
        make; each batch is then a reconcile run of its own on whichever instance takes it
        (re-planned from the truth, so a change made meanwhile writes nothing)."""
        changed = [r.service_id for r in run.results if r.outcome == "dry-run"]
        if not changed or self.queues is None:
            return
        messages = batches(
            run.vault_id, run.certificate, None, changed, self.settings.services_per_message
        )
        for message in messages:
            self.queues.send_later(SERVICES_QUEUE, to_text(message), 0)
        log.info("reconcile: %s: %d service(s) to converge, queued in %d batch(es)",
                 run.certificate, len(changed), len(messages))

    def _in_scope(self, service_id: str) -> bool:
        """A journaled service this engine may touch (the journals' storage may be shared)."""
        subscription, group, _ = split_service_id(service_id)
        groups = {g.lower() for g in self.settings.resource_groups}
        return subscription.lower() in {s.lower() for s in self.settings.subscriptions} and (
            not groups or group.lower() in groups
        )

    def _thumbprints(self, service: CloudServiceSnapshot) -> dict[str, str]:
        out: dict[str, str] = {}
        for group in service.secrets:
            for url in group.certificate_urls:
                tp = self.keyvault.thumbprint(url)
                if tp:
                    out[url] = tp
        return out

    def _log_plan(self, service: CloudServiceSnapshot, plan: Plan) -> None:
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

    def _save(self, run: Run, extra: ServiceResult | None = None) -> None:
        if (extra is None and run.quiet) or run.dry_run:
            return
        record = run.record()
        if extra is not None and extra not in run.results:
            record = replace(record, services=(*record.services, extra.entry()))
        if not any(r.open for r in run.results):
            # Nobody else writes this record until the run lets go of a service whose update
            # is still running (``extra`` is a service the run still holds the lease of).
            self.storage.save_record(record)
            return
        saved = self.storage.update_record(run.id, lambda stored: keep_finished(record, stored))
        if saved is not None:  # always, as keep_finished always writes
            run.adopt(saved)


# How a write that reached Azure can end: what a run records as its own result, and what
# the failure backoff is kept (or cleared) for.
WRITE_ENDED = (WriteStatus.SUCCEEDED, WriteStatus.FAILED, WriteStatus.ROLLED_BACK)


def _budget(seconds: float) -> Callable[[], float]:
    """The seconds left of ``seconds`` from now, never negative: one deadline shared by
    everything an invocation follows."""
    deadline = time.monotonic() + seconds
    return lambda: max(0.0, deadline - time.monotonic())


def _in_scope_or_not_found(settings: Settings, vault_id: str) -> None:
    if not settings.in_scope(vault_id):
        raise NotFound(f"vault {vault_id} is in a subscription not in ROTATION_SUBSCRIPTIONS")


def _trigger_of(origin: Origin | Requested | None) -> Trigger:
    """The trigger of a run a queued message asks for: its event's, an operator's, or
    reconcile's."""
    if origin is None:
        return Trigger("reconcile")
    if isinstance(origin, Requested):
        return Trigger("manual")
    return Trigger("event", origin.event_type, origin.event_id)


def _event_of(
    origin: Origin, vault_id: str, certificate: str, version: str | None
) -> CertificateEvent:
    """The event a queued message came from, as far as the message tells (ids only)."""
    return CertificateEvent(
        kind=origin.event_type,
        event_id=origin.event_id,
        vault_id=vault_id,
        vault_name=vault_id.rsplit("/", 1)[-1],
        certificate=certificate,
        version=version,
        not_before=None,
        expires=None,
        event_time=None,
    )


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"
