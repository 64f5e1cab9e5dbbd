"""Whether a ``CertificateNearExpiry`` event should make the app renew: a pure decision.

Theory of operation
-------------------
The event is a hint, and anyone holding the Event Grid key (or replaying a delivery) can
send one. So the decision reads only Key Vault's own data, never the event's ``EXP``/``NBF``:

1. the event names a version that a newer valid version already supersedes →
   ``NEWER_VERSION`` (converge to it; nothing to renew);
2. the certificate's current version (the newest valid one) is not yet inside its renewal
   window → ``NOT_NEAR_EXPIRY`` with "version V expires in N days": nothing is renewed.
   The window is the policy's lifetime action (``days_before_expiry``, or
   ``lifetime_percentage`` of the validity period), else 30 days before expiry, as Key
   Vault's own NearExpiry;
3. otherwise (inside the window, or no valid version at all) → ``RENEW``.

Then :func:`who_renews` decides *how*: ``ASK_ISSUER`` when renewal on NearExpiry is on and
the issuer issues without a person (the act step asks Key Vault for a new version:
``renew-requested``, or ``renew-pending`` when one is being issued already), else
``RENEW_REQUIRED`` with the reason a person must do it. :func:`expired_message` words
the alert for an ``Expired`` event.

The clock is an argument, so the same inputs give the same decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.domain.model import Certificate, CertificateVersion
from shared.domain.planner import desired_version

DEFAULT_WINDOW = timedelta(days=30)


class RenewalReason(StrEnum):
    NEWER_VERSION = "newer-version"
    NOT_NEAR_EXPIRY = "not-near-expiry"
    RENEW = "renew"
    ASK_ISSUER = "ask-issuer"
    RENEW_REQUIRED = "renew-required"


@dataclass(frozen=True)
class RenewalDecision:
    reason: RenewalReason
    message: str


def window_start(certificate: Certificate, version: CertificateVersion) -> datetime | None:
    """When ``version`` enters its renewal window (None: it never expires)."""
    if version.expires is None:
        return None
    if certificate.renew_days_before_expiry is not None:
        return version.expires - timedelta(days=certificate.renew_days_before_expiry)
    if certificate.renew_lifetime_percentage is not None and version.not_before is not None:
        lifetime = version.expires - version.not_before
        return version.not_before + lifetime * (certificate.renew_lifetime_percentage / 100)
    return version.expires - DEFAULT_WINDOW


def decide(certificate: Certificate, event_version: str | None, now: datetime) -> RenewalDecision:
    """What a NearExpiry naming ``event_version`` (None: the event named none) calls for."""
    named = next((v for v in certificate.versions if v.version == event_version), None)
    current = desired_version(certificate, now)
    if current is not None and event_version is not None and current.version != event_version:
        superseded = named is None or (current.created or now) > (named.created or now)
        if superseded:
            return RenewalDecision(
                RenewalReason.NEWER_VERSION, "a newer valid version exists; converging to it"
            )
    if current is not None:
        start = window_start(certificate, current)
        if start is None or now < start:
            left = (current.expires - now).days if current.expires else None
            return RenewalDecision(
                RenewalReason.NOT_NEAR_EXPIRY,
                f"not near expiry: version {current.version} expires in {left} days"
                if left is not None
                else f"not near expiry: version {current.version} does not expire",
            )
    return RenewalDecision(RenewalReason.RENEW, "the current version is inside its renewal window")


def who_renews(
    certificate: Certificate,
    event_version: str | None,
    now: datetime,
    *,
    vault_name: str,
    services: Sequence[str],
    enabled: bool,
    issuer_renews: bool,
) -> RenewalDecision:
    """How a certificate :func:`decide` found due gets its new version: the app asks the
    issuer (``enabled``: ``RENEW_ON_NEAR_EXPIRY``; ``issuer_renews``: the issuer needs no
    person and the policy does not renew by itself), or a person must (the message says
    why, when the current version expires and which ``services`` use it)."""
    if enabled and issuer_renews:
        return RenewalDecision(
            RenewalReason.ASK_ISSUER, f"ask issuer {certificate.issuer} for a new version"
        )
    current = desired_version(certificate, now) or next(
        (v for v in certificate.versions if v.version == event_version), None
    )
    expiry = current.expires.isoformat() if current and current.expires else "unknown"
    why = (
        "its policy renews automatically"
        if certificate.auto_renew
        else f"issuer '{certificate.issuer}' needs a person"
        if certificate.issuer
        else "renewal on NearExpiry is off"
    )
    return RenewalDecision(
        RenewalReason.RENEW_REQUIRED,
        f"ACTION REQUIRED: renew certificate '{certificate.name}' in vault {vault_name} "
        f"(expires {expiry}; {why}); used by " + ", ".join(services),
    )


def expired_message(
    certificate: str, version: str | None, vault_name: str, services: Sequence[str]
) -> str:
    """The alert for an ``Expired`` event (nothing is decided: it is told)."""
    return (
        f"EXPIRED: certificate '{certificate}' version {version} in vault {vault_name} has "
        "expired; services: " + ", ".join(services)
    )
