"""Cloud services (Microsoft.Compute) replayed against the local stack.

One case per recorded interaction (azure-powershell recordings of real Azure) and per
REST spec example of 2022-09-04, compared as ``compute_cases`` describes. Recordings are
replayed in order within their recording (a poll follows the PUT it polls; the write
whose operation is polled while running is sent with operations lasting
``HOLD_SECONDS``); the examples each get their own service. Examples of operations the
stack does not implement are listed as skipped, with the reason; a known deviation is a
strict xfail with its reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from emulators.provision import OPERATOR_ROLES, Operator, thumbprint
from tests.conftest import LocalStack
from tests.replay.compute_cases import (
    Interaction,
    Local,
    Replayer,
    Reply,
    Rewrite,
    as_recorded,
    differences,
    example_names,
    header_differences,
    load_example,
    load_recording,
    recording_cases,
    role_names,
    scenario,
    seed_body,
    swagger,
)

EXAMPLE_NAMES = {"subscription": "{subscription-id}", "resourceGroup": "ConstosoRG",
                 "cloudService": "{cs-name}"}
CS_PATH = ("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute"
           "/cloudServices/{cs}")
PROVIDER_PATH = "/providers/Microsoft.Compute/cloudServices"
# operationId -> (method, path under the cloud service, or absolute)
OPERATIONS: dict[str, tuple[str, str]] = {
    "CloudServices_CreateOrUpdate": ("PUT", ""),
    "CloudServices_Get": ("GET", ""),
    "CloudServices_Update": ("PATCH", ""),
    "CloudServices_Delete": ("DELETE", ""),
    "CloudServices_GetInstanceView": ("GET", "/instanceView"),
    "CloudServices_Restart": ("POST", "/restart"),
    "CloudServices_List": ("GET", "/subscriptions/{sub}/resourceGroups/{rg}" + PROVIDER_PATH),
    "CloudServices_ListAll": ("GET", "/subscriptions/{sub}" + PROVIDER_PATH),
    "CloudServiceRoles_Get": ("GET", "/roles/{roleName}"),
    "CloudServiceRoles_List": ("GET", "/roles"),
    "CloudServiceRoleInstances_Get": ("GET", "/roleInstances/{roleInstanceName}"),
    "CloudServiceRoleInstances_GetInstanceView": (
        "GET", "/roleInstances/{roleInstanceName}/instanceView"),
    "CloudServiceRoleInstances_List": ("GET", "/roleInstances"),
    "CloudServicesUpdateDomain_GetUpdateDomain": ("GET", "/updateDomains/{updateDomain}"),
    "CloudServicesUpdateDomain_ListUpdateDomains": ("GET", "/updateDomains"),
    "CloudServicesUpdateDomain_WalkUpdateDomain": ("PUT", "/updateDomains/{updateDomain}"),
}
# The examples' placeholders for a role and an instance of the seeded service.
PLACEHOLDERS = {"{role-name}": "ContosoFrontend", "{roleInstance-name}": "ContosoFrontend_IN_0"}
# Examples of operations the stack does not emulate (the product never calls them).
NOT_IMPLEMENTED = {
    "CloudServiceOSFamilies_List": "OS families are not emulated",
    "CloudServiceOSFamily_Get": "OS families are not emulated",
    "CloudServiceOSVersion_Get": "OS versions are not emulated",
    "CloudServiceOSVersion_List": "OS versions are not emulated",
    "CloudServiceRoleInstance_Delete": "deleting a role instance is not emulated",
    "CloudServiceRoleInstance_Delete_ByCloudService": "deleting role instances is not emulated",
    "CloudServiceRoleInstance_Get_RemoteDesktopFile": "RDP files are not emulated",
    "CloudServiceRoleInstance_Rebuild": "rebuilding a role instance is not emulated",
    "CloudServiceRoleInstance_Rebuild_ByCloudService": "rebuilding role instances is not emulated",
    "CloudServiceRoleInstance_Reimage": "reimaging a role instance is not emulated",
    "CloudServiceRoleInstance_Reimage_ByCloudService": "reimaging role instances is not emulated",
    "CloudServiceRoleInstance_Restart": "restarting one role instance is not emulated "
                                        "(the cloud service's restart is)",
    "CloudService_PowerOff": "powering a cloud service off is not emulated",
    "CloudService_Start": "starting a cloud service is not emulated",
}
# Known deviations, each a strict xfail: (fixture, interaction or "examples", example) ->
# reason.
DEVIATIONS: dict[tuple[str, str], str] = {
    ("cloud_service_instance_view", "get_instance_view"):
        "the stack answers every api-version as 2022-09-04 and later do; the 2020-10-01-preview "
        "instance view has no privateIds",
}


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def op(stack: LocalStack) -> Operator:
    return Operator(stack.env)


@pytest.fixture(scope="module")
def replayer(op: Operator) -> Replayer:
    return Replayer(op)


def _fresh_group(op: Operator) -> str:
    rg = _name("replay")
    op.resource_group(rg)
    return rg


@pytest.fixture(scope="module")
def local(op: Operator) -> Local:
    rg = _fresh_group(op)
    blob, _ = op.package("replay", f"{rg}.cspkg", b"PK\x03\x04 replayed package")
    return Local(op, rg, blob)


@pytest.fixture(scope="module")
def hold(stack: LocalStack) -> Iterator[Callable[[float | None], None]]:
    """Set how long the stack's operations last (None: its default), and restore it."""

    def set_length(seconds: float | None) -> None:
        stack.admin("POST", "/cloudservices/settings", {"update_seconds": seconds})

    yield set_length
    set_length(None)


def _check(reply: Reply, expected: Any, statuses: tuple[int, ...],
           headers: dict[str, str] | None) -> None:
    problems = [] if reply.status in statuses else [
        f"status {reply.status}, recorded {' or '.join(map(str, statuses))}"]
    if headers is not None:
        problems += header_differences(headers, reply.headers)
    problems += differences(expected, reply.body)
    assert not problems, "\n".join(problems)


def _deviation(request: pytest.FixtureRequest, key: tuple[str, str]) -> None:
    if key in DEVIATIONS:
        request.applymarker(pytest.mark.xfail(reason=DEVIATIONS[key], strict=True))


# -- recordings --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def played(replayer: Replayer, local: Local, hold: Callable[[float | None], None],
           ) -> Callable[[str], dict[str, tuple[Reply, Any]]]:
    cache: dict[str, dict[str, tuple[Reply, Any]]] = {}

    def play(name: str) -> dict[str, tuple[Reply, Any]]:
        if name not in cache:
            recording = load_recording(name)
            # a list of the resource group must see only this recording's service
            group = Local(local.op, _fresh_group(local.op), local.package_url)
            cache[name] = scenario(replayer, group, recording, _name("cs"), hold)
        return cache[name]

    return play


@pytest.mark.parametrize(("fixture", "step"), recording_cases(),
                         ids=[f"{f}:{s}" for f, s in recording_cases()])
def test_recorded_interaction(request: pytest.FixtureRequest, replayer: Replayer,
                              played: Callable[[str], dict[str, tuple[Reply, Any]]],
                              fixture: str, step: str) -> None:
    _deviation(request, (fixture, step))
    recorded: Interaction = load_recording(fixture).interaction(step)
    reply, expected = played(fixture)[step]
    if step == "list_subscription":  # other tests' services share the subscription
        _check_listed(replayer, reply, expected, recorded.status,
                      load_recording(fixture).api_version)
        return
    if reply.body and "value" in reply.body:
        first, items, paging = replayer.pages(_list_path(reply),
                                              load_recording(fixture).api_version, recorded.query)
        assert not paging, paging
        reply = Reply(first.status, first.headers, {"value": items})
    _check(reply, expected, recorded.status, recorded.headers)


def _list_path(reply: Reply) -> str:
    """The local path of a list interaction: its first item's id without the name."""
    return str(reply.body["value"][0]["id"]).rsplit("/", 1)[0]


def _check_listed(replayer: Replayer, reply: Reply, expected: Any,
                  statuses: tuple[int, ...], api_version: str) -> None:
    """A subscription-wide list: the envelope, the paging, and the recorded items among
    everything listed (the session's other services are there too)."""
    assert reply.status in statuses
    assert set(reply.body) <= {"value", "nextLink"}, reply.body.keys()
    path = (expected["value"][0]["id"].split("/resourceGroups/")[0]
            + "/providers/Microsoft.Compute/cloudServices")
    _, items, paging = replayer.pages(path, api_version)
    assert not paging, paging
    by_id = {str(i["id"]).casefold(): i for i in items}
    for item in expected["value"]:
        found = by_id.get(str(item["id"]).casefold())
        assert found is not None, f"{item['id']} not listed"
        problems = differences(item, found)
        assert not problems, "\n".join(problems)


# -- spec examples -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(op: Operator, local: Local) -> tuple[str, str, str]:
    """(vault id, versioned secret URL, thumbprint) of a real certificate."""
    # An RBAC vault in which the operator (one identity with the app here) creates it.
    vault_id, vault_url = op.vault(f"/subscriptions/{op.sub}/resourceGroups/"
                                   f"{local.resource_group}", _name("kv"), rbac=True,
                                   roles=OPERATOR_ROLES)
    cert = op.new_version(vault_url, "ContosoCertificate")
    assert cert.secret_id
    return vault_id, cert.secret_id, thumbprint(cert)


def _example_rewrite(local: Local, service: str, roles: list[str],
                     certificate: tuple[str, str, str] | None = None) -> Rewrite:
    rewrite = local.rewrite(EXAMPLE_NAMES, service, local.configuration(roles),
                            **PLACEHOLDERS)
    if certificate is not None:
        vault_id, secret_id, thumb = certificate
        rewrite.whole["/subscriptions/{subscription-id}/resourceGroups/ConstosoRG/providers/"
                      "Microsoft.KeyVault/vaults/{keyvault-name}"] = vault_id
        rewrite.whole["https://{keyvault-name}.vault.azure.net:443/secrets/"
                      "ContosoCertificate/{secret-id}"] = secret_id
        configured = Local(local.op, local.resource_group, local.package_url,
                           {r: thumb for r in roles})
        rewrite.whole["{ServiceConfiguration}"] = configured.configuration(roles)
    return rewrite


CONTOSO_SEED = "CloudService_Get_WithMultiRoleAndRDP"  # two roles of two, RDP extension


def _seed(replayer: Replayer, local: Local, example: str, service: str,
          drop: tuple[str, ...] = ()) -> Rewrite:
    """Put a service where ``example``'s 200 answer shows one; the rewrite to use."""
    answer = load_example(example)["responses"]["200"]["body"]
    if "value" in answer:
        answer = answer["value"][0]
    body = seed_body({k: v for k, v in answer.items() if k not in drop}, "{PackageUrl}")
    rewrite = _example_rewrite(local, service, role_names(body))
    path = CS_PATH.format(sub=local.op.sub, rg=local.resource_group, cs=service)
    replayer.put_and_wait(path, "2022-09-04", rewrite(body))
    return rewrite


@pytest.fixture(scope="module")
def contoso(replayer: Replayer, local: Local) -> tuple[str, Rewrite]:
    """One seeded service for the read-only examples of roles, instances and domains."""
    service = _name("contoso")
    return service, _seed(replayer, local, CONTOSO_SEED, service)


def _example_status(example: dict[str, Any]) -> tuple[int, ...]:
    if example["operationId"] == "CloudServices_CreateOrUpdate":
        return (201,)  # a fresh service; the example's 200 is an update's answer
    return tuple(int(code) for code in example["responses"])


def _example_body(example: dict[str, Any], status: int) -> Any:
    return as_recorded(example["responses"].get(str(status), {}).get("body"))


@pytest.mark.parametrize("name", example_names() + sorted(NOT_IMPLEMENTED))
def test_spec_example(request: pytest.FixtureRequest, replayer: Replayer, local: Local,
                      contoso: tuple[str, Rewrite], certificate: tuple[str, str, str],
                      name: str) -> None:
    if name in NOT_IMPLEMENTED:
        pytest.skip(f"{NOT_IMPLEMENTED[name]} (spec example {name}, 2022-09-04)")
    _deviation(request, ("examples", name))
    example = load_example(name)
    operation = example["operationId"]
    method, tail = OPERATIONS[operation]
    parameters = example["parameters"]
    service = _name("cs")
    rg = local.resource_group
    if operation == "CloudServices_CreateOrUpdate":
        body = parameters["parameters"]
        cert = certificate if "osProfile" in body["properties"] else None
        rewrite = _example_rewrite(local, service, role_names(body), cert)
    elif operation in ("CloudServices_Get", "CloudServices_Update", "CloudServices_Delete",
                       "CloudServices_Restart", "CloudServicesUpdateDomain_WalkUpdateDomain"):
        seed = name if operation in ("CloudServices_Get", "CloudServices_Update") else CONTOSO_SEED
        rewrite = _seed(replayer, local, seed, service, drop=("tags",))
    elif operation == "CloudServices_List":
        rg = _fresh_group(local.op)
        rewrite = _seed(replayer, Local(local.op, rg, local.package_url), name, service)
    elif operation == "CloudServices_ListAll":
        rewrite = _seed(replayer, local, name, service)
    else:
        service, rewrite = contoso
    path = tail if tail.startswith("/subscriptions/") else CS_PATH + tail
    path = path.format(sub=local.op.sub, rg=rg, cs=service,
                       roleName="{role-name}", roleInstanceName="{roleInstance-name}",
                       updateDomain=parameters.get("updateDomain", ""))
    request_body = rewrite(parameters.get("parameters"))
    reply = replayer.call(method, rewrite(path), "2022-09-04", request_body)
    expected = rewrite(_example_body(example, reply.status))
    statuses = _example_status(example)
    if operation == "CloudServices_ListAll":
        _check_listed(replayer, reply, expected, statuses, "2022-09-04")
        return
    if reply.body and "value" in reply.body:
        first, items, paging = replayer.pages(rewrite(path), "2022-09-04")
        assert not paging, paging
        reply = Reply(first.status, first.headers, {"value": items})
    _check(reply, expected, statuses, None)


# -- the swagger -------------------------------------------------------------------------


def test_swagger_declares_every_member_returned(
    replayer: Replayer, local: Local, contoso: tuple[str, Rewrite],
) -> None:
    """Every member of a returned cloud service is declared in the 2024-11-04 swagger; no
    write-only member is returned; ``slotType`` is in its enum (the default when unset)."""
    definitions = swagger()
    service, _ = contoso
    path = CS_PATH.format(sub=local.op.sub, rg=local.resource_group, cs=service)
    body = replayer.call("GET", path, "2024-11-04").body
    problems: list[str] = []

    def check(value: dict[str, Any], definition: str, where: str) -> None:
        declared = definitions[definition]["properties"]
        problems.extend(f"{where}.{k}: not in {definition}" for k in value if k not in declared)
        problems.extend(f"{where}.{k}: write-only, returned" for k in value
                        if declared.get(k, {}).get("writeOnly"))

    check(body, "CloudService", "$")
    properties = body["properties"]
    check(properties, "CloudServiceProperties", "$.properties")
    check(properties["osProfile"], "CloudServiceOsProfile", "$.properties.osProfile")
    network = properties["networkProfile"]
    check(network, "CloudServiceNetworkProfile", "$.properties.networkProfile")
    slot = definitions["CloudServiceSlotType"]
    assert network.get("slotType") == slot["default"] and network["slotType"] in slot["enum"]
    check(properties["extensionProfile"], "CloudServiceExtensionProfile",
          "$.properties.extensionProfile")
    for n, extension in enumerate(properties["extensionProfile"]["extensions"]):
        check(extension, "Extension", f"$.extensions[{n}]")
        check(extension["properties"], "CloudServiceExtensionProperties",
              f"$.extensions[{n}].properties")
        assert "protectedSettings" not in extension["properties"]
    assert not problems, "\n".join(problems)
