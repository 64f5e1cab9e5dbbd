"""Whether to write to one cloud service, and why not: pure decisions with reason constants.

Theory of operation
-------------------
Converging a service (:mod:`shared.rotation.converge`) reads a little, decides, reads a
little more, decides again: each stage below takes only what is read by then, so nothing
is read that an earlier decision makes unnecessary (a reconcile over converged services
stays one listing and one certificate read). Each returns a :class:`Decision` whose
``reason`` is a constant operators see as the service's outcome; only ``WRITE`` lets the
act step go on. In order:

1. :func:`admit` (the snapshot only): ``OPTED_OUT`` (tag ``cert-rotation=off``),
   ``UNMANAGED`` (no package tag, and ``ROTATION_UNTAGGED`` is not ``update``);
2. :func:`after_earlier_write` (an earlier write found in the journal, followed):
   ``STILL_RUNNING`` (wait), ``OWN_WRITE_ENDED`` (this run's own write, sent by an earlier
   attempt of it, ended: that is its result), ``SAME_VERSION_FAILED`` (the write found in
   flight was this very version and failed: it backs off), else ``WRITE`` (plan afresh).
   Both places that finish an earlier write first (before planning, and under the lease)
   ask this one function;
3. :func:`after_plan` (the plan): ``FAILED_STATE`` (the model already names the version
   but the platform failed to apply it), ``NOOP``, ``DRY_RUN``, else ``WRITE``;
4. :func:`before_write` (the failure record, the clock): ``BACKOFF`` while the version
   waits out an earlier failure (:mod:`shared.domain.backoff`), else ``WRITE``.

The clock is an argument; nothing here reads or writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.domain import backoff
from shared.domain.model import PACKAGE_TAG, CloudServiceSnapshot, Plan
from shared.domain.outcomes import Outcome, WriteStatus
from shared.domain.runs import WriteResult


class Reason(StrEnum):
    OPTED_OUT = "opted-out"
    UNMANAGED = "unmanaged"
    STILL_RUNNING = "still-running"
    OWN_WRITE_ENDED = "own-write-ended"
    SAME_VERSION_FAILED = "same-version-failed"
    FAILED_STATE = "failed-state"
    NOOP = "noop"
    DRY_RUN = "dry-run"
    BACKOFF = "backoff"
    WRITE = "write"


# The outcome a run records for a service decided this way (WRITE: the write decides;
# STILL_RUNNING: transient, raised as Waiting by the act step).
_OUTCOMES = {
    Reason.OPTED_OUT: Outcome.OPTED_OUT,
    Reason.UNMANAGED: Outcome.UNMANAGED,
    Reason.STILL_RUNNING: Outcome.TRANSIENT,
    Reason.SAME_VERSION_FAILED: Outcome.BACKOFF,
    Reason.FAILED_STATE: Outcome.FAILED,
    Reason.NOOP: Outcome.NOOP,
    Reason.DRY_RUN: Outcome.DRY_RUN,
    Reason.BACKOFF: Outcome.BACKOFF,
}


@dataclass(frozen=True)
class Decision:
    reason: Reason
    message: str = ""
    # OWN_WRITE_ENDED: how the write ended, as the run's outcome for the service
    ended_as: Outcome | None = None

    @property
    def writes(self) -> bool:
        """The act step goes on to (re-plan and) write."""
        return self.reason is Reason.WRITE

    @property
    def outcome(self) -> Outcome | None:
        """The service's outcome when the decision ends its convergence (None: it goes on)."""
        return self.ended_as or _OUTCOMES.get(self.reason)


GO_ON = Decision(Reason.WRITE)


def admit(service: CloudServiceSnapshot, *, untagged: str) -> Decision:
    """Whether rotation manages ``service`` at all (decided before anything is read)."""
    if service.opted_out:
        return Decision(Reason.OPTED_OUT, "tag cert-rotation=off")
    if not service.package_url and untagged != "update":
        return Decision(
            Reason.UNMANAGED,
            f"{service.name} uses the certificate but has no '{PACKAGE_TAG}' tag: tag it "
            "with the blob URL (no SAS) of its deployed .cspkg to let rotation manage it",
        )
    return GO_ON


def after_earlier_write(
    earlier: WriteResult | None,
    *,
    this_run: str | None = None,
    wrote: str | None = None,
    version: str | None = None,
) -> Decision:
    """What an earlier write, found in the service's journal and followed, leaves to do.

    ``this_run``: the run asking, when an earlier attempt of it may have sent the write (a
    queued manual run keeps its id); ``wrote``: the version the earlier write rolled out;
    ``version``: the version the asker is about to write.
    """
    if earlier is None:
        return GO_ON
    if earlier.status is WriteStatus.UPDATING:
        return Decision(
            Reason.STILL_RUNNING, f"the update sent by run {earlier.run_id} is still running"
        )
    if this_run is not None and earlier.run_id == this_run and earlier.status.ended:
        return Decision(Reason.OWN_WRITE_ENDED, earlier.message, earlier.status.outcome)
    if version is not None and earlier.status.failed and wrote == version:
        # Writing it again here would be the loop the backoff exists to stop.
        return Decision(Reason.SAME_VERSION_FAILED, earlier.message)
    return GO_ON


def after_plan(service: CloudServiceSnapshot, plan: Plan, *, dry_run: bool) -> Decision:
    """What the plan calls for."""
    if plan.is_noop and (service.provisioning_state or "").lower() == "failed":
        # The model names the desired version but the platform failed to apply it: not
        # converged, and re-sending the same PUT blindly would fail the same way.
        return Decision(
            Reason.FAILED_STATE,
            f"{service.name} is in state Failed after its last update (its model already "
            "names the desired version); see its activity log, fix the cause and update it "
            "again; nothing was sent",
        )
    if plan.is_noop:
        return Decision(Reason.NOOP, "already converged")
    if dry_run:
        return Decision(Reason.DRY_RUN)
    return GO_ON


def before_write(
    failure: backoff.Failure | None, plan: Plan, now: datetime, *, force: bool
) -> Decision:
    """Whether the plan's version may be written now: not while it waits out an earlier
    failure, unless an operator forces it."""
    blocked = backoff.blocking(failure, plan.desired.version, now, force=force)
    if blocked is not None:
        return Decision(Reason.BACKOFF, blocked.describe())
    return GO_ON


def after_write(status: WriteStatus, message: str) -> tuple[Outcome, str]:
    """The outcome and message a run records for a write the executor reports."""
    outcome = status.outcome
    return outcome, message or {
        Outcome.NOOP: "already converged",
        Outcome.UPDATING: "update still running",
    }.get(outcome, "")
