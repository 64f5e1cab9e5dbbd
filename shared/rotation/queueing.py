"""Work sent to the app's own queues: an operator's rotation in batches, a batch that waits
again, looks at updates still running, and reconcile's fan-out of the changes it found.

Every message is built and parsed by :mod:`shared.domain.messages`; here they are sent.
A run whose message must be followed (an operator's) has its record written *before* the
message is sent, so the ids answered can be followed at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from shared.config import Settings
from shared.domain.errors import ConfigError, RotationError
from shared.domain.messages import (
    FOLLOW_QUEUE,
    MAX_WAITS,
    SERVICES_QUEUE,
    Follow,
    Requested,
    ServiceBatch,
    batches,
    follows,
    to_text,
    wait_delay,
)
from shared.domain.outcomes import RunStatus
from shared.domain.records import Trigger
from shared.domain.runs import Run
from shared.rotation.discovery import Discovery
from shared.rotation.ports import MessageQueue
from shared.rotation.recording import RunRecorder

log = logging.getLogger("certrotate")


class Queueing:
    def __init__(
        self,
        settings: Settings,
        queues: MessageQueue | None,
        discovery: Discovery,
        records: RunRecorder,
    ) -> None:
        self.settings = settings
        self.queues = queues
        self.discovery = discovery
        self.records = records

    def queue_rotation(
        self, vault_id: str, certificate: str, only: Iterable[str] = (), force: bool = False
    ) -> list[Run]:
        """See :meth:`shared.rotation.engine.Engine.queue_rotation`."""
        if self.queues is None:
            raise ConfigError("no queue endpoint to queue the rotation with")
        services = self.discovery.asked_for(vault_id, certificate, only)
        self.discovery.read_certificate(vault_id, certificate, services)
        size = self.settings.services_per_message
        runs = []
        for i in range(0, len(services), size):
            run = self.records.new_run(Trigger("manual"), vault_id, certificate)
            run.status, run.force = RunStatus.QUEUED, force
            run.waiting = tuple(s.id for s in services[i : i + size])
            self.records.storage.save_record(run.record())
            runs.append(run)
        for run in runs:
            batch = ServiceBatch(vault_id, certificate, Requested(run.id), run.waiting)
            try:
                self.queues.send_later(SERVICES_QUEUE, to_text(batch), 0)
            except RotationError as exc:
                self.records.not_queued(run, exc)
                raise
            log.info("manual run %s: %d service(s) queued", run.id, len(run.waiting))
        return runs

    def wait_again(self, batch: ServiceBatch, run: Run) -> bool:
        """See :meth:`shared.rotation.engine.Engine.wait_again`."""
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

    def follow_later(self, run: Run) -> None:
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

    def follow_again(self, message: Follow) -> None:
        """See :meth:`shared.rotation.engine.Engine.follow_again`."""
        if self.queues is None:
            raise ConfigError("no queue endpoint to send the next look with")
        self.queues.send_later(
            FOLLOW_QUEUE, to_text(message), int(self.settings.follow_seconds)
        )

    def queue_changes(self, run: Run) -> None:
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
