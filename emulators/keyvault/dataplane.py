"""Each vault's data plane front door: authentication (Key Vault's 401 challenge and
wording per refusal), ``api-version``, case-insensitive routing, and authorization by the
vault's permission model (RBAC role assignments or access policies, Key Vault's 403 wording)
before a handler of :mod:`~emulators.keyvault.certificates`,
:mod:`~emulators.keyvault.issuance` or :mod:`~emulators.keyvault.secrets` runs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from emulators.keyvault.certificates import Certificates
from emulators.keyvault.issuance import Issuance
from emulators.keyvault.model import (
    ACCESS_HELP,
    AUTHORITY,
    CERT_CREATE,
    CERT_DELETE,
    CERT_GET,
    CERT_IMPORT,
    CERT_LIST,
    CERT_PURGE,
    CERT_RECOVER,
    CERT_UPDATE,
    OBJECT_NAME,
    SECRET_GET,
    SECRET_LIST,
    VAULT_RESOURCE,
    KvError,
    Permission,
    Unauthorized,
    Vault,
    bad,
    region,
)
from emulators.keyvault.secrets import Secrets
from emulators.keyvault.state import State
from emulators.tokens import (
    BadSignature,
    ExpiredToken,
    InvalidToken,
    NotYetValid,
    WrongAudience,
)

DataHandler = Callable[[Vault, web.Request, dict[str, str]], Awaitable[web.Response]]


class DataPlane:
    """Serves every vault's listener: checks a request, then routes it."""

    def __init__(self, state: State, certs: Certificates, issuance: Issuance,
                 secrets: Secrets) -> None:
        self.state = state
        self.platform = state.wiring.platform
        self.authorization = state.wiring.authorization
        self._routes: list[tuple[str, re.Pattern[str], DataHandler, Permission | None]] = []
        name, cert = r"(?P<name>[^/]+)", r"/certificates/(?P<name>[^/]+)"
        # Merge is authorized as ``create``: it completes the version ``create`` started.
        routes: tuple[tuple[str, str, DataHandler, Permission | None], ...] = (
            ("GET", r"/certificates/?", certs.list_certificates, CERT_LIST),
            ("*", r"/certificates/(?:contacts|issuers)(?:/.*)?", self._unsupported, None),
            ("GET", cert + r"/versions/?", certs.list_versions, CERT_LIST),
            ("GET", cert + r"/policy/?", certs.get_policy, CERT_GET),
            ("PATCH", cert + r"/policy/?", certs.update_policy, CERT_UPDATE),
            ("POST", cert + r"/pending/merge/?", issuance.merge, CERT_CREATE),
            ("GET", cert + r"/pending/?", issuance.get_pending, CERT_GET),
            ("PATCH", cert + r"/pending/?", issuance.cancel_pending, CERT_UPDATE),
            ("DELETE", cert + r"/pending/?", issuance.delete_pending, CERT_DELETE),
            ("POST", cert + r"/create/?", issuance.create, CERT_CREATE),
            ("POST", cert + r"/import/?", issuance.import_certificate, CERT_IMPORT),
            ("GET", cert + r"(?:/(?P<version>[^/]*))?", certs.get_certificate, CERT_GET),
            ("PATCH", cert + r"(?:/(?P<version>[^/]*))?", certs.update_certificate,
             CERT_UPDATE),
            ("DELETE", cert + r"/?", certs.delete_certificate, CERT_DELETE),
            ("GET", r"/deletedcertificates/?", certs.list_deleted, CERT_LIST),
            ("GET", rf"/deletedcertificates/{name}/?", certs.get_deleted, CERT_GET),
            ("DELETE", rf"/deletedcertificates/{name}/?", certs.purge_deleted, CERT_PURGE),
            ("POST", rf"/deletedcertificates/{name}/recover/?", certs.recover_deleted,
             CERT_RECOVER),
            ("GET", r"/secrets/?", secrets.list_secrets, SECRET_LIST),
            ("GET", rf"/secrets/{name}/versions/?", secrets.list_secret_versions, SECRET_LIST),
            ("GET", rf"/secrets/{name}(?:/(?P<version>[^/]*))?", secrets.get_secret, SECRET_GET),
        )
        for method, path, handler, permission in routes:
            self._routes.append(
                (method, re.compile(f"^{path}$", re.IGNORECASE), handler, permission))

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

    async def dispatch(self, vault: Vault, request: web.Request) -> web.StreamResponse:
        headers = {"x-ms-request-id": str(uuid.uuid4()),
                   "x-ms-keyvault-region": region(vault.location),
                   "x-ms-keyvault-service-version": "1.9.2000.1"}
        try:
            claims = self._authenticate(vault, request)
            if not request.query.get("api-version"):
                raise bad("The api-version parameter is missing.")
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
                    raise bad(f"The request URI contains an invalid name: {params['name']}")
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
        where = f"{vault.name};location={region(vault.location)}"
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
        raise bad("Certificate issuers and contacts are not implemented by the local Key "
                  "Vault emulator.")
