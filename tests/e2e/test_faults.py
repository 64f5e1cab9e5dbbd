"""End-to-end: the product under faults, on the local stack, through the real SDKs.

Faults come from the emulators' fault injection (``POST /faults``: ARM, Key Vault, the
identity endpoint), from a real operation running on the service, and from the storage
gate in front of Azurite (``POST /storage``: connections refused, as when the storage
endpoint is down). Each test asserts what an operator cares about: the services end on
the new certificate, the product sent exactly one accepted PUT per service and never one
while another operation ran, its retries are bounded (counted in the stack's request log)
and logged on ``certrotate.retries`` (in the Functions host's log, or captured in this
process), and every run record is finished.

Most tests go through Event Grid and the Functions host: the event is acknowledged once
queued, and a failed attempt at the hint is retried by the queue (host.json
``visibilityTimeout``, shortened for the suite) up to ``maxDequeueCount`` times. Two
tests run engines in this process, built as the app builds them: the token-endpoint test,
because it needs a fresh credential (the host's has long cached its tokens), and "two
hosts get the same event", as two engines in threads.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.compute.models import CloudServiceUpdate

from emulators.polling import wait_for
from shared.adapters.retries import RULES, tally
from shared.domain.errors import TransientError
from shared.domain.events import CertificateEvent, parse_event
from shared.domain.runs import Run
from tests.conftest import LocalStack
from tests.e2e.world import (
    CERT,
    NEW_VERSION,
    Service,
    World,
    engine_for,
    event_item,
    version_of,
)
from tests.infra.bicep import ROOT

ATTEMPTS = RULES.max_attempts  # per request, as the request log must show
GAVE_UP = f"giving up: {ATTEMPTS} attempts made"
LIST_PATH = r"(?i)/providers/Microsoft\.Compute/cloudServices$"
POLL_PATH = r"(?i)/providers/Microsoft\.Compute/locations/[^/]+/CsOperations/[^/]+$"


# -- helpers -------------------------------------------------------------------------------


def fault(world: World, **spec: Any) -> None:
    world.stack.admin("POST", "/faults", spec)


def service_path(svc: Service) -> str:
    return f"(?i)/cloudServices/{svc.name}$"


class HostLog:
    """What the Functions host logged on ``certrotate.retries`` since this was made."""

    def __init__(self, stack: LocalStack) -> None:
        # {folder}/tls/ca.pem -> {folder}/logs/functions.log, as Stack.up lays it out
        self.path = Path(stack.env["STACK_CA_BUNDLE"]).parent.parent / "logs" / "functions.log"
        self.offset = self.path.stat().st_size

    def retries(self, *containing: str) -> list[str]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            text = log.read().decode(errors="replace")
        return [
            line.split("certrotate.retries: ", 1)[1]
            for line in text.splitlines()
            if "certrotate.retries: " in line and all(part in line for part in containing)
        ]


def product_requests(world: World, service: str) -> list[dict[str, Any]]:
    return [c for c in world.product_calls() if c["service"] == service]


def assert_records_complete(world: World) -> list[dict[str, Any]]:
    records = world.records()
    assert records, "no run record"
    for record in records:
        assert record["status"] != "running" and record["finished"], record
        assert all(s["outcome"] != "pending" for s in record["services"]), record
    return records


def seconds_between(earlier: dict[str, Any], later: dict[str, Any]) -> float:
    parse = dt.datetime.fromisoformat
    return (parse(later["time"]) - parse(earlier["time"])).total_seconds()


def subscribe_with_dead_letters(world: World, max_attempts: int) -> str:
    """Like ``World.subscribe``, but Event Grid gives up after ``max_attempts`` deliveries
    and dead-letters, with the system topic's identity as infra does, into a fresh
    container, whose name is returned."""
    container = f"dead-letters-{uuid.uuid4().hex[:8]}"
    world.op.blobs.create_container(container)
    world.subscription = f"sub{uuid.uuid4().hex[:10]}"
    world.op.subscribe(
        world.rg, world.vault_id, world.subscription,
        dead_letter_container=container, max_attempts=max_attempts,
    )
    return container


@pytest.fixture
def storage(world: World) -> Iterator[None]:
    """Storage is given back after the test, whatever happened."""
    yield
    world.stack.admin("POST", "/storage", {"available": True})


@pytest.fixture
def slow_updates(world: World) -> Iterator[None]:
    yield
    world.stack.admin("POST", "/cloudservices/settings", {"update_seconds": None})


# -- ARM -----------------------------------------------------------------------------------


def test_arm_429_with_retry_after_on_list_get_put_and_poll_is_waited_out(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    log = HostLog(world.stack)
    throttled = {
        ("GET", LIST_PATH),
        ("GET", service_path(svc)),
        ("PUT", service_path(svc)),
        ("GET", POLL_PATH),
    }
    for method, path in throttled:
        fault(world, service="arm", method=method, path=path, status=429, retry_after=1)

    v2 = world.new_version()
    world.wait_delivered()

    world.assert_on(svc, v2)
    assert [d["outcome"] for d in world.deliveries()] == ["Succeeded"]  # all in-process
    assert [p["status"] for p in world.puts(svc, succeeded=False)] == [429, 200]
    arm = product_requests(world, "arm")
    injected = [c for c in arm if c["injected"]]
    assert len(injected) == len(throttled)
    for hit in injected:  # the retry came after the second the server asked for
        retry = next(
            c
            for c in arm[arm.index(hit) + 1 :]
            if (c["method"], c["path"]) == (hit["method"], hit["path"])
        )
        assert seconds_between(hit, retry) >= 0.95, (hit, retry)
    lines = log.retries("arm ", "(429)")
    assert len(lines) == len(throttled), lines
    assert all(f"attempt 1 of {ATTEMPTS}; retrying in 1.0s" in line for line in lines)
    assert any(" PUT " in line for line in lines)
    assert any("/CsOperations/" in line for line in lines)
    assert_records_complete(world)


def test_arm_500_and_503_then_recovery_is_ridden_out_with_backoff(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    log = HostLog(world.stack)
    fault(world, service="arm", method="GET", path=LIST_PATH, status=500)
    fault(world, service="arm", method="GET", path=service_path(svc), status=503, count=2)

    v2 = world.new_version()
    world.wait_delivered()

    world.assert_on(svc, v2)
    assert [d["outcome"] for d in world.deliveries()] == ["Succeeded"]
    assert [p["status"] for p in world.puts(svc, succeeded=False)] == [200]
    reads = log.retries(" GET ", svc.name)
    assert [line.rsplit("; ", 1)[1] for line in reads] == ["retrying in 1.0s", "retrying in 2.0s"]
    assert len(log.retries("arm GET", "(500)")) == 1
    (record,) = assert_records_complete(world)
    assert record["services"][0]["outcome"] == "rotated"


def test_arm_503_on_the_put_is_not_retried_blindly_the_next_attempt_looks_and_replans(
    world: World,
) -> None:
    """A PUT answered 503 may have landed: not repeated in-process. The service shows no
    change, but that first look is not final: the hint's attempt fails, and the queue's
    next attempt looks again (still untouched), then plans and sends the PUT once more."""
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    log = HostLog(world.stack)
    fault(world, service="arm", method="PUT", path=service_path(svc), status=503, retry_after=1)

    v2 = world.new_version()
    world.wait_delivered()

    world.assert_on(svc, v2)
    assert [p["status"] for p in world.puts(svc, succeeded=False)] == [503, 200]
    assert [d["outcome"] for d in world.deliveries()] == ["Succeeded"]  # acknowledged once
    (line,) = log.retries(" PUT ", svc.name)
    assert line.endswith("giving up: an ARM PUT answered 503 may have started an operation")
    first, second = assert_records_complete(world)
    assert first["services"][0]["outcome"] == "transient", first["services"]
    assert "did not land" in first["services"][0]["message"]
    assert "Azure answered 503" in first["services"][0]["message"]
    assert second["services"][0]["outcome"] == "rotated"


def test_arm_500_forever_fails_each_attempt_after_four_requests_then_converges(
    world: World,
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    log = HostLog(world.stack)
    fault(world, service="arm", method="GET", path=LIST_PATH, status=500, retry_after=0, count=1000)

    v2 = world.new_version()
    wait_for(lambda: len(log.retries(GAVE_UP)) >= 2, "two failed attempts at the hint", 60)
    world.stack.admin("DELETE", "/faults")
    world.wait_delivered()

    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1
    # Event Grid was answered at once; the attempts were the hint queue's.
    assert [d["outcome"] for d in world.deliveries()] == ["Succeeded"]
    failed = len(log.retries(GAVE_UP))
    assert failed >= 2
    # Bounded: 4 list requests per failed attempt (the fault may have been cleared in the
    # middle of the attempt that then succeeded).
    lists = [c for c in product_requests(world, "arm") if c["injected"]]
    assert ATTEMPTS * failed <= len(lists) < ATTEMPTS * (failed + 1)
    assert len(world.puts(svc, succeeded=False)) == 1
    assert_records_complete(world)


def test_arm_500_that_never_clears_ends_in_the_poison_queue_as_a_gave_up_run(
    world: World,
) -> None:
    """After host.json's maxDequeueCount failed attempts the host moves the hint to
    ``cert-rotation-hints-poison``; the poison function records a run with a ``gave-up``
    action (an alert), so the event is never dropped silently. Nothing was written."""
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    log = HostLog(world.stack)
    fault(world, service="arm", method="GET", path=LIST_PATH, status=500, retry_after=0, count=1000)

    world.new_version()
    gave_up = wait_for(
        lambda: [r for r in world.records() if r["actions"]], "the gave-up run", timeout=90
    )
    world.stack.admin("DELETE", "/faults")
    world.wait_hints_worked(timeout=30)

    ((action,),) = [r["actions"] for r in gave_up]
    assert action["kind"] == "gave-up"
    assert "failed every attempt the queue allows" in action["message"]
    attempts = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"][
        "maxDequeueCount"
    ]
    assert len(log.retries(GAVE_UP)) == attempts
    assert len([c for c in product_requests(world, "arm") if c["injected"]]) == (
        attempts * ATTEMPTS
    )
    assert [d["outcome"] for d in world.deliveries()] == ["Succeeded"]
    assert world.puts(svc, succeeded=False) == []
    world.assert_on(svc, v1)


def test_queue_storage_down_fails_the_delivery_and_is_dead_lettered(
    world: World, storage: None
) -> None:
    """The hint cannot be queued: the delivery fails (nothing was accepted, nothing is
    lost), Event Grid retries and, after ``max_attempts``, dead-letters the event."""
    v1 = world.new_version()
    svc = world.deploy(v1)
    container = subscribe_with_dead_letters(world, max_attempts=2)
    world.stack.admin("POST", "/storage", {"available": False, "service": "queue"})

    world.new_version()
    lettered = wait_for(
        lambda: [
            d
            for d in world.stack.admin("GET", "/eventgrid/deliveries")
            if d["kind"] == "DeadLettered" and d["name"] == world.subscription
        ],
        "the event to be dead-lettered",
        timeout=60,
    )

    assert lettered[0]["reason"] == "MaxDeliveryAttemptsExceeded"
    assert [d["status"] for d in world.deliveries()] == [500, 500]
    assert world.puts(svc, succeeded=False) == []
    blobs = list(world.op.blobs.get_container_client(container).list_blobs())
    assert len(blobs) == 1  # the event is kept for the operator to replay
    world.assert_on(svc, v1)


def test_conflicting_operation_is_waited_for_and_never_overwritten(
    world: World, slow_updates: None
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    # Someone else updates the service (its tags) and the operation runs for 3 s.
    world.stack.admin("POST", "/cloudservices/settings", {"update_seconds": 3})
    tags = {**(world.op.compute.cloud_services.get(svc.rg, svc.name).tags or {}), "owner": "ops"}
    theirs = world.op.compute.cloud_services.begin_update(
        svc.rg, svc.name, CloudServiceUpdate(tags=tags)
    )
    world.stack.admin("POST", "/cloudservices/settings", {"update_seconds": None})

    v2 = world.new_version()  # the event arrives while their operation runs
    world.wait_delivered()
    theirs.result()

    world.assert_on(svc, v2)
    cs = world.op.compute.cloud_services.get(svc.rg, svc.name)
    assert (cs.tags or {}).get("owner") == "ops"  # their change survived ours
    ours = world.puts(svc, succeeded=False)
    assert [p["status"] for p in ours] == [200]  # not even a PUT answered 409
    their_patch = next(
        c
        for c in world.stack.requests_since(world.mark)
        if c["method"] == "PATCH" and c["path"].endswith(svc.name)
    )
    assert seconds_between(their_patch, ours[0]) >= 3.0  # only once theirs had finished
    # Acknowledged at once; the attempts that found their operation running were the
    # hint queue's, each a run that ended transient.
    assert [d["outcome"] for d in world.deliveries()] == ["Succeeded"]
    records = assert_records_complete(world)
    assert [r["services"][0]["outcome"] for r in records][-1] == "rotated"
    assert {r["services"][0]["outcome"] for r in records[:-1]} == {"transient"}


# -- Key Vault -----------------------------------------------------------------------------


def test_key_vault_429_and_503_are_ridden_out(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()  # before the subscription: the operator's reads are done
    world.subscribe()
    log = HostLog(world.stack)
    fault(
        world,
        service="keyvault",
        method="GET",
        path=f"(?i)^/certificates/{CERT}/versions$",
        status=429,
        retry_after=1,
    )
    fault(world, service="keyvault", method="GET", path=f"(?i)^/certificates/{CERT}/?$", status=503)

    world.raise_event(NEW_VERSION, version_of(v2))
    world.wait_delivered()

    world.assert_on(svc, v2)
    assert [d["outcome"] for d in world.deliveries()] == ["Succeeded"]
    assert len(world.puts(svc)) == 1
    kv = product_requests(world, "keyvault")
    assert sorted(c["status"] for c in kv if c["injected"]) == [429, 503]
    assert len(log.retries("keyvault GET", "(429)", "retrying in 1.0s")) == 1
    assert len(log.retries("keyvault GET", "(503)", "retrying in 1.0s")) == 1
    assert_records_complete(world)


# -- storage -------------------------------------------------------------------------------


def test_blob_storage_unavailable_means_no_write_then_converges(
    world: World, storage: None
) -> None:
    """The app's blobs (leases, journals, records) are gone but its queues are not: the
    event is accepted, each attempt at the hint fails before any write (no lease, no
    PUT), and the queue's next attempt after storage returns converges the service."""
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    log = HostLog(world.stack)
    down = world.stack.admin("POST", "/storage", {"available": False, "service": "blob"})
    assert down["services"]["blob"]["available"] is False

    v2 = world.new_version()
    wait_for(lambda: GAVE_UP in " ".join(log.retries("storage ")), "a failed attempt", 60)
    assert world.puts(svc, succeeded=False) == []  # no lock (nor record): nothing written
    world.stack.admin("POST", "/storage", {"available": True})
    world.wait_delivered()

    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1
    assert [d["outcome"] for d in world.deliveries()] == ["Succeeded"]
    lines = log.retries("storage ", "(ServiceRequestError)")
    assert [line.rsplit("; ", 1)[1] for line in lines[:4]] == [
        "retrying in 1.0s",
        "retrying in 2.0s",
        "retrying in 4.0s",
        GAVE_UP,
    ]
    assert_records_complete(world)


def test_storage_outage_is_reported_as_a_transient_error(world: World, storage: None) -> None:
    v1 = world.new_version()
    world.deploy(v1)
    v2 = world.new_version()
    event = parse_event(event_item(world, version_of(v2)))
    engine = engine_for(world)
    world.stack.admin("POST", "/storage", {"available": False})

    with pytest.raises(TransientError, match=r"connection failed \(ServiceRequestError\)"):
        engine.handle_event(event)


# -- identity ------------------------------------------------------------------------------


def test_token_endpoint_failure_means_no_write_and_a_clear_error_then_converges(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    event = parse_event(event_item(world, version_of(v2)))
    fault(world, service="identity", status=500, retry_after=0, count=1000)
    mark = world.stack.request_mark()
    before = tally()

    with (
        caplog.at_level(logging.WARNING, logger="certrotate.retries"),
        pytest.raises(
            TransientError, match=r"could not get an access token for the app's identity"
        ) as failed,
    ):
        engine_for(world).handle_event(event)

    assert "\n" not in str(failed.value) and "ManagedIdentityCredential" in str(failed.value)
    calls = world.product_calls(mark)
    assert [c["service"] for c in calls] == ["identity"] * ATTEMPTS  # and nothing else
    retries = [r.getMessage() for r in caplog.records if r.name == "certrotate.retries"]
    assert [m.split(" failed ", 1)[0] for m in retries] == ["identity GET /msi/token"] * ATTEMPTS
    assert retries[-1].endswith(GAVE_UP)
    after = tally()  # what telemetry reads
    assert after.retried["identity"] - before.retried.get("identity", 0) == ATTEMPTS - 1
    assert after.gave_up["identity"] - before.gave_up.get("identity", 0) == 1
    world.stack.admin("DELETE", "/faults")

    run = engine_for(world).handle_event(event)
    assert run is not None and [r.outcome for r in run.results] == ["rotated"]
    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1


# -- two hosts -----------------------------------------------------------------------------


def test_two_hosts_with_the_same_event_write_once(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    event = parse_event(event_item(world, version_of(v2)))
    engines = [engine_for(world), engine_for(world)]
    start = threading.Barrier(len(engines))
    runs: list[Run | None] = [None, None]
    errors: list[BaseException] = []

    def host(index: int, one: CertificateEvent = event) -> None:
        start.wait()
        try:
            runs[index] = engines[index].handle_event(one)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=host, args=(i,)) for i in range(len(engines))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    world.assert_on(svc, v2)
    assert len(world.puts(svc, succeeded=False)) == 1
    results = [r.results[0] for r in runs if r is not None]
    outcomes = sorted(r.outcome for r in results)
    print(f"\ntwo hosts, one event: {outcomes}")
    assert outcomes in (["noop", "rotated"], ["rotated", "transient"]), results
    loser = next(r for r in results if r.outcome != "rotated")
    if loser.outcome == "transient":
        assert "another invocation" in loser.message
    assert_records_complete(world)
