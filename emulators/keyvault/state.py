"""What the parts of the Key Vault emulator share: the vaults (with their certificates)
and the wiring to the platform, ARM, Event Grid and RBAC.

Theory of operation: one :class:`State` is built by the facade and handed to the control
plane, the data plane and the lifetime checks, so a vault created through ARM is the very
object its listener serves and the clock hook inspects. :class:`Wiring` never changes; the
vaults are the mutable store.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from emulators import kvcerts
from emulators.arm import Arm
from emulators.authorization import Authorization
from emulators.core import Platform
from emulators.eventgrid import EventGrid
from emulators.keyvault.model import Certificate, CertVersion, Vault


@dataclass(frozen=True)
class Wiring:
    """What the emulator is plugged into, fixed for the life of the process."""

    platform: Platform
    arm: Arm
    events: EventGrid
    authorization: Authorization
    # Where vault listeners may bind (the stack's ``LOCAL_VAULT_PORTS``, the app's only Key
    # Vault destinations); None: any free port.
    ports: range | None


@dataclass
class State:
    """The mutable store, and the event every part announces a version with."""

    wiring: Wiring
    vaults: dict[str, Vault] = field(default_factory=dict)  # by lower-case name: global
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one lifetime check at a time

    def now(self) -> int:
        return kvcerts.unix(self.wiring.platform.now())

    def publish(self, vault: Vault, cert: Certificate, v: CertVersion, event_type: str) -> None:
        self.wiring.events.publish_system_event(
            vault.id, event_type, subject=cert.name,
            data={"Id": f"{vault.uri}certificates/{cert.name}/{v.version}",
                  "VaultName": vault.name, "ObjectType": "Certificate",
                  "ObjectName": cert.name, "Version": v.version,
                  "NBF": kvcerts.unix(v.nbf), "EXP": kvcerts.unix(v.exp)})
