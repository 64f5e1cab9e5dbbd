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

USER_AGENT = "certrotate/0.1"


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
        """Keyword arguments for any azure-core client.

        The user agent names the product, so its calls stand out in ARM activity logs
        (and in the local stack's request log).
        """
        options: dict[str, Any] = {"user_agent": USER_AGENT}
        if self.settings.ca_bundle:
            options["connection_verify"] = self.settings.ca_bundle
        return options
