"""The local Functions host's queue trigger and queue output binding, on the stack's Azurite.

Two host instances serve the fixture app (tests/stack/fixtures/queueapp) against the
session's stack, as two scaled-out Functions instances share one storage account. The
app's host.json sets short intervals (poll at most every 0.5 s, failures visible again after
1 s, at most 3 attempts) and the instances' message lease is 4 s
(``LOCAL_QUEUE_MESSAGE_LEASE_SECONDS``) instead of 10 minutes, so renewal shows in seconds.
Messages are sent and read with the real azure-storage-queue SDK, base64-encoded as the
extension expects by default.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError, ServiceRequestError
from azure.identity import DefaultAzureCredential
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from emulators.polling import wait_for
from emulators.stack import HostInstance, Stack
from tests.conftest import LocalStack

APP_DIR = Path(__file__).resolve().parent / "fixtures" / "queueapp"
QUEUES = ("qa-work", "qa-done", "qa-later")
LEASE_S = 4


@dataclass(frozen=True)
class QueueWorld:
    stack: LocalStack
    hosts: list[HostInstance]
    record: Path

    def client(self, queue: str, encoded: bool = True, retries: bool = True) -> QueueClient:
        policies: dict[str, Any] = (
            {"message_encode_policy": TextBase64EncodePolicy(),
             "message_decode_policy": TextBase64DecodePolicy()} if encoded else {}
        )
        service = QueueServiceClient(
            self.stack.env["AZURITE_QUEUE_URL"], DefaultAzureCredential(),
            connection_verify=self.stack.ca, **({} if retries else {"retry_total": 0}),
        )
        return service.get_queue_client(queue, **policies)

    def send(self, order: dict[str, Any]) -> str:
        return str(self.client("qa-work").send_message(json.dumps(order)).id)

    def records(self, **match: Any) -> list[dict[str, Any]]:
        lines = self.record.read_text().splitlines() if self.record.exists() else []
        entries = [json.loads(line) for line in lines]
        return [e for e in entries if all(e.get(k) == v for k, v in match.items())]

    def wait_records(self, count: int, timeout: float = 20, **match: Any) -> list[dict[str, Any]]:
        return wait_for(lambda: (found := self.records(**match)) and len(found) >= count
                        and found, f"{count} records {match}", timeout)

    def take(self, queue: str, content: str, encoded: bool = True) -> bool:
        """Receive and delete the message with ``content`` from ``queue``, if it is there (a
        poison queue exists only from its first message on)."""
        client = self.client(queue, encoded)
        with contextlib.suppress(ResourceNotFoundError):
            for message in client.receive_messages(messages_per_page=32, visibility_timeout=5):
                if message.content == content:
                    client.delete_message(message)
                    return True
        return False


@pytest.fixture(scope="module")
def world(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueWorld]:
    record = tmp_path_factory.mktemp("queueapp") / "record.jsonl"
    running = Stack(stack.folder, stack.env)
    probe = QueueWorld(stack, [], record)
    for name in QUEUES:
        with contextlib.suppress(ResourceExistsError):
            probe.client(name).create_queue()
    settings = {"QUEUEAPP_RECORD": str(record), "LOCAL_QUEUE_MESSAGE_LEASE_SECONDS": str(LEASE_S)}
    hosts = [running.start_host(APP_DIR, settings) for _ in range(2)]
    try:
        yield QueueWorld(stack, hosts, record)
    finally:
        for host in hosts:
            host.kill(signal.SIGTERM)


def key() -> str:
    return uuid.uuid4().hex[:12]


def test_a_message_runs_once_with_its_binding_data_and_the_output_binding_writes(
    world: QueueWorld,
) -> None:
    k = key()
    message_id = world.send({"key": k})
    [start] = world.wait_records(1, key=k, event="start")
    world.wait_records(1, key=k, event="end")
    assert (start["id"], start["dequeue_count"]) == (message_id, 1)
    assert start["inserted"] is not None
    # The queue output binding added the key, base64-encoded like every message it writes.
    assert wait_for(lambda: world.take("qa-done", k), "the output message")
    # Deleted after success: it never comes back (positive control: the record above).
    assert not world.take("qa-work", json.dumps({"key": k}))


def test_a_failure_is_redelivered_after_visibility_timeout_with_dequeue_count_2(
    world: QueueWorld,
) -> None:
    k = key()
    world.send({"key": k, "fail_below": 2})
    [fail] = world.wait_records(1, key=k, event="fail")
    world.wait_records(1, key=k, event="end")
    starts = world.records(key=k, event="start")
    assert [s["dequeue_count"] for s in starts] == [1, 2]
    assert len({s["id"] for s in starts}) == 1  # the same message, delivered again
    # host.json visibilityTimeout 00:00:01: hidden about a second after the failure.
    assert starts[1]["at"] - fail["at"] >= 0.9


def test_after_max_dequeue_count_the_message_goes_to_the_poison_queue(world: QueueWorld) -> None:
    k = key()
    body = json.dumps({"key": k, "fail_below": 99})
    world.send(json.loads(body))
    wire = base64.b64encode(body.encode()).decode()
    # The poison copy is the message as it was on the wire (the host copies the text).
    assert wait_for(lambda: world.take("qa-work-poison", wire, encoded=False), "poison", 30)
    starts = world.records(key=k, event="start")
    assert [s["dequeue_count"] for s in starts] == [1, 2, 3]  # maxDequeueCount 3
    assert not world.take("qa-work", body)
    logs = "".join(h.log.read_text() for h in world.hosts)
    assert "Message has reached MaxDequeueCount of 3. Moving message to queue 'qa-work-poison'." \
        in logs


def test_a_body_that_is_not_base64_goes_to_the_poison_queue_unrun(world: QueueWorld) -> None:
    raw = f"not base64 {key()}!"
    world.client("qa-work", encoded=False).send_message(raw)
    assert wait_for(lambda: world.take("qa-work-poison", raw, encoded=False), "poison")
    assert not [r for r in world.records() if raw in json.dumps(r)]


def test_a_message_sent_with_a_visibility_delay_arrives_after_it(world: QueueWorld) -> None:
    k = key()
    world.send({"key": k, "later": 2})
    [end] = world.wait_records(1, key=k, event="end")
    [later] = world.wait_records(1, key=k, function="later")
    assert later["at"] - end["at"] >= 1.9
    assert later["dequeue_count"] == 1


def test_two_hosts_split_a_queue_and_never_run_a_message_twice(world: QueueWorld) -> None:
    keys = [key() for _ in range(12)]
    for k in keys:
        world.send({"key": k, "sleep": 0.4})
    for k in keys:
        world.wait_records(1, key=k, event="end")
    starts = [s for s in world.records(event="start") if s["key"] in keys]
    assert sorted(s["key"] for s in starts) == sorted(keys)  # each exactly once
    assert {s["pid"] for s in starts} == {h.pid for h in world.hosts}, "both took messages"


def test_the_lease_is_renewed_while_a_long_invocation_runs(world: QueueWorld) -> None:
    """Running 2.5 leases: without renewal the other instance would get it after 4 s."""
    k = key()
    world.send({"key": k, "sleep": LEASE_S * 2.5})
    world.wait_records(1, key=k, event="end", timeout=30)
    assert len(world.records(key=k, event="start")) == 1
    # Positive control: both instances were polling meanwhile (they ran other messages in
    # the test above, and they are still alive now).
    for host in world.hosts:
        assert "Host started" in host.log.read_text()


def test_the_queue_service_alone_can_be_taken_away(world: QueueWorld) -> None:
    stack = world.stack
    try:
        state = stack.admin("POST", "/storage", {"available": False, "service": "queue"})
        assert state["services"]["queue"]["available"] is False
        assert state["services"]["blob"]["available"] is True
        with pytest.raises(ServiceRequestError):
            world.client("qa-work", retries=False).get_queue_properties()
    finally:
        stack.admin("POST", "/storage", {"available": True, "service": "queue"})
    k = key()  # the listeners back off and resume once storage is back
    world.send({"key": k})
    world.wait_records(1, key=k, event="end", timeout=90)
    assert stack.admin("GET", "/storage")["available"] is True


def test_the_stack_publishes_every_host_instance(world: QueueWorld) -> None:
    env = world.stack.env
    assert env["FUNCTIONS_URLS"].split(",")[0] == env["FUNCTIONS_URL"]
    assert env["AZURITE_QUEUE_URL"].endswith("/devstoreaccount1")


def test_a_message_of_a_killed_instance_comes_back_when_its_lease_runs_out(
    world: QueueWorld,
) -> None:
    """Last in the module: it kills the instance that took the message (SIGKILL, nothing
    released), and the other one runs it again once the 4-second lease has run out."""
    k = key()
    world.send({"key": k, "sleep_first": 60})
    [first] = world.wait_records(1, key=k, event="start")
    victim = next(h for h in world.hosts if h.pid == first["pid"])
    victim.kill()
    [second] = world.wait_records(1, key=k, event="end", timeout=30)
    starts = world.records(key=k, event="start")
    assert [s["dequeue_count"] for s in starts] == [1, 2]
    assert starts[1]["pid"] != victim.pid
    assert starts[1]["at"] - first["at"] >= LEASE_S - 0.5  # not before the lease ran out
    assert second["dequeue_count"] == 2
