"""The Key Vault emulator as the rest of the stack sees it: one object that builds the
shared :class:`~emulators.keyvault.state.State` and the parts acting on it, runs the
lifetime check on clock advances, and answers Cloud Services' questions about secrets.
"""

from __future__ import annotations

from emulators.arm import Arm
from emulators.authorization import Authorization
from emulators.core import Platform
from emulators.eventgrid import EventGrid
from emulators.keyvault.certificates import Certificates
from emulators.keyvault.control import Vaults
from emulators.keyvault.dataplane import DataPlane
from emulators.keyvault.issuance import Issuance
from emulators.keyvault.lifetime import Lifetime
from emulators.keyvault.model import SecretFacts
from emulators.keyvault.secrets import Secrets
from emulators.keyvault.state import State, Wiring


class KeyVault:
    """The emulator: its parts, wired to one state."""

    def __init__(
        self,
        platform: Platform,
        arm: Arm,
        events: EventGrid,
        authorization: Authorization,
        ports: range | None = None,
    ) -> None:
        """``ports``: where vault listeners may bind (the stack's ``LOCAL_VAULT_PORTS``, the
        app's only Key Vault destinations); None: any free port."""
        self.state = State(Wiring(platform, arm, events, authorization, ports))
        issuance = Issuance(self.state)
        self.secrets = Secrets(self.state)
        lifetime = Lifetime(self.state, issuance)
        dataplane = DataPlane(self.state, Certificates(self.state), issuance, self.secrets)
        self.vaults = Vaults(self.state, dataplane, lifetime)
        platform.reset_hooks.append(self.vaults.reset)
        platform.clock_hooks.append(lifetime.check_lifetimes)

    def find_secret(self, certificate_url: str) -> SecretFacts | None:
        """Facts behind a versioned secret URL ``{vaultUri}secrets/{name}/{version}``."""
        return self.secrets.find_secret(certificate_url)
