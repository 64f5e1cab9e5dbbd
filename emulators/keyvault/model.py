"""Key Vault's vocabulary: constants, the permissions each data-plane route needs, the
stored objects (vaults, certificates, versions, pending operations, deleted certificates),
the error envelope and the pure helpers that read request bodies and build secrets.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography import x509

from emulators import kvcerts
from emulators.core import error_response
from emulators.kvcerts import PrivateKey

VAULT_RESOURCE = "https://vault.azure.net"
VAULT_TYPE = "Microsoft.KeyVault/vaults"
VAULT_NAME = re.compile(r"^[a-zA-Z](?!.*--)[a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$")
OBJECT_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
MAX_RESULTS = 25
NEAR_EXPIRY = dt.timedelta(days=30)
TICK_SECONDS = 1.0
HELP = "For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
ACCESS_HELP = ("For help resolving this issue, please see "
               "https://go.microsoft.com/fwlink/?linkid=2125287")
# The challenge Key Vault sends (recorded: azure-sdk-for-python keyvault recordings).
AUTHORITY = "https://login.windows.net"
POLICY_KINDS = ("add", "replace", "remove")
SELF_PENDING = ("Pending certificate created. Certificate request is in progress. This may "
                "take some time based on the issuer provider. Please check again later.")
UNKNOWN_PENDING = "Pending certificate created. Please Perform Merge to complete the request."
EVENT_NEW = "Microsoft.KeyVault.CertificateNewVersionCreated"
EVENT_NEAR = "Microsoft.KeyVault.CertificateNearExpiry"
EVENT_EXPIRED = "Microsoft.KeyVault.CertificateExpired"


@dataclass(frozen=True)
class SecretFacts:
    """What Cloud Services learns about a ``certificateUrl`` (a versioned secret URL)."""

    vault_arm_id: str
    vault_enabled_for_deployment: bool
    thumbprint: str
    content_type: str
    enabled: bool


@dataclass(frozen=True)
class Permission:
    """What a data-plane route needs: an access-policy permission and an RBAC data action."""

    kind: str  # "certificates" | "secrets"
    operation: str  # the access-policy permission name: "get", "list", "create" ...
    data_action: str


def _perm(kind: str, operation: str, action: str) -> Permission:
    return Permission(kind, operation, f"Microsoft.KeyVault/vaults/{kind}/{action}")

CERT_GET, CERT_LIST = _perm("certificates", "get", "read"), _perm("certificates", "list", "read")
CERT_CREATE = _perm("certificates", "create", "create/action")
CERT_IMPORT = _perm("certificates", "import", "import/action")
CERT_UPDATE = _perm("certificates", "update", "update/action")
CERT_DELETE = _perm("certificates", "delete", "delete")
CERT_RECOVER = _perm("certificates", "recover", "recover/action")
CERT_PURGE = _perm("certificates", "purge", "purge/action")
SECRET_GET = _perm("secrets", "get", "getSecret/action")
SECRET_LIST = _perm("secrets", "list", "readMetadata/action")


@dataclass(frozen=True)
class CertVersion:
    """One completed certificate version with the material behind its key and secret."""

    version: str
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: PrivateKey
    content_type: str
    secret_value: str
    enabled: bool
    tags: dict[str, str]
    created: int
    updated: int

    @property
    def nbf(self) -> dt.datetime:
        return self.cert.not_valid_before_utc

    @property
    def exp(self) -> dt.datetime:
        return self.cert.not_valid_after_utc


@dataclass
class PendingOp:
    """The certificate operation (``/pending``) behind a version being issued."""

    version: str
    issuer: str
    key: PrivateKey
    csr: bytes
    enabled: bool
    tags: dict[str, str]
    created: int
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = "inProgress"
    status_details: str | None = None
    cancellation_requested: bool = False
    target: str | None = None


@dataclass
class Certificate:
    name: str
    policy: dict[str, Any]
    versions: list[CertVersion] = field(default_factory=list)
    pending: PendingOp | None = None
    fired: set[tuple[str, str]] = field(default_factory=set)

    def version(self, version: str) -> CertVersion | None:
        return next((v for v in self.versions if v.version == version.lower()), None)


@dataclass
class DeletedCertificate:
    cert: Certificate
    deleted: int
    purge: int


@dataclass
class Vault:
    id: str
    name: str
    resource_group: str
    location: str
    tags: dict[str, str]
    properties: dict[str, Any]
    system_data: dict[str, str]
    port: int
    certificates: dict[str, Certificate] = field(default_factory=dict)
    deleted: dict[str, DeletedCertificate] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    @property
    def tenant(self) -> str:
        return str(self.properties["tenantId"])

    def resource(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "type": VAULT_TYPE, "location": self.location,
                "tags": self.tags, "systemData": self.system_data, "properties": self.properties}

    def recovery(self) -> dict[str, Any]:
        """``recoveryLevel``/``recoverableDays`` as the vault's soft-delete settings imply."""
        if not self.properties.get("enableSoftDelete", True):
            return {"recoveryLevel": "Purgeable"}
        days = int(self.properties.get("softDeleteRetentionInDays", 90))
        level = "Recoverable" if self.properties.get("enablePurgeProtection") \
            else "Recoverable+Purgeable"
        return {"recoveryLevel": level if days == 90 else f"CustomizedRecoverable{level[11:]}",
                "recoverableDays": days}


class KvError(Exception):
    """An error answer in Key Vault's envelope."""

    def __init__(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.inner = status, code, message, inner

    def response(self, headers: dict[str, str]) -> web.Response:
        extra = {"innererror": {"code": self.inner}} if self.inner else {}
        return error_response(self.status, self.code, self.message, headers, **extra)


class Unauthorized(KvError):
    def __init__(self, message: str) -> None:
        super().__init__(401, "Unauthorized", message)


def not_found(kind: str, name: str) -> KvError:
    code = "CertificateNotFound" if kind == "certificate" else "SecretNotFound"
    return KvError(404, code, f"A {kind} with (name/id) {name} was not found in this key "
                   f"vault. If you recently deleted this {kind} you may be able to recover it "
                   f"using the correct recovery command. {HELP}")


def bad(message: str) -> KvError:
    return KvError(400, "BadParameter", message)


def region(location: str) -> str:
    return location.replace(" ", "").lower()


def decode_skip(token: str) -> int:
    if not token:
        return 0
    with contextlib.suppress(ValueError, TypeError, KeyError):
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return max(0, int(data["NextMarker"]))
    raise bad("The $skiptoken parameter is invalid.")


def merge_policy(base: dict[str, Any], patch: Any) -> dict[str, Any]:
    """A policy PATCH: sections given replace the keys they name; lists are replaced."""
    if not isinstance(patch, dict):
        raise bad("The certificate policy must be a JSON object.")
    out = dict(base)
    for key, value in patch.items():
        if value is None or key == "id":
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **{k: v for k, v in value.items() if v is not None}}
        else:
            out[key] = value
    return out


def section(body: dict[str, Any], name: str) -> dict[str, Any]:
    """An optional JSON object member of a request body (400 if it is not an object)."""
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(f"The property '{name}' must be a JSON object.")
    return dict(value)


def secret_value(key: PrivateKey | None, leaf: x509.Certificate,
                 chain: tuple[x509.Certificate, ...], content_type: str) -> str:
    if content_type == kvcerts.PEM:
        return kvcerts.export_pem(key, leaf, chain)
    return kvcerts.b64(kvcerts.export_pfx(key, leaf, chain))

