"""Writes that outlived their invocation: finishing journaled writes and recording how
they ended.

A write's journal (:mod:`shared.domain.journal`) lets whoever next holds the service's
lease follow it to its end (:func:`shared.rotation.executor.resume`). This module is the
caller's side of that: it finishes one service's earlier write before a run plans anything
new there (:meth:`PendingWrites.finish`), takes one look per service a follow message
names, sweeps every journal in scope (the ``follow_updates`` timer), and, whenever a write
has ended, records it in the run that sent it and keeps the failure backoff
(:meth:`PendingWrites.ended`), before anyone else may act on the service.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from shared.adapters.compute import Compute
from shared.adapters.storage import Storage
from shared.config import Settings
from shared.domain import backoff
from shared.domain.errors import Busy, NotFound, RotationError
from shared.domain.journal import Pending
from shared.domain.messages import MAX_FOLLOWS, Follow
from shared.domain.outcomes import Outcome, WriteStatus
from shared.domain.runs import WriteResult
from shared.observability import logcontext
from shared.rotation.clock import budget
from shared.rotation.executor import resume
from shared.rotation.recording import RunRecorder
from shared.rotation.writing import Ended

log = logging.getLogger("certrotate")


class PendingWrites:
    # The adapters themselves (not their ports): executor.resume takes them.
    def __init__(
        self,
        settings: Settings,
        compute: Compute,
        storage: Storage,
        now: Callable[[], datetime],
        records: RunRecorder,
        in_scope: Callable[[str], bool],
    ) -> None:
        self.settings = settings
        self.compute = compute
        self.storage = storage
        self.now = now
        self.records = records
        self.in_scope = in_scope

    def finish(
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
            ended=self.ended(service_id),
            look=look,
        )
        if outcome is not None:
            self.records.resumed(service_id, outcome, by_run)
        return outcome

    def ended(self, service_id: str, by_run: str | None = None) -> Ended:
        """What the executor calls, under the service's lease, when a journaled write has
        ended, before anything else can happen (or fail) in that invocation: an earlier
        run's write (``by_run`` found it in flight) is recorded in that run's record, and
        the failure backoff is kept or cleared, before anyone else may act on the service.
        """

        def ended(entry: Pending, outcome: WriteResult) -> None:
            if by_run is not None and entry.run_id != by_run:
                self.records.resumed(service_id, outcome, by_run)
            if not outcome.status.ended:
                return  # e.g. not-applied: the PUT never landed, nothing to back off from
            try:
                previous = self.storage.failure(service_id, entry.certificate)
            except RotationError as exc:
                log.warning("%s: could not read the failure record: %s", service_id, exc)
                return
            self._keep_backoff(service_id, entry, outcome.status.outcome, outcome.message,
                               previous)

        return ended

    def _keep_backoff(
        self,
        service_id: str,
        entry: Pending,
        outcome: Outcome,
        message: str,
        previous: backoff.Failure | None,
    ) -> None:
        """Record ``outcome`` of writing ``entry``'s version of its certificate for the
        backoff.

        Best effort: the outcome is already decided, and losing the record only means one
        more attempt sooner than the backoff would allow.
        """
        try:
            if outcome.failed_write:
                self.storage.record_failure(
                    service_id,
                    backoff.after_failure(
                        previous, entry.certificate, entry.version, outcome, message, self.now()
                    ),
                )
            elif outcome is Outcome.ROTATED and previous is not None:
                self.storage.clear_failure(service_id, entry.certificate)
        except RotationError as exc:
            log.warning("%s: could not keep the failure record: %s", service_id, exc)

    def look(self, message: Follow) -> Follow | None:
        """See :meth:`shared.rotation.engine.Engine.handle_follow`."""
        still: list[str] = []
        for service_id in message.services:
            if not self.in_scope(service_id):
                log.warning("follow message names %s, which is out of scope: skipped",
                            service_id)
                continue
            with logcontext.bound(service_id=service_id):
                try:
                    outcome = self.finish(service_id, 0.0, None, look=True)
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

    def sweep(
        self, wait_seconds: float | None = None, by: str = "follow_updates", look: bool = False
    ) -> Counter[str]:
        """See :meth:`shared.rotation.engine.Engine.finish_pending`."""
        remaining = budget(
            self.settings.operation_wait_seconds if wait_seconds is None else wait_seconds
        )
        outcomes: Counter[str] = Counter()
        for service_id in sorted(filter(self.in_scope, self.storage.pending_services())):
            with logcontext.bound(service_id=service_id):
                try:
                    earlier = self.finish(service_id, remaining(), by, look)
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
