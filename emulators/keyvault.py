"""Key Vault emulator: the ``Microsoft.KeyVault/vaults`` ARM resource and each vault's
certificate/secret data plane, with the lifetime events Key Vault sends to Event Grid.

Theory of operation:

* ARM side. ``PUT .../providers/Microsoft.KeyVault/vaults/{name}`` (routed by ``Arm``)
  validates the body as the resource provider does, and on first creation binds a new
  HTTPS loopback listener for the vault: ``properties.vaultUri`` is
  ``https://127.0.0.1:{port}/``, because the SDK derives identifiers from
  ``/certificates/{name}/{version}`` paths and so needs one vault per origin. The port is
  taken from the stack's reserved vault range (``LOCAL_VAULT_PORTS``), the local stand-in
  for Azure's ``*.vault.azure.net``: the app sends Key Vault tokens nowhere else. Vault
  names are global (as the DNS names are in Azure). Deleting the vault closes its listener.
* Data plane. Every request first passes the real challenge: without a bearer token the
  vault answers 401 ``AKV10000`` with ``WWW-Authenticate: Bearer authorization=...,
  resource="https://vault.azure.net"``; a token with a wrong audience, signature, expiry
  or issuer tenant gets the 401 Key Vault gives (``AKV10022``, ``AKV10046``,
  ``AKV10032`` ...). Then ``api-version`` must be present. Routes and names are
  case-insensitive, as in Key Vault.
* Certificates are real: ``Self`` issuance generates a key, a CSR and a self-signed
  certificate from the policy; ``Unknown`` issuance leaves the operation ``inProgress``
  with a real CSR until ``pending/merge`` brings a certificate for the same public key;
  imports read PKCS#12 or PEM. Each completed version keeps its key and chain so the
  certificate-backed secret (``/secrets/{name}/{version}``, ``managed: true``) returns a
  PFX or PEM exactly as Key Vault does (no private key when the key is not exportable).
* Time comes from ``Platform.now()``. A lifetime check runs on every clock advance and
  every second: it applies an ``AutoRenew`` lifetime action of a ``Self`` policy (a new
  version, like Key Vault's renewal), and raises ``CertificateNearExpiry`` (30 days
  before ``exp``) and ``CertificateExpired`` once per current version. Every version that
  becomes available raises ``CertificateNewVersionCreated``. Events go to
  ``EventGrid.publish_system_event`` with the vault's ARM id as source.
* Authorization, after authentication and before the route runs (a missing object
  still answers 403 to a caller without the right, as in Key Vault): each route names
  the access-policy permission (``certificates``/``secrets`` + ``get``, ``list``,
  ``create`` ...) and the RBAC data action (``Microsoft.KeyVault/vaults/certificates/
  read`` ...) it needs. A vault with ``enableRbacAuthorization: true`` asks
  :class:`emulators.authorization.Authorization` whether a role assignment grants the
  action to the token's ``oid`` at the vault or a parent scope (403 ``Forbidden`` /
  ``ForbiddenByRbac``); otherwise ``properties.accessPolicies`` must hold an entry for
  the token's ``oid`` (and ``appid`` when the entry names an application) with the
  permission (403 ``Forbidden`` / ``AccessDenied``). Both messages follow Key Vault's
  wording. Policies change through the vault PUT/PATCH and ARM's ``accessPolicies/
  {add|replace|remove}``.
* Not modelled: keys and plain secrets, issuers and contacts, ARM-level vault soft
  delete, network ACLs, deny assignments. Certificate soft delete (delete, get/list
  deleted, recover, purge) is modelled.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from cryptography import x509

from emulators import kvcerts
from emulators.arm import Arm, ArmRequest
from emulators.authorization import Authorization
from emulators.core import Platform, error_response, json_response
from emulators.eventgrid import EventGrid
from emulators.kvcerts import CertError, PrivateKey
from emulators.tokens import (
    BadSignature,
    ExpiredToken,
    InvalidToken,
    NotYetValid,
    WrongAudience,
)

log = logging.getLogger(__name__)

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


def _not_found(kind: str, name: str) -> KvError:
    code = "CertificateNotFound" if kind == "certificate" else "SecretNotFound"
    return KvError(404, code, f"A {kind} with (name/id) {name} was not found in this key "
                   f"vault. If you recently deleted this {kind} you may be able to recover it "
                   f"using the correct recovery command. {HELP}")


def _bad(message: str) -> KvError:
    return KvError(400, "BadParameter", message)


DataHandler = Callable[[Vault, web.Request, dict[str, str]], Awaitable[web.Response]]


class KeyVault:
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
        self.platform = platform
        self.ports = ports
        self.arm = arm
        self.events = events
        self.authorization = authorization
        self.vaults: dict[str, Vault] = {}
        self._lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self._routes: list[tuple[str, re.Pattern[str], DataHandler, Permission | None]] = []
        platform.reset_hooks.append(self._reset)
        platform.clock_hooks.append(self.check_lifetimes)
        vaults = "/subscriptions/{subscription}/resourceGroups/{resourceGroup}/providers/" \
                 "Microsoft.KeyVault/vaults"
        arm.route("PUT", vaults + "/{vaultName}", self._put_vault)
        arm.route("PATCH", vaults + "/{vaultName}", self._patch_vault)
        arm.route("GET", vaults + "/{vaultName}", self._get_vault)
        arm.route("DELETE", vaults + "/{vaultName}", self._delete_vault)
        arm.route("PUT", vaults + "/{vaultName}/accessPolicies/{operationKind}",
                  self._update_access_policies)
        arm.route("GET", vaults, self._list_vaults)
        arm.route("GET", "/subscriptions/{subscription}/providers/Microsoft.KeyVault/vaults",
                  self._list_vaults)
        name, cert = r"(?P<name>[^/]+)", r"/certificates/(?P<name>[^/]+)"
        # Merge is authorized as ``create``: it completes the version ``create`` started.
        for method, path, handler, permission in (
            ("GET", r"/certificates/?", self._list_certificates, CERT_LIST),
            ("*", r"/certificates/(?:contacts|issuers)(?:/.*)?", self._unsupported, None),
            ("GET", cert + r"/versions/?", self._list_versions, CERT_LIST),
            ("GET", cert + r"/policy/?", self._get_policy, CERT_GET),
            ("PATCH", cert + r"/policy/?", self._update_policy, CERT_UPDATE),
            ("POST", cert + r"/pending/merge/?", self._merge, CERT_CREATE),
            ("GET", cert + r"/pending/?", self._get_pending, CERT_GET),
            ("PATCH", cert + r"/pending/?", self._cancel_pending, CERT_UPDATE),
            ("DELETE", cert + r"/pending/?", self._delete_pending, CERT_DELETE),
            ("POST", cert + r"/create/?", self._create, CERT_CREATE),
            ("POST", cert + r"/import/?", self._import, CERT_IMPORT),
            ("GET", cert + r"(?:/(?P<version>[^/]*))?", self._get_certificate, CERT_GET),
            ("PATCH", cert + r"(?:/(?P<version>[^/]*))?", self._update_certificate,
             CERT_UPDATE),
            ("DELETE", cert + r"/?", self._delete_certificate, CERT_DELETE),
            ("GET", r"/deletedcertificates/?", self._list_deleted, CERT_LIST),
            ("GET", rf"/deletedcertificates/{name}/?", self._get_deleted, CERT_GET),
            ("DELETE", rf"/deletedcertificates/{name}/?", self._purge_deleted, CERT_PURGE),
            ("POST", rf"/deletedcertificates/{name}/recover/?", self._recover_deleted,
             CERT_RECOVER),
            ("GET", r"/secrets/?", self._list_secrets, SECRET_LIST),
            ("GET", rf"/secrets/{name}/versions/?", self._list_secret_versions, SECRET_LIST),
            ("GET", rf"/secrets/{name}(?:/(?P<version>[^/]*))?", self._get_secret, SECRET_GET),
        ):
            self._routes.append(
                (method, re.compile(f"^{path}$", re.IGNORECASE), handler, permission))

    # -- shared helpers ------------------------------------------------------------------

    def _now(self) -> int:
        return kvcerts.unix(self.platform.now())

    def _reset(self) -> None:
        """Forget every vault and close their listeners (reset runs inside the loop)."""
        ports = {v.port for v in self.vaults.values()}
        self.vaults.clear()
        for port in ports:
            asyncio.get_running_loop().create_task(self._close_listener(port))

    async def _close_listener(self, port: int) -> None:
        for runner in list(self.platform.runners):
            if any(isinstance(a, tuple) and a[1] == port for a in runner.addresses):
                self.platform.runners.remove(runner)
                await runner.cleanup()

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.check_lifetimes()
            except Exception:  # keep the periodic check alive whatever one round hit
                log.exception("Key Vault lifetime check failed")

    # -- ARM: Microsoft.KeyVault/vaults --------------------------------------------------

    def _vault_for(self, req: ArmRequest) -> Vault:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        name = req.params["vaultName"]
        vault = self.vaults.get(name.lower())
        if vault is None or vault.resource_group.lower() != req.params["resourceGroup"].lower():
            raise web.HTTPNotFound(
                text=json.dumps({"error": {
                    "code": "ResourceNotFound",
                    "message": f"The Resource '{VAULT_TYPE}/{name}' under resource group "
                               f"'{req.params['resourceGroup']}' was not found. For more details "
                               "please go to https://aka.ms/ARMResourceNotFoundFix"}}),
                content_type="application/json")
        return vault

    def _check_properties(self, props: dict[str, Any], current: dict[str, Any] | None) -> None:
        """The resource provider's checks on vault properties (raise ARM 400s)."""
        def fail(message: str, code: str = "BadRequest") -> web.HTTPBadRequest:
            return web.HTTPBadRequest(
                text=json.dumps({"error": {"code": code, "message": message}}),
                content_type="application/json")

        tenant = props.get("tenantId")
        if not isinstance(tenant, str) or not GUID.match(tenant):
            raise fail(f"The specified tenant identifier '{tenant}' is neither a valid DNS "
                       "name, nor a valid external domain.")
        sku = props.get("sku")
        if not isinstance(sku, dict) or str(sku.get("family", "")).upper() != "A" or \
                str(sku.get("name", "")).lower() not in ("standard", "premium"):
            raise fail("The SKU of the vault is invalid: 'sku' must be {\"family\": \"A\", "
                       "\"name\": \"standard\" | \"premium\"}.")
        for flag in ("enabledForDeployment", "enabledForDiskEncryption",
                     "enabledForTemplateDeployment", "enableSoftDelete",
                     "enableRbacAuthorization", "enablePurgeProtection"):
            if flag in props and props[flag] is not None and not isinstance(props[flag], bool):
                raise fail(f"The value of '{flag}' must be a boolean.")
        days = props.get("softDeleteRetentionInDays", 90)
        if not isinstance(days, int) or not 7 <= days <= 90:
            raise fail("The property 'softDeleteRetentionInDays' must be between 7 and 90.")
        if current and current.get("enableSoftDelete", True) and \
                props.get("enableSoftDelete") is False:
            raise fail('The property "enableSoftDelete" cannot be set to false. Enabling the '
                       "'soft delete' functionality is an irreversible action.")
        if current and current.get("enablePurgeProtection") and \
                props.get("enablePurgeProtection") is False:
            raise fail('The property "enablePurgeProtection" cannot be set to false. Enabling '
                       "the purge protection for a vault is an irreversible action.")
        _check_policies(props.get("accessPolicies", []), fail)

    def _properties(self, props: dict[str, Any], port: int) -> dict[str, Any]:
        out = {
            "sku": {"family": "A", "name": str(props["sku"]["name"]).lower()},
            "tenantId": props["tenantId"],
            "accessPolicies": props.get("accessPolicies") or [],
            "enabledForDeployment": bool(props.get("enabledForDeployment", False)),
            "enabledForDiskEncryption": bool(props.get("enabledForDiskEncryption", False)),
            "enabledForTemplateDeployment": bool(props.get("enabledForTemplateDeployment",
                                                           False)),
            "enableSoftDelete": props.get("enableSoftDelete") is not False,
            "softDeleteRetentionInDays": int(props.get("softDeleteRetentionInDays", 90)),
            "enableRbacAuthorization": bool(props.get("enableRbacAuthorization", False)),
            "vaultUri": f"https://127.0.0.1:{port}/",
            "provisioningState": "Succeeded",
            "publicNetworkAccess": props.get("publicNetworkAccess") or "Enabled",
        }
        if props.get("enablePurgeProtection"):
            out["enablePurgeProtection"] = True
        if isinstance(props.get("networkAcls"), dict):
            out["networkAcls"] = props["networkAcls"]
        return out

    async def _put_vault(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        name, rg = req.params["vaultName"], req.params["resourceGroup"]
        if not VAULT_NAME.match(name):
            return error_response(
                400, "VaultNameNotValid",
                f"The vault name '{name}' is invalid. A vault's name must be between 3-24 "
                "alphanumeric characters. The name must begin with a letter, end with a letter "
                "or digit, and not contain consecutive hyphens. Follow this link for more "
                "information: https://go.microsoft.com/fwlink/?linkid=2147742")
        body = await req.resource_body()
        location = str(body["location"])
        props = body.get("properties")
        if not isinstance(props, dict):
            return error_response(400, "BadRequest",
                                  "The 'properties' property is required for a vault.")
        tags = body.get("tags") or {}
        existing = self.vaults.get(name.lower())
        if existing is not None and existing.resource_group.lower() != rg.lower():
            return error_response(
                409, "VaultAlreadyExists",
                f"The vault name '{name}' is already in use. Vault names are globally unique "
                "so it is possible that the name is already taken. If you are sure that the "
                "vault name was not taken then it is possible that a vault with the same name "
                "was recently deleted but not purged after being placed in a recoverable state. "
                "If the vault is in a recoverable state then the vault will need to be purged "
                "before reusing the name. For more information on VaultAlreadyExists, soft "
                "delete and purging a vault follow this link "
                "https://go.microsoft.com/fwlink/?linkid=2147740.")
        self._check_properties(props, existing.properties if existing else None)
        now = self.platform.now().isoformat().replace("+00:00", "Z")
        caller = str(req.claims.get("appid") or req.claims.get("oid") or "")
        if existing is not None:
            if _region(existing.location) != _region(location):
                return error_response(
                    400, "InvalidResourceLocation",
                    f"The resource '{name}' already exists in location '{existing.location}' "
                    f"in resource group '{existing.resource_group}'. A resource with the same "
                    f"name cannot be created in location '{location}'. Please select a new "
                    "resource name.")
            existing.properties = self._properties(props, existing.port)
            existing.tags = dict(tags)
            existing.system_data.update(lastModifiedBy=caller, lastModifiedByType="Application",
                                        lastModifiedAt=now)
            return json_response(existing.resource(), 200)
        vault_id = (f"/subscriptions/{self.platform.subscription_id}/resourceGroups/{rg}"
                    f"/providers/{VAULT_TYPE}/{name}")
        vault = Vault(id=vault_id, name=name, resource_group=rg, location=location,
                      tags=dict(tags), properties={}, port=0,
                      system_data={"createdBy": caller, "createdByType": "Application",
                                   "createdAt": now, "lastModifiedBy": caller,
                                   "lastModifiedByType": "Application", "lastModifiedAt": now})
        app = self.platform.make_app("keyvault")

        async def dispatch(request: web.Request) -> web.StreamResponse:
            return await self._dispatch(vault, request)

        app.router.add_route("*", "/{tail:.*}", dispatch)
        vault.port = await self._serve_vault(app)
        vault.properties = self._properties(props, vault.port)
        self.vaults[name.lower()] = vault
        self._ensure_ticker()
        return json_response(vault.resource(), 201)

    async def _serve_vault(self, app: web.Application) -> int:
        """Bind a vault's listener, within ``ports`` when the stack reserved a range."""
        if self.ports is None:
            return await self.platform.serve(app, tls=True)
        taken = {v.port for v in self.vaults.values()}
        for port in self.ports:
            if port in taken:
                continue
            with contextlib.suppress(OSError):  # another process holds it: try the next
                return await self.platform.serve(app, tls=True, port=port)
        raise KvError(503, "ServiceUnavailable",
                      f"the local stack has no free vault port left in {self.ports}")

    async def _patch_vault(self, req: ArmRequest) -> web.Response:
        vault = self._vault_for(req)
        body = await req.json_body()
        if not isinstance(body, dict):
            return error_response(400, "InvalidRequestContent",
                                  "The request content must be a JSON object.")
        patch = body.get("properties") or {}
        if not isinstance(patch, dict):
            return error_response(400, "BadRequest", "The 'properties' must be an object.")
        merged = {**vault.properties, **{k: v for k, v in patch.items() if v is not None}}
        self._check_properties(merged, vault.properties)
        vault.properties = self._properties(merged, vault.port)
        if isinstance(body.get("tags"), dict):
            vault.tags = dict(body["tags"])
        vault.system_data.update(
            lastModifiedBy=str(req.claims.get("appid") or ""), lastModifiedByType="Application",
            lastModifiedAt=self.platform.now().isoformat().replace("+00:00", "Z"))
        return json_response(vault.resource())

    async def _update_access_policies(self, req: ArmRequest) -> web.Response:
        """``accessPolicies/{add|replace|remove}``: change the entries named in the body,
        leaving the vault and every other entry alone (add: union of permissions;
        replace: the entry's permissions become the given ones; remove: the given
        permissions go, and an entry left with none goes too)."""
        vault = self._vault_for(req)
        kind = req.params["operationKind"].lower()
        if kind not in POLICY_KINDS:
            return error_response(
                400, "BadRequest", f"The operation kind '{req.params['operationKind']}' is "
                "invalid; it must be one of 'add', 'replace', 'remove'.")
        body = await req.json_body()
        props = body.get("properties") if isinstance(body, dict) else None
        changes = props.get("accessPolicies") if isinstance(props, dict) else None
        if not isinstance(changes, list):
            return error_response(400, "BadRequest",
                                  "An invalid value was provided for 'accessPolicies'.")
        _check_policies(changes, lambda message: web.HTTPBadRequest(
            text=json.dumps({"error": {"code": "BadRequest", "message": message}}),
            content_type="application/json"))
        policies = [dict(p) for p in vault.properties.get("accessPolicies") or []]
        for change in changes:
            policies = _apply_policy_change(policies, change, kind)
        vault.properties = {**vault.properties, "accessPolicies": policies}
        vault.system_data.update(
            lastModifiedBy=str(req.claims.get("appid") or ""), lastModifiedByType="Application",
            lastModifiedAt=self.platform.now().isoformat().replace("+00:00", "Z"))
        return json_response({"id": f"{vault.id}/accessPolicies/{kind}", "name": kind,
                              "type": f"{VAULT_TYPE}/accessPolicies",
                              "location": vault.location,
                              "properties": {"accessPolicies": policies}})

    async def _get_vault(self, req: ArmRequest) -> web.Response:
        return json_response(self._vault_for(req).resource())

    async def _delete_vault(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        try:
            vault = self._vault_for(req)
        except web.HTTPNotFound:
            return web.Response(status=204)
        del self.vaults[vault.name.lower()]
        await self._close_listener(vault.port)
        return web.Response(status=200)

    async def _list_vaults(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        rg = req.params.get("resourceGroup")
        if rg is not None:
            self.arm.require_rg(req)
        items = [v.resource() for v in self.vaults.values()
                 if rg is None or v.resource_group.lower() == rg.lower()]
        return self.arm.page(req, items)

    # -- data plane: front door ------------------------------------------------------------

    def _authenticate(self, vault: Vault, request: web.Request) -> dict[str, Any]:
        """Bearer token checks in Key Vault's order and wording (401 on any failure);
        the token's claims when it passes."""
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith(("bearer ", "pop ")):
            raise Unauthorized("AKV10000: Request is missing a Bearer or PoP token.")
        token = header.split(" ", 1)[1].strip()
        try:
            claims = self.platform.tokens.validate(token, (VAULT_RESOURCE,))
        except WrongAudience as exc:
            raise Unauthorized(f"AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, "
                               f"found: {exc.found}.") from exc
        except BadSignature as exc:
            raise Unauthorized("AKV10046: Unable to resolve the key used for signature "
                               f"validation. EncodedJwtHeader: '{exc.encoded_header}'.") from exc
        except ExpiredToken as exc:
            raise Unauthorized("[TokenExpired] Error validating token: 'S2S12086'.") from exc
        except NotYetValid as exc:
            raise Unauthorized("Token not yet valid.") from exc
        except InvalidToken as exc:
            raise Unauthorized("[BearerReadAccessTokenFailed] Error validating token: "
                               "'S2S12005'.") from exc
        expected = f"https://sts.windows.net/{vault.tenant}/"
        if str(claims.get("iss", "")).lower() != expected.lower():
            raise Unauthorized(f"AKV10032: Invalid issuer. Expected one of {expected}, found "
                               f"{claims.get('iss')}.")
        return claims

    async def _dispatch(self, vault: Vault, request: web.Request) -> web.StreamResponse:
        headers = {"x-ms-request-id": str(uuid.uuid4()),
                   "x-ms-keyvault-region": _region(vault.location),
                   "x-ms-keyvault-service-version": "1.9.2000.1"}
        try:
            claims = self._authenticate(vault, request)
            if not request.query.get("api-version"):
                raise _bad("The api-version parameter is missing.")
            response = await self._route(vault, request, claims)
        except KvError as exc:
            if exc.status == 401:
                headers["WWW-Authenticate"] = (
                    f'Bearer authorization="{AUTHORITY}/{vault.tenant}", '
                    f'resource="{VAULT_RESOURCE}"')
            response = exc.response(headers)
        else:
            response.headers.update(headers)
        return response

    async def _route(self, vault: Vault, request: web.Request, claims: dict[str, Any]
                     ) -> web.Response:
        path_known = False
        for method, regex, handler, permission in self._routes:
            match = regex.match(request.path)
            if match is None:
                continue
            path_known = True
            if method in (request.method, "*"):
                params = {k: v for k, v in match.groupdict().items() if v is not None}
                if "name" in params and not OBJECT_NAME.match(params["name"]):
                    raise _bad(f"The request URI contains an invalid name: {params['name']}")
                if permission is not None:
                    self._authorize(vault, claims, permission, params.get("name"))
                return await handler(vault, request, params)
        if path_known:
            raise KvError(405, "BadParameter",
                          f"The method {request.method} is not allowed on {request.path}.")
        raise KvError(404, "NotFound", f"The path {request.path} is not served by this vault.")

    def _authorize(self, vault: Vault, claims: dict[str, Any], permission: Permission,
                   name: str | None) -> None:
        """403 in Key Vault's words unless the vault's permission model grants the call."""
        oid, appid = str(claims.get("oid", "")), str(claims.get("appid", ""))
        caller = f"appid={appid};oid={oid};iss={claims.get('iss', '')}"
        where = f"{vault.name};location={_region(vault.location)}"
        if vault.properties.get("enableRbacAuthorization"):
            resource = vault.id.lower() + (f"/{permission.kind}/{name}" if name else "")
            if self.authorization.allows(oid, resource, permission.data_action):
                return
            raise KvError(
                403, "Forbidden",
                "Caller is not authorized to perform action on resource.\r\nIf role "
                "assignments, deny assignments or role definitions were changed recently, "
                f"please observe propagation time.\r\nCaller: {caller}\r\nAction: "
                f"'{permission.data_action}'\r\nResource: '{resource}'\r\nAssignment: "
                "(not found)\r\nDenyAssignmentId: null\r\nDecisionReason: "
                f"'DeniedWithNoValidRBAC' \r\nVault: {where}\r\n",
                inner="ForbiddenByRbac")
        for entry in vault.properties.get("accessPolicies") or []:
            if str(entry.get("objectId", "")).lower() != oid.lower():
                continue
            if entry.get("applicationId") and \
                    str(entry["applicationId"]).lower() != appid.lower():
                continue
            granted = {str(p).lower() for p in
                       (entry.get("permissions") or {}).get(permission.kind) or []}
            if permission.operation in granted or "all" in granted:
                return
        raise KvError(
            403, "Forbidden",
            f"The user, group or application '{caller}' does not have {permission.kind} "
            f"{permission.operation} permission on key vault '{where}'. {ACCESS_HELP}",
            inner="AccessDenied")

    async def _unsupported(self, vault: Vault, request: web.Request,
                           params: dict[str, str]) -> web.Response:
        raise _bad("Certificate issuers and contacts are not implemented by the local Key "
                   "Vault emulator.")

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        text = await request.text()
        try:
            body = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            raise _bad(f"The request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise _bad("The request body must be a JSON object.")
        return body

    def _page(self, vault: Vault, request: web.Request, items: list[dict[str, Any]]
              ) -> web.Response:
        """One page with Key Vault's ``nextLink`` (absolute, ``$skiptoken`` + ``maxresults``)."""
        raw = request.query.get("maxresults")
        try:
            size = MAX_RESULTS if raw in (None, "") else int(raw)
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_RESULTS:
            raise _bad(f"The value of parameter 'maxresults' must be between 1 and "
                       f"{MAX_RESULTS}.")
        start = _decode_skip(request.query.get("$skiptoken", ""))
        body: dict[str, Any] = {"value": items[start:start + size], "nextLink": None}
        # A full page links to the next one even when nothing follows (the last page is
        # then empty), as recorded.
        if start + size <= len(items):
            token = base64.urlsafe_b64encode(
                json.dumps({"NextMarker": start + size}).encode()).rstrip(b"=").decode()
            body["nextLink"] = (f"{vault.uri}{request.path.lstrip('/')}?api-version="
                                f"{request.query['api-version']}&$skiptoken={token}"
                                f"&maxresults={size}")
        return json_response(body)

    # -- data plane: representations -----------------------------------------------------

    def _attributes(self, vault: Vault, v: CertVersion) -> dict[str, Any]:
        return {"enabled": v.enabled, "nbf": kvcerts.unix(v.nbf), "exp": kvcerts.unix(v.exp),
                "created": v.created, "updated": v.updated, **vault.recovery()}

    def _pending_attributes(self, vault: Vault, op: PendingOp) -> dict[str, Any]:
        return {"enabled": False, "created": op.created, "updated": op.created,
                **vault.recovery()}

    def _ids(self, vault: Vault, name: str, version: str) -> dict[str, str]:
        return {"id": f"{vault.uri}certificates/{name}/{version}",
                "kid": f"{vault.uri}keys/{name}/{version}",
                "sid": f"{vault.uri}secrets/{name}/{version}"}

    def _policy_json(self, vault: Vault, cert: Certificate) -> dict[str, Any]:
        return {"id": f"{vault.uri}certificates/{cert.name}/policy", **cert.policy}

    def _bundle(self, vault: Vault, cert: Certificate, v: CertVersion | None) -> dict[str, Any]:
        """A CertificateBundle; ``v`` None means the not yet issued pending version."""
        if v is None:
            assert cert.pending is not None
            out: dict[str, Any] = {**self._ids(vault, cert.name, cert.pending.version),
                                   "attributes": self._pending_attributes(vault, cert.pending)}
            tags = cert.pending.tags
        else:
            out = {**self._ids(vault, cert.name, v.version), "x5t": kvcerts.x5t(v.cert),
                   "cer": kvcerts.b64(kvcerts.der(v.cert)),
                   "attributes": self._attributes(vault, v)}
            tags = v.tags
        if tags:
            out["tags"] = tags
        out["policy"] = self._policy_json(vault, cert)
        if cert.pending is not None and cert.pending.status == "inProgress":
            out["pending"] = {"id": f"{vault.uri}certificates/{cert.name}/pending"}
        return out

    def _item(self, vault: Vault, cert: Certificate, v: CertVersion | None,
              versioned: bool) -> dict[str, Any]:
        """A CertificateItem for list answers: as recorded, its attributes carry no
        ``recoveryLevel``/``recoverableDays`` and it ends with ``subject`` (``""`` in every
        recorded list answer, whatever the certificate's subject)."""
        op = cert.pending
        version = v.version if v else (op.version if op else "")
        attributes = self._attributes(vault, v) if v else \
            self._pending_attributes(vault, op) if op else {}
        out: dict[str, Any] = {
            "id": f"{vault.uri}certificates/{cert.name}" + (f"/{version}" if versioned else ""),
        }
        if v is not None:
            out["x5t"] = kvcerts.x5t(v.cert)
        out["attributes"] = {k: val for k, val in attributes.items()
                             if k not in ("recoveryLevel", "recoverableDays")}
        tags = v.tags if v else (op.tags if op else {})
        if tags:
            out["tags"] = tags
        out["subject"] = ""
        return out

    def _operation(self, vault: Vault, cert: Certificate, op: PendingOp) -> dict[str, Any]:
        out: dict[str, Any] = {"id": f"{vault.uri}certificates/{cert.name}/pending",
                               "issuer": {"name": op.issuer}, "csr": kvcerts.b64(op.csr),
                               "cancellation_requested": op.cancellation_requested,
                               "status": op.status}
        if op.status_details:
            out["status_details"] = op.status_details
        if op.target:
            out["target"] = op.target
        out["request_id"] = op.request_id
        return out

    def _secret(self, vault: Vault, cert: Certificate, v: CertVersion) -> dict[str, Any]:
        out: dict[str, Any] = {"value": v.secret_value, "contentType": v.content_type,
                               "id": f"{vault.uri}secrets/{cert.name}/{v.version}",
                               "managed": True, "attributes": self._attributes(vault, v),
                               "kid": f"{vault.uri}keys/{cert.name}/{v.version}"}
        if v.tags:
            out["tags"] = v.tags
        return out

    # -- data plane: lookups -------------------------------------------------------------

    def _cert(self, vault: Vault, name: str) -> Certificate:
        cert = vault.certificates.get(name.lower())
        if cert is None:
            raise _not_found("certificate", name)
        return cert

    def _version(self, cert: Certificate, version: str | None) -> CertVersion | None:
        """A version by id, or the current one for ''/None (None if only pending exists)."""
        if not version:
            if cert.versions:
                return cert.versions[-1]
            if cert.pending is not None and cert.pending.status == "inProgress":
                return None
            raise _not_found("certificate", cert.name)
        found = cert.version(version)
        if found is None:
            raise _not_found("certificate", f"{cert.name}/{version}")
        return found

    # -- data plane: certificates ----------------------------------------------------------

    async def _list_certificates(self, vault: Vault, request: web.Request,
                                 params: dict[str, str]) -> web.Response:
        pending = request.query.get("includePending", "").lower() == "true"
        items = []
        for cert in sorted(vault.certificates.values(), key=lambda c: c.name.lower()):
            if cert.versions:
                items.append(self._item(vault, cert, cert.versions[-1], versioned=False))
            elif pending and cert.pending is not None:
                items.append(self._item(vault, cert, None, versioned=False))
        return self._page(vault, request, items)

    async def _list_versions(self, vault: Vault, request: web.Request,
                             params: dict[str, str]) -> web.Response:
        cert = self._cert(vault, params["name"])
        items = [self._item(vault, cert, v, versioned=True) for v in cert.versions]
        if cert.pending is not None and cert.pending.status == "inProgress":
            items.append(self._item(vault, cert, None, versioned=True))
        # Key Vault lists versions by version id, not by creation (recorded).
        items.sort(key=lambda item: str(item["id"]).lower())
        return self._page(vault, request, items)

    async def _get_certificate(self, vault: Vault, request: web.Request,
                               params: dict[str, str]) -> web.Response:
        cert = self._cert(vault, params["name"])
        version = params.get("version")
        if version and cert.pending is not None and version.lower() == cert.pending.version \
                and cert.pending.status == "inProgress":
            return json_response(self._bundle(vault, cert, None))
        return json_response(self._bundle(vault, cert, self._version(cert, version)))

    async def _update_certificate(self, vault: Vault, request: web.Request,
                                  params: dict[str, str]) -> web.Response:
        cert = self._cert(vault, params["name"])
        current = self._version(cert, params.get("version"))
        body = await self._body(request)
        if current is None:
            raise _not_found("certificate", cert.name)
        if body.get("policy") is not None:
            self._apply_policy(cert, _merge(cert.policy, body["policy"]))
        attributes = _section(body, "attributes")
        updated = replace(
            current,
            enabled=bool(attributes["enabled"]) if attributes.get("enabled") is not None
            else current.enabled,
            tags=dict(body["tags"]) if isinstance(body.get("tags"), dict) else current.tags,
            updated=self._now())
        cert.versions[cert.versions.index(current)] = updated
        return json_response(self._bundle(vault, cert, updated))

    async def _get_policy(self, vault: Vault, request: web.Request,
                          params: dict[str, str]) -> web.Response:
        cert = self._cert(vault, params["name"])
        return json_response(self._policy_json(vault, cert))

    async def _update_policy(self, vault: Vault, request: web.Request,
                             params: dict[str, str]) -> web.Response:
        cert = self._cert(vault, params["name"])
        self._apply_policy(cert, _merge(cert.policy, await self._body(request)))
        return json_response(self._policy_json(vault, cert))

    def _apply_policy(self, cert: Certificate, raw: dict[str, Any]) -> None:
        created = int(cert.policy["attributes"]["created"])
        try:
            policy = kvcerts.normalize_policy(raw, created, self._now())
            kvcerts.x509_spec(policy)
        except CertError as exc:
            raise _bad(str(exc)) from exc
        cert.policy = policy

    async def _create(self, vault: Vault, request: web.Request,
                      params: dict[str, str]) -> web.Response:
        name = params["name"]
        body = await self._body(request)
        self._refuse_deleted(vault, name)
        cert = vault.certificates.get(name.lower())
        raw = body.get("policy")
        if raw is None and cert is None:
            raise _bad("The policy is required to create the first version of a certificate.")
        now = self._now()
        try:
            policy = cert.policy if raw is None and cert is not None else \
                kvcerts.normalize_policy(raw, int(cert.policy["attributes"]["created"])
                                         if cert else now, now)
            spec = kvcerts.x509_spec(policy)
        except CertError as exc:
            raise _bad(str(exc)) from exc
        issuer = policy["issuer"]["name"]
        if issuer not in ("Self", "Unknown"):
            raise _bad(f"The issuer '{issuer}' is not configured in this vault (only 'Self' and "
                       "'Unknown' are available in the local Key Vault emulator).")
        self._refuse_pending(cert)
        key = await self._key_for(cert, policy)
        cert = vault.certificates.get(name.lower())
        self._refuse_pending(cert)
        if cert is None:
            cert = Certificate(name=name, policy=policy)
            vault.certificates[name.lower()] = cert
        cert.policy = policy
        op = PendingOp(version=uuid.uuid4().hex, issuer=issuer, key=key,
                       csr=kvcerts.build_csr(key, spec),
                       enabled=_section(body, "attributes").get("enabled") is not False,
                       tags=_section(body, "tags"),
                       created=self._now(),
                       status_details=SELF_PENDING if issuer == "Self" else UNKNOWN_PENDING)
        cert.pending = op
        answer = self._operation(vault, cert, op)
        if issuer == "Self":
            leaf = kvcerts.self_sign(key, spec, self.platform.now())
            self._complete(vault, cert, op, leaf, ())
        location = (f"{vault.uri}certificates/{cert.name}/pending?api-version="
                    f"{request.query['api-version']}&request_id={op.request_id}")
        return json_response(answer, 202, {"Location": location, "Retry-After": "10"})

    def _refuse_deleted(self, vault: Vault, name: str) -> None:
        if name.lower() in vault.deleted:
            raise KvError(409, "Conflict",
                          f"Certificate {name} is currently in a deleted but recoverable state, "
                          "and its name cannot be reused; in this state, the certificate can "
                          "only be recovered or purged.")

    @staticmethod
    def _refuse_pending(cert: Certificate | None) -> None:
        if cert is not None and cert.pending is not None and cert.pending.status == "inProgress":
            raise KvError(409, "Conflict",
                          f"There is a pending operation for certificate {cert.name}. Merge, "
                          "cancel or delete it before requesting a new version.")

    async def _key_for(self, cert: Certificate | None, policy: dict[str, Any]) -> PrivateKey:
        """The key of the new version: the current one if ``reuse_key``, else a fresh one."""
        props = policy["key_props"]
        if props["reuse_key"] and cert is not None and cert.versions:
            current = cert.versions[-1].key
            if kvcerts.describe_key(current)[:2] == (props["kty"].split("-")[0].upper(),
                                                     props["key_size"]):
                return current
        return await asyncio.to_thread(kvcerts.generate_key, props["kty"], props["key_size"],
                                       props.get("crv"))

    def _complete(self, vault: Vault, cert: Certificate, op: PendingOp,
                  leaf: x509.Certificate, chain: tuple[x509.Certificate, ...]) -> CertVersion:
        """Turn the pending version into an available one and announce it."""
        now = self._now()
        content_type = cert.policy["secret_props"]["contentType"]
        version = CertVersion(
            version=op.version, cert=leaf, chain=chain, key=op.key, content_type=content_type,
            secret_value=_secret_value(op.key if cert.policy["key_props"]["exportable"] else None,
                                       leaf, chain, content_type),
            enabled=op.enabled, tags=op.tags, created=now, updated=now)
        cert.versions.append(version)
        op.status, op.status_details = "completed", None
        op.target = f"{vault.uri}certificates/{cert.name}"
        self._publish(vault, cert, version, EVENT_NEW)
        return version

    async def _import(self, vault: Vault, request: web.Request,
                      params: dict[str, str]) -> web.Response:
        name = params["name"]
        body = await self._body(request)
        self._refuse_deleted(vault, name)
        value = body.get("value")
        if not isinstance(value, str) or not value.strip():
            raise _bad("The property 'value' (the certificate to import) is required.")
        cert = vault.certificates.get(name.lower())
        raw = _section(body, "policy")
        base: dict[str, Any] = raw or (cert.policy if cert else {})
        content_type = _section(base, "secret_props").get("contentType") or kvcerts.PFX
        pwd = body.get("pwd")
        try:
            material = kvcerts.load_import(value, pwd if isinstance(pwd, str) else None,
                                           content_type)
            kty, size, crv = kvcerts.describe_key(material.key)
            key_in = _section(base, "key_props")
            now = self._now()
            policy = kvcerts.normalize_policy(
                {**base,
                 "key_props": {"exportable": key_in.get("exportable", True), "kty": kty,
                               "key_size": size, "crv": crv,
                               "reuse_key": key_in.get("reuse_key", False)},
                 "secret_props": {"contentType": content_type},
                 "x509_props": kvcerts.describe(material.cert)},
                int(cert.policy["attributes"]["created"]) if cert else now, now)
        except CertError as exc:
            raise _bad(str(exc)) from exc
        if cert is None:
            cert = Certificate(name=name, policy=policy)
            vault.certificates[name.lower()] = cert
        cert.policy = policy
        op = PendingOp(version=uuid.uuid4().hex, issuer=policy["issuer"]["name"],
                       key=material.key, csr=b"",
                       enabled=_section(body, "attributes").get("enabled") is not False,
                       tags=_section(body, "tags"), created=now)
        version = self._complete(vault, cert, op, material.cert, material.chain)
        return json_response(self._bundle(vault, cert, version))

    async def _merge(self, vault: Vault, request: web.Request,
                     params: dict[str, str]) -> web.Response:
        cert = self._cert(vault, params["name"])
        body = await self._body(request)
        op = cert.pending
        if op is None or op.status != "inProgress":
            raise KvError(404, "PendingCertificateNotFound",
                          f"Pending certificate not found: {cert.name}")
        try:
            certs = kvcerts.load_x5c(body.get("x5c") or [])
        except CertError as exc:
            raise _bad(str(exc)) from exc
        if not kvcerts.same_public_key(op.key, certs[0]):
            raise _bad("Public key from x509 certificate and key of this instance doesn't "
                       "match")
        attributes = _section(body, "attributes")
        if attributes.get("enabled") is not None:
            op.enabled = bool(attributes["enabled"])
        if isinstance(body.get("tags"), dict):
            op.tags = dict(body["tags"])
        version = self._complete(vault, cert, op, certs[0], tuple(certs[1:]))
        return json_response(self._bundle(vault, cert, version), 201)

    def _op_for(self, vault: Vault, name: str) -> tuple[Certificate, PendingOp]:
        cert = vault.certificates.get(name.lower())
        if cert is None or cert.pending is None:
            raise KvError(404, "PendingCertificateNotFound",
                          f"Pending certificate not found: {name}")
        return cert, cert.pending

    async def _get_pending(self, vault: Vault, request: web.Request,
                           params: dict[str, str]) -> web.Response:
        cert, op = self._op_for(vault, params["name"])
        headers = {"Retry-After": "10"} if op.status == "inProgress" else None
        return json_response(self._operation(vault, cert, op), headers=headers)

    async def _cancel_pending(self, vault: Vault, request: web.Request,
                              params: dict[str, str]) -> web.Response:
        cert, op = self._op_for(vault, params["name"])
        body = await self._body(request)
        if body.get("cancellation_requested") is not True:
            raise _bad("The property 'cancellation_requested' must be true.")
        if op.status == "inProgress":
            op.cancellation_requested = True
            op.status, op.status_details = "cancelled", "Cancelled by user."
        return json_response(self._operation(vault, cert, op))

    async def _delete_pending(self, vault: Vault, request: web.Request,
                              params: dict[str, str]) -> web.Response:
        cert, op = self._op_for(vault, params["name"])
        answer = self._operation(vault, cert, op)
        cert.pending = None
        if not cert.versions:
            del vault.certificates[cert.name.lower()]
        return json_response(answer)

    # -- data plane: deletion and recovery -------------------------------------------------

    def _deleted_json(self, vault: Vault, item: DeletedCertificate, full: bool
                      ) -> dict[str, Any]:
        cert = item.cert
        current = cert.versions[-1] if cert.versions else None
        base = self._bundle(vault, cert, current) if full else \
            self._item(vault, cert, current, versioned=False)
        return {"recoveryId": f"{vault.uri}deletedcertificates/{cert.name}",
                "deletedDate": item.deleted, "scheduledPurgeDate": item.purge, **base}

    async def _delete_certificate(self, vault: Vault, request: web.Request,
                                  params: dict[str, str]) -> web.Response:
        cert = self._cert(vault, params["name"])
        del vault.certificates[cert.name.lower()]
        now = self._now()
        days = int(vault.properties.get("softDeleteRetentionInDays", 90))
        item = DeletedCertificate(cert, now, now + days * 86400)
        if not vault.properties.get("enableSoftDelete", True):
            current = cert.versions[-1] if cert.versions else None
            return json_response(self._bundle(vault, cert, current))
        vault.deleted[cert.name.lower()] = item
        return json_response(self._deleted_json(vault, item, full=True))

    def _deleted(self, vault: Vault, name: str) -> DeletedCertificate:
        item = vault.deleted.get(name.lower())
        if item is None:
            raise KvError(404, "CertificateNotFound", f"Deleted Certificate not found: {name}")
        return item

    async def _list_deleted(self, vault: Vault, request: web.Request,
                            params: dict[str, str]) -> web.Response:
        items = [self._deleted_json(vault, d, full=False)
                 for d in sorted(vault.deleted.values(), key=lambda d: d.cert.name.lower())]
        return self._page(vault, request, items)

    async def _get_deleted(self, vault: Vault, request: web.Request,
                           params: dict[str, str]) -> web.Response:
        return json_response(self._deleted_json(vault, self._deleted(vault, params["name"]),
                                                 full=True))

    async def _purge_deleted(self, vault: Vault, request: web.Request,
                             params: dict[str, str]) -> web.Response:
        item = self._deleted(vault, params["name"])
        if vault.properties.get("enablePurgeProtection"):
            raise KvError(403, "Forbidden", 'Operation "purge" is not enabled for this vault.')
        del vault.deleted[item.cert.name.lower()]
        return web.Response(status=204)

    async def _recover_deleted(self, vault: Vault, request: web.Request,
                               params: dict[str, str]) -> web.Response:
        item = self._deleted(vault, params["name"])
        cert = item.cert
        del vault.deleted[cert.name.lower()]
        vault.certificates[cert.name.lower()] = cert
        current = cert.versions[-1] if cert.versions else None
        return json_response(self._bundle(vault, cert, current))

    # -- data plane: certificate-backed secrets ---------------------------------------------

    async def _list_secrets(self, vault: Vault, request: web.Request,
                            params: dict[str, str]) -> web.Response:
        items = [self._secret_item(vault, c, c.versions[-1], versioned=False)
                 for c in sorted(vault.certificates.values(), key=lambda c: c.name.lower())
                 if c.versions]
        return self._page(vault, request, items)

    async def _list_secret_versions(self, vault: Vault, request: web.Request,
                                    params: dict[str, str]) -> web.Response:
        cert = vault.certificates.get(params["name"].lower())
        if cert is None or not cert.versions:
            raise _not_found("secret", params["name"])
        items = [self._secret_item(vault, cert, v, versioned=True) for v in cert.versions]
        return self._page(vault, request, items)

    def _secret_item(self, vault: Vault, cert: Certificate, v: CertVersion,
                     versioned: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": f"{vault.uri}secrets/{cert.name}" + (f"/{v.version}" if versioned else ""),
            "attributes": self._attributes(vault, v), "contentType": v.content_type,
            "managed": True}
        if v.tags:
            out["tags"] = v.tags
        return out

    async def _get_secret(self, vault: Vault, request: web.Request,
                          params: dict[str, str]) -> web.Response:
        name, version = params["name"], params.get("version") or ""
        cert = vault.certificates.get(name.lower())
        found = None
        if cert is not None:
            found = cert.versions[-1] if not version and cert.versions else \
                cert.version(version) if version else None
        if cert is None or found is None:
            raise _not_found("secret", f"{name}/{version}" if version else name)
        if not found.enabled:
            raise KvError(403, "Forbidden", "Operation get is not allowed on a disabled secret.",
                          inner="SecretDisabled")
        return json_response(self._secret(vault, cert, found))

    # -- lifetime: auto-renewal and expiry events --------------------------------------------

    def _publish(self, vault: Vault, cert: Certificate, v: CertVersion, event_type: str) -> None:
        self.events.publish_system_event(
            vault.id, event_type, subject=cert.name,
            data={"Id": f"{vault.uri}certificates/{cert.name}/{v.version}",
                  "VaultName": vault.name, "ObjectType": "Certificate",
                  "ObjectName": cert.name, "Version": v.version,
                  "NBF": kvcerts.unix(v.nbf), "EXP": kvcerts.unix(v.exp)})

    async def check_lifetimes(self) -> None:
        """Apply due AutoRenew actions and raise due expiry events (idempotent)."""
        async with self._lock:
            now = self.platform.now()
            for vault in list(self.vaults.values()):
                for cert in list(vault.certificates.values()):
                    await self._check_certificate(vault, cert, now)

    async def _check_certificate(self, vault: Vault, cert: Certificate, now: dt.datetime
                                 ) -> None:
        if not cert.versions:
            return
        current = cert.versions[-1]
        due: list[tuple[dt.datetime, str]] = [(current.exp - NEAR_EXPIRY, EVENT_NEAR),
                                              (current.exp, EVENT_EXPIRED)]
        renew_at = kvcerts.renewal_time(cert.policy, current.nbf, current.exp)
        if renew_at is not None and cert.policy["issuer"]["name"] == "Self":
            due.append((renew_at, "renew"))
        for when, what in sorted(due):
            if when > now or (current.version, what) in cert.fired:
                continue
            cert.fired.add((current.version, what))
            if what != "renew":
                self._publish(vault, cert, current, what)
                continue
            if cert.pending is not None and cert.pending.status == "inProgress":
                continue
            await self._renew(vault, cert)
            return

    async def _renew(self, vault: Vault, cert: Certificate) -> None:
        """What Key Vault does for an AutoRenew action: a new version from the policy."""
        spec = kvcerts.x509_spec(cert.policy)
        key = await self._key_for(cert, cert.policy)
        if vault.certificates.get(cert.name.lower()) is not cert:
            return
        op = PendingOp(version=uuid.uuid4().hex, issuer="Self", key=key,
                       csr=kvcerts.build_csr(key, spec), enabled=True, tags={},
                       created=self._now())
        cert.pending = op
        self._complete(vault, cert, op, kvcerts.self_sign(key, spec, self.platform.now()), ())

    # -- for Cloud Services --------------------------------------------------------------

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
        vault = next((v for v in self.vaults.values() if v.port == port), None)
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


def _check_policies(policies: Any, fail: Callable[..., web.HTTPBadRequest]) -> None:
    """Access policy entries as the resource provider accepts them (ARM 400 otherwise)."""
    if not isinstance(policies, list):
        raise fail("An invalid value was provided for 'accessPolicies'.")
    for entry in policies:
        if not isinstance(entry, dict) or not GUID.match(str(entry.get("tenantId", ""))) \
                or not GUID.match(str(entry.get("objectId", ""))) \
                or not isinstance(entry.get("permissions"), dict) \
                or not all(isinstance(v, list) for v in entry["permissions"].values()):
            raise fail("An invalid value was provided for 'accessPolicies'.")


def _policy_key(entry: dict[str, Any]) -> tuple[str, str]:
    return str(entry["objectId"]).lower(), str(entry.get("applicationId") or "").lower()


def _apply_policy_change(policies: list[dict[str, Any]], change: dict[str, Any], kind: str
                         ) -> list[dict[str, Any]]:
    given = {k: [str(p) for p in v] for k, v in change["permissions"].items()}
    out: list[dict[str, Any]] = []
    found = False
    for entry in policies:
        if _policy_key(entry) != _policy_key(change):
            out.append(entry)
            continue
        found = True
        current = {k: list(v) for k, v in (entry.get("permissions") or {}).items()}
        if kind == "replace":
            current = given
        for section, perms in given.items():
            have = current.get(section, [])
            if kind == "add":
                current[section] = have + [p for p in perms
                                           if p.lower() not in {h.lower() for h in have}]
            elif kind == "remove":
                current[section] = [h for h in have
                                    if h.lower() not in {p.lower() for p in perms}]
        if kind != "remove" or any(current.values()):
            out.append({**entry, "permissions": current})
    if not found and kind != "remove":
        out.append({**change, "permissions": given})
    return out


def _region(location: str) -> str:
    return location.replace(" ", "").lower()


def _decode_skip(token: str) -> int:
    if not token:
        return 0
    with contextlib.suppress(ValueError, TypeError, KeyError):
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return max(0, int(data["NextMarker"]))
    raise _bad("The $skiptoken parameter is invalid.")


def _merge(base: dict[str, Any], patch: Any) -> dict[str, Any]:
    """A policy PATCH: sections given replace the keys they name; lists are replaced."""
    if not isinstance(patch, dict):
        raise _bad("The certificate policy must be a JSON object.")
    out = dict(base)
    for key, value in patch.items():
        if value is None or key == "id":
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **{k: v for k, v in value.items() if v is not None}}
        else:
            out[key] = value
    return out


def _section(body: dict[str, Any], name: str) -> dict[str, Any]:
    """An optional JSON object member of a request body (400 if it is not an object)."""
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"The property '{name}' must be a JSON object.")
    return dict(value)


def _secret_value(key: PrivateKey | None, leaf: x509.Certificate,
                  chain: tuple[x509.Certificate, ...], content_type: str) -> str:
    if content_type == kvcerts.PEM:
        return kvcerts.export_pem(key, leaf, chain)
    return kvcerts.b64(kvcerts.export_pfx(key, leaf, chain))
