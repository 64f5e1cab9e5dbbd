"""Every action of every custom role in infra/ is one Azure documents, or a justified wildcard.

Azure refuses a role definition naming an operation its provider does not list, and a role
that lacks what the app calls fails only on the first real update (a poll answered 403 after
the PUT was applied). So each action is checked against the documented operation list
(``tests/fixtures/azure/permissions/operations.json``, trimmed from the RBAC permissions
pages; see its PROVENANCE.md), and each wildcard must be listed in ``WILDCARDS`` with the
calls it is there for: the test shows those calls match it and that no documented,
narrower action would.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.bicep import ROOT, resources, variable

OPERATIONS = ROOT / "tests" / "fixtures" / "azure" / "permissions" / "operations.json"

# wildcard -> (the actions ARM checks for what the app calls, why no documented action fits)
WILDCARDS = {
    "Microsoft.Compute/cloudServices/updateDomains/*": (
        ["Microsoft.Compute/cloudServices/updateDomains/write"],
        "walk_update_domain is PUT …/updateDomains/{n}; the provider documents only "
        "updateDomains/read, and a role naming an undocumented action is refused",
    ),
    "Microsoft.Compute/locations/*/read": (
        ["Microsoft.Compute/locations/CsOperations/read"],
        "cloud-service operations are polled at …/locations/{loc}/CsOperations/{id} "
        "(Update-AzCloudService recording); compute.md has no CsOperations entry and "
        "locations/operations/read names another type",
    ),
}


def documented() -> set[str]:
    data = json.loads(OPERATIONS.read_text())
    return {a.lower() for key, actions in data.items() if key != "comment" for a in actions}


def matches(pattern: str, action: str) -> bool:
    """Azure's wildcard rule: ``*`` stands for any characters, case-insensitively."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, action, re.IGNORECASE) is not None


def custom_role_actions() -> list[tuple[str, str]]:
    """(role symbol, action) for every action of every custom role defined in infra/."""
    found = []
    for role in resources("Microsoft.Authorization/roleDefinitions"):
        for permission in role.body["properties"]["permissions"]:
            actions = permission["actions"]
            if isinstance(actions, str):  # a variable of the same file
                actions = variable(role.file, actions)
            assert permission["notActions"] == [] and permission["dataActions"] == []
            found += [(role.symbol, action) for action in actions]
    return found


def test_the_roles_are_read() -> None:
    symbols = {symbol for symbol, _ in custom_role_actions()}
    assert symbols == {"cloudServiceOperator", "operationReader", "networkJoiner",
                       "vaultDeployer"}


@pytest.mark.parametrize(("role", "action"), custom_role_actions())
def test_each_action_is_documented_or_a_justified_wildcard(role: str, action: str) -> None:
    known = documented()
    if "*" not in action:
        assert action.lower() in known, f"{role}: {action} is not a documented operation"
        return
    assert action in WILDCARDS, f"{role}: wildcard {action} needs a WILDCARDS entry"
    called, _why = WILDCARDS[action]
    assert any(matches(action, a) for a in known), f"{action} matches no documented operation"
    for needed in called:
        assert matches(action, needed)
        assert needed.lower() not in known, f"{needed} is documented: grant it by name"


def test_every_wildcard_is_used() -> None:
    assert {a for _, a in custom_role_actions() if "*" in a} == set(WILDCARDS)


def test_the_old_poll_action_would_not_cover_the_real_poll() -> None:
    """The reason for the change: operations/read does not match CsOperations."""
    assert not matches("Microsoft.Compute/locations/operations/read",
                       "Microsoft.Compute/locations/CsOperations/read")
    assert matches("Microsoft.Compute/locations/*/read",
                   "Microsoft.Compute/locations/CsOperations/read")
