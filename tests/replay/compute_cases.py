"""The Compute (cloud services) replay: fixtures, rewriting, and the comparison.

A case is one recorded or example interaction under ``tests/fixtures/azure/compute``. The
replay sends it to the local stack over raw HTTPS (a bearer token from the stack's
identity emulator, so status and headers are seen as the wire carries them), with the
recorded names, ids and placeholders rewritten to local ones: the subscription, a fresh
resource group and cloud service, ``{ServiceConfiguration}`` -> a generated .cscfg whose
roles match ``roleProfile``, ``{PackageUrl}`` -> a real package blob behind a
user-delegation SAS, Key Vault placeholders -> a real certificate the cscfg names by
thumbprint.

The comparison (``differences``) is strict where Azure is deterministic and blind where it
is not: the status exactly; the presence of ``Azure-AsyncOperation``, ``Location``,
``Retry-After`` and ``x-ms-async-operation-timeout`` and the form of their URLs; the body's
keys recursively, list lengths and order; every other value exactly, after GUIDs become
``<guid>``, times ``<time …>`` (their format kept: .NET's ``+00:00`` with seven digits, or
``Z``) and the ARM host ``<arm>``; ids case-insensitively (Azure upper-cases the resource
group in ids). Paged lists are followed to their end and compared as one list.

Where a spec example and the recordings disagree the recordings win (``as_recorded``):
examples echo the write-only ``packageUrl``, and the older ones leave out
``networkProfile.slotType`` and, in lists, ``systemData``, which every recorded body has.
Example headers are placeholders (``https://foo.com/operationstatus``) and are not compared.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from emulators.provision import Operator, cscfg

FIXTURES = Path(__file__).parents[1] / "fixtures" / "azure" / "compute"
ARM_SCOPE = "https://management.azure.com/.default"
COMPARED_HEADERS = ("Azure-AsyncOperation", "Location", "Retry-After",
                    "x-ms-async-operation-timeout")
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?")
HOST = re.compile(r"^https://[^/]+")
CLOUD_SERVICE = "Microsoft.Compute/cloudServices"
HOLD_SECONDS = 2.0  # how long an operation polled while InProgress runs


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # case-insensitive, as HTTP headers are
    body: Any


@dataclass(frozen=True)
class Interaction:
    """One recorded request and Azure's answer (``status`` may list an example's codes)."""

    id: str
    method: str
    path: str | None
    request: Any
    status: tuple[int, ...]
    headers: dict[str, str] | None  # None: not compared (spec example placeholders)
    body: Any
    query: dict[str, str] | None = None  # besides api-version
    operation_of: str | None = None  # a poll of the operation that interaction started
    monitor_of: str | None = None  # a GET of that interaction's Location (monitor=true)


@dataclass(frozen=True)
class Recording:
    name: str
    api_version: str
    names: dict[str, str]
    seed_from: str | None  # the interaction whose request or answer the seed PUT is made of
    seeded: bool  # False: the recording starts with no service
    interactions: tuple[Interaction, ...]

    def interaction(self, interaction_id: str) -> Interaction:
        return next(i for i in self.interactions if i.id == interaction_id)


def load_recording(name: str) -> Recording:
    data = json.loads((FIXTURES / "recordings" / f"{name}.json").read_text())
    return Recording(
        name, data["api_version"], data["names"], data.get("seed_from"),
        data.get("seeded", True),
        tuple(Interaction(
            id=i["id"], method=i["method"], path=i.get("path"), request=i.get("request"),
            status=(int(i["status"]),), headers=i["headers"], body=i.get("body"),
            query=i.get("query"), operation_of=i.get("operation_of"),
            monitor_of=i.get("monitor_of"))
            for i in data["interactions"]),
    )


def recording_cases() -> list[tuple[str, str]]:
    return [(path.stem, i["id"])
            for path in sorted((FIXTURES / "recordings").glob("*.json"))
            for i in json.loads(path.read_text())["interactions"]]


def load_example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "examples" / f"{name}.json").read_text())
    return data


def example_names() -> list[str]:
    return sorted(p.stem for p in (FIXTURES / "examples").glob("*.json"))


def swagger() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (FIXTURES / "swagger" / "cloudService-2024-11-04.json").read_text())["definitions"]
    return data


# -- rewriting ---------------------------------------------------------------------------


@dataclass
class Rewrite:
    """Recorded names and placeholders -> local ones: whole values first, then parts."""

    whole: dict[str, str] = field(default_factory=dict)
    parts: dict[str, str] = field(default_factory=dict)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, str):
            return value
        if value in self.whole:
            return self.whole[value]
        for old, new in sorted(self.parts.items(), key=lambda kv: -len(kv[0])):
            value = re.compile(re.escape(old), re.IGNORECASE).sub(new.replace("\\", "\\\\"),
                                                                  value)
        return value


def as_recorded(body: Any) -> Any:
    """An example's body as Azure's recordings show it (see the module docstring)."""
    out = copy.deepcopy(body)
    items = out.get("value") if isinstance(out, dict) and "value" in out else [out]
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("type") != CLOUD_SERVICE:
            continue
        properties = item.get("properties", {})
        properties.pop("packageUrl", None)
        if isinstance(properties.get("networkProfile"), dict):
            network = properties["networkProfile"]
            properties["networkProfile"] = {"slotType": "Production", **network}
        item.setdefault("systemData", {"createdAt": "2020-01-01T17:18:19.1234567Z",
                                       "lastModifiedAt": "2020-01-01T17:18:19.1234567Z"})
    return out


def seed_body(response: dict[str, Any], package_url: str,
              protected: str = "<PrivateConfig>replayed</PrivateConfig>") -> dict[str, Any]:
    """A PUT that yields ``response`` (a cloud service as Azure returned it): read-only
    members dropped, a package added, and protected settings for each extension (which
    the answer must not show)."""
    properties = {k: v for k, v in copy.deepcopy(response["properties"]).items()
                  if k not in ("provisioningState", "uniqueId")}
    properties["packageUrl"] = package_url
    for extension in (properties.get("extensionProfile") or {}).get("extensions", []):
        extension["properties"].pop("provisioningState", None)
        extension["properties"]["protectedSettings"] = protected
    body: dict[str, Any] = {"location": response["location"], "properties": properties}
    for key in ("tags", "zones"):
        if key in response:
            body[key] = response[key]
    return body


def role_names(body: dict[str, Any]) -> list[str]:
    return [str(r["name"]) for r in body["properties"]["roleProfile"]["roles"]]


# -- comparison --------------------------------------------------------------------------


def _time_token(match: re.Match[str]) -> str:
    fraction, zone = match.group(1) or "", match.group(2) or ""
    if zone == "Z" and 1 <= len(fraction) <= 7:
        return "<time Z>"
    if zone and zone != "Z" and len(fraction) == 7:
        return "<time offset .fffffff>"
    return f"<time {zone or 'local'} .{'f' * len(fraction)}>"


def normalise(value: str) -> str:
    return TIME.sub(_time_token, GUID.sub("<guid>", HOST.sub("<arm>", value)))


def differences(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """Every way ``actual`` differs from the recorded ``expected`` (empty: they match)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        out = [f"{where}: missing {k!r}" for k in expected if k not in actual]
        out += [f"{where}: unexpected {k!r}" for k in actual if k not in expected]
        for key in expected:
            if key in actual:
                out += _value(key, expected[key], actual[key], f"{where}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{where}: expected a list, got {actual!r}"]
        if len(expected) != len(actual):
            return [f"{where}: {len(actual)} items, recorded {len(expected)}"]
        return [d for n, (e, a) in enumerate(zip(expected, actual, strict=True))
                for d in differences(e, a, f"{where}[{n}]")]
    return _value("", expected, actual, where)


def _value(key: str, expected: Any, actual: Any, where: str) -> list[str]:
    if isinstance(expected, (dict, list)):
        return differences(expected, actual, where)
    if isinstance(expected, str) and isinstance(actual, str):
        left, right = normalise(expected), normalise(actual)
        if key == "id":
            left, right = left.casefold(), right.casefold()
        return [] if left == right else [f"{where}: {actual!r}, recorded {expected!r}"]
    if type(expected) is not type(actual) or expected != actual:
        return [f"{where}: {actual!r}, recorded {expected!r}"]
    return []


def header_differences(expected: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    out = []
    for name in COMPARED_HEADERS:
        want, got = expected.get(name), actual.get(name)
        if (want is None) != (got is None):
            out.append(f"header {name}: {'absent' if got is None else repr(got)}, recorded "
                       f"{'absent' if want is None else repr(want)}")
        elif want is not None and got is not None and normalise(want) != normalise(got):
            out.append(f"header {name}: {got!r}, recorded {want!r}")
    return out


# -- talking to the stack ----------------------------------------------------------------


class Replayer:
    """Raw HTTPS to the stack's ARM, as the recordings' clients sent it."""

    def __init__(self, op: Operator) -> None:
        self.op = op

    def call(self, method: str, target: str, api_version: str | None = None,
             body: Any = None, query: dict[str, str] | None = None) -> Reply:
        url = target if target.startswith("https://") else self.op.env["ARM_ENDPOINT"] + target
        token = self.op.credential.get_token(ARM_SCOPE).token
        params = {**({"api-version": api_version} if api_version else {}), **(query or {})}
        resp = requests.request(
            method, url, params=params or None,
            data=None if body is None else json.dumps(body),
            headers={"Authorization": f"Bearer {token}",
                     **({"Content-Type": "application/json"} if body is not None else {})},
            verify=self.op.ca, timeout=30,
        )
        parsed = resp.json() if resp.content else None
        return Reply(resp.status_code, resp.headers, parsed)

    def pages(self, path: str, api_version: str, query: dict[str, str] | None = None,
              ) -> tuple[Reply, list[Any], list[str]]:
        """The first page, every item of every page, and what is wrong with the paging."""
        first = reply = self.call("GET", path, api_version, query=query)
        items: list[Any] = []
        problems: list[str] = []
        while True:
            items += (reply.body or {}).get("value", [])
            link = (reply.body or {}).get("nextLink")
            if not link:
                break
            if not link.startswith("https://") or "api-version=" not in link:
                problems.append(f"nextLink {link!r} is not absolute with api-version")
                break
            reply = self.call("GET", link)
        return first, items, problems

    def settle(self, operation_url: str, timeout: float = 30.0) -> Reply:
        """Poll an operation until it has ended; its last answer."""
        deadline = time.monotonic() + timeout
        while True:
            reply = self.call("GET", operation_url)
            if reply.status != 200 or (reply.body or {}).get("status") != "InProgress":
                return reply
            assert time.monotonic() < deadline, f"{operation_url} still running"
            time.sleep(0.05)

    def put_and_wait(self, path: str, api_version: str, body: dict[str, Any]) -> Reply:
        reply = self.call("PUT", path, api_version, body)
        assert reply.status in (200, 201), reply
        done = self.settle(reply.headers["Azure-AsyncOperation"])
        assert (done.body or {}).get("status") == "Succeeded", done
        return reply


@dataclass
class Local:
    """The local names a recording is replayed under."""

    op: Operator
    resource_group: str
    package_url: str  # blob URL without SAS
    thumbprints: dict[str, str] = field(default_factory=dict)  # role -> thumbprint

    def rewrite(self, names: dict[str, str], service: str,
                configuration: str | None = None, **extra: str) -> Rewrite:
        whole = {"{PackageUrl}": self.op.package_sas(self.package_url)}
        if configuration is not None:
            whole["{ServiceConfiguration}"] = configuration
        parts = {names["subscription"]: self.op.sub,
                 names["resourceGroup"]: self.resource_group,
                 names["cloudService"]: service, **extra}
        return Rewrite(whole, parts)

    def configuration(self, roles: list[str]) -> str:
        return cscfg("Replay", {r: ({"Cert": self.thumbprints[r]} if r in self.thumbprints
                                     else {}) for r in roles})


def scenario(replayer: Replayer, local: Local, recording: Recording, service: str,
             hold: Callable[[float | None], None]) -> dict[str, tuple[Reply, Any]]:
    """Replay ``recording`` in order (after PUTting its seed, when it has one): each
    interaction's answer with the recorded body rewritten to the local names.

    A write whose operation the recording then polls while ``InProgress`` is sent with the
    stack's operations lasting ``HOLD_SECONDS`` (``hold``; ``None`` restores the length),
    so the poll right after it finds the operation running, as the recording did."""
    api = recording.api_version
    base = (f"/subscriptions/{local.op.sub}/resourceGroups/{local.resource_group}"
            f"/providers/Microsoft.Compute/cloudServices/{service}")
    seed = seed_of(recording)
    rewrite = local.rewrite(recording.names, service, local.configuration(role_names(seed)))
    rewrite.whole["{MalformedServiceConfiguration}"] = "<ServiceConfiguration"  # not XML
    if recording.seeded:
        replayer.put_and_wait(base, api, rewrite(seed))
    polled_early = {i.operation_of for i in recording.interactions
                    if (i.body or {}).get("status") == "InProgress"}
    started: dict[str, Reply] = {}
    out: dict[str, tuple[Reply, Any]] = {}
    for step in recording.interactions:
        if step.operation_of is not None:
            url = started[step.operation_of].headers["Azure-AsyncOperation"]
            in_progress = (step.body or {}).get("status") == "InProgress"
            reply = replayer.call("GET", url) if in_progress else replayer.settle(url)
        elif step.monitor_of is not None:
            replayer.settle(started[step.monitor_of].headers["Azure-AsyncOperation"])
            reply = replayer.call("GET", started[step.monitor_of].headers["Location"])
        else:
            assert step.path is not None
            if step.id in polled_early:
                hold(HOLD_SECONDS)
            try:
                reply = replayer.call(
                    step.method, rewrite(step.path), api,
                    rewrite(step.request) if step.request is not None else None, step.query)
            finally:
                if step.id in polled_early:
                    hold(None)
            started[step.id] = reply
        out[step.id] = (reply, rewrite(step.body))
    return out


def seed_of(recording: Recording) -> dict[str, Any]:
    """The PUT that puts a service where the recording found it: the recorded request if
    the seed is a PUT, a PUT built from the recorded answer if a GET, else two roles."""
    if recording.seed_from is None:
        return {"location": "eastus2euap", "properties": {
            "packageUrl": "{PackageUrl}", "configuration": "{ServiceConfiguration}",
            "roleProfile": {"roles": [
                {"name": r, "sku": {"name": "Standard_D1_v2", "tier": "Standard", "capacity": 2}}
                for r in ("WebRole", "WorkerRole")]}}}
    step = recording.interaction(recording.seed_from)
    if step.method == "PUT":
        body: dict[str, Any] = copy.deepcopy(step.request)
        body["properties"]["packageUrl"] = "{PackageUrl}"
        return body
    source = step.body["value"][0] if "value" in step.body else step.body
    return seed_body(source, "{PackageUrl}")
