"""Key Vault emulator (placeholder; being written)."""

from __future__ import annotations

from emulators.arm import Arm
from emulators.core import Platform
from emulators.eventgrid import EventGrid


class KeyVault:
    def __init__(self, platform: Platform, arm: Arm, events: EventGrid) -> None:
        self.platform = platform
