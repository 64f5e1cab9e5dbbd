"""The cloud-services emulator's PATCH (CloudServices_Update) as azure-mgmt-compute sees it.

``begin_update`` sends a ``CloudServiceUpdate``, which holds only ``tags``; the emulator
must answer like Azure's PUT does (200 ``Updating`` plus an operation to poll, 409 while
another operation runs) and change nothing but the tags.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.keyvault.certificates import KeyVaultCertificate
from azure.mgmt.compute.models import CloudServiceUpdate

from emulators.provision import OPERATOR_ROLES, Operator, cscfg, thumbprint
from tests.conftest import LocalStack

ARM_SCOPE = "https://management.azure.com/.default"


@pytest.fixture(scope="module")
def op(stack: LocalStack) -> Operator:
    return Operator(stack.env)


@pytest.fixture(scope="module")
def rg(op: Operator) -> str:
    return op.resource_group(f"rg{uuid.uuid4().hex[:8]}").rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def certificate(op: Operator, rg: str) -> tuple[str, KeyVaultCertificate]:
    """A vault and one certificate version in it: (vault id, version)."""
    group_id = f"/subscriptions/{op.sub}/resourceGroups/{rg}"
    vault_id, vault_url = op.vault(
        group_id, f"kv{uuid.uuid4().hex[:8]}", rbac=True, roles=OPERATOR_ROLES)
    return vault_id, op.new_version(vault_url, "web-tls")


@pytest.fixture
def service(op: Operator, rg: str, certificate: tuple[str, KeyVaultCertificate]) -> str:
    """A running service using the certificate, tagged as an operator would; its name."""
    vault_id, cert = certificate
    name = f"cs{uuid.uuid4().hex[:8]}"
    package, md5 = op.package("packages", f"{name}.cspkg", b"PK\x03\x04" + b"y" * 1024)
    assert cert.secret_id
    op.cloud_service(f"/subscriptions/{op.sub}/resourceGroups/{rg}", name,
                     cscfg(name, {"WebRole1": {"SslCert": thumbprint(cert)}}), ["WebRole1"],
                     vault_id, [cert.secret_id], package, md5)
    return name


def _model(stack: LocalStack, name: str) -> dict[str, Any]:
    (found,) = [s for s in stack.admin("GET", "/cloudservices")["services"] if s["name"] == name]
    return dict(found)


def test_patch_replaces_the_tag_set_and_nothing_else(
    stack: LocalStack, op: Operator, rg: str, service: str
) -> None:
    before = op.compute.cloud_services.get(rg, service)
    model = _model(stack, service)

    poller = op.compute.cloud_services.begin_update(
        rg, service, parameters=CloudServiceUpdate(tags={"owner": "team-a"})
    )
    result = poller.result()

    after = op.compute.cloud_services.get(rg, service)
    assert result.tags == after.tags == {"owner": "team-a"}  # the whole set is replaced
    assert after.properties is not None and before.properties is not None
    assert after.properties.configuration == before.properties.configuration
    assert after.properties.provisioning_state == "Succeeded"
    now = _model(stack, service)
    assert (now["modelVersion"], now["instances"]) == (model["modelVersion"], model["instances"])
    assert now["package"] == model["package"]  # no package was needed, none was fetched


def test_patch_answers_updating_with_an_operation(
    stack: LocalStack, op: Operator, rg: str, service: str
) -> None:
    token = op.credential.get_token(ARM_SCOPE).token
    url = (f"{stack.env['ARM_ENDPOINT']}/subscriptions/{op.sub}/resourceGroups/{rg}"
           f"/providers/Microsoft.Compute/cloudServices/{service}")
    resp = requests.patch(url, params={"api-version": "2024-11-04"}, json={"tags": {"a": "b"}},
                          headers={"Authorization": f"Bearer {token}"}, verify=stack.ca,
                          timeout=30)
    assert resp.status_code == 200
    assert resp.json()["properties"]["provisioningState"] == "Updating"
    assert "/CsOperations/" in resp.headers["Azure-AsyncOperation"]
    assert "packageUrl" not in resp.json()["properties"]


@pytest.fixture
def slow(stack: LocalStack) -> Iterator[None]:
    stack.admin("POST", "/cloudservices/settings", {"update_seconds": 5})
    yield
    stack.admin("POST", "/cloudservices/settings", {"update_seconds": None})


def test_patch_while_an_operation_runs_conflicts(
    op: Operator, rg: str, service: str, slow: None
) -> None:
    first = op.compute.cloud_services.begin_update(
        rg, service, parameters=CloudServiceUpdate(tags={"n": "1"})
    )
    with pytest.raises(ResourceExistsError) as caught:
        op.compute.cloud_services.begin_update(
            rg, service, parameters=CloudServiceUpdate(tags={"n": "2"})
        )
    assert caught.value.status_code == 409
    first.result()
    assert op.compute.cloud_services.get(rg, service).tags == {"n": "1"}


BAD_BODIES = {
    "not an object": ([1], "InvalidRequestContent"),
    "tag value not a string": ({"tags": {"n": 1}}, "InvalidParameter"),
    "tags not an object": ({"tags": ["n"]}, "InvalidParameter"),
}


@pytest.mark.parametrize(("body", "code"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_malformed_patch_is_refused_and_changes_nothing(
    stack: LocalStack, op: Operator, rg: str, service: str, body: Any, code: str
) -> None:
    tags = op.compute.cloud_services.get(rg, service).tags
    with pytest.raises(HttpResponseError) as caught:
        op.compute.cloud_services.begin_update(rg, service, parameters=json.dumps(body).encode())
    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == code
    assert op.compute.cloud_services.get(rg, service).tags == tags
