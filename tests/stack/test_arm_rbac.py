"""ARM's control-plane RBAC on the stack: custom role definitions, the opt-in per resource
group, and Azure's 403 wording for a write, a linked resource and an operation poll."""

from __future__ import annotations

import pytest
import requests

from emulators.provision import Operator
from tests.conftest import LocalStack
from tests.e2e.world import unique

DEFINITIONS = "/providers/Microsoft.Authorization/roleDefinitions"


@pytest.fixture(scope="module")
def op(stack: LocalStack) -> Operator:
    return Operator(stack.env)


def raw(op: Operator, method: str, path: str, body: object = None,
        api: str = "2024-11-04") -> requests.Response:
    token = op.credential.get_token("https://management.azure.com/.default").token
    return requests.request(method, f"{op.env['ARM_ENDPOINT']}{path}?api-version={api}",
                            json=body, verify=op.ca, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})


def test_a_custom_role_is_defined_read_and_refused_when_malformed(op: Operator) -> None:
    role_id = op.define_role(unique("role"), ["Microsoft.Compute/cloudServices/read"])
    got = raw(op, "GET", role_id, api="2022-04-01").json()
    assert got["type"] == "Microsoft.Authorization/roleDefinitions"
    assert got["properties"]["type"] == "CustomRole"
    assert got["properties"]["permissions"][0]["actions"] == [
        "Microsoft.Compute/cloudServices/read"]
    bad = raw(op, "PUT", f"/subscriptions/{op.sub}{DEFINITIONS}/{role_id.rsplit('/', 1)[1]}",
              {"properties": {"roleName": "x", "permissions": [{"actions": []}]}},
              api="2022-04-01")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidAssignableScopes"


def test_a_group_is_checked_only_once_the_principal_holds_a_custom_role_there(
    op: Operator,
) -> None:
    rg = op.resource_group(unique("rg"))
    service = f"{rg}/providers/Microsoft.Compute/cloudServices/{unique('cs')}"
    # Not opted in: the restart of a missing service reaches the provider (404).
    assert raw(op, "POST", f"{service}/restart", {"roleInstances": ["*"]}).status_code == 404
    reader = op.define_role(unique("role"), ["Microsoft.Compute/cloudServices/read"])
    op.assign(rg, reader)
    refused = raw(op, "POST", f"{service}/restart", {"roleInstances": ["*"]})
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "code": "AuthorizationFailed",
        "message": (
            f"The client '{op.principal}' with object id '{op.principal}' does not have "
            "authorization to perform action 'Microsoft.Compute/cloudServices/restart/action' "
            f"over scope '{service}' or the scope is invalid. If access was recently granted, "
            "please refresh your credentials."),
    }
