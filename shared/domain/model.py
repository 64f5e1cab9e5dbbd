"""The engine's data: what was observed in Azure and what a rotation plans to change.

Plain frozen values, free of SDK types, so the planner is a pure function of them and
tests build them by hand. Thumbprints are always uppercase hex here; secret URLs are kept
exactly as Azure returned them (comparison goes through :func:`secret_key`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

PACKAGE_TAG = "cert-rotation-package"
PACKAGE_MD5_TAG = "cert-rotation-package-md5"
OPT_OUT_TAG = "cert-rotation"

_SECRET_PATH = re.compile(
    r"^/secrets/(?P<name>[0-9a-zA-Z-]{1,127})(?:/(?P<version>[0-9a-zA-Z]+))?/?$"
)


@dataclass(frozen=True)
class SecretUrl:
    """A Key Vault secret URL split into the parts the platform checks."""

    vault_host: str  # lowercase host[:port], without a default :443
    name: str
    version: str | None

    @classmethod
    def parse(cls, url: str) -> SecretUrl | None:
        parts = urlsplit(url.strip())
        match = _SECRET_PATH.match(parts.path)
        if parts.scheme.lower() != "https" or not parts.hostname or match is None:
            return None
        host = parts.hostname.lower()
        if parts.port and parts.port != 443:
            host = f"{host}:{parts.port}"
        return cls(host, match["name"], match["version"])

    @property
    def vault_url(self) -> str:
        return f"https://{self.vault_host}/"


def secret_key(url: str) -> tuple[str, str, str]:
    """Comparison key for secret URLs: ``:443`` and letter case do not matter."""
    parsed = SecretUrl.parse(url)
    if parsed is None:
        return ("", url.strip().lower(), "")
    return (parsed.vault_host, parsed.name.lower(), (parsed.version or "").lower())


@dataclass(frozen=True)
class CertificateVersion:
    version: str
    thumbprint: str | None  # None while a version is pending (not issued)
    secret_id: str
    enabled: bool
    not_before: datetime | None
    expires: datetime | None
    created: datetime | None

    def valid_at(self, now: datetime) -> bool:
        return (
            self.enabled
            and self.thumbprint is not None
            and (self.not_before is None or self.not_before <= now)
            and (self.expires is None or now < self.expires)
        )


@dataclass(frozen=True)
class Certificate:
    """A Key Vault certificate with all its versions, as read from the vault."""

    vault_id: str  # ARM id of the vault
    vault_url: str  # data-plane URL, from the services' own osProfile
    name: str
    versions: tuple[CertificateVersion, ...]
    issuer: str | None = None
    auto_renew: bool = False
    content_type: str | None = None  # the policy's (new versions); see SecretFacts
    exportable: bool | None = None
    # Key Vault's current version (the latest created, enabled or not): it orders versions
    # whose ``created`` is the same second (Key Vault's timestamps have 1 s resolution).
    current_version: str | None = None
    # The policy's first lifetime action trigger: when a version is due for renewal.
    renew_days_before_expiry: int | None = None
    renew_lifetime_percentage: int | None = None

    def version_by_thumbprint(self, thumbprint: str) -> CertificateVersion | None:
        upper = thumbprint.upper()
        return next((v for v in self.versions if v.thumbprint == upper), None)


@dataclass(frozen=True)
class SecretFacts:
    """What the secret of one exact certificate version holds, as CSES will read it: its
    content type (CSES installs only PFX) and whether it carries the private key (a
    non-exportable key's secret holds the certificate alone). Read per version because a
    policy changed after issuance says nothing about the versions already issued."""

    content_type: str | None
    private_key: bool


@dataclass(frozen=True)
class PackageFacts:
    """The package blob as read just before the PUT: what an audit needs to see the
    package that was deployed (URL without query, Content-MD5, ETag)."""

    url: str
    md5: str | None
    etag: str | None

    def to_json(self) -> dict[str, str | None]:
        return {"url": self.url, "md5": self.md5, "etag": self.etag}


@dataclass(frozen=True)
class SecretGroup:
    """One ``osProfile.secrets[]`` entry: a vault and the certificates taken from it."""

    source_vault_id: str
    certificate_urls: tuple[str, ...]


@dataclass(frozen=True)
class CloudServiceSnapshot:
    id: str
    name: str
    location: str
    tags: dict[str, str]
    configuration: str
    secrets: tuple[SecretGroup, ...]
    provisioning_state: str | None
    upgrade_mode: str | None
    raw: Any = field(default=None, compare=False, repr=False)  # the adapter's own object

    @property
    def package_url(self) -> str | None:
        return self.tags.get(PACKAGE_TAG) or None

    @property
    def opted_out(self) -> bool:
        return self.tags.get(OPT_OUT_TAG, "").strip().lower() == "off"

    def certificates_used(self) -> list[tuple[str, str]]:
        """(vault id, certificate name) of every certificate ``osProfile`` takes, once each."""
        seen: dict[tuple[str, str], tuple[str, str]] = {}
        for group in self.secrets:
            for url in group.certificate_urls:
                parsed = SecretUrl.parse(url)
                if parsed is not None:
                    key = (group.source_vault_id.lower(), parsed.name.lower())
                    seen.setdefault(key, (group.source_vault_id, parsed.name))
        return list(seen.values())

    def references(self, vault_id: str, certificate: str) -> bool:
        wanted = (vault_id.lower(), certificate.lower())
        return any((v.lower(), c.lower()) == wanted for v, c in self.certificates_used())


@dataclass(frozen=True)
class ThumbprintChange:
    role: str
    certificate: str  # the cscfg Certificate@name
    old: str
    new: str


@dataclass(frozen=True)
class Plan:
    """What one rotation changes on one cloud service; ``is_noop`` when nothing."""

    service_id: str
    vault_id: str
    certificate: str
    desired: CertificateVersion
    changes: tuple[ThumbprintChange, ...]
    configuration_before: str
    configuration_after: str
    secrets_before: tuple[SecretGroup, ...]
    secrets_after: tuple[SecretGroup, ...]
    settings_mentioning_old: tuple[str, ...]  # "Role/Setting" names, reported
    warnings: tuple[str, ...]

    @property
    def is_noop(self) -> bool:
        return (
            self.configuration_after == self.configuration_before
            and self.secrets_after == self.secrets_before
        )

    @property
    def secrets_added(self) -> tuple[str, ...]:
        before = {secret_key(u) for g in self.secrets_before for u in g.certificate_urls}
        return tuple(
            u for g in self.secrets_after for u in g.certificate_urls if secret_key(u) not in before
        )

    @property
    def secrets_removed(self) -> tuple[str, ...]:
        after = {secret_key(u) for g in self.secrets_after for u in g.certificate_urls}
        return tuple(
            u for g in self.secrets_before for u in g.certificate_urls if secret_key(u) not in after
        )
