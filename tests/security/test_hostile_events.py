"""Hostile and broken deliveries to ``keyvault_events``, on the local stack.

Each is posted straight to the Functions host's Event Grid webhook, exactly as Event Grid
(or anyone holding the webhook's key) would: the emulated Event Grid only routes events
of vaults in the stack's one subscription and never sends broken JSON. Each must end in a
specific log line of the host and an acknowledgement (a retry cannot make it valid), and
the product must send no request at all: not to Key Vault, not to ARM.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from emulators.polling import wait_for
from emulators.provision import Operator
from shared.config import Settings
from shared.domain.messages import HINTS_QUEUE, SERVICES_QUEUE
from tests.conftest import LocalStack
from tests.e2e.world import CERT, NEW_VERSION, World

OTHER_SUBSCRIPTION = "00000000-0000-4000-8000-00000000beef"


def deliver(
    stack: LocalStack, body: Any, *, code: str | None = None, raw: bytes | None = None
) -> requests.Response:
    """POST a Notification to the webhook (with the Event Grid system key by default)."""
    key = stack.env["EVENTGRID_WEBHOOK_KEY"] if code is None else code
    return requests.post(
        f"{stack.env['FUNCTIONS_URL']}/runtime/webhooks/eventgrid",
        params={"functionName": "keyvault_events", "code": key},
        data=raw if raw is not None else json.dumps(body).encode(),
        headers={"aeg-event-type": "Notification", "Content-Type": "application/json"},
        timeout=60,
    )


class HostLog:
    """What the Functions host logged since this object was made."""

    def __init__(self, stack: LocalStack) -> None:
        self.path: Path = stack.folder / "logs" / "functions.log"
        self.start = self.path.stat().st_size

    def lines(self) -> list[str]:
        with self.path.open("rb") as log:
            log.seek(self.start)
            return log.read().decode("utf-8", errors="replace").splitlines()

    def matching(self, *needles: str) -> list[str]:
        return [line for line in self.lines() if all(n in line for n in needles)]


def event(world: World, **changes: Any) -> dict[str, Any]:
    """A well-formed certificate event of ``world``'s vault (Event Grid schema)."""
    version = uuid.uuid4().hex
    item: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "topic": world.vault_id,
        "subject": CERT,
        "eventType": NEW_VERSION,
        "eventTime": "2026-01-01T00:00:00.0000000Z",
        "data": {
            "Id": f"{world.vault_url}certificates/{CERT}/{version}",
            "VaultName": world.vault_name,
            "ObjectType": "Certificate",
            "ObjectName": CERT,
            "Version": version,
            "NBF": int(time.time()),
            "EXP": int(time.time()) + 86400,
        },
        "dataVersion": "1",
        "metadataVersion": "1",
    }
    for key, value in changes.items():
        if value is None:
            item.pop(key)
        else:
            item[key] = value
    return item


def product_requests(world: World, mark: int) -> list[str]:
    return [f"{c['method']} {c['path']}" for c in world.product_calls(mark)]


@pytest.fixture(scope="module")
def deployed(stack: LocalStack, op: Operator) -> World:
    """One world for the module whose certificate a managed service uses: a real target,
    so a request the product should not send would have somewhere to go."""
    world = World(stack, op)
    world.deploy(world.new_version())
    return world


# -- scope -------------------------------------------------------------------------------------

SUB = "11111111-2222-4333-8444-555555555555"
KEYVAULT = "Microsoft.KeyVault/vaults"


def vault(subscription: str) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/rg/providers/{KEYVAULT}/kv1"


@pytest.mark.parametrize(
    ("vault_id", "subscriptions", "expected"),
    [
        pytest.param(vault(SUB), (SUB,), True, id="configured"),
        pytest.param(vault(SUB.upper()), (SUB,), True, id="case-insensitive"),
        pytest.param(vault(SUB), (OTHER_SUBSCRIPTION, SUB), True, id="one-of-several"),
        pytest.param(vault(OTHER_SUBSCRIPTION), (SUB,), False, id="other-subscription"),
        pytest.param(vault(SUB + "0"), (SUB,), False, id="prefix-is-not-enough"),
        pytest.param(f"/tenants/{SUB}/x", (SUB,), False, id="not-a-subscription-path"),
    ],
)
def test_vault_scope_is_the_configured_subscriptions(
    vault_id: str, subscriptions: tuple[str, ...], expected: bool
) -> None:
    settings = Settings(subscriptions, ("only-this-rg",), "https://x.blob.core.windows.net")
    assert settings.in_scope(vault_id) is expected  # resource groups scope services only


def test_event_of_a_vault_in_another_subscription_is_ignored_without_a_request(
    deployed: World,
) -> None:
    world, stack = deployed, deployed.stack
    foreign = world.vault_id.replace(stack.subscription, OTHER_SUBSCRIPTION)
    log, mark = HostLog(stack), stack.request_mark()

    forged = event(world, topic=foreign)
    answer = deliver(stack, [forged])

    assert answer.status_code == 202, answer.text
    (line,) = log.matching(f"event {forged['id']} ignored")
    world.wait_hints_worked()
    assert f"subscription {OTHER_SUBSCRIPTION}, which is not in ROTATION_SUBSCRIPTIONS" in line
    assert world.vault_name in line
    assert product_requests(world, mark) == []
    # The same event from the vault's real subscription does reach the engine (through
    # the hint queue, after the delivery was answered): the positive control.
    deliver(stack, [event(world)])
    wait_for(
        lambda: any(c["service"] == "keyvault" for c in world.product_calls(mark)),
        "the hint worker to read the vault",
    )
    world.wait_hints_worked()


# -- broken and foreign deliveries -------------------------------------------------------------

# (id, how to change the event, answer, log line fragment)
BAD_EVENTS: list[tuple[str, dict[str, Any], str]] = [
    ("missing-topic", {"topic": None}, "rejected: topic: is missing or blank"),
    ("missing-id", {"id": None}, "rejected: id: is missing or blank"),
    (
        "missing-name",
        {"data": {"ObjectType": "Certificate"}, "subject": None},
        "rejected: data.ObjectName: no certificate name",
    ),
    (
        "topic-not-a-vault",
        {"topic": f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/x/s"},
        "is not a Key Vault ARM id",
    ),
    ("vault-name-disagrees", {"data": {"VaultName": "kvother", "ObjectName": CERT}},
     "rejected: data.VaultName:"),
    ("bad-version", {"data": {"ObjectName": CERT, "Version": "../../x"}}, "data.Version:"),
    ("unknown-type", {"eventType": "Microsoft.Storage.BlobCreated"},
     "is not a Key Vault certificate event"),
    ("secret-event", {"eventType": "Microsoft.KeyVault.SecretNewVersionCreated"},
     "is not a Key Vault certificate event"),
    ("key-object", {"data": {"ObjectType": "Key", "ObjectName": CERT}},
     "ignored: Microsoft.KeyVault.CertificateNewVersionCreated event for ObjectType 'Key'"),
    ("forged-log-line", {"id": "1\n2026-01-01 INFO certrotate: rotated everything"},
     "rejected: id: '1\\n2026-01-01 INFO certrotate: rotated everything' has control"),
]


@pytest.mark.parametrize(
    ("changes", "logged"), [pytest.param(*c[1:], id=c[0]) for c in BAD_EVENTS]
)
def test_broken_or_foreign_event_is_logged_acknowledged_and_costs_no_request(
    deployed: World, changes: dict[str, Any], logged: str
) -> None:
    world, stack = deployed, deployed.stack
    log, mark = HostLog(stack), stack.request_mark()

    answer = deliver(stack, [event(world, **changes)])

    assert answer.status_code == 202, answer.text  # acknowledged: a retry cannot fix it
    assert len(log.matching("certrotate.events", logged)) == 1, log.lines()
    assert not log.matching("certrotate.events", "accepted")  # no hint was queued
    world.wait_hints_worked()  # (had one been, its work would show below)
    assert not [line for line in log.lines() if line.startswith("2026-01-01 INFO certrotate")]
    assert product_requests(world, mark) == []


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'[{"id": "x", ', id="truncated-json"),
        pytest.param(b"\xff\xfe not utf-8", id="not-utf-8"),
        pytest.param(b'"just a string"', id="not-an-event"),
        pytest.param(b"[" * 50_000 + b"]" * 50_000, id="nested-50000-deep"),
    ],
)
def test_malformed_delivery_is_refused_by_the_host_without_invoking(
    deployed: World, raw: bytes
) -> None:
    world, stack = deployed, deployed.stack
    log, mark = HostLog(stack), stack.request_mark()

    answer = deliver(stack, None, raw=raw)

    # The Event Grid extension throws while reading the body; the host answers 500 and
    # the function never runs (Event Grid retries, then dead-letters it).
    assert answer.status_code == 500
    assert log.matching("Event Grid request for 'keyvault_events' not processed")
    assert not log.matching("Executing 'Functions.keyvault_events'")
    assert product_requests(world, mark) == []


@pytest.mark.parametrize(
    ("code", "key_name"),
    [
        pytest.param("", "", id="missing"),
        pytest.param("wrong-key", "", id="wrong"),
        pytest.param(None, "FUNCTIONS_KEY", id="function-key-is-not-the-webhook-key"),
    ],
)
def test_webhook_without_the_event_grid_key_is_401(
    deployed: World, code: str | None, key_name: str
) -> None:
    world, stack = deployed, deployed.stack
    log, mark = HostLog(stack), stack.request_mark()

    answer = deliver(stack, [event(world)], code=stack.env[key_name] if key_name else code)

    assert answer.status_code == 401
    assert not log.matching("Executing")
    assert product_requests(world, mark) == []


def test_webhook_validation_needs_the_key_too(deployed: World) -> None:
    stack = deployed.stack
    handshake = [
        {
            "id": str(uuid.uuid4()),
            "topic": deployed.vault_id,
            "subject": "",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": "2026-01-01T00:00:00Z",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
            "dataVersion": "1",
        }
    ]
    answer = requests.post(
        f"{stack.env['FUNCTIONS_URL']}/runtime/webhooks/eventgrid",
        params={"functionName": "keyvault_events", "code": "wrong-key"},
        json=handshake,
        headers={"aeg-event-type": "SubscriptionValidation"},
        timeout=30,
    )
    assert answer.status_code == 401
    assert "512d38b6" not in answer.text


# -- forged queue messages -------------------------------------------------------------------


def forged_messages(world: World) -> list[tuple[str, str, str]]:
    """(queue, message text, what the worker logs) for messages only someone with
    queue-write access could send: each is refused without any request to Azure."""
    foreign = world.vault_id.replace(world.stack.subscription, OTHER_SUBSCRIPTION)
    foreign_service = (
        f"/subscriptions/{OTHER_SUBSCRIPTION}/resourceGroups/rg/providers/"
        "Microsoft.Compute/cloudServices/cs-other"
    )
    origin = {"eventType": NEW_VERSION, "eventId": str(uuid.uuid4())}

    def text(**body: Any) -> str:
        return json.dumps({"vault": world.vault_id, "certificate": CERT, "trigger": origin,
                           **body})

    (service,) = world.op.compute.cloud_services.list(world.rg_name)
    never_queued = {"kind": "manual", "runId": "20260101T000000Z-0123456789ab"}

    return [
        (HINTS_QUEUE, text(kind="hint", vault=foreign, version=None),
         "its subscription is not in ROTATION_SUBSCRIPTIONS"),
        (HINTS_QUEUE, text(kind="hint", version="../../x"), "hint message"),
        (SERVICES_QUEUE, text(kind="services", vault=foreign,
                              cloudServices=[foreign_service]),
         "its subscription is not in ROTATION_SUBSCRIPTIONS"),
        (SERVICES_QUEUE, text(kind="services", cloudServices=[foreign_service]),
         "which is out of scope: skipped"),
        (SERVICES_QUEUE, text(kind="hint", version=None), "service batch message"),
        # A manual run nobody queued: no record to take the services and force from.
        (SERVICES_QUEUE, text(kind="services", trigger=never_queued,
                              cloudServices=[service.id]),
         "refused: no such queued run"),
        (SERVICES_QUEUE, text(kind="services", trigger={"kind": "manual", "runId": "../x"},
                              cloudServices=[service.id]),
         "service batch message"),
    ]


def test_forged_queue_messages_are_refused_without_a_request(deployed: World) -> None:
    world, stack = deployed, deployed.stack
    log, mark = HostLog(stack), stack.request_mark()

    cases = forged_messages(world)
    for queue, text, _ in cases:
        world.op.enqueue(queue, text)
    world.wait_hints_worked()  # every message was taken and its function returned

    for _, _, logged in cases:
        assert log.matching("certrotate", logged), (logged, log.lines()[-20:])
    assert product_requests(world, mark) == []
    assert world.op.queued(f"{HINTS_QUEUE}-poison") == 0
    assert world.op.queued(f"{SERVICES_QUEUE}-poison") == 0
