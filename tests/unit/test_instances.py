"""What role-instance statuses mean after an update (pure, table-driven).

The healthy codes are the recorded ones (tests/fixtures/azure/compute: the instance-view
recording and the spec's example); the others follow the CSES states page.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.domain.instances import Settle, Verdict, judge

FIXTURES = Path(__file__).parents[1] / "fixtures" / "azure" / "compute"


def recorded_summary() -> dict[str, int]:
    path = FIXTURES / "recordings" / "cloud_service_instance_view.json"
    recording = json.loads(path.read_text())
    body = recording["interactions"][0]["body"]
    return {s["code"]: s["count"] for s in body["roleInstance"]["statusesSummary"]}


def test_the_recorded_healthy_service_is_running() -> None:
    assert judge(recorded_summary()) == Verdict(Settle.RUNNING, {})


CASES = [
    # statusesSummary                                                  -> verdict, codes
    (
        {"ProvisioningState/succeeded": 3, "PowerState/started": 3, "RoleState/RoleStateBusy": 3},
        Settle.WAITING,
        {"RoleState/RoleStateBusy": 3},
    ),
    (
        {"ProvisioningState/succeeded": 3, "PowerState/started": 3,
         "RoleState/RoleStateStarting": 1, "RoleState/RoleStateStarted": 2},
        Settle.WAITING,
        {"RoleState/RoleStateStarting": 1},
    ),
    (
        {"ProvisioningState/updating": 1, "ProvisioningState/succeeded": 2,
         "RoleState/RoleStateStarted": 3},
        Settle.WAITING,
        {"ProvisioningState/updating": 1},
    ),
    (  # a code nobody documented is waited on, never failed
        {"ProvisioningState/succeeded": 1, "RoleState/RoleStateSomethingNew": 1},
        Settle.WAITING,
        {"RoleState/RoleStateSomethingNew": 1},
    ),
    (
        {"ProvisioningState/succeeded": 3, "PowerState/stopped": 3,
         "RoleState/RoleStateStopped": 3},
        Settle.STOPPED,
        {"PowerState/stopped": 3, "RoleState/RoleStateStopped": 3},
    ),
    (
        {"ProvisioningState/failed": 1, "ProvisioningState/succeeded": 2,
         "RoleState/RoleStateBusy": 3},
        Settle.FAILED,
        {"ProvisioningState/failed": 1},
    ),
    (
        {"ProvisioningState/failed/RoleInstanceStartupFailed": 2, "PowerState/stopped": 2},
        Settle.FAILED,
        {"ProvisioningState/failed/RoleInstanceStartupFailed": 2},
    ),
    (
        {"ProvisioningState/succeeded": 2, "RoleState/RoleStateDestroyed": 1,
         "RoleState/RoleStateStarted": 1},
        Settle.FAILED,
        {"RoleState/RoleStateDestroyed": 1},
    ),
    (  # case as Azure varies it, and zero counts, do not matter
        {"provisioningstate/SUCCEEDED": 2, "rolestate/rolestatestarted": 2,
         "RoleState/RoleStateBusy": 0},
        Settle.RUNNING,
        {},
    ),
    ({}, Settle.RUNNING, {}),  # no instances: nothing to wait for
]


@pytest.mark.parametrize(("summary", "settle", "codes"), CASES)
def test_judge(summary: dict[str, int], settle: Settle, codes: dict[str, int]) -> None:
    assert judge(summary) == Verdict(settle, codes)


def test_describe_names_each_deciding_code_and_count() -> None:
    verdict = judge({"RoleState/RoleStateBusy": 2, "RoleState/RoleStateStarting": 1})
    assert verdict.describe() == "RoleState/RoleStateBusy: 2, RoleState/RoleStateStarting: 1"
