"""End-to-end: the work queues with two Functions host instances: fan-out in batches, the
batch poison path, a service waited for, and an instance killed mid-update.

The module has a stack of its own with two host instances sharing the queues, as a
scaled-out app's instances do, so a test may kill one, and ``SERVICES_PER_MESSAGE`` 2, so
a handful of services is fanned out. Their queue-message lease is 4 s
(``LOCAL_QUEUE_MESSAGE_LEASE_SECONDS``; 10 minutes in Azure) and a failed attempt comes
back after 5 s (host.json ``visibilityTimeout`` overridden), so a dead instance's hint
returns to the living one within seconds.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from emulators.polling import wait_for
from emulators.provision import Operator
from emulators.stack import QUEUE_RETRY_SETTING, QUICK_QUEUES, Stack
from shared.domain.messages import HINTS_QUEUE, SERVICES_QUEUE
from tests.conftest import LocalStack
from tests.e2e.world import CERT, RUNS_CONTAINER, World, api, engine_for

MESSAGE_LEASE_S = 4


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Stack]]:
    settings = {
        "SERVICES_PER_MESSAGE": "2",
        **QUICK_QUEUES,
        # The worker follows its updates for 4 s here, so the kill below lands mid-update
        # inside the hint's invocation (by default it returns right after the PUT).
        "EVENT_WAIT_SECONDS": "4",
        "LOCAL_QUEUE_MESSAGE_LEASE_SECONDS": str(MESSAGE_LEASE_S),
        QUEUE_RETRY_SETTING: "00:00:05",
    }
    running = Stack.up(
        tmp_path_factory.mktemp("pipeline"), update_seconds=0.3, settings=settings, hosts=2
    )
    saved = dict(os.environ)
    os.environ.update(running.env)  # the credentials find this stack's identity endpoint
    try:
        yield LocalStack(running.env, running.folder), running
    finally:
        running.down()
        os.environ.clear()
        os.environ.update(saved)


def stored_records(world: World) -> list[dict[str, Any]]:
    """This world's run records, read from storage (any instance may have written them)."""
    container = world.op.blobs.get_container_client(RUNS_CONTAINER)
    records = [
        json.loads(container.download_blob(blob.name).readall())
        for blob in container.list_blobs()
    ]
    return [r for r in records if r["vault"].lower() == world.vault_id.lower()]


def test_a_certificate_used_by_more_services_than_a_message_takes_is_fanned_out(
    pair: tuple[LocalStack, Stack],
) -> None:
    """SERVICES_PER_MESSAGE is 2 here: the hint's run converges 2 of the 5 services and
    queues the other 3 as batches of at most 2, each a run of its own."""
    stack, running = pair
    world = World(stack, Operator(stack.env))
    v1 = world.new_version()
    services = [world.deploy(v1) for _ in range(5)]
    world.subscribe()

    v2 = world.new_version()
    world.wait_delivered()

    for svc in services:
        world.assert_on(svc, v2)
        assert len(world.puts(svc, succeeded=False)) == 1
    assert [d["outcome"] for d in world.deliveries()] == ["Succeeded"]
    records = stored_records(world)
    assert sorted(len(r["services"]) for r in records) == [1, 2, 2]
    assert {r["trigger"]["eventId"] for r in records} == {world.deliveries()[0]["event_ids"][0]}
    assert {e["outcome"] for r in records for e in r["services"]} == {"rotated"}
    logs = "".join(h.log.read_text() for h in running.instances())
    assert "3 service(s) queued in 2 batch(es)" in logs


def test_a_batch_that_fails_every_attempt_ends_as_a_gave_up_run_naming_its_service(
    pair: tuple[LocalStack, Stack],
) -> None:
    """One service cannot be read (ARM 500 on its GET, always): its run is transient,
    its batch is tried maxDequeueCount times and reaches cert-rotation-services-poison,
    whose function records a gave-up run naming it. The other services converge."""
    stack, _ = pair
    world = World(stack, Operator(stack.env))
    v1 = world.new_version()
    good, broken = [world.deploy(v1) for _ in range(2)], world.deploy(v1)
    world.subscribe()
    stack.admin("POST", "/faults", {
        "service": "arm", "method": "GET", "path": f"(?i)/cloudServices/{broken.name}$",
        "status": 500, "retry_after": 0, "count": 10_000,
    })
    try:
        v2 = world.new_version()
        gave_up = wait_for(
            lambda: [r for r in stored_records(world) if r["actions"]],
            "the gave-up run", timeout=120,
        )
        world.wait_hints_worked()
    finally:
        stack.admin("DELETE", "/faults")

    ((action,),) = [r["actions"] for r in gave_up]
    assert action["kind"] == "gave-up"
    assert f"converging the services {broken.name} failed every attempt" in action["message"]
    for svc in good:
        world.assert_on(svc, v2)
    world.assert_on(broken, v1)
    assert world.puts(broken, succeeded=False) == []
    assert world.op.queued(f"{SERVICES_QUEUE}-poison") == 0  # taken by its function


@pytest.mark.timeout(240)
def test_an_operators_run_is_retrying_until_the_queue_gives_up_then_ends_transient(
    pair: tuple[LocalStack, Stack],
) -> None:
    """An operator's run of a service whose update Azure refuses every time (ARM 503 on
    its PUT, nothing applied): each failed attempt leaves the same record ``retrying``,
    since the queue runs it again and whoever follows it must wait; once its batch
    reaches the poison queue the run ends ``transient``, with the gave-up action naming
    the service."""
    stack, _ = pair
    world = World(stack, Operator(stack.env))
    v1 = world.new_version()
    broken = world.deploy(v1)
    world.new_version()
    stack.admin("POST", "/faults", {
        "service": "arm", "method": "PUT", "path": f"(?i)/cloudServices/{broken.name}$",
        "status": 503, "retry_after": 0, "count": 10_000,
    })
    statuses: list[str] = []

    def ended() -> dict[str, Any] | None:
        record: dict[str, Any] = api(stack, "GET", resp.headers["Location"]).json()
        if not statuses or statuses[-1] != record["status"]:
            statuses.append(record["status"])
        return record if record["status"] == "transient" else None

    try:
        resp = api(stack, "POST", "/api/rotations", {
            "vault": world.vault_id, "certificate": CERT, "cloudServices": [broken.id],
        })
        assert resp.status_code == 202, resp.text
        record = wait_for(ended, "the queue to give up on the run", timeout=200)
        world.wait_hints_worked()
    finally:
        stack.admin("DELETE", "/faults")

    assert "retrying" in statuses, statuses
    assert statuses[-1] == "transient" and record["finished"], statuses
    ((action,),) = [record["actions"]]
    assert action["kind"] == "gave-up"
    assert f"converging the services {broken.name} failed every attempt" in action["message"]
    (entry,) = record["services"]
    assert entry["outcome"] == "transient", entry
    assert world.puts(broken) == [] and world.puts(broken, succeeded=False)  # all refused
    world.assert_on(broken, v1)


def test_a_service_held_by_another_invocation_is_waited_for_without_spending_attempts(
    pair: tuple[LocalStack, Stack],
) -> None:
    """Another invocation holds the service's lease: the batch is sent again with a
    growing delay (1 s, 2 s, ... here) as a new message, so each wait is attempt 1 and
    the message never nears maxDequeueCount; once the lease is let go it converges."""
    stack, running = pair
    world = World(stack, Operator(stack.env))
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()

    def logs() -> str:
        return "".join(h.log.read_text() for h in running.instances())

    with engine_for(world).storage.lock(svc.id):
        v2 = world.new_version()
        wait_for(lambda: "(wait 2 of 12)" in logs(), "the batch to wait twice", timeout=60)
        assert world.puts(svc, succeeded=False) == []
    world.wait_hints_worked()

    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1
    text = logs()
    assert "(wait 1 of 12)" in text
    event_id = world.deliveries()[0]["event_ids"][0]
    attempts = [
        line.rsplit("attempt ", 1)[1]
        for line in text.splitlines()
        if f"(event {event_id}, attempt " in line and "batch of" in line
    ]
    assert attempts and set(attempts) == {"1)"}, attempts  # waiting spent no attempt
    assert not [r for r in stored_records(world) if r["actions"]]  # nothing given up


def test_a_host_killed_mid_update_leaves_the_hint_to_the_other_one_which_finishes_it(
    pair: tuple[LocalStack, Stack],
) -> None:
    """Last in the module: it kills an instance, maybe the one Event Grid delivers to."""
    stack, running = pair
    world = World(stack, Operator(stack.env))
    hosts = running.instances()
    assert len(hosts) == 2
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    stack.admin("POST", "/cloudservices/settings", {"update_seconds": 6})

    seen = {h: len(h.log.read_text()) for h in hosts}  # earlier tests' hints are logged too

    v2 = world.new_version()
    put = wait_for(lambda: world.puts(svc), "the PUT to be accepted", timeout=60)[0]
    working = wait_for(
        lambda: [
            h for h in hosts
            if "Executing 'Functions.rotation_hints'" in h.log.read_text()[seen[h]:]
        ],
        "the instance working on the hint",
    )
    (victim,) = working
    victim.kill(signal.SIGKILL)  # mid-update: PUT accepted, operation running, run open
    survivor = next(h for h in hosts if h is not victim)

    world.wait_hints_worked(timeout=120)
    world.assert_on(svc, v2)
    assert world.puts(svc, succeeded=False) == [put]  # the operation was followed, not resent
    assert "Executing 'Functions.rotation_hints'" in survivor.log.read_text()[seen[survivor]:]
    # Read from storage: the instance that answers the stack's HTTP API may be the dead one.
    records = stored_records(world)
    # The dead instance's run (it may have died before recording its PUT) was finished
    # by the survivor's run, which found the journal.
    (dead,) = [
        r for r in records
        if r["services"] and "finished by run" in r["services"][0]["message"]
    ]
    assert dead["status"] == "done" and dead["services"][0]["outcome"] == "rotated", records
    assert world.op.queued(HINTS_QUEUE) == 0
    assert world.op.queued(f"{HINTS_QUEUE}-poison") == 0
