"""Acting on ``CertificateNearExpiry`` and ``CertificateExpired``: the renewal decision is
pure (:mod:`shared.domain.renewal`: from Key Vault's own data and the clock, never the
event's); here it is carried out (Key Vault is asked for a new version) or told (a person
must renew; the certificate expired), as an :class:`~shared.domain.runs.Action` of the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from shared.config import Settings
from shared.domain import renewal
from shared.domain.events import CertificateEvent
from shared.domain.model import Certificate, CloudServiceSnapshot
from shared.domain.records import Action
from shared.domain.renewal import RenewalReason
from shared.rotation.ports import Certificates

log = logging.getLogger("certrotate")


class Renewals:
    def __init__(
        self, settings: Settings, keyvault: Certificates, now: Callable[[], datetime]
    ) -> None:
        self.settings = settings
        self.keyvault = keyvault
        self.now = now

    def near_expiry(
        self, event: CertificateEvent, cert: Certificate, services: list[CloudServiceSnapshot]
    ) -> Action:
        """Renew only when Key Vault's own data says the current version is due (the event
        is a hint: forged or replayed ones change nothing), and the issuer needs no person.
        """
        now = self.now()
        decision = renewal.decide(cert, event.version, now)
        if decision.reason is not RenewalReason.RENEW:
            log.info("event %s: %s", event.event_id, decision.message)
            return Action(decision.reason.value, decision.message)
        how = renewal.who_renews(
            cert,
            event.version,
            now,
            vault_name=event.vault_name,
            services=[s.name for s in services],
            enabled=self.settings.renew_on_near_expiry,
            issuer_renews=self.settings.renew_on_near_expiry and self.keyvault.can_renew(cert),
        )
        if how.reason is RenewalReason.RENEW_REQUIRED:
            log.warning("%s", how.message)
            return Action(how.reason.value, how.message)
        if self.keyvault.renew(cert.vault_url, cert.name):
            action = Action(
                "renew-requested",
                f"requested a new version of '{cert.name}' from issuer {cert.issuer}",
            )
        else:
            action = Action(
                "renew-pending", f"a new version of '{cert.name}' is already being issued"
            )
        log.info("%s", action.message)
        return action

    @staticmethod
    def expired(
        event: CertificateEvent, cert: Certificate, services: list[CloudServiceSnapshot]
    ) -> Action:
        """Nothing to renew: an alert naming the services that still use it."""
        action = Action(
            "expired",
            renewal.expired_message(
                cert.name, event.version, event.vault_name, [s.name for s in services]
            ),
        )
        log.error("%s", action.message)
        return action
