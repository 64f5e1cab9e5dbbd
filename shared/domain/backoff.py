"""Failure backoff: a version whose update failed is not tried again in a loop.

Theory of operation
-------------------
Rotation is level-triggered, so without memory a version that fails (a platform
``Failed``, a rollback, a PUT Azure refuses) is planned again by every retried message, every
other event and every hourly reconcile: two production updates and an alert an hour. So
the last failure of each (service, certificate) is kept with its version, in the app's
storage (a service using two certificates keeps one record each: a rotation of the other
certificate is no reason to retry this one), and a new
write of *that* version waits until ``last + delay(attempts)``: 1 h after the first
failure, doubling to at most 32 h, as cert-manager's issuing backoff does. A newer
version is a new reason and is tried at once (its first failure starts at 1 h again); an
operator's explicit ``force`` lifts the wait; a success clears the record.

Pure: the clock is an argument; the storage adapter only keeps :class:`Failure` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

FIRST_DELAY = timedelta(hours=1)
LONGEST_DELAY = timedelta(hours=32)


def delay(attempts: int) -> timedelta:
    """The wait after ``attempts`` failures in a row of one version (1 h, 2 h, … 32 h)."""
    doubled: timedelta = FIRST_DELAY * (2 ** max(0, min(attempts, 16) - 1))
    return min(doubled, LONGEST_DELAY)


@dataclass(frozen=True)
class Failure:
    """The last failed write of one certificate on one service: which version, why, when,
    how many times."""

    certificate: str
    version: str
    outcome: str  # failed | rolled-back
    message: str
    first: datetime
    last: datetime
    attempts: int

    @property
    def until(self) -> datetime:
        return self.last + delay(self.attempts)

    def describe(self) -> str:
        return (
            f"backing off until {self.until.isoformat(timespec='seconds')} after "
            f"{self.attempts} failure(s) of version {self.version} of {self.certificate}: "
            f"{self.message}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "certificate": self.certificate,
            "version": self.version,
            "outcome": self.outcome,
            "message": self.message,
            "first": self.first.isoformat(),
            "last": self.last.isoformat(),
            "attempts": self.attempts,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Failure:
        return cls(
            certificate=str(data["certificate"]),
            version=str(data["version"]),
            outcome=str(data["outcome"]),
            message=str(data["message"]),
            first=datetime.fromisoformat(str(data["first"])),
            last=datetime.fromisoformat(str(data["last"])),
            attempts=int(data["attempts"]),
        )


def after_failure(
    previous: Failure | None,
    certificate: str,
    version: str,
    outcome: str,
    message: str,
    now: datetime,
) -> Failure:
    """The record once ``version`` of ``certificate`` failed (again) at ``now``."""
    if previous is not None and previous.version == version:
        return Failure(
            certificate, version, outcome, message, previous.first, now, previous.attempts + 1
        )
    return Failure(certificate, version, outcome, message, now, now, 1)


def blocking(
    failure: Failure | None, version: str, now: datetime, *, force: bool = False
) -> Failure | None:
    """The failure that forbids writing ``version`` now, or None when it may be written."""
    if failure is None or force or failure.version != version or now >= failure.until:
        return None
    return failure
