"""Failure backoff: 1 h after the first failure of a version, doubling to 32 h (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.domain.backoff import Failure, after_failure, blocking, delay

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("attempts", "wait"),
    [(1, H), (2, 2 * H), (3, 4 * H), (5, 16 * H), (6, 32 * H), (7, 32 * H), (400, 32 * H)],
)
def test_the_wait_doubles_from_one_hour_to_thirty_two(attempts: int, wait: timedelta) -> None:
    assert delay(attempts) == wait


def test_failures_of_one_version_count_up_and_a_new_version_starts_again() -> None:
    first = after_failure(None, "web-tls", "v2", "rolled-back", "RoleInstanceStartupFailed", NOW)
    assert (first.attempts, first.first, first.until) == (1, NOW, NOW + H)
    second = after_failure(first, "web-tls", "v2", "failed", "again", NOW + 2 * H)
    assert (second.attempts, second.first, second.until) == (2, NOW, NOW + 4 * H)
    newer = after_failure(second, "web-tls", "v3", "failed", "other", NOW + 3 * H)
    assert (newer.attempts, newer.first) == (1, NOW + 3 * H)


FAILED = after_failure(None, "web-tls", "v2", "failed", "x", NOW)
CASES = [
    # (failure, version to write, now, force, blocked)
    (None, "v2", NOW, False, False),
    (FAILED, "v2", NOW + timedelta(minutes=59), False, True),
    (FAILED, "v2", NOW + H, False, False),
    (FAILED, "v3", NOW, False, False),  # a new reason
    (FAILED, "v2", NOW, True, False),  # an operator's explicit request
]


@pytest.mark.parametrize(("failure", "version", "now", "force", "blocked"), CASES)
def test_only_the_failed_version_waits_and_only_until_its_time(
    failure: Failure | None, version: str, now: datetime, force: bool, blocked: bool
) -> None:
    assert (blocking(failure, version, now, force=force) is not None) is blocked


def test_the_record_round_trips_and_says_why() -> None:
    failure = after_failure(
        None, "web-tls", "v2", "rolled-back", "RoleInstanceStartupFailed: boom", NOW
    )
    assert Failure.from_json(failure.to_json()) == failure
    assert failure.describe() == (
        "backing off until 2026-12-01T13:00:00+00:00 after 1 failure(s) of version v2 of "
        "web-tls: RoleInstanceStartupFailed: boom"
    )
