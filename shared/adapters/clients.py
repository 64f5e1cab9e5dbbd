"""One credential and the client options every adapter shares.

Managed identity through ``DefaultAzureCredential`` (so ``az login`` works for
operators' tools too); a user-assigned identity is selected by ``AZURE_CLIENT_ID``. The
private CA bundle is passed only when ``ROTATION_CA_BUNDLE`` is set (the local stack);
otherwise the system trust store is used.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from azure.core.credentials import TokenCredential
from azure.identity import DefaultAzureCredential

from shared.config import Settings


class Clients:
    def __init__(self, settings: Settings, credential: TokenCredential | None = None) -> None:
        self.settings = settings
        self._credential = credential

    @cached_property
    def credential(self) -> TokenCredential:
        if self._credential is not None:
            return self._credential
        return DefaultAzureCredential(
            managed_identity_client_id=self.settings.managed_identity_client_id,
            exclude_interactive_browser_credential=True,
        )

    def options(self) -> dict[str, Any]:
        """Keyword arguments for any azure-core client."""
        if self.settings.ca_bundle:
            return {"connection_verify": self.settings.ca_bundle}
        return {}
