"""Key Vault's control plane, through ARM: ``Microsoft.KeyVault/vaults`` with the
resource provider's checks, access policies (in the vault body and through
``accessPolicies/{add|replace|remove}``) and the RBAC switch. Creating a vault binds its
HTTPS listener (in the stack's reserved port range) served by the data plane; deleting it
closes the listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from emulators.arm import RG_PROVIDERS, ArmRequest, ResourceRoutes
from emulators.core import error_response, json_response
from emulators.keyvault.dataplane import DataPlane
from emulators.keyvault.lifetime import Lifetime
from emulators.keyvault.model import (
    GUID,
    POLICY_KINDS,
    VAULT_NAME,
    VAULT_TYPE,
    KvError,
    Vault,
    region,
)
from emulators.keyvault.state import State


class Vaults:
    """The ``Microsoft.KeyVault/vaults`` routes and the vault listeners they open."""

    def __init__(self, state: State, dataplane: DataPlane, lifetime: Lifetime) -> None:
        self.state = state
        self.platform = state.wiring.platform
        self.arm = state.wiring.arm
        self.dataplane = dataplane
        self.lifetime = lifetime
        self.arm.resources(ResourceRoutes(
            RG_PROVIDERS + VAULT_TYPE, "vaultName", list=self._list_vaults,
            list_all=self._list_vaults, get=self._get_vault, put=self._put_vault,
            patch=self._patch_vault, delete=self._delete_vault,
            actions=(("PUT", "accessPolicies/{operationKind}", self._update_access_policies),)))

    def reset(self) -> None:
        """Forget every vault and close their listeners (reset runs inside the loop)."""
        ports = {v.port for v in self.state.vaults.values()}
        self.state.vaults.clear()
        for port in ports:
            asyncio.get_running_loop().create_task(self._close_listener(port))

    async def _close_listener(self, port: int) -> None:
        for runner in list(self.platform.runners):
            if any(isinstance(a, tuple) and a[1] == port for a in runner.addresses):
                self.platform.runners.remove(runner)
                await runner.cleanup()

    def _vault_for(self, req: ArmRequest) -> Vault:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        name = req.params["vaultName"]
        vault = self.state.vaults.get(name.lower())
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
        existing = self.state.vaults.get(name.lower())
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
            if region(existing.location) != region(location):
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
            return await self.dataplane.dispatch(vault, request)

        app.router.add_route("*", "/{tail:.*}", dispatch)
        vault.port = await self._serve_vault(app)
        vault.properties = self._properties(props, vault.port)
        self.state.vaults[name.lower()] = vault
        self.lifetime.ensure_ticker()
        return json_response(vault.resource(), 201)

    async def _serve_vault(self, app: web.Application) -> int:
        """Bind a vault's listener, within ``ports`` when the stack reserved a range."""
        if self.state.wiring.ports is None:
            return await self.platform.serve(app, tls=True)
        taken = {v.port for v in self.state.vaults.values()}
        for port in self.state.wiring.ports:
            if port in taken:
                continue
            with contextlib.suppress(OSError):  # another process holds it: try the next
                return await self.platform.serve(app, tls=True, port=port)
        raise KvError(503, "ServiceUnavailable",
                      f"the local stack has no free vault port left in {self.state.wiring.ports}")

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
        del self.state.vaults[vault.name.lower()]
        await self._close_listener(vault.port)
        return web.Response(status=200)

    async def _list_vaults(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        rg = req.params.get("resourceGroup")
        if rg is not None:
            self.arm.require_rg(req)
        items = [v.resource() for v in self.state.vaults.values()
                 if rg is None or v.resource_group.lower() == rg.lower()]
        return self.arm.page(req, items)


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

