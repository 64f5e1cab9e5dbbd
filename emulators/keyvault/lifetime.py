"""Certificate lifetimes on the emulated clock: on every clock advance and every second,
apply a due ``AutoRenew`` action of a ``Self`` policy and raise ``CertificateNearExpiry``
(30 days before ``exp``) and ``CertificateExpired``, once per current version.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from emulators import kvcerts
from emulators.keyvault.issuance import Issuance
from emulators.keyvault.model import (
    EVENT_EXPIRED,
    EVENT_NEAR,
    NEAR_EXPIRY,
    TICK_SECONDS,
    Certificate,
    Vault,
)
from emulators.keyvault.state import State

log = logging.getLogger(__name__)


class Lifetime:
    """The lifetime check, run by the clock hook and by a ticker every second."""

    def __init__(self, state: State, issuance: Issuance) -> None:
        self.state = state
        self.platform = state.wiring.platform
        self.issuance = issuance
        self._ticker: asyncio.Task[None] | None = None

    def ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.check_lifetimes()
            except Exception:  # keep the periodic check alive whatever one round hit
                log.exception("Key Vault lifetime check failed")

    async def check_lifetimes(self) -> None:
        """Apply due AutoRenew actions and raise due expiry events (idempotent)."""
        async with self.state.lock:
            now = self.platform.now()
            for vault in list(self.state.vaults.values()):
                for cert in list(vault.certificates.values()):
                    await self._check_certificate(vault, cert, now)

    async def _check_certificate(self, vault: Vault, cert: Certificate, now: dt.datetime
                                 ) -> None:
        if not cert.versions:
            return
        current = cert.versions[-1]
        due: list[tuple[dt.datetime, str]] = [(current.exp - NEAR_EXPIRY, EVENT_NEAR),
                                              (current.exp, EVENT_EXPIRED)]
        renew_at = kvcerts.renewal_time(cert.policy, current.nbf, current.exp)
        if renew_at is not None and cert.policy["issuer"]["name"] == "Self":
            due.append((renew_at, "renew"))
        for when, what in sorted(due):
            if when > now or (current.version, what) in cert.fired:
                continue
            cert.fired.add((current.version, what))
            if what != "renew":
                self.state.publish(vault, cert, current, what)
                continue
            if cert.pending is not None and cert.pending.status == "inProgress":
                continue
            await self.issuance.renew(vault, cert)
            return
