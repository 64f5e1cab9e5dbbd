"""End-to-end: a PUT whose answer does not say what happened is never lost or repeated.

Azure can answer a cloud-service PUT 500 ``InternalOperationError`` "The operation has
timed out." after ~44 s (azure-cli-extensions recording, kept in
``tests/fixtures/azure/compute/faults/put_timed_out.json``), and an answer can be lost on
the way. The stack's ``apply`` faults reproduce both: the PUT lands (the update runs) and
the client gets the recorded 500 after a delay, or its connection is closed with no
answer (``drop``). Whatever the answer, the request log must show exactly one PUT, the
journal must track the running update until it ends, and the outcome must be Azure's.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from shared.domain.errors import PlatformRejected
from shared.domain.records import Trigger
from tests.e2e.test_faults import HostLog, fault, service_path
from tests.e2e.test_reliability import pending_journals
from tests.e2e.world import CERT, World, engine_for

FIXTURE = Path(__file__).parents[1] / "fixtures" / "azure" / "compute" / "faults"
RECORDED = json.loads((FIXTURE / "put_timed_out.json").read_text())
TIMED_OUT = RECORDED["interactions"][0]
# The recorded ~44 s, scaled for the suite (the stack's updates take 0.3 s, not minutes).
ANSWER_DELAY_MS = 1500


def recorded_500(world: World, svc: Any, **extra: Any) -> None:
    """The next PUT on ``svc`` lands, then answers what Azure answered in the recording."""
    error = TIMED_OUT["body"]["error"]
    fault(
        world, service="arm", method="PUT", path=service_path(svc), apply=True,
        status=TIMED_OUT["status"], code=error["code"], message=error["message"],
        delay_ms=ANSWER_DELAY_MS, **extra,
    )


def test_a_put_that_lands_and_answers_the_recorded_500_is_followed_not_resent(
    world: World,
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    recorded_500(world, svc)

    run = engine_for(world, ROTATION_ROLLBACK="true").rotate(
        world.vault_id, CERT, Trigger("manual")
    )

    (result,) = run.results
    assert result.outcome == "rotated", result.message
    world.assert_on(svc, v2)
    (put,) = world.puts(svc, succeeded=False)  # one PUT: never repeated
    assert (put["status"], put["applied"]) == (500, 200)
    assert pending_journals(world) == []  # tracked to its end, then let go


def test_a_put_whose_connection_is_lost_after_it_landed_is_followed_not_resent(
    world: World,
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    fault(world, service="arm", method="PUT", path=service_path(svc), apply=True, drop=True)

    run = engine_for(world).rotate(world.vault_id, CERT, Trigger("manual"))

    (result,) = run.results
    assert result.outcome == "rotated", result.message
    world.assert_on(svc, v2)
    (put,) = world.puts(svc, succeeded=False)
    assert put["dropped"] and put["applied"] == 200
    assert pending_journals(world) == []


def test_the_recorded_500_through_event_grid_is_one_put_one_delivery(world: World) -> None:
    """Through the Functions host: the SDK's own retry (azure-core would repeat a PUT
    answered 500) is not there; the product's policy gives up at once and says why."""
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    log = HostLog(world.stack)
    recorded_500(world, svc)

    v2 = world.new_version()
    world.wait_delivered()

    world.assert_on(svc, v2)
    assert [p["status"] for p in world.puts(svc, succeeded=False)] == [500]
    assert [d["outcome"] for d in world.deliveries()] == ["Succeeded"]
    (line,) = log.retries(" PUT ", svc.name)
    assert line.endswith("giving up: an ARM PUT answered 500 may have started an operation")
    (record,) = world.records()
    assert record["services"][0]["outcome"] == "rotated", record["services"]


def test_a_landed_put_that_outlives_the_run_stays_journaled_and_is_finished_later(
    world: World,
) -> None:
    """No token (the answer was a 500): whoever comes next follows the service's state."""
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    world.stack.admin("POST", "/cloudservices/settings", {"update_seconds": 3.0})
    try:
        recorded_500(world, svc)
        run = engine_for(world).rotate(
            world.vault_id, CERT, Trigger("manual"), wait_seconds=ANSWER_DELAY_MS / 1000 + 0.3
        )
        assert [r.outcome for r in run.results] == ["updating"], run.to_json()
        assert pending_journals(world) == [svc.id.lower()]

        finished = engine_for(world).finish_pending(wait_seconds=30)
    finally:
        world.stack.admin("POST", "/cloudservices/settings", {"update_seconds": None})

    assert finished == {"resumed-succeeded": 1}, finished
    world.assert_on(svc, v2)
    assert len(world.puts(svc, succeeded=False)) == 1
    (record,) = world.records()
    assert record["services"][0]["outcome"] == "rotated", record["services"]
    assert pending_journals(world) == []


def test_sending_a_write_leaves_the_snapshot_it_was_built_from_as_azure_said(
    world: World,
) -> None:
    """The adapter builds the PUT from a copy: a snapshot is frozen, and its model must
    keep saying what Azure said (here the PUT is refused, after the body was built)."""
    svc = world.deploy(world.new_version())
    compute = engine_for(world).compute
    snapshot = compute.get(svc.id)
    said = snapshot.raw.as_dict()

    # The cscfg names certificates no secret provides: Azure refuses, as recorded.
    with contextlib.suppress(PlatformRejected):
        compute.begin_update(snapshot, snapshot.configuration, (), None, poll=False)

    assert snapshot.raw.as_dict() == said
    assert world.puts(svc, succeeded=False)  # positive control: the PUT was sent
