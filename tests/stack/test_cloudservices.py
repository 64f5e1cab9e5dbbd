"""The cloud-services emulator as azure-mgmt-compute 37.2.0 sees it.

Every call goes through the real SDK (ARM resource groups and vaults, which have no SDK
installed here, through plain HTTPS). Certificates come from the Key Vault emulator and
the package from Azurite behind a real user-delegation SAS, so the platform checks run
against real objects: a refused PUT here is refused for the reason Azure would give.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.keyvault.certificates import CertificateClient, CertificatePolicy, KeyVaultCertificate
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import (
    CloudService,
    CloudServiceOsProfile,
    CloudServiceProperties,
    CloudServiceRoleProfile,
    CloudServiceRoleProfileProperties,
    CloudServiceRoleSku,
    CloudServiceVaultCertificate,
    CloudServiceVaultSecretGroup,
    RoleInstances,
    SubResource,
)
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from tests.conftest import LocalStack

NS = "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration"
ROLES = {"WebRole1": 2, "WorkerRole1": 1}
ARM_SCOPE = "https://management.azure.com/.default"


@dataclass(frozen=True)
class Cert:
    secret_id: str  # versioned secret URL, as osProfile wants it
    thumbprint: str  # uppercase hex, as the cscfg wants it
    vault_id: str


@dataclass(frozen=True)
class Package:
    url: str  # blob URL without SAS
    sas: Callable[..., str]  # (expiry offset) -> full SAS URL

    @property
    def good(self) -> str:
        return self.sas()


def _name(prefix: str = "cs") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def credential(stack: LocalStack) -> DefaultAzureCredential:
    return DefaultAzureCredential()


@pytest.fixture(scope="module")
def compute(stack: LocalStack, credential: DefaultAzureCredential) -> ComputeManagementClient:
    return ComputeManagementClient(
        credential, stack.subscription, base_url=stack.env["ARM_ENDPOINT"],
        credential_scopes=[ARM_SCOPE], connection_verify=stack.ca, polling_interval=0,
    )


def _arm_put(stack: LocalStack, credential: DefaultAzureCredential, path: str,
             api_version: str, body: dict[str, Any]) -> dict[str, Any]:
    token = credential.get_token(ARM_SCOPE).token
    resp = requests.put(
        f"{stack.env['ARM_ENDPOINT']}{path}", params={"api-version": api_version}, json=body,
        headers={"Authorization": f"Bearer {token}"}, verify=stack.ca, timeout=30,
    )
    resp.raise_for_status()
    result: dict[str, Any] = resp.json()
    return result


def _resource_group(stack: LocalStack, credential: DefaultAzureCredential) -> str:
    rg = _name("rg")
    _arm_put(stack, credential, f"/subscriptions/{stack.subscription}/resourcegroups/{rg}",
             "2021-04-01", {"location": "westus"})
    return rg


@pytest.fixture(scope="module")
def rg(stack: LocalStack, credential: DefaultAzureCredential) -> str:
    return _resource_group(stack, credential)


def _vault(stack: LocalStack, credential: DefaultAzureCredential, rg: str,
           for_deployment: bool) -> tuple[str, str]:
    """Create a vault through ARM; return (ARM id, vaultUri)."""
    name = _name("kv")
    vault_id = (f"/subscriptions/{stack.subscription}/resourceGroups/{rg}"
                f"/providers/Microsoft.KeyVault/vaults/{name}")
    body = _arm_put(stack, credential, vault_id, "2023-07-01", {
        "location": "westus",
        "properties": {"tenantId": stack.env["AZURE_TENANT_ID"],
                       "sku": {"family": "A", "name": "standard"},
                       "enabledForDeployment": for_deployment,
                       # The tests make certificates in it: create, and read the result.
                       "accessPolicies": [{"tenantId": stack.env["AZURE_TENANT_ID"],
                                           "objectId": stack.env["APP_PRINCIPAL_ID"],
                                           "permissions": {"certificates": ["get", "create"]}}]},
    })
    return vault_id, str(body["properties"]["vaultUri"])


def _certificate(stack: LocalStack, credential: DefaultAzureCredential,
                 vault: tuple[str, str]) -> Cert:
    client = CertificateClient(vault[1], credential, connection_verify=stack.ca,
                               verify_challenge_resource=False)
    cert = client.begin_create_certificate(
        _name("cert"), CertificatePolicy.get_default(), _polling_interval=0.05).result()
    assert isinstance(cert, KeyVaultCertificate)
    assert cert.secret_id and cert.properties and cert.properties.x509_thumbprint
    return Cert(cert.secret_id, cert.properties.x509_thumbprint.hex().upper(), vault[0])


@pytest.fixture(scope="module")
def vault(stack: LocalStack, credential: DefaultAzureCredential, rg: str) -> tuple[str, str]:
    return _vault(stack, credential, rg, for_deployment=True)


@pytest.fixture(scope="module")
def cert_a(stack: LocalStack, credential: DefaultAzureCredential,
           vault: tuple[str, str]) -> Cert:
    return _certificate(stack, credential, vault)


@pytest.fixture(scope="module")
def cert_b(stack: LocalStack, credential: DefaultAzureCredential,
           vault: tuple[str, str]) -> Cert:
    return _certificate(stack, credential, vault)


@pytest.fixture(scope="module")
def cert_no_deploy(stack: LocalStack, credential: DefaultAzureCredential, rg: str) -> Cert:
    return _certificate(stack, credential, _vault(stack, credential, rg, for_deployment=False))


@pytest.fixture(scope="module")
def package(stack: LocalStack, credential: DefaultAzureCredential) -> Package:
    """A .cspkg blob in Azurite and a minter of read-only user-delegation SAS URLs."""
    service = BlobServiceClient(stack.env["AZURITE_BLOB_URL"], credential,
                                connection_verify=stack.ca)
    container = service.get_container_client(_name("packages"))
    container.create_container()
    blob = container.upload_blob("app.cspkg", b"PK\x03\x04 a cloud service package")
    now = dt.datetime.now(dt.UTC)
    key = service.get_user_delegation_key(now - dt.timedelta(hours=1), now + dt.timedelta(hours=2))

    def sas(expires_in: dt.timedelta = dt.timedelta(hours=1)) -> str:
        # Not blob.account_name: for a path-style (IP) URL the SDK reports it as
        # "devstoreaccount1/<container>", which signs the wrong canonical resource.
        token = generate_blob_sas(
            "devstoreaccount1", blob.container_name, blob.blob_name,
            user_delegation_key=key, permission=BlobSasPermissions(read=True),
            start=now - dt.timedelta(minutes=30), expiry=now + expires_in,
        )
        return f"{blob.url}?{token}"

    return Package(blob.url, sas)


def cscfg(certs: dict[str, list[str]] | None = None, setting: str = "v1") -> str:
    """A .cscfg with ROLES; ``certs`` maps a role to the thumbprints it names."""
    roles = "".join(
        f'<Role name="{role}"><Instances count="{count}"/>'
        f'<ConfigurationSettings><Setting name="Build" value="{setting}"/></ConfigurationSettings>'
        "<Certificates>"
        + "".join(f'<Certificate name="Cert{i}" thumbprint="{t}" thumbprintAlgorithm="sha1"/>'
                  for i, t in enumerate((certs or {}).get(role, [])))
        + "</Certificates></Role>"
        for role, count in ROLES.items()
    )
    return ('<?xml version="1.0" encoding="utf-8"?>\r\n'
            '<ServiceConfiguration serviceName="Contoso" '
            f'osFamily="7" osVersion="*" xmlns="{NS}">{roles}<NetworkConfiguration>'
            '<VirtualNetworkSite name="vnet1"/></NetworkConfiguration></ServiceConfiguration>')


def model(package_url: str | None, configuration: str, certs: tuple[Cert, ...] = (),
          *, source_vault: str | None = None, upgrade_mode: str | None = None,
          roles: dict[str, int] = ROLES) -> CloudService:
    groups: dict[str, list[str]] = {}
    for cert in certs:
        groups.setdefault(source_vault or cert.vault_id, []).append(cert.secret_id)
    return CloudService(
        location="westus",
        tags={"team": "rotation"},
        properties=CloudServiceProperties(
            package_url=package_url,
            configuration=configuration,
            upgrade_mode=upgrade_mode,
            role_profile=CloudServiceRoleProfile(roles=[
                CloudServiceRoleProfileProperties(
                    name=name, sku=CloudServiceRoleSku(name="Standard_D1_v2", tier="Standard",
                                                       capacity=count))
                for name, count in roles.items()
            ]),
            os_profile=CloudServiceOsProfile(secrets=[
                CloudServiceVaultSecretGroup(
                    source_vault=SubResource(id=vault_id),
                    vault_certificates=[CloudServiceVaultCertificate(certificate_url=u)
                                        for u in urls])
                for vault_id, urls in groups.items()
            ]),
        ),
    )


def _raw(pipeline_response: Any, deserialized: Any, headers: Any) -> dict[str, Any]:
    """``cls`` hook: the JSON exactly as the wire carried it."""
    body: dict[str, Any] = pipeline_response.http_response.json()
    return body


def _refused(compute: ComputeManagementClient, rg: str, name: str, body: CloudService,
             code: str) -> str:
    """PUT ``body``; assert a synchronous 400 with ``code``; return the message."""
    with pytest.raises(HttpResponseError) as caught:
        compute.cloud_services.begin_create_or_update(rg, name, body)
    assert caught.value.status_code == 400
    assert caught.value.error is not None
    assert caught.value.error.code == code, caught.value.error.message
    with pytest.raises(ResourceNotFoundError):  # nothing was stored
        compute.cloud_services.get(rg, name)
    return str(caught.value.error.message)


def _statuses(view: Any) -> list[str]:
    return [s.code for s in view.statuses]


@pytest.fixture
def slow_operations(stack: LocalStack) -> Iterator[None]:
    """Operations take 2 s, so a second request surely lands while one is running."""
    stack.admin("POST", "/cloudservices/settings", {"update_seconds": 2})
    yield
    stack.admin("POST", "/cloudservices/settings", {"update_seconds": None})


# -- create, read, list -----------------------------------------------------------------


def test_create_two_roles_with_certificate_completes(
    stack: LocalStack, compute: ComputeManagementClient, rg: str, cert_a: Cert, package: Package,
) -> None:
    name = _name()
    config = cscfg({"WebRole1": [cert_a.thumbprint], "WorkerRole1": [cert_a.thumbprint]})
    mark = stack.request_mark()
    created: Any = compute.cloud_services.begin_create_or_update(
        rg, name, model(package.good, config, (cert_a,))).result()

    assert created.properties.provisioning_state == "Succeeded"
    assert created.properties.configuration == config
    assert created.properties.upgrade_mode == "Auto"
    assert [r.name for r in created.properties.role_profile.roles] == list(ROLES)
    assert created.properties.os_profile.secrets[0].source_vault.id == cert_a.vault_id
    assert created.properties.package_url is None
    assert created.id.endswith(f"/resourceGroups/{rg}/providers/Microsoft.Compute/cloudServices/"
                               f"{name}")
    assert created.system_data.created_at is not None
    log = [r for r in stack.requests_since(mark) if r["service"] == "arm"]
    put = next(r for r in log if r["method"] == "PUT")
    assert put["status"] == 201
    assert any("/CsOperations/" in r["path"] for r in log)


def test_put_answers_creating_then_updating_and_never_echoes_write_only(
    compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    name = _name()
    initial: Any = compute.cloud_services.begin_create_or_update(
        rg, name, model(package.good, cscfg()), polling=False, cls=_raw).result()
    assert initial["properties"]["provisioningState"] == "Creating"
    assert "packageUrl" not in initial["properties"]
    _wait_state(compute, rg, name, "Succeeded")

    again: Any = compute.cloud_services.begin_create_or_update(
        rg, name, model(package.good, cscfg(setting="v2")), polling=False, cls=_raw).result()
    assert again["properties"]["provisioningState"] == "Updating"
    raw: Any = compute.cloud_services.get(rg, name, cls=_raw)
    assert raw["properties"]["provisioningState"] == "Updating"
    for key in ("packageUrl", "configurationUrl"):
        assert key not in raw["properties"]
    assert 'value="v2"' in raw["properties"]["configuration"]
    _wait_state(compute, rg, name, "Succeeded")


def _state(compute: ComputeManagementClient, rg: str, name: str) -> str | None:
    service: Any = compute.cloud_services.get(rg, name)
    state: str | None = service.properties.provisioning_state
    return state


def _wait_state(compute: ComputeManagementClient, rg: str, name: str, state: str) -> None:
    deadline = time.monotonic() + 10
    while _state(compute, rg, name) != state:
        assert time.monotonic() < deadline, f"{name} never reached {state}"
        time.sleep(0.05)


def test_list_by_group_and_subscription_follow_pages(
    stack: LocalStack, credential: DefaultAzureCredential, compute: ComputeManagementClient,
    package: Package,
) -> None:
    group = _resource_group(stack, credential)
    names = [_name() for _ in range(3)]
    pollers = [compute.cloud_services.begin_create_or_update(group, n, model(package.good,
                                                                             cscfg()))
               for n in names]
    for poller in pollers:
        poller.result()

    mark = stack.request_mark()
    listed: list[Any] = list(compute.cloud_services.list(group))
    assert sorted(cs.name for cs in listed) == sorted(names)
    assert all(cs.properties.package_url is None for cs in listed)
    pages = [r for r in stack.requests_since(mark) if r["path"].endswith("/cloudServices")]
    assert len(pages) == 2 and "skiptoken" in pages[1]["query"]

    everywhere = {cs.name for cs in compute.cloud_services.list_all()}
    assert set(names) <= everywhere


# -- instance view, roles, role instances, update domains --------------------------------


def test_instance_view_roles_and_role_instances(
    compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    name = _name()
    compute.cloud_services.begin_create_or_update(rg, name, model(package.good, cscfg())).result()

    view: Any = compute.cloud_services.get_instance_view(rg, name)
    assert "ProvisioningState/succeeded" in _statuses(view)
    assert "CurrentUpgradeDomain/-1" in _statuses(view)
    assert "MaxUpgradeDomain/1" in _statuses(view)
    summary = {s.code: s.count for s in view.role_instance.statuses_summary}
    assert summary["ProvisioningState/succeeded"] == 3
    assert summary["RoleState/RoleStateStarted"] == 3
    assert view.sdk_version and view.private_ids

    roles: list[Any] = list(compute.cloud_service_roles.list(rg, name))
    assert [(r.name, r.sku.capacity) for r in roles] == list(ROLES.items())
    worker: Any = compute.cloud_service_roles.get("WorkerRole1", rg, name)
    assert worker.sku.tier == "Standard"

    instances: list[Any] = list(
        compute.cloud_service_role_instances.list(rg, name, expand="instanceView"))
    assert [i.name for i in instances] == ["WebRole1_IN_0", "WebRole1_IN_1", "WorkerRole1_IN_0"]
    assert all(i.properties.instance_view is not None for i in instances)  # page 2 kept $expand
    one: Any = compute.cloud_service_role_instances.get("WebRole1_IN_1", rg, name)
    assert one.sku.name == "Standard_D1_v2" and one.properties.instance_view is None
    iv: Any = compute.cloud_service_role_instances.get_instance_view("WebRole1_IN_1", rg, name)
    assert iv.platform_update_domain == 1
    assert "RoleState/RoleStateStarted" in _statuses(iv)
    with pytest.raises(ResourceNotFoundError):
        compute.cloud_service_role_instances.get("WebRole1_IN_7", rg, name)

    domains = list(compute.cloud_services_update_domain.list_update_domains(rg, name))
    assert [d.name for d in domains] == ["0", "1"]
    assert compute.cloud_services_update_domain.get_update_domain(rg, name, 1).name == "1"


def _instance_states(compute: ComputeManagementClient, rg: str, name: str) -> dict[str, str]:
    instances: list[Any] = list(
        compute.cloud_service_role_instances.list(rg, name, expand="instanceView"))
    return {
        # A running instance shows only its RoleState; a lagging one ProvisioningState/updating.
        i.name: next((s.code for s in i.properties.instance_view.statuses
                      if s.code.startswith("ProvisioningState/")), "ProvisioningState/succeeded")
        for i in instances
    }


def test_manual_update_waits_for_each_update_domain_walk(
    compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    name = _name()
    ops = compute.cloud_services
    manual = model(package.good, cscfg(), upgrade_mode="Manual")
    ops.begin_create_or_update(rg, name, manual).result()
    assert set(_instance_states(compute, rg, name).values()) == {"ProvisioningState/succeeded"}

    updated: Any = ops.begin_create_or_update(
        rg, name, model(package.good, cscfg(setting="v2"), upgrade_mode="Manual")).result()
    assert updated.properties.provisioning_state == "Succeeded"
    assert set(_instance_states(compute, rg, name).values()) == {"ProvisioningState/updating"}
    assert "CurrentUpgradeDomain/0" in _statuses(ops.get_instance_view(rg, name))

    walker = compute.cloud_services_update_domain
    with pytest.raises(HttpResponseError) as caught:  # domains are walked in order
        walker.begin_walk_update_domain(rg, name, 1)
    assert caught.value.status_code == 400

    walker.begin_walk_update_domain(rg, name, 0).result()
    assert _instance_states(compute, rg, name) == {
        "WebRole1_IN_0": "ProvisioningState/succeeded",
        "WebRole1_IN_1": "ProvisioningState/updating",
        "WorkerRole1_IN_0": "ProvisioningState/succeeded",
    }
    lagging: Any = compute.cloud_service_role_instances.get_instance_view(
        "WebRole1_IN_1", rg, name)
    assert "runs configuration version 1" in lagging.statuses[0].message
    assert "CurrentUpgradeDomain/1" in _statuses(ops.get_instance_view(rg, name))

    walker.begin_walk_update_domain(rg, name, 1).result()
    assert set(_instance_states(compute, rg, name).values()) == {"ProvisioningState/succeeded"}
    assert "CurrentUpgradeDomain/-1" in _statuses(ops.get_instance_view(rg, name))


def test_auto_update_moves_every_instance(
    compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    name = _name()
    ops = compute.cloud_services
    ops.begin_create_or_update(rg, name, model(package.good, cscfg())).result()
    ops.begin_create_or_update(rg, name, model(package.good, cscfg(setting="v2"))).result()
    assert set(_instance_states(compute, rg, name).values()) == {"ProvisioningState/succeeded"}


def test_delete_is_long_running_and_idempotent(
    compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    name = _name()
    compute.cloud_services.begin_create_or_update(rg, name, model(package.good, cscfg())).result()
    compute.cloud_services.begin_delete(rg, name).result()
    with pytest.raises(ResourceNotFoundError):
        compute.cloud_services.get(rg, name)
    compute.cloud_services.begin_delete(rg, name).result()  # 204: nothing to delete


def test_restart_and_delete_answer_202_with_a_monitor_location(
    stack: LocalStack, compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    """The SDK follows an action as Azure answers it: Azure-AsyncOperation until the
    operation ends, then one GET of the Location (``monitor=true``), an empty 200."""
    name = _name()
    compute.cloud_services.begin_create_or_update(rg, name, model(package.good, cscfg())).result()
    mark = stack.request_mark()
    compute.cloud_services.begin_restart(
        rg, name, parameters=RoleInstances(role_instances=["WebRole1_IN_0"])).result()
    log = [r for r in stack.requests_since(mark) if r["service"] == "arm"]
    assert [r["status"] for r in log if r["method"] == "POST"] == [202]
    monitors = [r for r in log if "/CsOperations/" in r["path"] and "monitor=true" in r["query"]]
    assert [r["status"] for r in monitors] == [200]
    with pytest.raises(HttpResponseError) as caught:
        compute.cloud_services.begin_restart(
            rg, name, parameters=RoleInstances(role_instances=["WebRole1_IN_9"]))
    assert caught.value.status_code == 404

    compute.cloud_services.begin_delete(rg, name).result()
    with pytest.raises(ResourceNotFoundError):
        compute.cloud_services.get(rg, name)


def _summary(compute: ComputeManagementClient, rg: str, name: str) -> dict[str, int]:
    view: Any = compute.cloud_services.get_instance_view(rg, name)
    return {s.code: s.count for s in view.role_instance.statuses_summary}


def test_power_off_stops_the_instances_an_update_leaves_them_stopped_and_start_starts(
    stack: LocalStack, compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    """CloudServices_PowerOff / _Start answer as the Stop-AzCloudService recording does
    (202, ``Location`` with ``monitor=true``); stopped instances stay stopped through an
    update (the model changes, nothing runs it until the service is started)."""
    name = _name()
    ops = compute.cloud_services
    ops.begin_create_or_update(rg, name, model(package.good, cscfg())).result()
    mark = stack.request_mark()
    ops.begin_power_off(rg, name).result()
    posts = [r for r in stack.requests_since(mark) if r["method"] == "POST"]
    assert [(r["path"].rsplit("/", 1)[-1], r["status"]) for r in posts] == [("poweroff", 202)]
    stopped = {"ProvisioningState/succeeded": 3, "PowerState/stopped": 3,
               "RoleState/RoleStateStopped": 3}
    assert _summary(compute, rg, name) == stopped

    ops.begin_create_or_update(rg, name, model(package.good, cscfg(setting="v2"))).result()
    assert _summary(compute, rg, name) == stopped

    ops.begin_start(rg, name).result()
    assert _summary(compute, rg, name) == {"ProvisioningState/succeeded": 3,
                                           "PowerState/started": 3,
                                           "RoleState/RoleStateStarted": 3}


@pytest.fixture
def settling(stack: LocalStack) -> Iterator[float]:
    seconds = 1.5
    stack.admin("POST", "/cloudservices/settings", {"settle_seconds": seconds})
    yield seconds
    stack.admin("POST", "/cloudservices/settings", {"settle_seconds": None})


def test_instances_are_busy_then_starting_for_settle_seconds_after_an_update(
    stack: LocalStack, compute: ComputeManagementClient, rg: str, package: Package,
    settling: float,
) -> None:
    name = _name()
    ops = compute.cloud_services
    ops.begin_create_or_update(rg, name, model(package.good, cscfg())).result()
    _wait_role_state(compute, rg, name, "RoleState/RoleStateStarted", settling * 4)
    ops.begin_create_or_update(rg, name, model(package.good, cscfg(setting="v2"))).result()
    seen = _wait_role_state(compute, rg, name, "RoleState/RoleStateStarted", settling * 4)
    assert seen[0] == "RoleState/RoleStateBusy", seen
    assert "RoleState/RoleStateStarting" in seen, seen
    assert _summary(compute, rg, name)["ProvisioningState/succeeded"] == 3


def _wait_role_state(compute: ComputeManagementClient, rg: str, name: str, wanted: str,
                     timeout: float) -> list[str]:
    """The distinct RoleState codes seen, in order, until every instance shows ``wanted``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        codes = [c for c in _summary(compute, rg, name) if c.startswith("RoleState/")]
        for code in codes:
            if code not in seen:
                seen.append(code)
        if codes == [wanted]:
            return seen
        assert time.monotonic() < deadline, f"{name} never settled: {seen}"
        time.sleep(0.05)


def test_an_armed_instance_state_lands_on_the_instances_of_the_next_update(
    stack: LocalStack, compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    name = _name()
    ops = compute.cloud_services
    ops.begin_create_or_update(rg, name, model(package.good, cscfg())).result()
    armed = stack.admin("POST", "/cloudservices/instances-next",
                        {"resourceGroup": rg, "name": name, "code": "ProvisioningState/failed"})
    assert armed["armed"] >= 1
    updated: Any = ops.begin_create_or_update(
        rg, name, model(package.good, cscfg(setting="v2"))).result()
    assert updated.properties.provisioning_state == "Succeeded"  # the platform says so
    assert _summary(compute, rg, name) == {"ProvisioningState/failed": 3,
                                           "PowerState/started": 3,
                                           "RoleState/RoleStateStarted": 3}
    failing: Any = compute.cloud_service_role_instances.get_instance_view(
        "WebRole1_IN_0", rg, name)
    assert [s.code for s in failing.statuses] == ["ProvisioningState/failed",
                                                  "RoleState/RoleStateStarted"]
    ops.begin_create_or_update(rg, name, model(package.good, cscfg(setting="v3"))).result()
    assert "ProvisioningState/failed" not in _summary(compute, rg, name)  # used up
    with pytest.raises(requests.HTTPError):
        stack.admin("POST", "/cloudservices/instances-next",
                    {"resourceGroup": rg, "name": name, "code": "Broken"})


# -- refusals ----------------------------------------------------------------------------


def test_thumbprint_missing_from_os_profile_lists_role_and_thumbprint(
    compute: ComputeManagementClient, rg: str, cert_a: Cert, package: Package,
) -> None:
    config = cscfg({"WebRole1": [cert_a.thumbprint], "WorkerRole1": [cert_a.thumbprint]})
    message = _refused(compute, rg, _name(), model(package.good, config), "InvalidParameter")
    assert message == (
        "The thumbprints specified in the CSCFG do not have corresponding certificates in "
        "osProfile.secrets. Add the missing certificates in osProfile.secrets. Missing "
        f"thumbprints: WebRole1|{cert_a.thumbprint}, WorkerRole1|{cert_a.thumbprint}. To "
        "understand more about how to use KeyVault for certificates, please follow the "
        "documentation at https://aka.ms/cses-kv"
    )


def test_thumbprint_of_another_certificate_is_refused(
    compute: ComputeManagementClient, rg: str, cert_a: Cert, cert_b: Cert, package: Package,
) -> None:
    config = cscfg({"WebRole1": [cert_a.thumbprint.lower()]})
    message = _refused(compute, rg, _name(), model(package.good, config, (cert_b,)),
                       "InvalidParameter")
    assert f"Missing thumbprints: WebRole1|{cert_a.thumbprint}. To understand" in message


def test_unversioned_certificate_url_is_refused(
    compute: ComputeManagementClient, rg: str, cert_a: Cert, package: Package,
) -> None:
    unversioned = Cert(cert_a.secret_id.rsplit("/", 1)[0], cert_a.thumbprint, cert_a.vault_id)
    message = _refused(compute, rg, _name(),
                       model(package.good, cscfg(), (unversioned,)), "InvalidParameter")
    assert message == (
        f"{unversioned.secret_id} is not a valid versioned Key Vault Secret URL. It should be "
        "in the format https://<vaultEndpoint>/secrets/<secretName>/<secretVersion>."
    )


def test_vault_not_enabled_for_deployment_or_not_the_source_vault(
    compute: ComputeManagementClient, rg: str, cert_a: Cert, cert_no_deploy: Cert,
    package: Package,
) -> None:
    message = _refused(compute, rg, _name(), model(package.good, cscfg(), (cert_no_deploy,)),
                       "KeyVaultAccessForbidden")
    assert message == (
        f"Key Vault {cert_no_deploy.secret_id} either has not been enabled for deployment or "
        f"the vault id provided, {cert_no_deploy.vault_id}, does not match the Key Vault's "
        "true resource id."
    )
    wrong_vault = model(package.good, cscfg(), (cert_a,), source_vault=cert_no_deploy.vault_id)
    _refused(compute, rg, _name(), wrong_vault, "KeyVaultAccessForbidden")


def _forged(url: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["sig"] = base64.b64encode(b"\0" * 32).decode()
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_unreadable_package_is_refused(
    compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    for url in (_forged(package.good), package.sas(expires_in=-dt.timedelta(minutes=5))):
        message = _refused(compute, rg, _name(), model(url, cscfg()), "PackageUriForbidden")
        assert message == ("The client does not have the permission to access the "
                           f"package url {package.url}. Error:AuthenticationFailed")
        assert "sig=" not in message
    _refused(compute, rg, _name(), model(package.url.replace("https:", "http:", 1), cscfg()),
             "InvalidParameter")


def test_package_is_required_to_create_and_kept_by_an_update_without_one(
    stack: LocalStack, compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    message = _refused(compute, rg, _name(), model(None, cscfg()), "InvalidParameter")
    assert message == "Required parameter 'packageUrl' is missing (null)."
    name = _name()
    compute.cloud_services.begin_create_or_update(rg, name, model(package.good, cscfg())).result()
    deployed = _admin_service(stack, rg, name)["package"]
    current: Any = compute.cloud_services.get(rg, name)  # as read: packageUrl is not there
    current.properties.configuration = cscfg(setting="v2")
    updated: Any = compute.cloud_services.begin_create_or_update(rg, name, current).result()
    assert updated.properties.provisioning_state == "Succeeded"
    assert 'value="v2"' in updated.properties.configuration
    assert _admin_service(stack, rg, name)["package"] == deployed


def test_malformed_package_url_is_refused_before_the_configuration_is_read(
    compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    for url in (package.url, "not a url", package.good.replace("https:", "http:", 1)):
        body = model(url, "<not a cscfg")
        with pytest.raises(HttpResponseError) as caught:
            compute.cloud_services.begin_create_or_update(rg, _name(), body)
        assert caught.value.status_code == 400 and caught.value.error is not None
        assert (caught.value.error.code, caught.value.error.message) == (
            "InvalidParameter", "The value of parameter packageUrl is invalid.")
        assert caught.value.error.target is None


def _admin_service(stack: LocalStack, rg: str, name: str) -> dict[str, Any]:
    return next(s for s in stack.admin("GET", "/cloudservices")["services"]
                if (s["resourceGroup"], s["name"]) == (rg, name))


def test_cscfg_roles_must_match_role_profile(
    compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    message = _refused(compute, rg, _name(),
                       model(package.good, cscfg(), roles={"WebRole1": 2, "Backend": 1}),
                       "InvalidParameter")
    assert "Roles only in the .cscfg: [WorkerRole1]" in message
    assert "Roles only in roleProfile: [Backend]" in message
    _refused(compute, rg, _name(), model(package.good, "<ServiceConfiguration"),
             "InvalidParameter")
    _refused(compute, rg, _name(), model(package.good, cscfg().replace(NS, "urn:other")),
             "InvalidParameter")


def test_second_write_while_updating_conflicts(
    stack: LocalStack, compute: ComputeManagementClient, rg: str, package: Package,
    slow_operations: None,
) -> None:
    name = _name()
    ops = compute.cloud_services
    ops.begin_create_or_update(rg, name, model(package.good, cscfg()), polling=False)
    with pytest.raises(ResourceExistsError) as caught:
        ops.begin_create_or_update(rg, name, model(package.good, cscfg(setting="v2")))
    assert caught.value.error is not None and caught.value.error.code == "Conflict"
    assert str(caught.value.error.message).startswith(
        "The request failed due to conflict with a concurrent request.")
    with pytest.raises(ResourceExistsError):
        ops.begin_delete(rg, name)
    with pytest.raises(ResourceExistsError):
        compute.cloud_services_update_domain.begin_walk_update_domain(rg, name, 0)


def test_operation_failure_surfaces_from_result(
    stack: LocalStack, compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    name = _name()
    compute.cloud_services.begin_create_or_update(rg, name, model(package.good, cscfg())).result()
    stack.admin("POST", "/cloudservices/fail-next", {
        "resourceGroup": rg, "name": name, "code": "RoleInstanceStartupTimeoutError",
        "message": "One or more role instances did not start in the allotted time.",
    })
    poller = compute.cloud_services.begin_create_or_update(
        rg, name, model(package.good, cscfg(setting="v2")))
    with pytest.raises(HttpResponseError) as caught:
        poller.result()
    assert caught.value.error is not None
    assert caught.value.error.code == "RoleInstanceStartupTimeoutError"
    failed: Any = compute.cloud_services.get(rg, name)
    assert failed.properties.provisioning_state == "Failed"
    assert 'value="v2"' in failed.properties.configuration  # the new model is kept
    assert set(_instance_states(compute, rg, name).values()) == {"ProvisioningState/succeeded"}


def test_throttled_get_is_retried(
    stack: LocalStack, compute: ComputeManagementClient, rg: str, package: Package,
    no_faults: None,
) -> None:
    name = _name()
    compute.cloud_services.begin_create_or_update(rg, name, model(package.good, cscfg())).result()
    stack.admin("POST", "/faults", {"service": "arm", "method": "GET", "status": 429,
                                    "retry_after": 0, "path": f"/cloudServices/{name}$"})
    mark = stack.request_mark()
    assert compute.cloud_services.get(rg, name).name == name
    statuses = [r["status"] for r in stack.requests_since(mark) if r["path"].endswith(name)]
    assert statuses == [429, 200]


def test_responses_carry_arm_headers(
    compute: ComputeManagementClient, rg: str, package: Package,
) -> None:
    name = _name()
    compute.cloud_services.begin_create_or_update(rg, name, model(package.good, cscfg())).result()
    headers: Any = compute.cloud_services.get(
        rg, name, cls=lambda response, body, h: response.http_response.headers)
    assert headers["x-ms-request-id"]
    assert int(headers["x-ms-ratelimit-remaining-subscription-reads"]) > 0
