"""NearExpiry is a hint: renewal decided from Key Vault's data alone, clock injected."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from shared.domain.model import Certificate
from shared.domain.renewal import RenewalReason, decide, window_start
from tests.unit.test_planner import NOW, V1, V2, WEB_V1, WEB_V2, certificate

# V1 valid until 2026-06-01 (31 days after NOW), V2 until 2027-04-01 (335 days after NOW).
ONLY_V1 = certificate(V1)
BOTH = certificate(V1, V2)


def policy(cert: Certificate, days: int | None = None, percent: int | None = None) -> Certificate:
    return replace(cert, renew_days_before_expiry=days, renew_lifetime_percentage=percent)


CASES = [
    # (certificate, event version, now, reason, message part)
    (BOTH, WEB_V1, NOW, RenewalReason.NEWER_VERSION, "newer valid version"),
    (BOTH, "0" * 32, NOW, RenewalReason.NEWER_VERSION, "newer valid version"),
    (BOTH, WEB_V2, NOW, RenewalReason.NOT_NEAR_EXPIRY, f"version {WEB_V2} expires in 334 days"),
    (BOTH, None, NOW, RenewalReason.NOT_NEAR_EXPIRY, "not near expiry"),
    (ONLY_V1, WEB_V1, NOW, RenewalReason.NOT_NEAR_EXPIRY, "expires in 30 days"),
    (ONLY_V1, WEB_V1, NOW + timedelta(days=1, seconds=1), RenewalReason.RENEW, "window"),
    (ONLY_V1, None, NOW + timedelta(days=2), RenewalReason.RENEW, "window"),
    (policy(ONLY_V1, days=45), WEB_V1, NOW, RenewalReason.RENEW, "window"),
    (policy(BOTH, days=10), WEB_V2, NOW + timedelta(days=320), RenewalReason.NOT_NEAR_EXPIRY, ""),
    (policy(BOTH, days=10), WEB_V2, NOW + timedelta(days=326), RenewalReason.RENEW, ""),
    (policy(BOTH, percent=80), WEB_V2, NOW, RenewalReason.NOT_NEAR_EXPIRY, ""),
    (policy(BOTH, percent=80), WEB_V2, NOW + timedelta(days=262), RenewalReason.RENEW, ""),
    # Every version expired: nothing valid to keep, so renew.
    (ONLY_V1, WEB_V1, NOW + timedelta(days=40), RenewalReason.RENEW, ""),
]


@pytest.mark.parametrize(("cert", "version", "now", "reason", "message"), CASES)
def test_renewal_is_decided_from_key_vaults_data(
    cert: Certificate, version: str | None, now: datetime, reason: RenewalReason, message: str
) -> None:
    decision = decide(cert, version, now)
    assert decision.reason is reason, decision
    assert message in decision.message


def test_window_follows_the_policy_trigger_else_thirty_days() -> None:
    assert V2.expires is not None and V2.not_before is not None
    assert window_start(BOTH, V2) == V2.expires - timedelta(days=30)
    assert window_start(policy(BOTH, days=7), V2) == V2.expires - timedelta(days=7)
    lifetime = V2.expires - V2.not_before
    assert window_start(policy(BOTH, percent=50), V2) == V2.not_before + lifetime / 2
    assert window_start(BOTH, replace(V2, expires=None)) is None
