"""Cloud Services (extended support): the ``Microsoft.Compute/cloudServices`` provider.

THEORY OF OPERATION

The product rotates certificates by re-PUTting a cloud service, so this emulator is about
the PUT: it refuses, synchronously and in Azure's words, every model that the real
platform refuses before it starts work, and it then plays the long-running operation the
SDK polls. The checks run in a fixed order, and a refused PUT stores nothing:

1. an operation on the service is still running -> 409 ``Conflict`` (DELETE, update
   domain walks and restarts too);
2. ``packageUrl`` is missing on a create (an update without it keeps the deployed package,
   as the Update-AzCloudService recording shows), or is not an absolute https URL with a
   query (its SAS): ``InvalidParameter`` "The value of parameter packageUrl is invalid.",
   no ``target``, before the configuration is looked at; ``configuration`` and
   ``configurationUrl`` are both missing;
3. the .cscfg is not well-formed, is not a ``ServiceConfiguration`` in the cscfg namespace,
   or its Role names differ from ``roleProfile.roles[].name``;
4. an ``osProfile.secrets`` certificate is not a versioned secret URL, does not exist, is
   disabled, or sits in a vault that is not ``sourceVault.id`` or not enabled for
   deployment (asked of the Key Vault emulator through ``find_secret``);
5. a cscfg ``Certificate@thumbprint`` has no certificate in ``osProfile.secrets``;
6. the package cannot be downloaded from storage with the SAS the client gave (the
   platform really GETs it from Azurite) or is empty.

An accepted PUT answers 201 (create) or 200 (update) with the resource in ``Creating`` /
``Updating``, ``Azure-AsyncOperation`` at ``.../locations/{loc}/CsOperations/{id}`` and
``x-ms-async-operation-timeout``, and no ``Retry-After`` (clients poll at their own
interval). Actions (DELETE, ``restart``, an update domain walk) answer 202 with no body,
``Azure-AsyncOperation`` and a ``Location`` with ``monitor=true``. The operation ends
``update_seconds`` of emulated time later (a timer, the clock hook and every request
settle due operations): ``Succeeded``, or ``Failed`` when a test armed a failure through
the admin API (the resource keeps the new model, in provisioning state ``Failed``).

Role instances (``{role}_IN_{i}``, ``roleProfile`` capacity of each role) are spread over
``min(5, largest capacity)`` update domains by index. Each instance records the model
version whose configuration it runs. An ``Auto``/``Simultaneous`` update moves every
instance when its operation succeeds; a ``Manual`` one moves none: each update domain must
then be walked, in order, with ``PUT updateDomains/{n}``, and until then the instance
view shows the instance as ``ProvisioningState/updating`` with the version it runs.

Role states: a running instance is ``RoleState/RoleStateStarted`` (the recordings). An
instance that has just taken a new configuration (an update, a walk, ``start``) settles
for ``settle_seconds`` of emulated time (admin setting, 0 by default): ``RoleStateBusy``
for the first half, then ``RoleStateStarting`` (states of the CSES states page, in the
recorded ``RoleState/RoleState<State>`` form). ``POST poweroff`` (CloudServices_PowerOff:
"resources are still attached and you are getting charged", i.e. stopped-allocated) and
``POST start`` are actions like ``restart``; a powered-off service, or one created with
``startCloudService: false``, shows ``PowerState/stopped`` and ``RoleStateStopped``, and an
update leaves it stopped. A test may arm a status code for the instances that the next
model-changing operation touches (``POST /cloudservices/instances-next``): the code
replaces that instance's ``ProvisioningState/…`` or ``RoleState/…`` status until a later
operation gives the instance a new configuration. No recording shows a failed instance,
so the test names the code; the emulator does not make one up.

``PATCH`` (CloudServices_Update) changes only ``tags``, replacing the whole set as ARM's
PATCH does: 409 while an operation runs, otherwise an operation of the same length that
leaves the model, its version, the role instances and the provisioning state it ends in
(a ``Failed`` service stays ``Failed``) alone; Azure's behaviour there is not documented.

Azure RBAC (through ``Arm.authorize``, on resource groups where the caller holds a custom
role; see :mod:`emulators.authorization`): a PUT or PATCH needs
``Microsoft.Compute/cloudServices/write`` on the service and, as ARM's linked access check,
``Microsoft.Network/publicIPAddresses/join/action`` on each public IP and
``Microsoft.Network/virtualNetworks/subnets/join/action`` on each subnet its
``networkProfile`` references, and ``Microsoft.KeyVault/vaults/deploy/action`` on each
``osProfile.secrets`` source vault; a walk ``…/updateDomains/write``, a restart
``…/restart/action``, a DELETE ``…/delete``. Their operations' polls are then checked as
``Microsoft.Compute/locations/CsOperations/read``. Reads are not checked.

A resource is rendered as the recordings show it: ``packageUrl``, ``configurationUrl``
and extensions' ``protectedSettings`` are never returned; the platform's defaults are
filled in when the model is accepted (``osProfile.secrets: []``, ``networkProfile.slotType:
Production``, each extension's ``rolesAppliedTo: ["*"]``), an extension's
``provisioningState`` follows the service's, an empty extension list is dropped once the
operation has ended; ``location`` is normalised (``EastUS2EUAP`` -> ``eastus2euap``);
``tags`` is left out when there are none; ``systemData`` holds only ``createdAt`` and
``lastModifiedAt``. Read-only fields in a PUT body are ignored; every other property is
kept verbatim. State is in memory and cleared by the platform reset.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import hashlib
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.etree.ElementTree import Element, ParseError

from aiohttp import web
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_xml

from emulators.arm import CS_OPERATIONS, Arm, ArmRequest, Operation, operation_time, system_time
from emulators.blobs import Blobs
from emulators.core import Platform, error_response, json_response
from emulators.keyvault import KeyVault

PROVIDER = "Microsoft.Compute"
RESOURCE_TYPE = "Microsoft.Compute/cloudServices"
CSCFG_NAMESPACE = "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration"
MAX_CSCFG_CHARS = 1 << 20
MAX_UPDATE_DOMAINS = 5
SDK_VERSION = "2.9.6496.3"  # what the spec's instance-view example reports
WRITE_ONLY = ("packageUrl", "configurationUrl")
READ_ONLY = ("provisioningState", "uniqueId")
SECRET_EXTENSION_SETTINGS = ("protectedSettings",)  # accepted, never returned
IN_PROGRESS = ("Creating", "Updating", "Deleting")
INVALID_PACKAGE_URL = "The value of parameter packageUrl is invalid."
CONFLICT_MESSAGE = (
    "The request failed due to conflict with a concurrent request. To resolve it, please "
    "refer to https://aka.ms/activitylog to get more details on the conflicting requests."
)
THUMBPRINT_MESSAGE = (
    "The thumbprints specified in the CSCFG do not have corresponding certificates in "
    "osProfile.secrets. Add the missing certificates in osProfile.secrets. Missing "
    "thumbprints: {missing}. To understand more about how to use KeyVault for certificates, "
    "please follow the documentation at https://aka.ms/cses-kv"
)
# ARM's token buckets per subscription (2024 limits): capacity, refill per second.
RATE_LIMITS = {"reads": (250, 25.0), "writes": (200, 10.0), "deletes": (200, 10.0)}

ArmHandler = Callable[[ArmRequest], Awaitable[web.StreamResponse]]
AdminRoute = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


class ArmError(Exception):
    """A refusal in ARM's error envelope; handlers raise it and ``_guard`` renders it."""

    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target

    def response(self) -> web.Response:
        extra = {"target": self.target} if self.target else {}
        return error_response(self.status, self.code, self.message, None, **extra)


def _invalid(message: str, target: str | None = None) -> ArmError:
    return ArmError(400, "InvalidParameter", message, target)


def _missing(name: str) -> ArmError:
    """The Compute RP's wording for an absent required property."""
    return _invalid(f"Required parameter '{name}' is missing (null).", name)


@dataclass(frozen=True)
class Failure:
    """The error an armed operation failure ends with."""

    code: str
    message: str


@dataclass(frozen=True)
class CscfgRole:
    name: str
    instance_count: int | None
    thumbprints: tuple[str, ...]  # uppercase, in document order


@dataclass(frozen=True)
class RoleSpec:
    """One ``roleProfile.roles[]`` entry as the platform sizes it."""

    name: str
    sku: dict[str, Any]
    count: int


@dataclass(frozen=True)
class PackageFetch:
    """What the platform downloaded for the last accepted PUT (shown by the admin API)."""

    url: str  # without the SAS query
    size: int
    sha256: str


@dataclass(frozen=True)
class Draft:
    """A PUT body that passed every check, ready to be committed."""

    location: str
    tags: dict[str, Any]
    zones: list[Any] | None
    properties: dict[str, Any]
    roles: tuple[RoleSpec, ...]
    package: PackageFetch | None  # None: an update that kept the deployed package


@dataclass
class Instance:
    role: str
    index: int
    applied: int  # model version whose configuration this instance runs
    settling_until: dt.datetime | None = None  # Busy, then Starting, until then
    forced: str | None = None  # a status code armed by a test (instances-next)

    @property
    def name(self) -> str:
        return f"{self.role}_IN_{self.index}"


@dataclass
class Pending:
    """The one operation a cloud service may have in flight."""

    op: Operation
    kind: str  # create | update | delete | walk | tags
    deadline: dt.datetime
    roles: tuple[RoleSpec, ...] = ()
    update_domain: int = -1
    state_after: str = "Succeeded"  # a tags change ends in the state the service had


@dataclass
class Service:
    resource_group: str
    name: str
    location: str
    tags: dict[str, Any]
    zones: list[Any] | None
    properties: dict[str, Any]
    roles: tuple[RoleSpec, ...]
    package: PackageFetch
    created_at: dt.datetime
    modified_at: dt.datetime
    state: str
    unique_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    private_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    version: int = 1  # bumped by every accepted PUT
    target: int = 0  # the version instances should run (set when a PUT succeeds)
    instances: list[Instance] = field(default_factory=list)
    pending: Pending | None = None
    powered_off: bool = False  # PowerOff (stopped-allocated) or startCloudService: false

    def update_domains(self) -> int:
        counts = [i.index + 1 for i in self.instances] or [r.count for r in self.roles]
        return max(1, min(MAX_UPDATE_DOMAINS, max(counts, default=1)))

    def update_domain_of(self, instance: Instance) -> int:
        return instance.index % self.update_domains()

    def next_update_domain(self) -> int:
        """The lowest update domain still running an older configuration, or -1."""
        behind = [self.update_domain_of(i) for i in self.instances if i.applied < self.target]
        return min(behind, default=-1)


@dataclass
class _Bucket:
    """An ARM token bucket, only reported in ``x-ms-ratelimit-remaining-*`` headers."""

    capacity: int
    refill: float
    level: float
    stamp: dt.datetime

    def take(self, now: dt.datetime) -> int:
        elapsed = max(0.0, (now - self.stamp).total_seconds())
        self.level = min(float(self.capacity), self.level + elapsed * self.refill) - 1
        self.stamp = now
        return max(0, int(self.level))


def _strip_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _versioned_secret_url(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    segments = parts.path.strip("/").split("/")
    return (
        parts.scheme == "https"
        and bool(parts.netloc)
        and len(segments) == 3
        and segments[0].lower() == "secrets"
        and all(segments)
        and not parts.path.endswith("/")
    )


def _sas_url(url: Any) -> bool:
    """An absolute https URL with a query (the SAS). A package URL that lost its ``?``
    (azure-powershell issue 23803) is what Azure refuses as an invalid packageUrl."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    return parts.scheme.lower() == "https" and bool(parts.netloc) and bool(parts.query)


def _ids(value: Any, *path: str) -> list[str]:
    """The strings at ``path`` below ``value``, walking every list on the way."""
    if not path:
        return [value] if isinstance(value, str) and value else []
    if isinstance(value, list):
        return [found for item in value for found in _ids(item, *path)]
    return _ids(value.get(path[0]), *path[1:]) if isinstance(value, dict) else []


def linked_access(properties: Any) -> tuple[tuple[str, str], ...]:
    """(action, resource id) of every resource a cloud service model references that ARM's
    linked access check covers: its public IPs and subnets, and its secrets' vaults."""
    frontends = ("networkProfile", "loadBalancerConfigurations", "properties",
                 "frontendIpConfigurations", "properties")
    found = [("Microsoft.Network/publicIPAddresses/join/action", i)
             for i in _ids(properties, *frontends, "publicIPAddress", "id")]
    found += [("Microsoft.Network/virtualNetworks/subnets/join/action", i)
              for i in _ids(properties, *frontends, "subnet", "id")]
    found += [("Microsoft.KeyVault/vaults/deploy/action", i)
              for i in _ids(properties, "osProfile", "secrets", "sourceVault", "id")]
    return tuple(dict.fromkeys(found))


def _with_defaults(properties: dict[str, Any]) -> dict[str, Any]:
    """An accepted model with the platform's defaults, as the recordings return them:
    ``upgradeMode: Auto``, ``osProfile.secrets: []``, ``networkProfile.slotType:
    Production``, each extension's ``rolesAppliedTo: ["*"]`` (its read-only
    ``provisioningState`` is dropped: it is rendered from the service's state)."""
    kept = copy.deepcopy(properties)
    kept.setdefault("upgradeMode", "Auto")
    profile = kept.get("osProfile")
    if not isinstance(profile, dict):
        profile = kept["osProfile"] = {}
    if profile.get("secrets") is None:
        profile["secrets"] = []
    network = kept.get("networkProfile")
    if isinstance(network, dict):
        network.setdefault("slotType", "Production")
    for extension in _extensions(kept):
        settings = extension.get("properties")
        if isinstance(settings, dict):
            settings.pop("provisioningState", None)
            settings.setdefault("rolesAppliedTo", ["*"])
    return kept


def _extensions(properties: dict[str, Any]) -> list[dict[str, Any]]:
    profile = properties.get("extensionProfile")
    extensions = profile.get("extensions") if isinstance(profile, dict) else None
    return [e for e in extensions if isinstance(e, dict)] if isinstance(extensions, list) else []


def _rendered(properties: dict[str, Any], state: str) -> dict[str, Any]:
    """The stored model as a GET returns it: no protected settings; each extension in the
    service's provisioning state; an empty extension list only while the operation that
    set it runs (the Update-AzCloudService recording echoes it, then drops it)."""
    out = copy.deepcopy(properties)
    for extension in _extensions(out):
        settings = extension.get("properties")
        if isinstance(settings, dict):
            for secret in SECRET_EXTENSION_SETTINGS:
                settings.pop(secret, None)
            settings["provisioningState"] = state
    if "extensionProfile" in out and not _extensions(out) and state not in IN_PROGRESS:
        del out["extensionProfile"]
    return out


def parse_cscfg(text: str) -> tuple[CscfgRole, ...]:
    """The roles of a .cscfg, parsed safely (no DTDs, entities or external references)."""
    if len(text) > MAX_CSCFG_CHARS:
        raise _invalid(f"The service configuration exceeds {MAX_CSCFG_CHARS} characters.",
                       "configuration")
    try:
        root: Element = parse_xml(text.lstrip("\ufeff"), forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise _invalid(f"The service configuration is not well-formed XML: {exc}.",
                       "configuration") from exc
    if root.tag != f"{{{CSCFG_NAMESPACE}}}ServiceConfiguration":
        raise _invalid(
            "The root element of the service configuration must be ServiceConfiguration in "
            f"namespace '{CSCFG_NAMESPACE}'; found '{root.tag}'.", "configuration")
    ns = {"sc": CSCFG_NAMESPACE}
    roles: list[CscfgRole] = []
    for role in root.findall("sc:Role", ns):
        name = role.get("name")
        if not name:
            raise _invalid("A Role element of the service configuration has no name.",
                           "configuration")
        if any(r.name == name for r in roles):
            raise _invalid(f"The service configuration defines role '{name}' twice.",
                           "configuration")
        instances = role.find("sc:Instances", ns)
        count_text = instances.get("count", "") if instances is not None else ""
        thumbprints = tuple(
            cert.get("thumbprint", "").strip().upper()
            for cert in role.findall("sc:Certificates/sc:Certificate", ns)
            if cert.get("thumbprint", "").strip()
        )
        count = int(count_text) if count_text.isdigit() else None
        roles.append(CscfgRole(name, count, thumbprints))
    return tuple(roles)


def _role_specs(properties: dict[str, Any], cscfg: tuple[CscfgRole, ...]) -> tuple[RoleSpec, ...]:
    """``roleProfile.roles`` checked against the cscfg, with each role's instance count."""
    profile = properties.get("roleProfile")
    roles = profile.get("roles") if isinstance(profile, dict) else None
    if not isinstance(roles, list) or not roles:
        raise _missing("roleProfile")
    specs: list[RoleSpec] = []
    counts = {r.name: r.instance_count for r in cscfg}
    for role in roles:
        name = role.get("name") if isinstance(role, dict) else None
        if not isinstance(name, str) or not name:
            raise _missing("roleProfile.roles.name")
        sku = role.get("sku") if isinstance(role.get("sku"), dict) else {}
        capacity = sku.get("capacity")
        if capacity is not None and (not isinstance(capacity, int) or capacity < 0):
            raise _invalid(f"The capacity of role '{name}' must be a non-negative integer.",
                           "roleProfile.roles.sku.capacity")
        count = capacity if capacity is not None else counts.get(name) or 1
        specs.append(RoleSpec(name, sku, count))
    in_profile = [s.name for s in specs]
    in_cscfg = [r.name for r in cscfg]
    only_cscfg = [n for n in in_cscfg if n not in in_profile]
    only_profile = [n for n in in_profile if n not in in_cscfg]
    if only_cscfg or only_profile or len(set(in_profile)) != len(in_profile):
        raise _invalid(
            "The roles in the service configuration (.cscfg) must match roleProfile.roles. "
            f"Roles only in the .cscfg: [{', '.join(only_cscfg)}]. "
            f"Roles only in roleProfile: [{', '.join(only_profile)}].", "roleProfile")
    return tuple(specs)


class CloudServices:
    def __init__(
        self, platform: Platform, arm: Arm, vaults: KeyVault, blobs: Blobs, update_seconds: float
    ) -> None:
        self.platform = platform
        self.arm = arm
        self.vaults = vaults
        self.blobs = blobs
        self.default_update_seconds = update_seconds
        self.update_seconds = update_seconds
        self.settle_seconds = 0.0
        self.services: dict[tuple[str, str], Service] = {}
        self.armed_failures: dict[tuple[str, str], Failure] = {}
        self.armed_states: dict[tuple[str, str], str] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._buckets: dict[str, _Bucket] = {}
        platform.reset_hooks.append(self._reset)
        platform.clock_hooks.append(self._on_clock)
        base = ("/subscriptions/{subscription}/resourceGroups/{resourceGroup}"
                "/providers/Microsoft.Compute/cloudServices")
        cs = base + "/{cloudService}"
        routes: list[tuple[str, str, ArmHandler]] = [
            ("GET", "/subscriptions/{subscription}/providers/Microsoft.Compute/cloudServices",
             self._list_all),
            ("GET", base, self._list),
            ("PUT", cs, self._put),
            ("PATCH", cs, self._patch),
            ("GET", cs, self._get),
            ("DELETE", cs, self._delete),
            ("POST", cs + "/restart", self._restart),
            ("POST", cs + "/poweroff", self._power_off),
            ("POST", cs + "/start", self._start),
            ("GET", cs + "/instanceView", self._instance_view),
            ("GET", cs + "/roles", self._list_roles),
            ("GET", cs + "/roles/{role}", self._get_role),
            ("GET", cs + "/roleInstances", self._list_instances),
            ("GET", cs + "/roleInstances/{instance}", self._get_instance),
            ("GET", cs + "/roleInstances/{instance}/instanceView", self._get_instance_view),
            ("GET", cs + "/updateDomains", self._list_update_domains),
            ("GET", cs + "/updateDomains/{updateDomain}", self._get_update_domain),
            ("PUT", cs + "/updateDomains/{updateDomain}", self._walk_update_domain),
        ]
        for method, pattern, handler in routes:
            arm.route(method, pattern, self._guard(handler))

    # -- plumbing ----------------------------------------------------------------------

    def _reset(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.services.clear()
        self.armed_failures.clear()
        self.armed_states.clear()
        self._buckets.clear()
        self.update_seconds = self.default_update_seconds
        self.settle_seconds = 0.0

    async def _on_clock(self) -> None:
        self._settle()

    def _guard(self, handler: ArmHandler) -> ArmHandler:
        """Settle due operations first, render ArmError, add ARM's response headers."""

        async def run(req: ArmRequest) -> web.StreamResponse:
            self._settle()
            try:
                response = await handler(req)
            except ArmError as exc:
                response = exc.response()
            kind = {"GET": "reads", "DELETE": "deletes"}.get(req.method, "writes")
            capacity, refill = RATE_LIMITS[kind]
            bucket = self._buckets.setdefault(
                kind, _Bucket(capacity, refill, float(capacity), self.platform.now()))
            request_id = str(uuid.uuid4())
            response.headers[f"x-ms-ratelimit-remaining-subscription-{kind}"] = str(
                bucket.take(self.platform.now()))
            response.headers["x-ms-request-id"] = request_id
            response.headers["x-ms-correlation-request-id"] = request_id
            return response

        return run

    def _key(self, req: ArmRequest) -> tuple[str, str]:
        return req.params["resourceGroup"].lower(), req.params["cloudService"].lower()

    def _service(self, req: ArmRequest) -> Service:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        service = self.services.get(self._key(req))
        if service is None:
            raise ArmError(
                404, "ResourceNotFound",
                f"The Resource '{RESOURCE_TYPE}/{req.params['cloudService']}' under resource "
                f"group '{req.params['resourceGroup']}' was not found. For more details please "
                "go to https://aka.ms/ARMResourceNotFoundFix")
        return service

    def _refuse_if_busy(self, key: tuple[str, str]) -> None:
        service = self.services.get(key)
        if service is not None and service.pending is not None:
            raise ArmError(409, "Conflict", CONFLICT_MESSAGE)

    def _authorize(self, req: ArmRequest, action: str, scope: str,
                   linked: tuple[tuple[str, str], ...] = ()) -> bool:
        """RBAC for a write on a service (see the module docstring); whether it was checked."""
        return self.arm.authorize(req, f"{RESOURCE_TYPE}/{action}", scope, linked)

    @staticmethod
    def _service_path(req: ArmRequest) -> str:
        path = req.http.path.rstrip("/")
        marker = "/cloudservices/"
        start = path.lower().index(marker) + len(marker)
        end = path.find("/", start)
        return path if end < 0 else path[:end]

    def _resource_id(self, service: Service) -> str:
        return (f"/subscriptions/{self.platform.subscription_id}/resourceGroups/"
                f"{service.resource_group}/providers/{RESOURCE_TYPE}/{service.name}")

    def _begin(self, service: Service, kind: str, state: str, **extra: Any) -> Operation:
        """Start ``kind`` on ``service``; it ends ``update_seconds`` of emulated time later."""
        op = self.arm.start_operation(PROVIDER, service.location, CS_OPERATIONS)
        deadline = self.platform.now() + dt.timedelta(seconds=self.update_seconds)
        service.pending = Pending(op, kind, deadline, **extra)
        service.state = state
        self._schedule((service.resource_group.lower(), service.name.lower()),
                       self.update_seconds)
        return op

    def _schedule(self, key: tuple[str, str], seconds: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(max(0.0, seconds), self._tick, key)

    def _tick(self, key: tuple[str, str]) -> None:
        """Timer callback: settle, and re-arm if the timer fired before the deadline."""
        self._timers.pop(key, None)
        self._settle()
        service = self.services.get(key)
        if service is not None and service.pending is not None:
            left = (service.pending.deadline - self.platform.now()).total_seconds()
            self._schedule(key, left + 0.005)

    def _settle(self) -> None:
        now = self.platform.now()
        for key, service in list(self.services.items()):
            if service.pending is not None and service.pending.deadline <= now:
                self._finish(key, service)

    def _finish(self, key: tuple[str, str], service: Service) -> None:
        pending = service.pending
        assert pending is not None
        service.pending = None
        end = operation_time(self.platform.now())
        if pending.kind == "delete":
            del self.services[key]
            pending.op.finish(end)
            return
        failure = self.armed_failures.pop(key, None)
        if failure is not None:
            service.state = "Failed"
            pending.op.finish(end, {"code": failure.code, "message": failure.message})
            return
        service.state = pending.state_after
        moved: list[Instance] = []  # instances that took a new configuration
        if pending.kind == "walk":
            for instance in service.instances:
                if service.update_domain_of(instance) == pending.update_domain:
                    instance.applied = service.target
                    moved.append(instance)
        elif pending.kind in ("poweroff", "start"):
            service.powered_off = pending.kind == "poweroff"
            moved = [] if service.powered_off else list(service.instances)
        elif pending.kind not in ("tags", "restart"):
            manual = (pending.kind == "update"
                      and str(service.properties.get("upgradeMode", "")).lower() == "manual")
            before = {i.name.lower(): i for i in service.instances}
            service.target = service.version
            service.instances = [
                Instance(role.name, index, service.version)
                for role in pending.roles for index in range(role.count)
            ]
            for instance in service.instances:
                previous = before.get(instance.name.lower())
                if manual and previous is not None:  # keeps running what it ran
                    instance.applied = previous.applied
                    instance.settling_until, instance.forced = (previous.settling_until,
                                                                previous.forced)
                else:
                    moved.append(instance)
        self._settle_instances(key, service, moved)
        pending.op.finish(end)

    def _settle_instances(self, key: tuple[str, str], service: Service,
                          moved: list[Instance]) -> None:
        """Instances that took a new configuration settle (a stopped service's stay
        stopped); an armed status code lands on them."""
        if not moved:
            return
        until = self.platform.now() + dt.timedelta(seconds=self.settle_seconds)
        forced = self.armed_states.pop(key, None)
        for instance in moved:
            instance.settling_until = None if service.powered_off else until
            instance.forced = forced

    # -- bodies ------------------------------------------------------------------------

    def _body(self, service: Service) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self._resource_id(service),
            "name": service.name,
            "type": RESOURCE_TYPE,
            "location": service.location,
        }
        if service.tags:
            body["tags"] = service.tags
        if service.zones is not None:
            body["zones"] = service.zones
        body["properties"] = {
            **_rendered(service.properties, service.state),
            "provisioningState": service.state,
            "uniqueId": service.unique_id,
        }
        body["systemData"] = {"createdAt": system_time(service.created_at),
                              "lastModifiedAt": system_time(service.modified_at)}
        return body

    def _instance_codes(self, service: Service, instance: Instance) -> tuple[str, str]:
        """The instance's ``ProvisioningState/…`` and ``RoleState/…`` codes, as the cloud
        service's ``statusesSummary`` counts them."""
        current = instance.applied >= service.target
        provisioning = f"ProvisioningState/{'succeeded' if current else 'updating'}"
        if service.powered_off:
            role = "RoleState/RoleStateStopped"
        elif instance.settling_until is not None and self.platform.now() < instance.settling_until:
            left = (instance.settling_until - self.platform.now()).total_seconds()
            role = f"RoleState/RoleState{'Busy' if left > self.settle_seconds / 2 else 'Starting'}"
        else:
            role = "RoleState/RoleStateStarted"
        if instance.forced is not None:
            if instance.forced.lower().startswith("provisioningstate/"):
                provisioning = instance.forced
            else:
                role = instance.forced
        return provisioning, role

    def _instance_statuses(self, service: Service, instance: Instance) -> list[dict[str, Any]]:
        """A running instance shows only its ``RoleState`` (the role instance view
        recording); one still on an older configuration (a Manual update whose update
        domain is not walked yet) also shows ``ProvisioningState/updating``, first, and
        one whose provisioning state a test armed shows that."""
        provisioning, role = self._instance_codes(service, instance)
        statuses: list[dict[str, Any]] = []
        if instance.applied < service.target:
            statuses.append({
                "code": provisioning, "level": "Info", "displayStatus": "Updating",
                "message": (f"The role instance runs configuration version {instance.applied};"
                            f" the cloud service is at version {service.target}."),
            })
        elif not provisioning.lower().endswith("/succeeded"):
            statuses.append({"code": provisioning, "level": "Error",
                             "displayStatus": provisioning.split("/", 1)[1], "message": ""})
        statuses.append({"code": role, "level": "Info", "displayStatus": role.split("/", 1)[1],
                         "message": ""})
        return statuses

    def _role_instance_view(self, service: Service, instance: Instance) -> dict[str, Any]:
        return {
            "platformUpdateDomain": service.update_domain_of(instance),
            "platformFaultDomain": instance.index % 2,
            "privateId": service.private_id,
            "statuses": self._instance_statuses(service, instance),
        }

    def _role_instance(self, service: Service, instance: Instance, expand: bool) -> dict[str, Any]:
        instance_id = f"{self._resource_id(service)}/roleInstances/{instance.name}"
        sku = next((r.sku for r in service.roles if r.name == instance.role), {})
        nic = {"id": f"{instance_id}/networkInterfaces/nic1"}
        properties: dict[str, Any] = {"networkProfile": {"networkInterfaces": [nic]}}
        if expand:
            properties["instanceView"] = self._role_instance_view(service, instance)
        return {
            "name": instance.name,
            "id": instance_id,
            "type": f"{RESOURCE_TYPE}/roleInstances",
            "location": service.location,
            "sku": {k: sku[k] for k in ("name", "tier") if k in sku},
            "properties": properties,
        }

    def _role(self, service: Service, role: RoleSpec) -> dict[str, Any]:
        return {
            "name": role.name,
            "id": f"{self._resource_id(service)}/roles/{role.name}",
            "type": f"{RESOURCE_TYPE}/roles",
            "location": service.location,
            "sku": role.sku,
            "properties": {"uniqueId": f"{service.unique_id}:{role.name}"},
        }

    def _update_domain(self, service: Service, number: int) -> dict[str, Any]:
        return {"name": str(number),
                "id": f"{self._resource_id(service)}/updateDomains/{number}"}

    # -- the PUT and its checks --------------------------------------------------------

    async def _put(self, req: ArmRequest) -> web.StreamResponse:
        self.arm.check_subscription(req)
        body = await req.resource_body()
        checked = self._authorize(req, "write", self._service_path(req),
                                  linked_access(body.get("properties")))
        self.arm.require_rg(req)
        key = self._key(req)
        self._refuse_if_busy(key)
        draft = await self._check(body, self.services.get(key))
        self._refuse_if_busy(key)  # another PUT may have committed while we downloaded
        now = self.platform.now()
        existing = self.services.get(key)
        if existing is None:
            if draft.package is None:  # the service went away while we checked
                raise _missing("packageUrl")
            service = Service(
                resource_group=req.params["resourceGroup"], name=req.params["cloudService"],
                location=draft.location, tags=draft.tags, zones=draft.zones,
                properties=draft.properties, roles=draft.roles, package=draft.package,
                created_at=now, modified_at=now, state="Creating",
                powered_off=draft.properties.get("startCloudService") is False,
            )
            self.services[key] = service
        else:
            service = existing
            service.location, service.tags, service.zones = draft.location, draft.tags, draft.zones
            service.properties, service.roles = draft.properties, draft.roles
            service.package = draft.package or service.package
            service.version += 1
            service.modified_at = now
        op = self._begin(service, "create" if existing is None else "update",
                         "Creating" if existing is None else "Updating", roles=draft.roles)
        op.checked = checked
        return json_response(self._body(service), 201 if existing is None else 200,
                             self.arm.async_headers(op, req.api_version, write=True))

    async def _patch(self, req: ArmRequest) -> web.StreamResponse:
        """CloudServices_Update: the body is a ``CloudServiceUpdate``, which holds only
        ``tags``; they replace the whole tag set (other members are ignored). Like a PUT it
        answers 200 in ``Updating`` with an operation, and 409 while another one runs."""
        checked = self._authorize(req, "write", self._service_path(req))
        service = self._service(req)
        self._refuse_if_busy(self._key(req))
        body = await req.json_body()
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent",
                           "The request content must be a JSON object.")
        tags = body.get("tags")
        if tags is not None:
            if not isinstance(tags, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
                raise _invalid("The tags must be an object of string names and string values.",
                               "tags")
            service.tags = dict(tags)
        service.modified_at = self.platform.now()
        op = self._begin(service, "tags", "Updating", state_after=service.state)
        op.checked = checked
        return json_response(self._body(service), 200,
                             self.arm.async_headers(op, req.api_version, write=True))

    async def _check(self, body: dict[str, Any], existing: Service | None) -> Draft:
        """Every platform check of a PUT body, in Azure's order; raise ArmError on refusal.

        ``packageUrl`` may be left out of an update (``existing``): the deployed package
        stays. Its form is checked before the configuration is looked at."""
        location = str(body["location"]).replace(" ", "").lower()
        properties = body.get("properties")
        if not isinstance(properties, dict):
            raise _missing("properties")
        package_url = properties.get("packageUrl")
        if package_url is None or package_url == "":
            if existing is None:
                raise _missing("packageUrl")
            package_url = None
        elif not _sas_url(package_url):
            raise ArmError(400, "InvalidParameter", INVALID_PACKAGE_URL)
        configuration = properties.get("configuration")
        configuration_url = properties.get("configurationUrl")
        if not (isinstance(configuration, str) and configuration) and not (
                isinstance(configuration_url, str) and configuration_url):
            raise _invalid("Required parameter 'configuration' or 'configurationUrl' is missing "
                           "(null).", "configuration")
        if not (isinstance(configuration, str) and configuration):
            configuration = (await self._download(str(configuration_url), "configurationUrl"))[
                0].decode("utf-8-sig", errors="replace")
        cscfg = parse_cscfg(configuration)
        roles = _role_specs(properties, cscfg)
        thumbprints = self._check_secrets(properties)
        missing = [f"{role.name}|{thumb}" for role in cscfg for thumb in role.thumbprints
                   if thumb not in thumbprints]
        if missing:
            raise _invalid(THUMBPRINT_MESSAGE.format(missing=", ".join(dict.fromkeys(missing))))
        package: PackageFetch | None = None
        if package_url is not None:
            data, fetched = await self._download(str(package_url), "packageUrl")
            if not data:
                raise _invalid(f"The package at {fetched} is empty.", "packageUrl")
            package = PackageFetch(fetched, len(data), hashlib.sha256(data).hexdigest())
        kept = _with_defaults(
            {k: v for k, v in properties.items() if k not in WRITE_ONLY + READ_ONLY})
        kept["configuration"] = configuration
        tags = body.get("tags")
        zones = body.get("zones")
        return Draft(
            location=location,
            tags=tags if isinstance(tags, dict) else {},
            zones=zones if isinstance(zones, list) else None,
            properties=kept,
            roles=roles,
            package=package,
        )

    def _check_secrets(self, properties: dict[str, Any]) -> dict[str, str]:
        """Thumbprint -> certificateUrl of every osProfile secret, each one checked."""
        profile = properties.get("osProfile")
        groups = profile.get("secrets") if isinstance(profile, dict) else None
        found: dict[str, str] = {}
        for group in groups if isinstance(groups, list) else []:
            source = group.get("sourceVault") if isinstance(group, dict) else None
            vault_id = source.get("id") if isinstance(source, dict) else None
            if not isinstance(vault_id, str) or not vault_id:
                raise _missing("osProfile.secrets.sourceVault.id")
            certificates = group.get("vaultCertificates")
            for certificate in certificates if isinstance(certificates, list) else []:
                url = certificate.get("certificateUrl") if isinstance(certificate, dict) else None
                if not _versioned_secret_url(url):
                    raise _invalid(
                        f"{url} is not a valid versioned Key Vault Secret URL. It should be in "
                        "the format https://<vaultEndpoint>/secrets/<secretName>/<secretVersion>.",
                        "certificateUrl")
                facts = self.vaults.find_secret(str(url))
                if facts is None:
                    raise ArmError(400, "KeyVaultSecretDoesNotExist",
                                   f"The Key Vault secret referenced with the URL {url} does not "
                                   "exist.", "certificateUrl")
                if (not facts.vault_enabled_for_deployment
                        or facts.vault_arm_id.lower() != vault_id.lower()):
                    raise ArmError(
                        400, "KeyVaultAccessForbidden",
                        f"Key Vault {url} either has not been enabled for deployment or the vault "
                        f"id provided, {vault_id}, does not match the Key Vault's true resource "
                        "id.")
                if not facts.enabled:
                    raise ArmError(400, "KeyVaultSecretDisabled",
                                   f"The Key Vault secret referenced with the URL {url} is "
                                   "disabled.", "certificateUrl")
                found[facts.thumbprint.upper()] = str(url)
        return found

    async def _download(self, url: str, target: str) -> tuple[bytes, str]:
        """GET ``url`` as the platform does (only its own SAS); the body and the bare URL."""
        bare = _strip_query(url)
        if urlsplit(url).scheme.lower() != "https" or not urlsplit(url).netloc:
            raise _invalid(f"The {target} '{bare}' must be an absolute https URL.", target)
        result = await self.blobs.fetch(url)
        if result.status != 200:
            kind = "package" if target == "packageUrl" else "configuration"
            code = "PackageUriForbidden" if target == "packageUrl" else "ConfigurationUriForbidden"
            # Azurite answers a forged or expired SAS with AuthorizationFailure where Azure
            # Storage says AuthenticationFailed; report what Azure would have seen.
            storage_code = result.error_code or "AuthenticationFailed"
            if storage_code == "AuthorizationFailure":
                storage_code = "AuthenticationFailed"
            raise ArmError(
                400, code,
                f"The client does not have the permission to access the {kind} url {bare}. "
                f"Error:{storage_code}", target)
        return result.body, bare

    # -- other operations --------------------------------------------------------------

    async def _get(self, req: ArmRequest) -> web.StreamResponse:
        return json_response(self._body(self._service(req)))

    async def _delete(self, req: ArmRequest) -> web.StreamResponse:
        self.arm.check_subscription(req)
        checked = self._authorize(req, "delete", self._service_path(req))
        self.arm.require_rg(req)
        key = self._key(req)
        service = self.services.get(key)
        if service is None:
            return web.Response(status=204)
        self._refuse_if_busy(key)
        op = self._begin(service, "delete", "Deleting")
        op.checked = checked
        return web.Response(status=202,
                            headers=self.arm.async_headers(op, req.api_version, monitor=True))

    async def _restart(self, req: ArmRequest) -> web.StreamResponse:
        """CloudServices_Restart: ``{"roleInstances": [names or "*"]}``; the model, the
        instances' configuration and the provisioning state are left alone."""
        checked = self._authorize(req, "restart/action", self._service_path(req))
        service = self._service(req)
        body = await req.json_body()
        names = body.get("roleInstances") if isinstance(body, dict) else None
        if not isinstance(names, list) or not names or not all(
                isinstance(n, str) and n for n in names):
            raise _missing("roleInstances")
        known = {i.name.lower() for i in service.instances}
        for name in names:
            if name != "*" and name.lower() not in known:
                raise self._child_not_found(req, "roleInstances", name)
        self._refuse_if_busy(self._key(req))
        op = self._begin(service, "restart", service.state, state_after=service.state)
        op.checked = checked
        return web.Response(status=202,
                            headers=self.arm.async_headers(op, req.api_version, monitor=True))

    async def _power_off(self, req: ArmRequest) -> web.StreamResponse:
        """CloudServices_PowerOff: the instances stop, their resources stay allocated."""
        return await self._power(req, "poweroff")

    async def _start(self, req: ArmRequest) -> web.StreamResponse:
        """CloudServices_Start: a powered-off service's instances start (and settle)."""
        return await self._power(req, "start")

    async def _power(self, req: ArmRequest, kind: str) -> web.StreamResponse:
        """202 with ``Location`` (``monitor=true``) and ``Azure-AsyncOperation``, as the
        Stop-AzCloudService recording answers; the model and the state are left alone."""
        service = self._service(req)
        self._refuse_if_busy(self._key(req))
        op = self._begin(service, kind, service.state, state_after=service.state)
        return web.Response(status=202,
                            headers=self.arm.async_headers(op, req.api_version, monitor=True))

    async def _list(self, req: ArmRequest) -> web.StreamResponse:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        group = req.params["resourceGroup"].lower()
        return self.arm.page(req, [self._body(s) for (rg, _), s in self.services.items()
                                   if rg == group])

    async def _list_all(self, req: ArmRequest) -> web.StreamResponse:
        self.arm.check_subscription(req)
        return self.arm.page(req, [self._body(s) for s in self.services.values()])

    async def _instance_view(self, req: ArmRequest) -> web.StreamResponse:
        service = self._service(req)
        started = not service.powered_off
        power = f"PowerState/{'started' if started else 'stopped'}"
        # Azure's order: every ProvisioningState code, then PowerState, then RoleState.
        codes = [self._instance_codes(service, i) for i in service.instances]
        summary = Counter(c[0] for c in codes)
        summary.update(power for _ in codes)
        summary.update(c[1] for c in codes)
        time = operation_time(service.modified_at)
        state = service.state.lower()
        current = service.next_update_domain()
        top = service.update_domains() - 1
        return json_response({
            "roleInstance": {"statusesSummary": [{"code": c, "count": n}
                                                 for c, n in summary.items()]},
            "sdkVersion": SDK_VERSION,
            "privateIds": [service.private_id],
            "statuses": [
                {"code": f"ProvisioningState/{state}",
                 "level": "Error" if state == "failed" else "Info",
                 "displayStatus": f"Provisioning {state}"
                 if state in ("succeeded", "failed") else service.state, "time": time},
                {"code": power, "level": "Info",
                 "displayStatus": "Started" if started else "Stopped", "time": time},
                {"code": f"CurrentUpgradeDomain/{current}", "level": "Info",
                 "displayStatus": f"Current Upgrade Domain of cloud service is {current}."},
                {"code": f"MaxUpgradeDomain/{top}", "level": "Info",
                 "displayStatus": f"Max Upgrade Domain of cloud service is {top}."},
            ],
        })

    async def _list_roles(self, req: ArmRequest) -> web.StreamResponse:
        service = self._service(req)
        return self.arm.page(req, [self._role(service, r) for r in service.roles])

    async def _get_role(self, req: ArmRequest) -> web.StreamResponse:
        service = self._service(req)
        for role in service.roles:
            if role.name.lower() == req.params["role"].lower():
                return json_response(self._role(service, role))
        raise self._child_not_found(req, "roles", req.params["role"])

    def _child_not_found(self, req: ArmRequest, kind: str, name: str) -> ArmError:
        return ArmError(
            404, "ResourceNotFound",
            f"The Resource '{RESOURCE_TYPE}/{req.params['cloudService']}/{kind}/{name}' under "
            f"resource group '{req.params['resourceGroup']}' was not found. For more details "
            "please go to https://aka.ms/ARMResourceNotFoundFix")

    def _instance(self, req: ArmRequest) -> tuple[Service, Instance]:
        service = self._service(req)
        wanted = req.params["instance"].lower()
        for instance in service.instances:
            if instance.name.lower() == wanted:
                return service, instance
        raise self._child_not_found(req, "roleInstances", req.params["instance"])

    async def _list_instances(self, req: ArmRequest) -> web.StreamResponse:
        service = self._service(req)
        expand = req.http.query.get("$expand", "").lower() == "instanceview"
        return self.arm.page(req, [self._role_instance(service, i, expand)
                                   for i in service.instances])

    async def _get_instance(self, req: ArmRequest) -> web.StreamResponse:
        service, instance = self._instance(req)
        expand = req.http.query.get("$expand", "").lower() == "instanceview"
        return json_response(self._role_instance(service, instance, expand))

    async def _get_instance_view(self, req: ArmRequest) -> web.StreamResponse:
        service, instance = self._instance(req)
        return json_response(self._role_instance_view(service, instance))

    def _update_domain_number(self, req: ArmRequest, service: Service) -> int:
        text = req.params["updateDomain"]
        if not text.isdigit() or int(text) >= service.update_domains():
            raise self._child_not_found(req, "updateDomains", text)
        return int(text)

    async def _list_update_domains(self, req: ArmRequest) -> web.StreamResponse:
        service = self._service(req)
        return self.arm.page(req, [self._update_domain(service, n)
                                   for n in range(service.update_domains())])

    async def _get_update_domain(self, req: ArmRequest) -> web.StreamResponse:
        service = self._service(req)
        return json_response(self._update_domain(service, self._update_domain_number(req, service)))

    async def _walk_update_domain(self, req: ArmRequest) -> web.StreamResponse:
        """Apply the latest configuration to one update domain; domains go in order."""
        checked = self._authorize(req, "updateDomains/write", req.http.path.rstrip("/"))
        service = self._service(req)
        number = self._update_domain_number(req, service)
        self._refuse_if_busy(self._key(req))
        upcoming = service.next_update_domain()
        if upcoming not in (-1, number):
            raise _invalid(f"Update domain {number} cannot be walked now: update domain "
                           f"{upcoming} is the next one to update.", "updateDomain")
        op = self._begin(service, "walk", "Updating", update_domain=number)
        op.checked = checked
        return web.Response(status=202,
                            headers=self.arm.async_headers(op, req.api_version, monitor=True))

    # -- admin (tests only; not an Azure contract) -------------------------------------

    def admin_routes(self) -> list[AdminRoute]:
        """``/cloudservices`` state, operation length, and armed operation failures."""

        async def show(request: web.Request) -> web.Response:
            return json_response({
                "update_seconds": self.update_seconds,
                "settle_seconds": self.settle_seconds,
                "services": [
                    {"resourceGroup": s.resource_group, "name": s.name,
                     "provisioningState": s.state, "modelVersion": s.version,
                     "targetVersion": s.target, "nextUpdateDomain": s.next_update_domain(),
                     "package": {"url": s.package.url, "size": s.package.size,
                                 "sha256": s.package.sha256},
                     "poweredOff": s.powered_off,
                     "instances": {i.name: {"updateDomain": s.update_domain_of(i),
                                            "appliedVersion": i.applied,
                                            "statuses": list(self._instance_codes(s, i))}
                                   for i in s.instances}}
                    for s in self.services.values()
                ],
            })

        async def settings(request: web.Request) -> web.Response:
            """``update_seconds`` (absent or null: the stack's default) and
            ``settle_seconds`` (if given; null: 0)."""
            body = await _admin_json(request)
            chosen: dict[str, float] = {}
            for name, default in (("update_seconds", self.default_update_seconds),
                                  ("settle_seconds", 0.0)):
                if name == "settle_seconds" and name not in body:
                    continue
                seconds = body.get(name)
                if seconds is None:
                    chosen[name] = default
                elif isinstance(seconds, (int, float)) and not isinstance(seconds, bool) \
                        and seconds >= 0:
                    chosen[name] = float(seconds)
                else:
                    return json_response({"error": f"{name} must be a number >= 0 or null"},
                                         400)
            self.update_seconds = chosen["update_seconds"]
            self.settle_seconds = chosen.get("settle_seconds", self.settle_seconds)
            return json_response({"update_seconds": self.update_seconds,
                                  "settle_seconds": self.settle_seconds})

        async def fail_next(request: web.Request) -> web.Response:
            body = await _admin_json(request)
            fields = [body.get(k) for k in ("resourceGroup", "name", "code", "message")]
            if not all(isinstance(v, str) and v for v in fields):
                return json_response(
                    {"error": "resourceGroup, name, code and message are required strings"}, 400)
            group, name, code, message = (str(v) for v in fields)
            self.armed_failures[(group.lower(), name.lower())] = Failure(code, message)
            return json_response({"armed": len(self.armed_failures)}, 201)

        async def instances_next(request: web.Request) -> web.Response:
            body = await _admin_json(request)
            fields = [body.get(k) for k in ("resourceGroup", "name", "code")]
            if not all(isinstance(v, str) and v for v in fields):
                return json_response(
                    {"error": "resourceGroup, name and code are required strings"}, 400)
            group, name, code = (str(v) for v in fields)
            if not code.lower().startswith(("provisioningstate/", "rolestate/")):
                return json_response(
                    {"error": "code must be a ProvisioningState/... or RoleState/... code"}, 400)
            self.armed_states[(group.lower(), name.lower())] = code
            return json_response({"armed": len(self.armed_states)}, 201)

        return [
            ("GET", "/cloudservices", show),
            ("POST", "/cloudservices/settings", settings),
            ("POST", "/cloudservices/fail-next", fail_next),
            ("POST", "/cloudservices/instances-next", instances_next),
        ]


async def _admin_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body
