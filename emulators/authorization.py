"""Azure RBAC for the local stack: ``Microsoft.Authorization/roleAssignments`` and custom
``roleDefinitions`` through ARM, and the questions "does this principal hold that data
action on that resource?" (the data planes) and "that action on that scope?" (ARM).

Theory of operation: a role assignment is created with ``PUT {scope}/providers/
Microsoft.Authorization/roleAssignments/{guid}`` at a subscription, a resource group, a
resource (a vault) or an object below it, naming a role definition by its id
(``/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}``) and a
principal. It applies to its scope and everything below it, as in Azure. Role definitions
are the built-in ones this stack knows, with their real GUIDs and data actions (copied as
data from ``articles/role-based-access-control/built-in-roles/security.md``), plus custom
roles created with ``PUT /subscriptions/{sub}/providers/Microsoft.Authorization/
roleDefinitions/{guid}`` (``permissions[].actions``/``notActions``/``dataActions``, as
``infra/app/roles.bicep`` writes them) or ``register``-ed by another emulator.
``allows(principal, resource, data_action)`` matches the data action against each
applicable role's ``dataActions`` (``*`` wildcards, case-insensitive) minus its
``notDataActions``; ``allows_action`` does the same for control-plane ``actions``.

Control-plane checks are opt-in per resource group, so that stack tests unconcerned with
RBAC keep an all-powerful token: ARM (``Arm.authorize``, for cloud-service writes and their
operation polls) checks a principal's calls on a resource group only once that principal
holds a role with control-plane ``actions`` assigned at the group or on a resource in it.
From then on, every such call there needs its action, exactly as in Azure (the e2e worlds
assign the Bicep's custom roles, so the product runs with nothing more). Assignments apply
at once (Azure may take minutes to propagate one; nothing here waits). Deny assignments and
conditions are not evaluated.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from emulators.arm import RG_PROVIDERS, SUBSCRIPTION, Arm, ArmRequest, ResourceRoutes
from emulators.core import Platform, error_response, json_response

GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
ASSIGNMENT_TYPE = "Microsoft.Authorization/roleAssignments"
DEFINITION_TYPE = "Microsoft.Authorization/roleDefinitions"
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")


@dataclass(frozen=True)
class RoleDefinition:
    guid: str
    name: str
    data_actions: tuple[str, ...]
    not_data_actions: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()  # control plane
    not_actions: tuple[str, ...] = ()
    custom: bool = False

    def grants(self, data_action: str) -> bool:
        return any(_matches(p, data_action) for p in self.data_actions) and not any(
            _matches(p, data_action) for p in self.not_data_actions
        )

    def permits(self, action: str) -> bool:
        return any(_matches(p, action) for p in self.actions) and not any(
            _matches(p, action) for p in self.not_actions
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


def _resource_group(scope: str) -> str | None:
    """``/subscriptions/{s}/resourcegroups/{g}`` of a scope at or below a group, else None."""
    parts = scope.rstrip("/").lower().split("/")
    return "/".join(parts[:5]) if len(parts) >= 5 and parts[3] == "resourcegroups" else None


def _strings(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return tuple(value)


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
        self.definitions: dict[str, dict[str, Any]] = {}  # custom roles as ARM returns them
        self.assignments: dict[str, Assignment] = {}
        platform.reset_hooks.append(self._reset)
        arm.access = self
        rg = SUBSCRIPTION + "/resourceGroups/{resourceGroup}"
        resource = RG_PROVIDERS + "{namespace}/{type}/{name}"
        for scope in (SUBSCRIPTION, rg, resource, resource + "/{childType}/{childName}"):
            arm.resources(ResourceRoutes(
                scope + "/providers/Microsoft.Authorization/roleAssignments", "assignment",
                put=self._put, get=self._get, delete=self._delete))
        arm.resources(ResourceRoutes(
            SUBSCRIPTION + "/providers/Microsoft.Authorization/roleDefinitions", "definition",
            put=self._put_definition, get=self._get_definition, delete=self._delete_definition))

    def _reset(self) -> None:
        self.assignments.clear()
        self.definitions.clear()
        self.roles = {r.guid: r for r in BUILT_IN}

    def register(self, role: RoleDefinition) -> None:
        """Make a role definition (e.g. a custom role another emulator created) assignable."""
        self.roles[role.guid.lower()] = role

    def _held(self, principal_id: str, scope: str) -> list[Assignment]:
        """The principal's assignments that apply to ``scope`` (at it or a parent)."""
        return [a for a in self.assignments.values()
                if a.principal_id.lower() == principal_id.lower() and _within(a.scope, scope)]

    def allows(self, principal_id: str, resource_id: str, data_action: str) -> bool:
        return any(a.role.grants(data_action) for a in self._held(principal_id, resource_id))

    def enforced(self, principal_id: str, scope: str) -> bool:
        """Whether ARM checks ``principal_id``'s control-plane calls on ``scope``: once the
        principal holds a role with ``actions`` at the scope's resource group or below it
        (the stack's opt-in; see the module docstring)."""
        group = _resource_group(scope)
        return group is not None and any(
            a.principal_id.lower() == principal_id.lower()
            and a.role.actions
            and _resource_group(a.scope) == group
            for a in self.assignments.values()
        )

    def allows_action(self, principal_id: str, scope: str, action: str) -> bool:
        return any(a.role.permits(action) for a in self._held(principal_id, scope))

    # -- ARM -----------------------------------------------------------------------------

    async def _put_definition(self, req: ArmRequest) -> web.Response:
        """A custom role: ``properties.roleName``, ``type``, ``permissions`` and
        ``assignableScopes`` as the Bicep (``infra/app/roles.bicep``) sends them."""
        self.arm.check_subscription(req)
        name = req.params["definition"].lower()
        if not GUID.match(name):
            return error_response(400, "InvalidRoleDefinitionId",
                                  f"The role definition ID '{name}' is not valid.")
        body = await req.json_body()
        props = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(props, dict) or not props.get("roleName"):
            return error_response(400, "RoleDefinitionNameNullOrEmpty",
                                  "The role definition name cannot be null or empty.")
        scopes = _strings(props.get("assignableScopes"))
        if not scopes:
            return error_response(400, "InvalidAssignableScopes",
                                  "The role definition must have at least one assignable scope.")
        permissions = props.get("permissions")
        if not isinstance(permissions, list) or not permissions:
            return error_response(400, "InvalidRoleDefinitionPermissions",
                                  "The role definition must have permissions.")
        lists: dict[str, list[str]] = {k: [] for k in (
            "actions", "notActions", "dataActions", "notDataActions")}
        for permission in permissions:
            for key, found in lists.items():
                value = _strings((permission or {}).get(key, []))
                if value is None:
                    return error_response(400, "InvalidRoleDefinitionPermissions",
                                          f"The permissions '{key}' must be a list of strings.")
                found += value
        role = RoleDefinition(
            name, str(props["roleName"]), tuple(lists["dataActions"]),
            tuple(lists["notDataActions"]), tuple(lists["actions"]), tuple(lists["notActions"]),
            custom=True)
        self.register(role)
        created = name not in self.definitions
        self.definitions[name] = {
            "properties": {
                "roleName": role.name, "type": "CustomRole",
                "description": props.get("description") or "",
                "assignableScopes": list(scopes), "permissions": permissions,
            },
            "id": f"/subscriptions/{req.params['subscription']}/providers/{DEFINITION_TYPE}/{name}",
            "type": DEFINITION_TYPE,
            "name": name,
        }
        return json_response(self.definitions[name], 201 if created else 200)

    async def _get_definition(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        found = self.definitions.get(req.params["definition"].lower())
        if found is None:
            return error_response(404, "RoleDefinitionDoesNotExist",
                                  f"The specified role definition with ID "
                                  f"'{req.params['definition']}' does not exist.")
        return json_response(found)

    async def _delete_definition(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        name = req.params["definition"].lower()
        found = self.definitions.pop(name, None)
        if found is None:
            return web.Response(status=204)
        self.roles.pop(name, None)
        return json_response(found)

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
