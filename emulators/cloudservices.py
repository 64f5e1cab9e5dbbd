"""Cloud services emulator (placeholder; being written)."""

from __future__ import annotations

from emulators.arm import Arm
from emulators.blobs import Blobs
from emulators.core import Platform
from emulators.keyvault import KeyVault


class CloudServices:
    def __init__(
        self, platform: Platform, arm: Arm, vaults: KeyVault, blobs: Blobs, update_seconds: float
    ) -> None:
        self.platform = platform
