"""Run records: saving a run as it works, and writing into a record what a later
invocation learned (how an earlier run's write ended, a queued run with nothing left).

A record has two kinds of writer once one of its updates is left running: the run itself,
and whichever invocation finishes that update. So a run with an open write saves through
:meth:`~shared.rotation.ports.RunRecords.update_record` (keeping what the other wrote), and a
finished write is recorded the same way; nobody writes a record blindly but its own run
while nothing of it is open. Each run that is stored is also announced (``announce``: the
notifier, or nothing).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from shared.domain.errors import RotationError, VaultAccessDenied
from shared.domain.messages import Origin, Requested, ServiceBatch, source
from shared.domain.model import CloudServiceSnapshot
from shared.domain.outcomes import Outcome, RunStatus, WriteStatus
from shared.domain.records import (
    Action,
    RunRecord,
    ServiceEntry,
    Trigger,
    WriteFacts,
    keep_finished,
)
from shared.domain.runs import Rollout, Run, ServiceResult, WriteResult
from shared.rotation.ports import RunRecords

log = logging.getLogger("certrotate")


def new_run_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"


def trigger_of(origin: Origin | Requested | None) -> Trigger:
    """The trigger of a run a queued message asks for: its event's, an operator's, or
    reconcile's."""
    if origin is None:
        return Trigger("reconcile")
    if isinstance(origin, Requested):
        return Trigger("manual")
    return Trigger("event", origin.event_type, origin.event_id)


class RunRecorder:
    def __init__(
        self,
        storage: RunRecords,
        now: Callable[[], datetime],
        announce: Callable[[Run], None],
    ) -> None:
        self.storage = storage
        self.now = now
        self.announce = announce

    def new_run(self, trigger: Trigger, vault_id: str, certificate: str) -> Run:
        """A run (not a dry run) starting now, with a new id."""
        return Run(
            id=new_run_id(self.now()),
            trigger=trigger,
            vault_id=vault_id,
            certificate=certificate,
            dry_run=False,
            started=self.now(),
        )

    def save(self, run: Run, extra: ServiceResult | None = None) -> None:
        """Store the run as it stands (``extra``: a service it is still working on, whose
        write Azure just accepted); a dry run or a quiet reconcile run is not stored."""
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

    def resumed(self, service_id: str, outcome: WriteResult, by_run: str | None) -> None:
        """Write how an earlier run's write ended into that run's record, and announce it."""
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
            # for one whose invocation died (nothing else would ever end it). An
            # operator's run the queue retries stays retrying: its next attempt ends it.
            if Outcome.UPDATING not in outcomes:
                record = replace(
                    record,
                    status=RunStatus.of(
                        outcomes,
                        left_updating=False,
                        retried=record.status is RunStatus.RETRYING,
                    ),
                    finished=self.now().isoformat(),
                )
            return record

        record = self.storage.update_record(outcome.run_id, finish)
        if record is None:
            log.warning("run %s has no record; its write ended %s", outcome.run_id, outcome.status)
            return
        log.info("run %s: %s %s", outcome.run_id, service_id, message)
        entry = record.entry(service_id)
        if entry is not None:
            # The run was announced as ``updating``; this is how that update ended.
            self.announce(self._finished_part(record, entry))

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

    def nothing_left(self, run_id: str, batch: ServiceBatch) -> None:
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

    def not_queued(self, run: Run, exc: RotationError) -> None:
        """The run's message could not be sent: its record says so, and nothing runs."""
        run.status, run.finished = RunStatus.TRANSIENT, self.now()
        run.results = [
            ServiceResult(s, Outcome.TRANSIENT, f"could not be queued: {exc}") for s in run.waiting
        ]
        self.storage.save_record(run.record())

    def vault_refused(
        self, trigger: Trigger, vault_id: str, certificate: str,
        services: list[CloudServiceSnapshot], exc: VaultAccessDenied,
    ) -> Run:
        """The vault refused to let the app read the certificate: a stored run in which every
        service is ``refused`` with Key Vault's reason, so the message is done (another
        attempt would be refused the same way) and the status page shows why."""
        run = self.new_run(trigger, vault_id, certificate)
        run.status = RunStatus.DONE
        run.results = [ServiceResult(s.id, Outcome.REFUSED, str(exc)) for s in services]
        log.error("run %s: %s", run.id, exc)
        run.finished = self.now()
        self.save(run)
        self.announce(run)
        return run

    def gave_up(
        self, vault_id: str, certificate: str, origin: Origin | Requested | None,
        services: tuple[str, ...],
    ) -> None:
        """Record and announce a message the queue gave up on (see :meth:`Engine.gave_up`)."""
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
        run = self.new_run(trigger_of(origin), vault_id, certificate)
        run.status, run.finished = RunStatus.TRANSIENT, self.now()
        run.actions = [Action("gave-up", message)]
        log.error("run %s: %s", run.id, message)
        self.storage.save_record(run.record())
        self.announce(run)
        if isinstance(origin, Requested):
            self._end_retrying(
                origin.run_id, vault_id, certificate, services,
                Action("gave-up", f"{message} (run {run.id})"),
            )

    def _end_retrying(
        self, run_id: str, vault_id: str, certificate: str, services: tuple[str, ...],
        action: Action,
    ) -> None:
        """An operator's run the queue gave up on ends ``transient`` with the action (a
        service it never reached says so), so whoever follows it stops waiting. One that
        ended meanwhile is left as it is, and so is any record the message does not match
        (a forged poison message must not end another run)."""
        unreached = {Outcome.QUEUED, Outcome.PENDING}

        def ended(record: RunRecord | None) -> RunRecord | None:
            if (
                record is None
                or not record.status.resumable
                or not record.queued_for(vault_id, certificate, services)
            ):
                return None
            return replace(
                record,
                services=tuple(
                    replace(e, outcome=Outcome.TRANSIENT, message="not reached: " + action.message)
                    if e.outcome in unreached
                    else e
                    for e in record.services
                ),
                status=RunStatus.TRANSIENT,
                finished=self.now().isoformat(),
                actions=(*record.actions, action),
            )

        if self.storage.update_record(run_id, ended) is not None:
            log.error("manual run %s ended transient: the queue gave up on it", run_id)
