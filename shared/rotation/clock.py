"""Time for the rotation layer: the wall clock runs are stamped with, and one invocation's
budget for following updates."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def budget(seconds: float) -> Callable[[], float]:
    """The seconds left of ``seconds`` from now, never negative: one deadline shared by
    everything an invocation follows."""
    deadline = time.monotonic() + seconds
    return lambda: max(0.0, deadline - time.monotonic())
