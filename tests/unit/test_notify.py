"""Table-driven tests for what a finished run says: CloudEvents, chat messages and their
Teams and Slack renderings, redaction, and the run metrics
(shared.observability.notify, shared.observability.otel)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared.domain.model import CertificateVersion, PackageFacts, Plan, SecretGroup
from shared.domain.records import Action, Trigger
from shared.domain.runs import Execution, Run, ServiceResult
from shared.observability.announcements import (
    ChatMessage,
    chat_messages,
    cloud_events,
    event_type,
    redact,
    slack_payload,
    teams_payload,
)
from shared.observability.otel import RunMetrics, azure_service

SUB = "00000000-0000-0000-0000-000000000001"
RG = f"/subscriptions/{SUB}/resourceGroups/rg1"
VAULT_ID = f"{RG}/providers/Microsoft.KeyVault/vaults/kv1"
VAULT_URL = "https://kv1.vault.azure.net"
STARTED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FINISHED = STARTED + timedelta(seconds=42)
EXPIRES = FINISHED + timedelta(days=90)
SAS_URL = (
    "https://st.blob.core.windows.net/p/a.cspkg?sv=2024-08-04&se=x&sp=r&sig=c2VjcmV0K2tleQ%3D%3D"
)


CSCFG = (
    '<ServiceConfiguration xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/'
    'ServiceConfiguration" serviceName="cs"><Role name="Web"><Certificates>'
    '<Certificate name="SslCert" thumbprint="{tp}" thumbprintAlgorithm="sha1"/>'
    "</Certificates></Role></ServiceConfiguration>"
)


def service_id(name: str) -> str:
    return f"{RG}/providers/Microsoft.Compute/cloudServices/{name}"


def plan(name: str, old: str = "v1", new: str = "v2") -> Plan:
    def group(version: str) -> tuple[SecretGroup, ...]:
        return (SecretGroup(VAULT_ID, (f"{VAULT_URL}/secrets/web-tls/{version}",)),)

    return Plan(
        service_id=service_id(name),
        vault_id=VAULT_ID,
        certificate="web-tls",
        desired=CertificateVersion(
            new, "AB" * 20, f"{VAULT_URL}/secrets/web-tls/{new}", True, None, EXPIRES, None
        ),
        changes=(),
        configuration_before=CSCFG.format(tp="CD" * 20),
        configuration_after=CSCFG.format(tp="AB" * 20 if old != new else "CD" * 20),
        secrets_before=group(old),
        secrets_after=group(new),
        settings_mentioning_old=(),
        warnings=(),
    )


def result(name: str, outcome: str, message: str = "", planned: bool = True) -> ServiceResult:
    return ServiceResult(service_id(name), outcome, message, plan(name) if planned else None)


def run(*results: ServiceResult, actions: tuple[Action, ...] = (), kind: str = "event") -> Run:
    trigger = (
        Trigger(kind, "Microsoft.KeyVault.CertificateNewVersionCreated", "evt-1")
        if kind == "event"
        else Trigger(kind)
    )
    return Run(
        id="20260301T120000Z-0123456789ab",
        trigger=trigger,
        vault_id=VAULT_ID,
        certificate="web-tls",
        dry_run=False,
        started=STARTED,
        status="done",
        finished=FINISHED,
        actions=list(actions),
        results=list(results),
    )


def counter() -> Any:
    ids = iter(range(1000))
    return lambda: f"id-{next(ids)}"


# -- event types and CloudEvents -----------------------------------------------------------

EVENT_TYPES = [
    ("Run", "rotated", "CertRotation.Run.Rotated"),
    ("Run", "noop", "CertRotation.Run.NoOp"),
    ("Run", "refused", "CertRotation.Run.Refused"),
    ("Run", "failed", "CertRotation.Run.Failed"),
    ("Run", "rolled-back", "CertRotation.Run.RolledBack"),
    ("Run", "opted-out", "CertRotation.Run.OptedOut"),
    ("Action", "renew-required", "CertRotation.Action.RenewRequired"),
    ("Action", "expired", "CertRotation.Action.Expired"),
]


@pytest.mark.parametrize(("group", "kind", "expected"), EVENT_TYPES)
def test_event_types_share_one_prefix(group: str, kind: str, expected: str) -> None:
    assert event_type(group, kind) == expected


PACKAGE = PackageFacts("https://st.blob.core.windows.net/p/a.cspkg", "q1w2e3==", '"0x8D1"')


def test_one_cloud_event_per_service_result_and_per_action() -> None:
    rotated = result("cs1", "rotated", "now on version v2")
    rotated.execution = Execution(status="succeeded", package=PACKAGE)
    finished = run(
        rotated,
        result("cs2", "failed", "PackageUriForbidden: " + SAS_URL, planned=False),
        actions=(Action("renew-required", "ACTION REQUIRED: renew web-tls"),),
    )
    events = cloud_events(finished, "/certrotate/app1", counter())
    assert [(e["type"], e["subject"], e["id"]) for e in events] == [
        ("CertRotation.Run.Rotated", service_id("cs1"), "id-0"),
        ("CertRotation.Run.Failed", service_id("cs2"), "id-1"),
        ("CertRotation.Action.RenewRequired", f"{VAULT_ID}/certificates/web-tls", "id-2"),
    ]
    for event in events:
        assert (event["specversion"], event["source"]) == ("1.0", "/certrotate/app1")
        assert event["time"] == "2026-03-01T12:00:42Z"
    trigger = {
        "kind": "event",
        "eventType": "Microsoft.KeyVault.CertificateNewVersionCreated",
        "eventId": "evt-1",
    }
    assert events[0]["data"] == {
        "runId": finished.id,
        "trigger": trigger,
        "vault": VAULT_ID,
        "certificate": "web-tls",
        "cloudService": service_id("cs1"),
        "outcome": "rotated",
        "message": "now on version v2",
        "fromVersions": ["v1"],
        "toVersion": "v2",
        "toThumbprint": "AB" * 20,
        "expires": EXPIRES.isoformat(),
        "package": {"url": PACKAGE.url, "md5": PACKAGE.md5, "etag": PACKAGE.etag},
    }
    assert events[1]["data"]["toVersion"] is None
    assert events[1]["data"]["package"] is None
    assert events[1]["data"]["fromVersions"] == []
    assert events[2]["data"]["action"] == "renew-required"
    assert events[2]["data"]["cloudServices"] == [service_id("cs1"), service_id("cs2")]
    assert "c2VjcmV0K2tleQ" not in json.dumps(events)
    assert "sig=REDACTED" in events[1]["data"]["message"]


def test_a_run_with_nothing_to_say_publishes_nothing() -> None:
    assert cloud_events(run(), "/certrotate/app1", counter()) == []


# -- redaction -----------------------------------------------------------------------------

REDACTIONS = [
    (SAS_URL, "sig=REDACTED"),
    ("https://app/api/x?code=abc123&x=1", "code=REDACTED&x=1"),
    ("Authorization: Bearer eyJhbGciOi.payload.sig", "Bearer REDACTED"),
    ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcdef", "token REDACTED"),
    ("aeg-sas-key: c2VjcmV0", "aeg-sas-key: REDACTED"),
    (
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----",
        "REDACTED",
    ),
    ("plain text stays", "plain text stays"),
]


@pytest.mark.parametrize(("text", "expected"), REDACTIONS)
def test_redact_removes_secrets(text: str, expected: str) -> None:
    assert expected in redact(text)
    for secret in ("c2VjcmV0", "abc123", "eyJ", "MIIE"):
        if secret in text:
            assert secret not in redact(text)


# -- chat messages -------------------------------------------------------------------------

# (results, actions) -> titles of the messages posted, in order.
MESSAGES: list[tuple[str, tuple[ServiceResult, ...], tuple[Action, ...], list[str]]] = [
    (
        "all rotated: one digest",
        (result("cs1", "rotated"), result("cs2", "rotated")),
        (),
        ["Rotation of web-tls (kv1): 2 rotated"],
    ),
    ("duplicate event: silence", (result("cs1", "noop"), result("cs2", "opted-out")), (), []),
    ("transient only: silence (Event Grid redelivers)", (result("cs1", "transient"),), (), []),
    (
        "failure first, then the digest of the rest",
        (result("cs1", "failed", "boom"), result("cs2", "rotated"), result("cs3", "noop")),
        (),
        [
            "Rotation failed: web-tls on cs1",
            "Rotation of web-tls (kv1): 1 failed, 1 noop, 1 rotated",
        ],
    ),
    (
        "each failure its own message",
        (
            result("cs1", "refused", "x"),
            result("cs2", "rolled-back", "y"),
            result("cs3", "unmanaged", "z"),
        ),
        (),
        [
            "Rotation refused: web-tls on cs1",
            "Rotation rolled back: web-tls on cs2",
            "Action required: service not managed: web-tls on cs3",
        ],
    ),
    (
        "a person must renew",
        (result("cs1", "noop"),),
        (Action("renew-required", "ACTION REQUIRED: renew"),),
        ["Action required: renew certificate: web-tls in kv1"],
    ),
    (
        "expired and a newer version: alert only",
        (result("cs1", "noop"),),
        (Action("expired", "EXPIRED"), Action("newer-version", "converging")),
        ["Certificate expired: web-tls in kv1"],
    ),
    (
        "renewal requested: digest",
        (result("cs1", "noop"),),
        (Action("renew-requested", "requested a new version of 'web-tls'"),),
        ["Rotation of web-tls (kv1): 1 noop"],
    ),
]


@pytest.mark.parametrize(
    ("results", "actions", "titles"),
    [m[1:] for m in MESSAGES],
    ids=[m[0] for m in MESSAGES],
)
def test_which_messages_a_run_posts(
    results: tuple[ServiceResult, ...], actions: tuple[Action, ...], titles: list[str]
) -> None:
    assert [m.title for m in chat_messages(run(*results, actions=actions))] == titles


def test_failure_message_names_service_vault_certificate_and_run_without_secrets() -> None:
    [message] = chat_messages(run(result("cs1", "failed", "PackageUriForbidden: " + SAS_URL)))
    assert message.severity == "attention"
    assert message.text == "PackageUriForbidden: " + SAS_URL.split("sig=")[0] + "sig=REDACTED"
    assert dict(message.facts) == {
        "Cloud service": "cs1",
        "Certificate": "web-tls",
        "Vault": "kv1",
        "Trigger": "event (CertificateNewVersionCreated)",
        "Run": "20260301T120000Z-0123456789ab",
    }


def test_digest_lists_every_service_that_did_not_alert() -> None:
    [_, digest] = chat_messages(
        run(
            result("cs1", "failed", "boom"),
            result("cs2", "rotated", "now on version v2"),
            result("cs3", "noop", "already converged"),
            kind="manual",
        )
    )
    assert digest.severity == "good"
    assert digest.text.splitlines() == [
        "cs2: rotated (now on version v2)",
        "cs3: noop (already converged)",
    ]
    assert dict(digest.facts)["Trigger"] == "manual"


MESSAGE = ChatMessage(
    "Rotation failed: web-tls on cs1",
    "attention",
    "PlatformRejected: <!channel> & more",
    (("Cloud service", "cs1"), ("Run", "r1")),
)


def test_teams_payload_is_an_adaptive_card_in_a_message_envelope() -> None:
    payload = teams_payload(MESSAGE)
    assert payload["type"] == "message"
    [attachment] = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    title, text, facts = card["body"]
    assert (title["type"], title["text"], title["color"]) == (
        "TextBlock",
        MESSAGE.title,
        "Attention",
    )
    assert text == {"type": "TextBlock", "text": MESSAGE.text, "wrap": True}
    assert facts == {
        "type": "FactSet",
        "facts": [{"title": "Cloud service", "value": "cs1"}, {"title": "Run", "value": "r1"}],
    }


def test_slack_payload_has_fallback_text_and_escaped_blocks() -> None:
    payload = slack_payload(MESSAGE)
    assert payload["text"] == MESSAGE.title
    header, section, fields = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": ":red_circle: " + MESSAGE.title, "emoji": True},
    }
    assert section["text"] == {
        "type": "mrkdwn",
        "text": "PlatformRejected: &lt;!channel&gt; &amp; more",
    }
    assert fields["fields"] == [
        {"type": "mrkdwn", "text": "*Cloud service*\ncs1"},
        {"type": "mrkdwn", "text": "*Run*\nr1"},
    ]


def test_slack_payload_keeps_within_block_kit_limits() -> None:
    long = replace(
        MESSAGE,
        title="T" * 400,
        text="x" * 5000,
        facts=tuple((f"k{i}", "v" * 3000) for i in range(12)),
    )
    header, section, fields = slack_payload(long)["blocks"]
    assert len(header["text"]["text"]) <= 150
    assert len(section["text"]["text"]) <= 3000
    assert len(fields["fields"]) == 10
    assert all(len(f["text"]) <= 2000 for f in fields["fields"])


# -- metrics -------------------------------------------------------------------------------


def test_run_metrics_duration_outcomes_actions_and_days_to_expiry() -> None:
    reader = InMemoryMetricReader()
    record = RunMetrics(MeterProvider(metric_readers=[reader]).get_meter("test"))
    record(
        run(
            result("cs1", "rotated"),
            result("cs2", "failed", "x"),
            result("cs3", "noop"),
            actions=(Action("renew-requested", "asked"),),
        )
    )
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        m.name: [(dict(p.attributes or {}), p) for p in m.data.data_points]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    [(attributes, duration)] = points["certrotate.rotation.duration"]
    assert attributes == {"trigger": "event", "status": "done"}
    assert (duration.count, duration.sum) == (1, 42.0)
    assert sorted((a["outcome"], p.value) for a, p in points["certrotate.rotation.outcomes"]) == [
        ("failed", 1),
        ("noop", 1),
        ("rotated", 1),
    ]
    assert [(a, p.value) for a, p in points["certrotate.rotation.actions"]] == [
        ({"action": "renew-requested"}, 1)
    ]
    expiry = {
        a["cloud_service"]: p.value for a, p in points["certrotate.certificate.days_to_expiry"]
    }
    assert expiry == {service_id("cs1"): 90.0, service_id("cs3"): 90.0}  # not the failed one


AZURE_HOSTS = [
    ("management.azure.com", "arm"),
    ("kv1.vault.azure.net", "keyvault"),
    ("kv1.vault.azure.cn", "keyvault"),
    ("st1.blob.core.windows.net", "storage"),
    ("topic1.westeurope-1.eventgrid.azure.net", "eventgrid"),
    ("169.254.169.254", "identity"),
    ("127.0.0.1", "127.0.0.1"),
]


@pytest.mark.parametrize(("host", "service"), AZURE_HOSTS)
def test_azure_service_of_a_host(host: str, service: str) -> None:
    assert azure_service(host) == service
