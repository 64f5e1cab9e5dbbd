"""Queue messages (hints, batches, follow looks): a round trip, and every malformed field
refused by name (no I/O)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.domain.errors import InvalidInput
from shared.domain.events import NEAR_EXPIRY, NEW_VERSION
from shared.domain.messages import (
    MAX_FOLLOWS,
    MAX_SERVICES,
    MAX_TEXT,
    MAX_WAITS,
    Follow,
    Hint,
    Origin,
    Requested,
    ServiceBatch,
    batches,
    follows,
    parse,
    parse_batch,
    parse_follow,
    source,
    to_text,
    wait_delay,
)

VAULT = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
    "/providers/Microsoft.KeyVault/vaults/kv1"
)
RUN = "20261203T160913Z-9871614d459c"
HINT = Hint(VAULT, "web-tls", Origin(NEW_VERSION, "e-1"), "abc123")


def body(**changes: Any) -> str:
    data = json.loads(to_text(HINT))
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    return json.dumps(data)


def test_a_hint_survives_the_queue() -> None:
    assert parse(to_text(HINT)) == HINT
    no_version = Hint(VAULT, "web-tls", Origin(NEAR_EXPIRY, "e-2"))
    assert parse(to_text(no_version)) == no_version


def test_a_hint_carries_ids_only() -> None:
    assert set(json.loads(to_text(HINT))) == {
        "kind", "vault", "certificate", "trigger", "version"
    }


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("x" * (MAX_TEXT + 1), "message"),
        ("{not json", "message"),
        ("[]", "message"),
        (body(kind="service"), "kind"),
        (body(extra=1), "extra"),
        (body(runId="20261202T220000Z-0123456789ab"), "runId"),
        (body(vault="/subscriptions/x/resourceGroups/rg"), "vault"),
        (body(certificate="a/b"), "certificate"),
        (body(certificate=""), "certificate"),
        (body(version="v 1"), "version"),
        (body(version=7), "version"),
        (body(trigger="event"), "trigger"),
        (body(trigger={"eventType": "Microsoft.KeyVault.SecretNewVersionCreated",
                       "eventId": "e"}), "trigger.eventType"),
        (body(trigger={"eventType": NEW_VERSION}), "trigger.eventId"),
        (body(trigger={"eventType": NEW_VERSION, "eventId": "e\nforged line"}),
         "trigger.eventId"),
        (body(trigger={"eventType": NEW_VERSION, "eventId": "e", "x": 1}), "trigger.x"),
    ],
)
def test_a_malformed_hint_is_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse(text)
    assert raised.value.field == field


SERVICE = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg"
    "/providers/Microsoft.Compute/cloudServices/cs{}"
)
BATCH = ServiceBatch(VAULT, "web-tls", Origin(NEW_VERSION, "e-1"), (SERVICE.format(1),))


def batch_body(**changes: Any) -> str:
    data = json.loads(to_text(BATCH))
    data.update(changes)
    return json.dumps(data)


def test_a_service_batch_survives_the_queue_and_carries_ids_only() -> None:
    assert parse_batch(to_text(BATCH)) == BATCH
    assert set(json.loads(to_text(BATCH))) == {
        "kind", "vault", "certificate", "trigger", "cloudServices", "waited"
    }


def test_a_batch_an_operator_queued_names_its_run_and_nothing_else() -> None:
    queued = ServiceBatch(VAULT, "web-tls", Requested(RUN), (SERVICE.format(1),))
    assert parse_batch(to_text(queued)) == queued
    assert json.loads(to_text(queued))["trigger"] == {"kind": "manual", "runId": RUN}
    assert source(queued.origin) == f"manual run {RUN}"


def test_a_batch_the_reconcile_timer_queued_says_so_and_only_a_batch_may() -> None:
    queued = ServiceBatch(VAULT, "web-tls", None, (SERVICE.format(1),))
    assert parse_batch(to_text(queued)) == queued
    assert json.loads(to_text(queued))["trigger"] == {"kind": "reconcile"}
    assert source(queued.origin) == "the reconcile timer's batch"
    assert source(BATCH.origin) == "event e-1"
    with pytest.raises(InvalidInput) as raised:  # a hint comes from an event
        parse(body(trigger={"kind": "reconcile"}))
    assert raised.value.field == "trigger"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (to_text(HINT), "kind"),  # a hint on the services queue
        (batch_body(cloudServices=[]), "cloudServices"),
        (batch_body(cloudServices=SERVICE.format(1)), "cloudServices"),
        (batch_body(cloudServices=[SERVICE.format(i) for i in range(MAX_SERVICES + 1)]),
         "cloudServices"),
        (batch_body(cloudServices=["/subscriptions/x/resourceGroups/rg"]), "cloudServices"),
        (batch_body(cloudServices=[7]), "cloudServices"),
        (batch_body(cloudServices=[SERVICE.format("1\n2026-01-01 INFO certrotate: forged")]),
         "cloudServices"),
        (batch_body(cloudServices=[SERVICE.format("1\x1b[2K")]), "cloudServices"),
        (batch_body(version="abc"), "version"),  # a hint's field
        (batch_body(vault="kv1"), "vault"),
        (batch_body(waited=-1), "waited"),
        (batch_body(waited=MAX_WAITS + 1), "waited"),
        (batch_body(waited=True), "waited"),
        (batch_body(waited="2"), "waited"),
        (batch_body(trigger={"kind": "manual"}), "trigger.runId"),
        (batch_body(trigger={"kind": "manual", "runId": "../x"}), "trigger.runId"),
        (batch_body(trigger={"kind": "manual", "runId": RUN, "force": True}), "trigger.force"),
        (batch_body(trigger={"kind": "cron"}), "trigger.kind"),
        (batch_body(trigger={"kind": "reconcile", "eventId": "e"}), "trigger.kind"),
    ],
)
def test_a_malformed_batch_is_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_batch(text)
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("count", "size", "sizes"),
    [(0, 10, []), (1, 10, [1]), (10, 10, [10]), (11, 10, [10, 1]), (25, 10, [10, 10, 5]),
     (3, 1, [1, 1, 1])],
)
def test_services_are_batched_in_order_at_most_size_each(
    count: int, size: int, sizes: list[int]
) -> None:
    ids = [SERVICE.format(i) for i in range(count)]
    made = batches(VAULT, "web-tls", Origin(NEW_VERSION, "e-1"), ids, size)
    assert [len(b.services) for b in made] == sizes
    assert [s for b in made for s in b.services] == ids


def test_a_waiting_batch_comes_back_with_a_growing_delay_a_bounded_number_of_times() -> None:
    batch = BATCH
    delays = []
    while (again := batch.waits_again(batch.services)) is not None:
        batch = again
        delays.append(wait_delay(30.0, batch.waited))
    assert batch.waited == MAX_WAITS
    assert delays[:6] == [30, 60, 120, 240, 480, 900]
    assert set(delays[5:]) == {900}
    assert parse_batch(to_text(batch)) == batch


def test_a_refused_service_id_is_quoted_escaped_in_the_error() -> None:
    """The error is logged: a forged id cannot write a log line of its own."""
    forged = "/subscriptions/x\n2026-01-01 INFO certrotate: rotated everything"
    with pytest.raises(InvalidInput) as raised:
        parse_batch(batch_body(cloudServices=[forged]))
    assert "\n" not in str(raised.value) and "\\n2026" in str(raised.value)


SERVICE_1, SERVICE_2 = SERVICE.format(1), SERVICE.format(2)


def test_a_follow_look_survives_the_queue_and_carries_ids_only() -> None:
    look = Follow((SERVICE_1,), followed=3)
    text = to_text(look)
    assert parse_follow(text) == look
    assert json.loads(text) == {"kind": "follow", "cloudServices": [SERVICE_1], "followed": 3}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"kind": "services", "cloudServices": []}', "kind"),
        ('{"kind": "follow", "cloudServices": []}', "cloudServices"),
        ('{"kind": "follow", "cloudServices": ["/subscriptions/x"]}', "cloudServices"),
        ('{"kind": "follow", "cloudServices": [SVC], "followed": -1}', "followed"),
        ('{"kind": "follow", "cloudServices": [SVC], "followed": 241}', "followed"),
        ('{"kind": "follow", "cloudServices": [SVC], "followed": true}', "followed"),
        ('{"kind": "follow", "cloudServices": [SVC], "vault": "x"}', "vault"),
    ],
)
def test_a_malformed_follow_look_is_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_follow(text.replace("SVC", json.dumps(SERVICE_1)))
    assert caught.value.field == field


def test_a_follow_look_comes_back_for_what_still_runs_a_bounded_number_of_times() -> None:
    look = Follow((SERVICE_1, SERVICE_2))
    assert look.again((SERVICE_1,)) == Follow((SERVICE_1,), 1)
    assert look.again(()) is None  # nothing left running: no next look
    assert Follow((SERVICE_1,), MAX_FOLLOWS).again((SERVICE_1,)) is None  # the sweep's, then
    assert follows([SERVICE_1] * 5, 2) == [
        Follow((SERVICE_1, SERVICE_1)), Follow((SERVICE_1, SERVICE_1)), Follow((SERVICE_1,))
    ]
