"""End-to-end: the app's ARM rights are the Bicep's custom roles and nothing more.

Every world gives the app the roles of ``infra/app/roles.bicep`` (actions read from the
Bicep) at its resource group, and the operation reader at the subscription, which makes the
stack's ARM check each cloud-service write there and each poll of its operation (see
``emulators/authorization.py``). These tests take one right away at a time and show Azure's
refusal, in ARM's words, reaching the app: the PUT that re-sends ``networkProfile`` needs
the join actions on the public IP (LinkedAuthorizationFailed), and the poll at
``…/locations/{loc}/CsOperations/{id}`` needs ``locations/*/read`` (the documented
``locations/operations/read`` is not enough: AuthorizationFailed after Azure applied the
update).
"""

from __future__ import annotations

from emulators.polling import wait_for
from emulators.provision import Operator
from shared.domain.events import parse_event
from shared.domain.records import Trigger
from tests.conftest import LocalStack
from tests.e2e.world import (
    CERT,
    World,
    engine_for,
    event_item,
    grant_bicep_roles,
    version_of,
)

OPERATION_READER = "certrotate operation reader"
NETWORK_JOINER = "certrotate network joiner"


def rotate(world: World, version: str) -> list[tuple[str, str]]:
    """The app handles a NewVersionCreated for ``version``: (outcome, message) per service."""
    run = engine_for(world).handle_event(parse_event(event_item(world, version)))
    assert run is not None
    return [(r.outcome, r.message) for r in run.results]


def refusals(world: World, since: int) -> list[dict[str, object]]:
    return [c for c in world.product_calls(since) if c["service"] == "arm" and c["status"] == 403]


def test_the_app_rotates_with_exactly_the_bicep_roles(stack: LocalStack, op: Operator) -> None:
    world = World(stack, op)
    svc = world.deploy(world.new_version())
    v2 = world.new_version()
    mark = stack.request_mark()
    assert [o for o, _ in rotate(world, version_of(v2))] == ["rotated"]
    world.assert_on(svc, v2)
    calls = world.product_calls(mark)
    assert any("/csoperations/" in c["path"].lower() for c in calls)  # it polled, allowed
    assert not refusals(world, mark)


def test_a_put_without_the_join_action_is_refused_on_the_linked_public_ip(
    stack: LocalStack, op: Operator
) -> None:
    world = World(stack, op)
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    op.revoke_role(world.arm_roles[NETWORK_JOINER])
    mark = stack.request_mark()
    results = rotate(world, version_of(v2))
    ip = f"{world.rg}/providers/Microsoft.Network/publicIPAddresses/{svc.name}-ip"
    assert [o for o, _ in results] == ["failed"], results
    assert (
        f"has permission to perform action 'Microsoft.Compute/cloudServices/write' on scope "
        f"'{svc.id}'; however, it does not have permission to perform action(s) "
        f"'Microsoft.Network/publicIPAddresses/join/action' on the linked scope(s) '{ip}'"
    ) in results[0][1]
    assert [c["method"] for c in refusals(world, mark)] == ["PUT"]
    world.assert_on(svc, v1)  # nothing was written
    world.arm_roles.update(grant_bicep_roles(op, world.rg))  # the positive control
    # The refused PUT put that version in its backoff: events wait it out (no loop of
    # refused PUTs); the operator who fixed the grant says so explicitly.
    assert [o for o, _ in rotate(world, version_of(v2))] == ["backoff"]
    forced = engine_for(world).rotate(world.vault_id, CERT, Trigger("manual"), force=True)
    assert [r.outcome for r in forced.results] == ["rotated"]
    world.assert_on(svc, v2)


def test_the_documented_operations_action_would_not_let_the_app_follow_its_update(
    stack: LocalStack, op: Operator
) -> None:
    """With the action infra used to grant, the PUT lands and every poll is refused: the run
    says failed although Azure applied the update (the reason for ``locations/*/read``)."""
    world = World(stack, op)
    svc = world.deploy(world.new_version())
    v2 = world.new_version()
    before = op.define_role("certrotate operation reader (before)",
                            ["Microsoft.Compute/locations/operations/read"])
    op.revoke_role(world.arm_roles[OPERATION_READER])  # the subscription's, shared: restored
    try:
        op.assign(f"/subscriptions/{op.sub}", before)
        mark = stack.request_mark()
        results = rotate(world, version_of(v2))
    finally:
        world.arm_roles.update(grant_bicep_roles(op, world.rg))
    assert [o for o, _ in results] == ["failed"]
    assert (
        "AuthorizationFailed: The client '{0}' with object id '{0}' does not have authorization "
        "to perform action 'Microsoft.Compute/locations/CsOperations/read' over scope "
        f"'/subscriptions/{op.sub}/providers/Microsoft.Compute/locations/westus/CsOperations/"
    ).format(op.principal) in results[0][1]
    refused = refusals(world, mark)
    assert refused and all("/csoperations/" in str(c["path"]).lower() for c in refused)
    wait_for(lambda: world.read(svc).state == "Succeeded", "the update to end")
    world.assert_on(svc, v2)  # Azure applied it all the same
