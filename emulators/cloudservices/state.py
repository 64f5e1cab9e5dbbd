"""What the parts of the Cloud Services emulator share: the services, the operation
timers, what tests armed through the admin API, and the wiring to ARM, Key Vault and storage.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from emulators.arm import Arm
from emulators.blobs import Blobs
from emulators.cloudservices.model import Bucket, Failure, Service
from emulators.core import Platform
from emulators.keyvault import KeyVault

Key = tuple[str, str]  # (resource group, service name), lower case


@dataclass(frozen=True)
class Wiring:
    """What the emulator is plugged into, fixed for the life of the process."""

    platform: Platform
    arm: Arm
    vaults: KeyVault  # asked about osProfile secrets
    blobs: Blobs  # where packages are downloaded from
    default_update_seconds: float  # how long an operation takes unless a test says otherwise


@dataclass
class State:
    """The mutable store; ``reset`` clears it between tests (the wiring stays)."""

    wiring: Wiring
    update_seconds: float
    settle_seconds: float = 0.0
    services: dict[Key, Service] = field(default_factory=dict)
    armed_failures: dict[Key, Failure] = field(default_factory=dict)
    armed_states: dict[Key, str] = field(default_factory=dict)
    timers: dict[Key, asyncio.TimerHandle] = field(default_factory=dict)
    buckets: dict[str, Bucket] = field(default_factory=dict)

    def reset(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        self.services.clear()
        self.armed_failures.clear()
        self.armed_states.clear()
        self.buckets.clear()
        self.update_seconds = self.wiring.default_update_seconds
        self.settle_seconds = 0.0
