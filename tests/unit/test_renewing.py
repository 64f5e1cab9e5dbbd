"""How a due certificate is renewed: the pure decision (:func:`renewal.who_renews`) and the
act step (:class:`~shared.rotation.renewing.Renewals`) against a fake Key Vault, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from shared.config import Settings
from shared.domain import renewal
from shared.domain.events import EXPIRED, NEAR_EXPIRY, CertificateEvent
from shared.domain.model import Certificate
from shared.domain.renewal import RenewalReason
from shared.rotation.renewing import Renewals
from tests.unit.fakes import FakeKeyVault
from tests.unit.test_planner import KV1, NOW, SUB, V1, V2, WEB_V1, certificate, cscfg, service

DUE = NOW + timedelta(days=2)  # V1 (valid until 2026-06-01) is inside its 30-day window
ONLY_V1 = replace(certificate(V1), issuer="DigiCert", auto_renew=False)
SERVICES = [service(cscfg())]


def settings(renew: bool) -> Settings:
    return Settings.from_env(
        {
            "ROTATION_SUBSCRIPTIONS": SUB,
            "ROTATION_STORAGE_URL": "https://app.blob.core.windows.net",
            "RENEW_ON_NEAR_EXPIRY": "true" if renew else "false",
        }
    )


def event(kind: str = NEAR_EXPIRY, version: str | None = WEB_V1) -> CertificateEvent:
    return CertificateEvent(kind, "evt-1", KV1, "kv1", "web-tls", version, None, None, None)


def who(cert: Certificate, *, enabled: bool, issuer_renews: bool) -> renewal.RenewalDecision:
    return renewal.who_renews(
        cert, WEB_V1, DUE, vault_name="kv1", services=["cs-web"], enabled=enabled,
        issuer_renews=issuer_renews,
    )


@pytest.mark.parametrize(
    ("cert", "enabled", "issuer_renews", "reason", "why"),
    [
        (ONLY_V1, True, True, RenewalReason.ASK_ISSUER, "ask issuer DigiCert"),
        (ONLY_V1, True, False, RenewalReason.RENEW_REQUIRED, "issuer 'DigiCert' needs a person"),
        (ONLY_V1, False, True, RenewalReason.RENEW_REQUIRED, "issuer 'DigiCert' needs a person"),
        (replace(ONLY_V1, auto_renew=True), True, False, RenewalReason.RENEW_REQUIRED,
         "its policy renews automatically"),
        (replace(ONLY_V1, issuer=None), False, False, RenewalReason.RENEW_REQUIRED,
         "renewal on NearExpiry is off"),
    ],
)
def test_who_renews(
    cert: Certificate, enabled: bool, issuer_renews: bool, reason: RenewalReason, why: str
) -> None:
    decided = who(cert, enabled=enabled, issuer_renews=issuer_renews)
    assert decided.reason is reason
    assert why in decided.message


def test_a_person_is_told_when_it_expires_and_who_uses_it() -> None:
    message = who(ONLY_V1, enabled=False, issuer_renews=False).message
    assert message.startswith("ACTION REQUIRED: renew certificate 'web-tls' in vault kv1 ")
    assert f"(expires {V1.expires.isoformat()};" in message  # type: ignore[union-attr]
    assert message.endswith("used by cs-web")


def renewals(keyvault: FakeKeyVault, *, renew: bool, now: object = DUE) -> Renewals:
    return Renewals(settings(renew), keyvault, lambda: now)  # type: ignore[arg-type,return-value]


def test_a_due_certificate_is_renewed_by_asking_key_vault() -> None:
    kv = FakeKeyVault(issuer_renews=True)
    action = renewals(kv, renew=True).near_expiry(event(), ONLY_V1, SERVICES)
    assert action.kind == "renew-requested"
    assert kv.calls == ["renew web-tls"]


def test_a_renewal_already_being_issued_is_not_asked_twice() -> None:
    kv = FakeKeyVault(issuer_renews=True, issuing=True)
    action = renewals(kv, renew=True).near_expiry(event(), ONLY_V1, SERVICES)
    assert action.kind == "renew-pending"


def test_a_certificate_not_due_is_not_renewed_whatever_the_event_says() -> None:
    kv = FakeKeyVault(issuer_renews=True)
    action = renewals(kv, renew=True, now=NOW).near_expiry(event(), ONLY_V1, SERVICES)
    assert action.kind == RenewalReason.NOT_NEAR_EXPIRY
    assert kv.calls == []


def test_a_superseded_version_converges_instead() -> None:
    kv = FakeKeyVault(issuer_renews=True)
    cert = replace(certificate(V1, V2), auto_renew=False)
    action = renewals(kv, renew=True, now=NOW).near_expiry(event(), cert, SERVICES)
    assert action.kind == RenewalReason.NEWER_VERSION
    assert kv.calls == []


def test_without_renewal_on_near_expiry_a_person_is_asked_and_key_vault_is_not() -> None:
    kv = FakeKeyVault(issuer_renews=True)
    action = renewals(kv, renew=False).near_expiry(event(), ONLY_V1, SERVICES)
    assert action.kind == "renew-required"
    assert kv.calls == []


def test_expired_names_the_services() -> None:
    action = Renewals.expired(event(EXPIRED), ONLY_V1, SERVICES)
    assert action.kind == "expired"
    assert action.message == (
        f"EXPIRED: certificate 'web-tls' version {WEB_V1} in vault kv1 has expired; "
        "services: cs-web"
    )
