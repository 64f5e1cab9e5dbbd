"""Key Vault certificates through azure-keyvault-certificates.

Reads a certificate's versions and policy, the thumbprint behind any secret URL a cloud
service references, and asks for a new version on NearExpiry. Vault URLs given to this
module always come from the services' own ``osProfile.secrets`` (never from an event),
and the challenge-resource check stays on unless ``KEYVAULT_VERIFY_CHALLENGE_RESOURCE``
turns it off for the local stack.
"""

from __future__ import annotations

import base64
import binascii

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.keyvault.certificates import (
    CertificateClient,
    CertificatePolicyAction,
    CertificateProperties,
)
from cryptography.hazmat.primitives.serialization import pkcs12

from shared.adapters.clients import Clients
from shared.adapters.kv_errors import vault_error
from shared.domain.errors import NotFound
from shared.domain.model import Certificate, CertificateVersion, SecretFacts, SecretUrl

# Issuers that issue without a person: self-signed and the CAs Key Vault integrates with.
SECRETS_API_VERSION = "7.4"
PFX = "application/x-pkcs12"
PEM = "application/x-pem-file"
AUTOMATIC_ISSUERS = {"self", "digicert", "globalsign", "onecertv2-publicca", "onecertv2-privateca"}


class KeyVault:
    def __init__(self, clients: Clients) -> None:
        self._clients = clients
        self._by_vault: dict[str, CertificateClient] = {}
        self._thumbprints: dict[str, str | None] = {}
        self._secrets: dict[str, SecretFacts] = {}

    def _client(self, vault_url: str) -> CertificateClient:
        key = vault_url.rstrip("/").lower()
        client = self._by_vault.get(key)
        if client is None:
            client = CertificateClient(
                vault_url,
                self._clients.credential,
                verify_challenge_resource=self._clients.settings.verify_challenge_resource,
                **self._clients.options(),
            )
            self._by_vault[key] = client
        return client

    def certificate(self, vault_id: str, vault_url: str, name: str) -> Certificate:
        """All versions and the policy of ``name``. Raises NotFound, TransientError."""
        client = self._client(vault_url)
        what = f"reading certificate '{name}' from {vault_url}"
        try:
            # The latest version (with the policy attached): the same one call as reading
            # the policy alone, and it names Key Vault's current version.
            latest = client.get_certificate(name)
            policy = latest.policy or client.get_certificate_policy(name)
            versions = tuple(
                _version(vault_url, name, props)
                for props in client.list_properties_of_certificate_versions(name)
            )
        except ResourceNotFoundError as exc:
            raise NotFound(f"certificate '{name}' does not exist in vault {vault_url}") from exc
        except AzureError as exc:
            raise vault_error(exc, vault_url, what) from exc
        for version in versions:
            self._thumbprints[version.secret_id.lower()] = version.thumbprint
        trigger = next(
            (
                a
                for a in policy.lifetime_actions or []
                if a.days_before_expiry is not None or a.lifetime_percentage is not None
            ),
            None,
        )
        return Certificate(
            vault_id=vault_id,
            vault_url=vault_url,
            name=name,
            versions=versions,
            issuer=policy.issuer_name,
            auto_renew=any(
                a.action == CertificatePolicyAction.auto_renew
                for a in policy.lifetime_actions or []
            ),
            content_type=_text(policy.content_type),
            exportable=policy.exportable,
            current_version=latest.properties.version if latest.properties else None,
            renew_days_before_expiry=trigger.days_before_expiry if trigger else None,
            renew_lifetime_percentage=trigger.lifetime_percentage if trigger else None,
        )

    def thumbprint(self, secret_url: str) -> str | None:
        """Thumbprint of the certificate behind a versioned secret URL (None: unknown)."""
        key = secret_url.lower()
        if key in self._thumbprints:
            return self._thumbprints[key]
        parsed = SecretUrl.parse(secret_url)
        if parsed is None or not parsed.version:
            return None
        try:
            cert = self._client(parsed.vault_url).get_certificate_version(
                parsed.name, parsed.version
            )
            tp = cert.properties.x509_thumbprint if cert.properties else None
            value = tp.hex().upper() if tp else None
        except ResourceNotFoundError:
            value = None
        except AzureError as exc:
            raise vault_error(
                exc, parsed.vault_url, f"reading the certificate behind {secret_url}"
            ) from exc
        self._thumbprints[key] = value
        return value

    def secret_facts(self, secret_id: str) -> SecretFacts:
        """Content type and private-key presence of one exact version's secret.

        The secret is what CSES installs, so it is the only proof that this version is a PFX
        with its key (the policy may have changed since the version was issued). The value
        is read (``secrets get``, which the app holds for CSES deployments anyway), looked
        at here and dropped: never logged, returned or stored. Cached per versioned URL (a
        version's secret never changes). Raises NotFound, TransientError, PlatformRejected.
        """
        key = secret_id.lower()
        cached = self._secrets.get(key)
        if cached is not None:
            return cached
        parsed = SecretUrl.parse(secret_id)
        if parsed is None or not parsed.version:
            raise NotFound(f"{secret_id} is not a versioned Key Vault secret URL")
        request = HttpRequest(
            "GET", f"{parsed.vault_url}secrets/{parsed.name}/{parsed.version}",
            params={"api-version": SECRETS_API_VERSION},
        )
        what = f"reading the secret of {parsed.name}/{parsed.version}"
        try:
            response = self._client(parsed.vault_url).send_request(request)
            if response.status_code == 404:
                raise NotFound(f"secret {parsed.name}/{parsed.version} does not exist")
            response.raise_for_status()
            body = response.json()
        except AzureError as exc:
            raise vault_error(exc, parsed.vault_url, what) from exc
        facts = SecretFacts(
            content_type=body.get("contentType"),
            private_key=_has_private_key(body.get("contentType"), str(body.get("value") or "")),
        )
        del body
        self._secrets[key] = facts
        return facts

    def can_renew(self, certificate: Certificate) -> bool:
        return (
            certificate.issuer or ""
        ).lower() in AUTOMATIC_ISSUERS and not certificate.auto_renew

    def renew(self, vault_url: str, name: str) -> bool:
        """Request a new version with the current policy unless one is being issued.

        Returns False when an operation is already in progress (a duplicate NearExpiry).
        """
        client = self._client(vault_url)
        try:
            try:
                if client.get_certificate_operation(name).status == "inProgress":
                    return False
            except ResourceNotFoundError:
                pass
            policy = client.get_certificate_policy(name)
            client.begin_create_certificate(name, policy)
            return True
        except ResourceNotFoundError as exc:
            raise NotFound(f"certificate '{name}' does not exist in vault {vault_url}") from exc
        except AzureError as exc:
            raise vault_error(exc, vault_url, f"requesting a new version of '{name}'") from exc

    def certificate_names(self, vault_url: str) -> list[str]:
        """Names of every certificate in the vault (one listing, pages followed).

        Certificates still waiting for their first version are left out (Key Vault's
        default). Raises NotFound, TransientError, PlatformRejected (e.g. no list right).
        """
        try:
            return [
                props.name
                for props in self._client(vault_url).list_properties_of_certificates()
                if props.name
            ]
        except AzureError as exc:
            raise vault_error(exc, vault_url, f"listing the certificates of {vault_url}") from exc


def _version(vault_url: str, name: str, props: CertificateProperties) -> CertificateVersion:
    version = props.version or ""
    return CertificateVersion(
        version=version,
        thumbprint=props.x509_thumbprint.hex().upper() if props.x509_thumbprint else None,
        secret_id=f"{vault_url.rstrip('/')}/secrets/{name}/{version}",
        enabled=bool(props.enabled),
        not_before=props.not_before,
        expires=props.expires_on,
        created=props.created_on,
    )


def _text(value: object) -> str | None:
    """An SDK enum or string as its wire value."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _has_private_key(content_type: str | None, value: str) -> bool:
    """Whether a certificate-backed secret's value carries a private key.

    PFX values are base64 PKCS#12 (Key Vault exports them without a password); PEM values
    hold a ``PRIVATE KEY`` block when the key is exportable.
    """
    if content_type == PEM:
        return "PRIVATE KEY-----" in value
    try:
        key, _, _ = pkcs12.load_key_and_certificates(base64.b64decode(value), None)
    except (ValueError, binascii.Error):
        return False
    return key is not None
