"""Certificate-backed secrets (``/secrets/{name}/{version}``, ``managed: true``): the
PFX or PEM of a certificate version, and what Cloud Services learns from a secret URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from emulators import kvcerts
from emulators.core import json_response
from emulators.keyvault.model import KvError, SecretFacts, Vault, not_found
from emulators.keyvault.state import State
from emulators.keyvault.views import page, secret_bundle, secret_item


class Secrets:
    """Handlers for certificate-backed secrets, and Cloud Services' lookup."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.platform = state.wiring.platform

    async def list_secrets(self, vault: Vault, request: web.Request,
                           params: dict[str, str]) -> web.Response:
        items = [secret_item(vault, c, c.versions[-1], versioned=False)
                 for c in sorted(vault.certificates.values(), key=lambda c: c.name.lower())
                 if c.versions]
        return page(vault, request, items)

    async def list_secret_versions(self, vault: Vault, request: web.Request,
                                   params: dict[str, str]) -> web.Response:
        cert = vault.certificates.get(params["name"].lower())
        if cert is None or not cert.versions:
            raise not_found("secret", params["name"])
        items = [secret_item(vault, cert, v, versioned=True) for v in cert.versions]
        return page(vault, request, items)

    async def get_secret(self, vault: Vault, request: web.Request,
                         params: dict[str, str]) -> web.Response:
        name, version = params["name"], params.get("version") or ""
        cert = vault.certificates.get(name.lower())
        found = None
        if cert is not None:
            found = cert.versions[-1] if not version and cert.versions else \
                cert.version(version) if version else None
        if cert is None or found is None:
            raise not_found("secret", f"{name}/{version}" if version else name)
        if not found.enabled:
            raise KvError(403, "Forbidden", "Operation get is not allowed on a disabled secret.",
                          inner="SecretDisabled")
        return json_response(secret_bundle(vault, cert, found))

    def find_secret(self, certificate_url: str) -> SecretFacts | None:
        """Facts behind a versioned secret URL ``{vaultUri}secrets/{name}/{version}``."""
        try:
            url = urlsplit(certificate_url)
            port = url.port or 443
        except ValueError:
            return None
        if url.scheme.lower() != "https" or (url.hostname or "") not in ("127.0.0.1",
                                                                         "localhost"):
            return None
        vault = next((v for v in self.state.vaults.values() if v.port == port), None)
        parts = url.path.strip("/").split("/")
        if vault is None or len(parts) != 3 or parts[0].lower() != "secrets" or not parts[2]:
            return None
        cert = vault.certificates.get(parts[1].lower())
        found = cert.version(parts[2]) if cert is not None else None
        if found is None:
            return None
        return SecretFacts(
            vault_arm_id=vault.id,
            vault_enabled_for_deployment=bool(vault.properties.get("enabledForDeployment")),
            thumbprint=kvcerts.thumbprint(found.cert), content_type=found.content_type,
            enabled=found.enabled)
