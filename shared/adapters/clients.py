"""One credential and the client options every adapter shares.

Managed identity through ``DefaultAzureCredential`` (so ``az login`` works for
operators' tools too); a user-assigned identity is selected by ``AZURE_CLIENT_ID``. The
private CA bundle is passed only when ``ROTATION_CA_BUNDLE`` is set (the local stack);
otherwise the system trust store is used. Every client, and the token requests of App
Service managed identity, retry by :mod:`shared.adapters.retries` (bounded and logged).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import suppress
from functools import cached_property
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.identity import DefaultAzureCredential

from shared.adapters.retries import BoundedRetryPolicy
from shared.config import Settings
from shared.domain.destinations import Destinations

USER_AGENT = "certrotate/0.1"


def app_service_identity(env: Mapping[str, str]) -> bool:
    """Whether azure-identity will use App Service managed identity (what Functions has).

    Mirrors ``ManagedIdentityCredential``'s choice: ``IDENTITY_ENDPOINT`` and
    ``IDENTITY_HEADER`` set, and no ``IDENTITY_SERVER_THUMBPRINT`` (that is Service Fabric).
    """
    return bool(
        env.get("IDENTITY_ENDPOINT")
        and env.get("IDENTITY_HEADER")
        and not env.get("IDENTITY_SERVER_THUMBPRINT")
    )


class Clients:
    def __init__(self, settings: Settings, credential: TokenCredential | None = None) -> None:
        self.settings = settings
        self._credential = credential

    @cached_property
    def destinations(self) -> Destinations:
        return self.settings.destinations()

    @cached_property
    def credential(self) -> TokenCredential:
        """The app's identity; its token requests carry the product's user agent.

        azure-identity has no public retry setting for token requests. Its App Service
        client builds its pipeline with ``retry_policy_class``, which we pass only when that
        client is the one chosen: the IMDS client sets the same argument itself and would
        refuse a second one, so elsewhere (a developer's ``az login``) the SDK's own
        bounded retries apply.
        """
        if self._credential is not None:
            return self._credential
        extra: dict[str, Any] = {}
        if app_service_identity(os.environ):
            extra["retry_policy_class"] = BoundedRetryPolicy
        return DefaultAzureCredential(
            managed_identity_client_id=self.settings.managed_identity_client_id,
            exclude_interactive_browser_credential=True,
            user_agent=USER_AGENT,
            **extra,
        )

    def options(self) -> dict[str, Any]:
        """Keyword arguments for any azure-core client (ARM, Key Vault, Storage).

        The user agent names the product, so its calls stand out in ARM activity logs
        (and in the local stack's request log). The request hook refuses any host that is
        not one of the cloud's endpoints (:mod:`shared.domain.destinations`). The retry policy is
        a fresh instance per call because a policy belongs to exactly one client pipeline.
        """
        options: dict[str, Any] = {
            "user_agent": USER_AGENT,
            "retry_policy": BoundedRetryPolicy(),
            # Checked on every request before it is sent: tokens go only to Azure.
            "raw_request_hook": self.destinations.hook,
        }
        if self.settings.ca_bundle:
            options["connection_verify"] = self.settings.ca_bundle
        return options


def create_container(container: Any) -> None:
    """Create a blob container of the app's own account on first use (racing writers:
    whoever comes second finds it there)."""
    with suppress(ResourceExistsError):
        container.create_container()
