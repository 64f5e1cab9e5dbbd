"""End-to-end: the hint queue with two Functions host instances, one killed mid-update.

The module has a stack of its own with two host instances sharing the queues, as a
scaled-out app's instances do, so a test may kill one. Their queue-message lease is 4 s
(``LOCAL_QUEUE_MESSAGE_LEASE_SECONDS``; 10 minutes in Azure) and a failed attempt comes
back after 5 s (host.json ``visibilityTimeout`` overridden), so a dead instance's hint
returns to the living one within seconds.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest

from emulators.polling import wait_for
from emulators.provision import Operator
from emulators.stack import QUEUE_RETRY_SETTING, Stack
from shared.messages import HINTS_QUEUE
from tests.conftest import LocalStack
from tests.e2e.world import RUNS_CONTAINER, World

MESSAGE_LEASE_S = 4


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Stack]]:
    settings = {
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


def test_a_host_killed_mid_update_leaves_the_hint_to_the_other_one_which_finishes_it(
    pair: tuple[LocalStack, Stack],
) -> None:
    stack, running = pair
    world = World(stack, Operator(stack.env))
    hosts = running.instances()
    assert len(hosts) == 2
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    stack.admin("POST", "/cloudservices/settings", {"update_seconds": 6})

    v2 = world.new_version()
    put = wait_for(lambda: world.puts(svc), "the PUT to be accepted", timeout=60)[0]
    working = wait_for(
        lambda: [h for h in hosts if "Executing 'Functions.rotation_hints'" in h.log.read_text()],
        "the instance working on the hint",
    )
    (victim,) = working
    victim.kill(signal.SIGKILL)  # mid-update: PUT accepted, operation running, run open
    survivor = next(h for h in hosts if h is not victim)

    world.wait_hints_worked(timeout=120)
    world.assert_on(svc, v2)
    assert world.puts(svc, succeeded=False) == [put]  # the operation was followed, not resent
    assert "Executing 'Functions.rotation_hints'" in survivor.log.read_text()
    # Read from storage: the instance that answers the stack's HTTP API may be the dead one.
    container = world.op.blobs.get_container_client(RUNS_CONTAINER)
    records = [
        json.loads(container.download_blob(blob.name).readall())
        for blob in container.list_blobs()
    ]
    first = next(r for r in records if r["services"] and r["services"][0].get("operationId"))
    assert first["status"] == "done" and first["services"][0]["outcome"] == "rotated", first
    assert "finished by run" in first["services"][0]["message"]
    assert world.op.queued(HINTS_QUEUE) == 0
    assert world.op.queued(f"{HINTS_QUEUE}-poison") == 0
