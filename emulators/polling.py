"""Waiting for the stack to reach a state: one poll loop for tests, demo, soak and bench."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    what: str = "condition",
    timeout: float = 20.0,
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``
    (a test failure, and a clear message for the scripts)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
