"""End-to-end: notifications and telemetry of real rotations on the local stack.

The engine runs in-process, built by ``Engine.from_settings`` from the stack's app
settings plus the notification settings under test, exactly as the function app builds
it. Published CloudEvents are read back from the Event Grid emulator's custom topic
(``GET /eventgrid/published``); chat messages land on a loopback HTTPS receiver that
serves the stack's own certificate (so the product's TLS verification is real). Failing
endpoints are the emulator's fault injection (500s), a receiver answering 500, and a
closed port. Telemetry being off by default is checked in a fresh interpreter: importing
``function_app`` and running a rotation must load no OpenTelemetry or Azure Monitor
module.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from emulators.stack import ROOT, app_settings
from emulators.tls import ensure_tls
from shared.config import Settings
from shared.domain.events import NEAR_EXPIRY, CertificateEvent
from shared.domain.records import Trigger
from shared.domain.runs import Run
from shared.rotation.engine import Engine
from tests.conftest import LocalStack
from tests.e2e.world import AGENT, CERT, World, secret_of, version_of

# A webhook URL is a secret (Teams workflow URLs carry ``sig=``); this fake one must never
# show up in a log line (the session's secret scan would fail the run too).
FAKE_SIG = "c2lnbmF0dXJlLW9mLXRoZS13b3JrZmxvdw"


@dataclass(frozen=True)
class Posted:
    path: str
    headers: dict[str, str]
    body: Any


class Receiver:
    """A loopback HTTPS endpoint serving the stack's certificate: records what is posted
    (JSON, gzip or not) and answers the scripted statuses in ``fail``, then ``reply``."""

    def __init__(self, stack: LocalStack, reply: Callable[[Any], bytes]) -> None:
        self.posts: list[Posted] = []
        self.fail: list[int] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                body = json.loads(raw) if raw else None
                with receiver.lock:
                    receiver.posts.append(Posted(self.path, dict(self.headers), body))
                    status = receiver.fail.pop(0) if receiver.fail else 200
                answer = reply(body) if status == 200 else b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls = ensure_tls(Path(stack.ca).parent)
        self.server.socket = tls.server_context().wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.server.server_port}"

    @property
    def url(self) -> str:
        """A chat webhook URL shaped like a Teams workflow's (its ``sig`` is the secret)."""
        return f"{self.base}/workflows/hook/invoke?sp=%2Ftriggers&sig={FAKE_SIG}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chat(stack: LocalStack) -> Iterator[Receiver]:
    """A chat webhook: Slack answers ``ok`` (Teams workflows 202; both are success)."""
    receiver = Receiver(stack, lambda body: b"ok")
    yield receiver
    receiver.close()


@dataclass(frozen=True)
class Topic:
    name: str
    endpoint: str
    key: str


def custom_topic(world: World) -> Topic:
    """An Event Grid custom topic taking CloudEvents 1.0, as an operator creates it."""
    name = f"rotations-{uuid.uuid4().hex[:8]}"
    path = f"{world.rg}/providers/Microsoft.EventGrid/topics/{name}"
    body = {"location": "westus", "properties": {"inputSchema": "CloudEventSchemaV1_0"}}
    topic = world.op.arm("PUT", path, body, api="2025-02-15")
    keys = world.op.arm("POST", f"{path}/listKeys", api="2025-02-15")
    return Topic(name, topic["properties"]["endpoint"], keys["key1"])


def published(stack: LocalStack, topic: Topic) -> list[dict[str, Any]]:
    return [p["event"] for p in stack.admin("GET", f"/eventgrid/published?topic={topic.name}")]


def engine(stack: LocalStack, **settings: str) -> Engine:
    """The engine as the function app builds it, with extra app settings."""
    return Engine.from_settings(
        Settings.from_env({**stack.env, **app_settings(stack.env), **settings})
    )


def rotate(engine: Engine, world: World) -> Run:
    return engine.rotate(world.vault_id, CERT, Trigger("manual"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- Event Grid ------------------------------------------------------------------------------


def test_outcomes_and_actions_are_published_as_cloud_events(world: World) -> None:
    topic = custom_topic(world)
    v1 = world.new_version()
    managed, unmanaged = world.deploy(v1), world.deploy(v1, tagged=False)
    v2 = world.new_version()
    mark = world.stack.request_mark()

    with_identity = engine(world.stack, NOTIFY_EVENTGRID_ENDPOINT=topic.endpoint)
    run = rotate(with_identity, world)

    assert {r.service_id: r.outcome for r in run.results} == {
        managed.id: "rotated",
        unmanaged.id: "unmanaged",
    }
    events = published(world.stack, topic)
    assert sorted((e["type"], e["subject"]) for e in events) == sorted(
        [
            ("CertRotation.Run.Rotated", managed.id),
            ("CertRotation.Run.Unmanaged", unmanaged.id),
        ]
    )
    rotated = next(e for e in events if e["subject"] == managed.id)
    assert rotated["specversion"] == "1.0"
    assert rotated["source"].startswith("/certrotate/")
    assert rotated["data"] == {
        "runId": run.id,
        "trigger": {"kind": "manual", "eventType": None, "eventId": None},
        "vault": world.vault_id,
        "certificate": CERT,
        "cloudService": managed.id,
        "outcome": "rotated",
        "message": f"now on version {version_of(v2)}",
        "fromVersions": [version_of(v1)],
        "toVersion": version_of(v2),
        "toThumbprint": rotated["data"]["toThumbprint"],
        "expires": rotated["data"]["expires"],
        "package": {
            "url": world.read_tags(managed)["cert-rotation-package"],
            "md5": world.read_tags(managed)["cert-rotation-package-md5"],
            "etag": rotated["data"]["package"]["etag"],
        },
    }
    assert rotated["data"]["package"]["etag"]
    assert rotated["data"]["toThumbprint"] == world.read(managed).thumbprints["WebRole1"][0]
    # One publish, authenticated with the managed identity (the topic refuses anonymous
    # posts), and nothing secret in what was sent.
    [publish] = [c for c in world.product_calls(mark) if c["service"] == "eventgrid"]
    assert (publish["method"], publish["status"]) == ("POST", 200)
    assert AGENT in publish["agent"]
    sent = json.dumps(events)
    assert "sig=" not in sent and "eyJ" not in sent and secret_of(v2) not in sent

    # A person must renew: the action is its own event, about the certificate; published
    # with the topic key this time (local use).
    with_key = engine(
        world.stack,
        NOTIFY_EVENTGRID_ENDPOINT=topic.endpoint,
        NOTIFY_EVENTGRID_KEY=topic.key,
        RENEW_ON_NEAR_EXPIRY="false",
    )
    # 340 days on, v2 (12 months) is inside its 30-day renewal window by Key Vault's data.
    with_key.now = lambda: datetime.now(UTC) + timedelta(days=340)
    near = CertificateEvent(
        NEAR_EXPIRY,
        f"evt-{uuid.uuid4().hex[:8]}",
        world.vault_id,
        world.vault_name,
        CERT,
        version_of(v2),
        None,
        datetime.now(UTC) + timedelta(days=30),
        None,
    )
    second = with_key.handle_event(near)
    assert second is not None
    later = [e for e in published(world.stack, topic) if e["data"]["runId"] == second.id]
    assert sorted(e["type"] for e in later) == [
        "CertRotation.Action.RenewRequired",
        "CertRotation.Run.NoOp",
        "CertRotation.Run.Unmanaged",
    ]
    action = next(e for e in later if e["type"] == "CertRotation.Action.RenewRequired")
    assert action["subject"] == f"{world.vault_id}/certificates/{CERT}"
    assert action["data"]["trigger"] == {
        "kind": "event",
        "eventType": NEAR_EXPIRY,
        "eventId": near.event_id,
    }
    assert action["data"]["message"].startswith("ACTION REQUIRED: renew certificate 'web-tls'")
    assert sorted(action["data"]["cloudServices"]) == sorted([managed.id, unmanaged.id])


def test_an_update_finished_by_a_later_invocation_is_announced_when_it_ends(
    world: World,
) -> None:
    """An event invocation leaves a long update ``updating``; the timer that finishes it
    announces the end under the same run id, with the versions the run record planned."""
    topic = custom_topic(world)
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    settings = {
        "NOTIFY_EVENTGRID_ENDPOINT": topic.endpoint,
        "ROTATION_RESOURCE_GROUPS": world.rg_name,
    }
    world.stack.admin("POST", "/cloudservices/settings", {"update_seconds": 1.0})
    try:
        run = engine(world.stack, **settings).rotate(
            world.vault_id, CERT, Trigger("manual"), wait_seconds=0
        )
        assert [r.outcome for r in run.results] == ["updating"]
        outcomes = engine(world.stack, **settings).finish_pending()
    finally:
        world.stack.admin("POST", "/cloudservices/settings", {"update_seconds": None})
    assert outcomes == {"resumed-succeeded": 1}, outcomes

    events = [e for e in published(world.stack, topic) if e["data"]["runId"] == run.id]
    assert [e["type"] for e in events] == ["CertRotation.Run.Updating", "CertRotation.Run.Rotated"]
    updating, rotated = (e["data"] for e in events)
    assert rotated["trigger"] == updating["trigger"] == {
        "kind": "manual", "eventType": None, "eventId": None,
    }
    assert rotated["message"].endswith("(finished by run follow_updates)"), rotated["message"]
    assert (rotated["fromVersions"], rotated["toVersion"]) == ([version_of(v1)], version_of(v2))
    for key in ("fromVersions", "toVersion", "toThumbprint", "expires"):
        assert rotated[key] == updating[key], key  # the plan, as the record kept it
    assert rotated["toThumbprint"] == world.read(svc).thumbprints["WebRole1"][0]
    world.assert_on(svc, v2)


# -- chat webhooks ---------------------------------------------------------------------------


def test_teams_and_slack_webhooks_get_alerts_and_a_digest(world: World, chat: Receiver) -> None:
    v1 = world.new_version()
    managed, unmanaged = world.deploy(v1), world.deploy(v1, tagged=False)
    world.new_version()

    teams = engine(world.stack, NOTIFY_WEBHOOK_URL=chat.url, NOTIFY_WEBHOOK_FORMAT="teams")
    rotate(teams, world)

    alert, digest = (p.body for p in chat.posts)
    assert all(p.headers["Content-Type"] == "application/json" for p in chat.posts)
    assert all(AGENT in p.headers["User-Agent"] for p in chat.posts)
    assert all(p.path.startswith("/workflows/hook/invoke?") for p in chat.posts)
    card = alert["attachments"][0]["content"]
    assert alert["type"] == "message"
    assert card["type"] == "AdaptiveCard"
    assert (
        card["body"][0]["text"]
        == f"Action required: service not managed: {CERT} on {unmanaged.name}"
    )
    assert card["body"][0]["color"] == "Warning"
    assert "cert-rotation-package" in card["body"][1]["text"]
    facts = {f["title"]: f["value"] for f in card["body"][2]["facts"]}
    assert facts["Cloud service"] == unmanaged.name
    assert facts["Vault"] == world.vault_name
    digest_card = digest["attachments"][0]["content"]
    assert digest_card["body"][0]["text"] == (
        f"Rotation of {CERT} ({world.vault_name}): 1 rotated, 1 unmanaged"
    )
    assert f"{managed.name}: rotated" in digest_card["body"][1]["text"]

    chat.posts.clear()
    world.new_version()
    slack = engine(world.stack, NOTIFY_WEBHOOK_URL=chat.url, NOTIFY_WEBHOOK_FORMAT="slack")
    rotate(slack, world)
    alert, digest = (p.body for p in chat.posts)
    assert alert["text"] == f"Action required: service not managed: {CERT} on {unmanaged.name}"
    assert alert["blocks"][0]["type"] == "header"
    assert digest["blocks"][0]["text"]["text"].startswith(":white_check_mark: Rotation of")

    # A run that changes nothing (a duplicate event) keeps the channel quiet but for the
    # service that still needs a person.
    chat.posts.clear()
    rotate(slack, world)
    assert [p.body["text"] for p in chat.posts] == [alert["text"]]


# -- failures never fail a rotation ----------------------------------------------------------


def test_failing_topic_and_webhook_are_logged_and_the_rotation_stands(
    world: World, chat: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    topic = custom_topic(world)
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    world.stack.admin(
        "POST",
        "/faults",
        {"service": "eventgrid", "method": "POST", "path": "/topics/", "status": 503, "count": 2},
    )
    chat.fail = [503, 503]
    failing = engine(
        world.stack, NOTIFY_EVENTGRID_ENDPOINT=topic.endpoint, NOTIFY_WEBHOOK_URL=chat.url
    )

    with caplog.at_level(logging.INFO, logger="certrotate"):
        started = time.monotonic()
        run = rotate(failing, world)
        elapsed = time.monotonic() - started

    assert [r.outcome for r in run.results] == ["rotated"]
    world.assert_on(svc, v2)
    assert published(world.stack, topic) == []
    assert len(chat.posts) == 2  # one attempt and one retry of the digest (503: not taken)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("publishing 1 event(s) to Event Grid topic" in w and "failed" in w for w in warnings)
    assert any("chat webhook (teams) failed" in w and "HTTP 503" in w for w in warnings)
    assert FAKE_SIG not in caplog.text
    print(f"\nrotation with a failing topic and webhook (2 attempts each): {elapsed:.1f}s")

    # Nobody listening at all: no time lost waiting.
    port = closed_port()
    unreachable = engine(
        world.stack,
        NOTIFY_EVENTGRID_ENDPOINT=f"https://127.0.0.1:{port}/api/events",
        NOTIFY_WEBHOOK_URL=f"https://127.0.0.1:{port}/hook?sig={FAKE_SIG}",
    )
    world.new_version()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="certrotate"):
        started = time.monotonic()
        run = rotate(unreachable, world)
        elapsed = time.monotonic() - started
    assert [r.outcome for r in run.results] == ["rotated"]
    assert "ServiceRequestError" in caplog.text
    assert "no connection" in caplog.text
    assert FAKE_SIG not in caplog.text
    print(f"rotation with unreachable topic and webhook: {elapsed:.1f}s")


# -- telemetry --------------------------------------------------------------------------------

PROBE = textwrap.dedent(
    """
    import json, logging, sys
    logging.getLogger().setLevel(logging.INFO)  # as the Functions worker sets it
    import function_app  # noqa: F401  (what the Functions worker imports)
    from handlers.runtime import engine
    from shared.domain.records import Trigger

    run = engine().rotate(sys.argv[1], sys.argv[2], Trigger("manual"))
    loaded = sorted(
        m for m in sys.modules
        if m.startswith((
            "opentelemetry", "azure.monitor", "azure.core.tracing.ext",
            "shared.observability.otel",
        ))
    )
    print(json.dumps({"run": run.id, "outcomes": [r.outcome for r in run.results],
                      "loaded": loaded}))
    """
)


def probe(world: World, **settings: str) -> tuple[dict[str, Any], float]:
    """``import function_app`` and one rotation in a fresh interpreter, as the worker runs
    it; what it printed, and how long it took."""
    env = {**os.environ, **app_settings(world.stack.env), **settings}
    if "APPLICATIONINSIGHTS_CONNECTION_STRING" not in settings:
        env.pop("APPLICATIONINSIGHTS_CONNECTION_STRING", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, world.vault_id, CERT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), time.monotonic() - started


def test_telemetry_is_off_by_default(world: World) -> None:
    v1 = world.new_version()
    world.deploy(v1)
    world.new_version()
    result, elapsed = probe(world)
    assert result["outcomes"] == ["rotated"]
    assert result["loaded"] == []
    print(f"\nimport function_app + one rotation, telemetry off: {elapsed:.1f}s")


def ingestion_reply(items: Any) -> bytes:
    """Application Insights' answer to ``POST /v2.1/track``: everything accepted."""
    count = len(items) if isinstance(items, list) else 1
    return json.dumps({"itemsReceived": count, "itemsAccepted": count, "errors": []}).encode()


def test_telemetry_exports_runs_calls_and_logs_when_configured(
    world: World, chat: Receiver
) -> None:
    """A loopback ingestion endpoint stands in for Application Insights (the connection
    string's ``IngestionEndpoint``); what the exporter sends is read back."""
    ingestion = Receiver(world.stack, ingestion_reply)
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.new_version()
    world.stack.admin(
        "POST",
        "/faults",
        {
            "service": "arm",
            "method": "GET",
            "path": f"/cloudServices/{svc.name}$",
            "status": 429,
            "retry_after": 0,
            "count": 1,
        },
    )
    try:
        result, elapsed = probe(
            world,
            APPLICATIONINSIGHTS_CONNECTION_STRING=(
                "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                f"IngestionEndpoint={ingestion.base}/;LiveEndpoint={ingestion.base}/"
            ),
            APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL="true",  # no calls to Microsoft
            REQUESTS_CA_BUNDLE=world.stack.ca,  # the exporter trusts the loopback endpoint
            NOTIFY_WEBHOOK_URL=chat.url,
        )
    finally:
        ingestion.close()
    assert result["outcomes"] == ["rotated"]
    assert "azure.monitor.opentelemetry" in result["loaded"]
    # Track posts carry the telemetry (live-metrics pings may come too: not asserted).
    items = [item for p in ingestion.posts if p.path == "/v2.1/track" for item in p.body]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_type.setdefault(item["data"]["baseType"], []).append(item["data"]["baseData"])

    metrics = [
        (m["name"], m["value"], base.get("properties", {}))
        for base in by_type["MetricData"]
        for m in base["metrics"]
    ]
    names = {name for name, _, _ in metrics}
    assert {
        "certrotate.rotation.duration",
        "certrotate.rotation.outcomes",
        "certrotate.certificate.days_to_expiry",
        "certrotate.azure.requests",
    } <= names
    [(_, outcomes, dims)] = [m for m in metrics if m[0] == "certrotate.rotation.outcomes"]
    assert (outcomes, dims) == (1, {"outcome": "rotated", "trigger": "manual"})
    [(_, days, dims)] = [m for m in metrics if m[0] == "certrotate.certificate.days_to_expiry"]
    assert dims["cloud_service"] == svc.id and 364 < days <= 365
    requests = [
        (value, dims) for name, value, dims in metrics if name == "certrotate.azure.requests"
    ]
    assert any(d["http.response.status_code"] == "429" for _, d in requests)
    assert any(d["retry"] == "True" for _, d in requests)
    calls = sum(value for value, _ in requests)

    # Every log line of the run carries its id (and the service's, while working on it).
    run_logs = [m for m in by_type["MessageData"] if m["properties"].get("run_id") == result["run"]]
    assert run_logs and any(m["properties"].get("service_id") == svc.id for m in run_logs)
    # Each HTTP attempt is a dependency (none sampled away); those made while the run
    # works on the service carry both ids, the throttled one and the update included.
    dependencies = [d for d in by_type["RemoteDependencyData"] if d["type"] == "HTTP"]
    assert len(dependencies) == calls
    tagged = [d for d in dependencies if d["properties"].get("service_id") == svc.id]
    assert all(d["properties"]["run_id"] == result["run"] for d in tagged)
    assert any(d["resultCode"] == "429" for d in tagged)
    assert any(d["name"].startswith("PUT ") and svc.name in d["data"] for d in tagged)

    # Nothing secret left the process: no SAS signature, token, or the webhook URL.
    sent = json.dumps(items)
    assert FAKE_SIG not in sent
    assert not re.search(r"sig=(?!REDACTED)", sent)
    assert "eyJ" not in sent
    assert chat.posts, "the digest was posted"
    print(
        f"\nimport function_app + one rotation, telemetry on: {elapsed:.1f}s; exported "
        f"{len(items)} items ({ {k: len(v) for k, v in sorted(by_type.items())} }), "
        f"{calls} HTTP attempts counted"
    )
