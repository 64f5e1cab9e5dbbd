"""One vocabulary for how runs and writes end: outcomes and statuses as StrEnums.

Their values are the strings records, answers, the CLI and notifications carry; what each
means (quiet, alerts, done, resumable, ended, ...) is a property of the member, not a set
repeated in every module that needs it (tests/unit/test_runs.py lists every member).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Outcome(StrEnum):
    """What a run did to one cloud service (``outcome`` in records and answers)."""

    ROTATED = "rotated"
    NOOP = "noop"
    DRY_RUN = "dry-run"
    UPDATING = "updating"  # Azure accepted the PUT; a follow look records how it ends
    QUEUED = "queued"  # a queued manual run has yet to reach the service
    PENDING = "pending"  # being worked on (never stored as a final outcome)
    REFUSED = "refused"  # bad input or a rule: nothing was sent
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    UNMANAGED = "unmanaged"
    OPTED_OUT = "opted-out"
    TRANSIENT = "transient"  # could not be done now; a retry will
    BACKOFF = "backoff"  # this version failed before; not tried again until it changes

    @property
    def quiet(self) -> bool:
        """Nothing to tell: a reconcile run of only these is neither stored nor announced."""
        return self in {Outcome.NOOP, Outcome.UNMANAGED, Outcome.OPTED_OUT, Outcome.BACKOFF}

    @property
    def failed_write(self) -> bool:
        """A write reached Azure and failed: its version backs off (:mod:`.backoff`)."""
        return self in {Outcome.FAILED, Outcome.ROLLED_BACK}

    @property
    def alerts(self) -> bool:
        """Someone must look: notifications send these as alerts."""
        return self in {Outcome.FAILED, Outcome.REFUSED, Outcome.ROLLED_BACK, Outcome.UNMANAGED}

    @property
    def digest(self) -> bool:
        """Good news worth telling (notifications' digest)."""
        return self in {Outcome.ROTATED, Outcome.UPDATING}

    @property
    def done(self) -> bool:
        """Nothing is left to do for the service (the CLI exits 0 only when all are)."""
        return self in {
            Outcome.ROTATED, Outcome.NOOP, Outcome.DRY_RUN, Outcome.UNMANAGED, Outcome.OPTED_OUT
        }

    @property
    def unsuccessful(self) -> bool:
        """The service's last run did not get it where it should be (status flags it)."""
        return self in {Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.REFUSED, Outcome.TRANSIENT}


class RunStatus(StrEnum):
    """Where a run stands (``status`` in records)."""

    QUEUED = "queued"  # an operator's run, written before its batch was sent
    RUNNING = "running"
    UPDATING = "updating"  # ended its invocation with updates still running in Azure
    # An operator's queued run whose attempt failed transiently: the queue runs the same
    # run again (its record is resumed), so it has not ended.
    RETRYING = "retrying"
    # A service failed transiently and this record will not change: an event's attempt
    # (its retry is a run of its own), or an operator's run the queue gave up on.
    TRANSIENT = "transient"
    DONE = "done"

    @property
    def resumable(self) -> bool:
        """A queued manual run's batch may (still, or again) run it: queued, an attempt that
        died (running) or failed transiently (retrying). One that ended or left updates
        running is done with."""
        return self in {RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.RETRYING}

    @property
    def ended(self) -> bool:
        """Nothing of the run will change any more (``follow`` stops here)."""
        return self in {RunStatus.DONE, RunStatus.TRANSIENT}

    @classmethod
    def of(
        cls, outcomes: Iterable[Outcome], *, left_updating: bool, retried: bool = False
    ) -> RunStatus:
        """The status of a run whose services ended with ``outcomes``; ``retried``: the
        queue runs this same run again after a transient failure (an operator's run)."""
        seen = set(outcomes)
        if Outcome.TRANSIENT in seen:
            return cls.RETRYING if retried else cls.TRANSIENT
        return cls.UPDATING if left_updating or Outcome.UPDATING in seen else cls.DONE


class WriteStatus(StrEnum):
    """How a write to one service went, as the executor reports it."""

    PENDING = "pending"
    NOOP = "noop"  # re-planned under the lease: nothing left to write
    SUCCEEDED = "succeeded"
    UPDATING = "updating"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    NOT_APPLIED = "not-applied"  # a PUT without Azure's answer that never landed
    EARLIER_FAILED = "earlier-failed"  # an earlier invocation's write failed; none sent

    @property
    def failed(self) -> bool:
        """The write reached Azure and failed (a not-applied one never landed)."""
        return self in {WriteStatus.FAILED, WriteStatus.ROLLED_BACK}

    @property
    def ended(self) -> bool:
        """A write that reached Azure has ended: what a run records as its own result, and
        what the failure backoff is kept (or cleared) for."""
        return self in {WriteStatus.SUCCEEDED, WriteStatus.FAILED, WriteStatus.ROLLED_BACK}

    @property
    def outcome(self) -> Outcome:
        """The outcome a run records for a write that went this way."""
        return _WRITE_OUTCOMES[self]


_WRITE_OUTCOMES = {
    WriteStatus.NOOP: Outcome.NOOP,
    WriteStatus.SUCCEEDED: Outcome.ROTATED,
    WriteStatus.UPDATING: Outcome.UPDATING,
    WriteStatus.FAILED: Outcome.FAILED,
    WriteStatus.ROLLED_BACK: Outcome.ROLLED_BACK,
    WriteStatus.NOT_APPLIED: Outcome.FAILED,
    WriteStatus.EARLIER_FAILED: Outcome.FAILED,
    WriteStatus.PENDING: Outcome.PENDING,
}
