"""End-to-end: verification after an update tells the truth, and rolls back only on failure.

Azure reports a healthy service as ``ProvisioningState/succeeded``, ``PowerState/started``
and ``RoleState/RoleStateStarted`` (the recordings), but role instances are Busy and then
Starting for a while after an update, services may be powered off (stopped, resources
still allocated) and instances can fail. The stack shows all of it:
``POST /cloudservices/settings {"settle_seconds": n}``, ``POST .../poweroff`` through the
SDK, and ``POST /cloudservices/instances-next`` for a failure state. Every test runs with
``ROTATION_ROLLBACK=true``, so a wrong verdict would show up as a second PUT.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from shared.domain.records import Trigger
from shared.rotation.follow import STOPPED_NOTE
from tests.e2e.test_reliability import pending_journals
from tests.e2e.world import CERT, World, engine_for


@pytest.fixture
def settle(world: World) -> Iterator[Any]:
    def set_seconds(seconds: float) -> None:
        world.stack.admin("POST", "/cloudservices/settings", {"settle_seconds": seconds})

    yield set_seconds
    world.stack.admin("POST", "/cloudservices/settings", {"settle_seconds": None})


def instance_views(world: World, svc: Any, mark: int) -> int:
    """How many times the product read the service's instance view since ``mark``."""
    return sum(
        1
        for c in world.product_calls(mark)
        if c["method"] == "GET" and c["path"].lower().endswith(f"/{svc.name}/instanceview")
    )


def instances_next(world: World, svc: Any, code: str) -> None:
    """The instances the next update touches report ``code`` (the stack's admin API)."""
    world.stack.admin(
        "POST",
        "/cloudservices/instances-next",
        {"resourceGroup": svc.rg, "name": svc.name, "code": code},
    )


def rotate(world: World, **settings: str) -> Any:
    engine = engine_for(world, ROTATION_ROLLBACK="true", **settings)
    (result,) = engine.rotate(world.vault_id, CERT, Trigger("manual")).results
    return result


def test_instances_busy_then_starting_after_the_update_are_waited_for(
    world: World, settle: Any
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    settle(1.5)
    mark = world.stack.request_mark()

    result = rotate(world, INSTANCE_SETTLE_SECONDS="60")

    assert result.outcome == "rotated", result.message
    assert result.message == f"now on version {v2.properties.version}"
    world.assert_on(svc, v2)
    assert len(world.puts(svc, succeeded=False)) == 1  # not rolled back
    assert instance_views(world, svc, mark) > 1  # it waited, reading again
    assert pending_journals(world) == []


def test_instances_that_do_not_settle_in_time_are_reported_not_rolled_back(
    world: World, settle: Any
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    settle(600)

    result = rotate(world, INSTANCE_SETTLE_SECONDS="1")

    assert result.outcome == "failed"
    assert "role instances had not settled after 1 s" in result.message, result.message
    assert "RoleState/RoleStateBusy: 4" in result.message
    assert "not rolled back" in result.message
    world.assert_on(svc, v2)  # the new model stays: slowness is not a failure
    assert len(world.puts(svc, succeeded=False)) == 1
    assert pending_journals(world) == []


def test_a_stopped_service_is_updated_and_says_so_not_failed(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.op.compute.cloud_services.begin_power_off(svc.rg, svc.name).result()
    v2 = world.new_version()

    result = rotate(world)

    assert result.outcome == "rotated", result.message
    assert result.message == f"now on version {v2.properties.version}: {STOPPED_NOTE}"
    world.assert_on(svc, v2)
    assert len(world.puts(svc, succeeded=False)) == 1


def test_an_instance_failure_state_after_the_update_is_rolled_back(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.new_version()
    instances_next(world, svc, "ProvisioningState/failed")

    result = rotate(world)

    assert result.outcome == "rolled-back", result.message
    assert "RoleInstancesFailed" in result.message
    assert "ProvisioningState/failed: 4" in result.message
    world.assert_on(svc, v1)
    assert len(world.puts(svc, succeeded=False)) == 2  # the update, then the rollback
    assert pending_journals(world) == []


def test_an_instance_failure_without_rollback_is_reported_and_left_alone(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    instances_next(world, svc, "RoleState/RoleStateDestroyed")

    (result,) = engine_for(world).rotate(world.vault_id, CERT, Trigger("manual")).results

    assert result.outcome == "failed"
    assert "RoleState/RoleStateDestroyed: 4" in result.message, result.message
    world.assert_on(svc, v2)
    assert len(world.puts(svc, succeeded=False)) == 1
