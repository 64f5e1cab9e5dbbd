"""Azure RBAC for the local stack: ``Microsoft.Authorization/roleAssignments`` through ARM,
and the question "does this principal hold that data action on that resource?".

Theory of operation: a role assignment is created with ``PUT {scope}/providers/
Microsoft.Authorization/roleAssignments/{guid}`` at a subscription, a resource group, a
resource (a vault) or an object below it, naming a role definition by its id
(``/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}``) and a
principal. It applies to its scope and everything below it, as in Azure. Role definitions
are the built-in ones this stack knows, with their real GUIDs and data actions (copied as
data from ``articles/role-based-access-control/built-in-roles/security.md``); another
emulator may ``register`` more. ``allows(principal, resource, data_action)`` matches the
data action against each applicable role's ``dataActions`` (``*`` wildcards,
case-insensitive) minus its ``notDataActions``. Assignments apply at once (Azure may take
minutes to propagate one; nothing here waits). Deny assignments, conditions and ARM
(control-plane) actions are not evaluated here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from emulators.arm import Arm, ArmRequest
from emulators.core import Platform, error_response, json_response

GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
ASSIGNMENT_TYPE = "Microsoft.Authorization/roleAssignments"
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")


@dataclass(frozen=True)
class RoleDefinition:
    guid: str
    name: str
    data_actions: tuple[str, ...]
    not_data_actions: tuple[str, ...] = ()

    def grants(self, data_action: str) -> bool:
        return any(_matches(p, data_action) for p in self.data_actions) and not any(
            _matches(p, data_action) for p in self.not_data_actions
        )


# The built-in Key Vault roles (GUIDs and data actions as the built-in roles page lists).
BUILT_IN = (
    RoleDefinition("00482a5a-887f-4fb3-b363-3b7fe8e74483", "Key Vault Administrator",
                   ("Microsoft.KeyVault/vaults/*",)),
    RoleDefinition("db79e9a7-68ee-4b58-9aeb-b90e7c24fcba", "Key Vault Certificate User",
                   ("Microsoft.KeyVault/vaults/certificates/read",
                    "Microsoft.KeyVault/vaults/secrets/getSecret/action",
                    "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
                    "Microsoft.KeyVault/vaults/keys/read")),
    RoleDefinition("a4417e6f-fecd-4de8-b567-7b0420556985", "Key Vault Certificates Officer",
                   ("Microsoft.KeyVault/vaults/certificatecas/*",
                    "Microsoft.KeyVault/vaults/certificates/*",
                    "Microsoft.KeyVault/vaults/certificatecontacts/write")),
    RoleDefinition("f25e0fa2-a7c8-4377-a976-54943a77a395", "Key Vault Contributor", ()),
    RoleDefinition("21090545-7ca7-4776-b22c-e363652d74d2", "Key Vault Reader",
                   ("Microsoft.KeyVault/vaults/*/read",
                    "Microsoft.KeyVault/vaults/secrets/readMetadata/action")),
    RoleDefinition("b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "Key Vault Secrets Officer",
                   ("Microsoft.KeyVault/vaults/secrets/*",)),
    RoleDefinition("4633458b-17de-408a-b874-0445c86b69e6", "Key Vault Secrets User",
                   ("Microsoft.KeyVault/vaults/secrets/getSecret/action",
                    "Microsoft.KeyVault/vaults/secrets/readMetadata/action")),
)
ROLE_IDS = {role.name: role.guid for role in BUILT_IN}


def _matches(pattern: str, action: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, action, re.IGNORECASE) is not None


def _within(scope: str, resource: str) -> bool:
    """Whether ``resource`` is ``scope`` or below it (segment-wise, case-insensitive)."""
    scope, resource = scope.rstrip("/").lower(), resource.rstrip("/").lower()
    return scope == "" or resource == scope or resource.startswith(scope + "/")


@dataclass(frozen=True)
class Assignment:
    id: str
    name: str
    scope: str
    role: RoleDefinition
    role_definition_id: str
    principal_id: str
    principal_type: str
    created: str
    created_by: str

    def resource(self) -> dict[str, Any]:
        return {
            "properties": {
                "roleDefinitionId": self.role_definition_id,
                "principalId": self.principal_id,
                "principalType": self.principal_type,
                "scope": self.scope,
                "condition": None,
                "conditionVersion": None,
                "createdOn": self.created,
                "updatedOn": self.created,
                "createdBy": self.created_by,
                "updatedBy": self.created_by,
                "delegatedManagedIdentityResourceId": None,
                "description": None,
            },
            "id": self.id,
            "type": ASSIGNMENT_TYPE,
            "name": self.name,
        }


class Authorization:
    """Role assignments by id, and the data-action check the data planes ask for."""

    def __init__(self, platform: Platform, arm: Arm) -> None:
        self.platform = platform
        self.arm = arm
        self.roles: dict[str, RoleDefinition] = {r.guid: r for r in BUILT_IN}
        self.assignments: dict[str, Assignment] = {}
        platform.reset_hooks.append(self.assignments.clear)
        sub = "/subscriptions/{subscription}"
        rg = sub + "/resourceGroups/{resourceGroup}"
        resource = rg + "/providers/{namespace}/{type}/{name}"
        suffix = "/providers/Microsoft.Authorization/roleAssignments/{assignment}"
        for scope in (sub, rg, resource, resource + "/{childType}/{childName}"):
            arm.route("PUT", scope + suffix, self._put)
            arm.route("GET", scope + suffix, self._get)
            arm.route("DELETE", scope + suffix, self._delete)

    def register(self, role: RoleDefinition) -> None:
        """Make a role definition (e.g. a custom role another emulator created) assignable."""
        self.roles[role.guid.lower()] = role

    def allows(self, principal_id: str, resource_id: str, data_action: str) -> bool:
        return any(
            a.principal_id.lower() == principal_id.lower()
            and _within(a.scope, resource_id)
            and a.role.grants(data_action)
            for a in self.assignments.values()
        )

    # -- ARM -----------------------------------------------------------------------------

    def _scope(self, req: ArmRequest) -> str:
        """The scope part of the request path, with the subscription checked."""
        self.arm.check_subscription(req)
        if "resourceGroup" in req.params:
            self.arm.require_rg(req)
        path = req.http.path.rstrip("/")
        return path[: path.lower().rindex("/providers/microsoft.authorization/")]

    async def _put(self, req: ArmRequest) -> web.Response:
        scope = self._scope(req)
        name = req.params["assignment"]
        if not GUID.match(name):
            return error_response(
                400, "InvalidRoleAssignmentId",
                f"The role assignment ID '{name}' is not valid. The role assignment ID must "
                "be a GUID.")
        body = await req.json_body()
        props = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(props, dict):
            return error_response(400, "InvalidRequestContent",
                                  "The request content must contain 'properties'.")
        role_id = str(props.get("roleDefinitionId") or "")
        guid = role_id.rstrip("/").rsplit("/", 1)[-1].lower()
        role = self.roles.get(guid)
        if role is None or "/providers/microsoft.authorization/roledefinitions/" \
                not in role_id.lower():
            return error_response(
                400, "RoleDefinitionDoesNotExist",
                f"The specified role definition with ID '{guid}' does not exist.")
        principal = str(props.get("principalId") or "")
        if not GUID.match(principal):
            return error_response(
                400, "InvalidPrincipalId",
                "A valid principal ID must be provided for role assignment.")
        principal_type = str(props.get("principalType") or "User")
        if principal_type not in PRINCIPAL_TYPES:
            return error_response(400, "InvalidPrincipalType",
                                  f"The principal type '{principal_type}' is not valid.")
        key = f"{scope}/providers/{ASSIGNMENT_TYPE}/{name}".lower()
        for other in self.assignments.values():
            same = (other.principal_id.lower(), other.role.guid, other.scope.lower()) == (
                principal.lower(), role.guid, scope.lower())
            if same and other.id.lower() != key:
                return error_response(409, "RoleAssignmentExists",
                                      "The role assignment already exists.")
        existing = self.assignments.get(key)
        if existing is not None and (existing.role.guid, existing.principal_id.lower()) != (
                role.guid, principal.lower()):
            return error_response(
                400, "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be "
                "updated.")
        caller = str(req.claims.get("oid") or "")
        assignment = Assignment(
            id=f"{scope}/providers/{ASSIGNMENT_TYPE}/{name}", name=name, scope=scope,
            role=role, role_definition_id=role_id, principal_id=principal,
            principal_type=principal_type,
            created=self.platform.now().isoformat().replace("+00:00", "Z"), created_by=caller)
        self.assignments[key] = existing or assignment
        return json_response(self.assignments[key].resource(), 201)

    def _find(self, req: ArmRequest) -> Assignment | None:
        scope = self._scope(req)
        return self.assignments.get(
            f"{scope}/providers/{ASSIGNMENT_TYPE}/{req.params['assignment']}".lower())

    async def _get(self, req: ArmRequest) -> web.Response:
        found = self._find(req)
        if found is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": {
                    "code": "RoleAssignmentNotFound",
                    "message": f"The role assignment '{req.params['assignment']}' is not "
                               "found."}}),
                content_type="application/json")
        return json_response(found.resource())

    async def _delete(self, req: ArmRequest) -> web.Response:
        found = self._find(req)
        if found is None:
            return web.Response(status=204)
        del self.assignments[found.id.lower()]
        return json_response(found.resource())
