"""Cloud Services' vocabulary: constants, the ARM error it raises, the stored service with
its role instances and operation in flight, and the pure functions that render a model and
read the ids it references.
"""

from __future__ import annotations

import copy
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from emulators.arm import ArmRequest
from emulators.arm_operations import Operation
from emulators.core import error_response

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


def invalid(message: str, target: str | None = None) -> ArmError:
    return ArmError(400, "InvalidParameter", message, target)


def missing_property(name: str) -> ArmError:
    """The Compute RP's wording for an absent required property."""
    return invalid(f"Required parameter '{name}' is missing (null).", name)


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
class Bucket:
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


def strip_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def versioned_secret_url(url: Any) -> bool:
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


def sas_url(url: Any) -> bool:
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


def with_defaults(properties: dict[str, Any]) -> dict[str, Any]:
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


def rendered(properties: dict[str, Any], state: str) -> dict[str, Any]:
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

