"""Table-driven tests for shared.domain.events: Key Vault certificate events -> CertificateEvent."""

from __future__ import annotations

import ast
import copy
import json
from dataclasses import astuple, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import shared.domain.events
from shared.domain.errors import IgnoredEvent, InvalidInput
from shared.domain.events import (
    EXPIRED,
    NEAR_EXPIRY,
    NEW_VERSION,
    CertificateEvent,
    parse_event,
)

SUB = "00000000-0000-0000-0000-000000000001"
VAULT_ID = f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults/kv1"
DOCS_VAULT_ID = (
    "/subscriptions/{subscription-id}/resourceGroups/sample-rg"
    "/providers/Microsoft.KeyVault/vaults/sample-kv"
)
ATTACKER_HOST = "evil.example.net"

# Verbatim from MicrosoftDocs/azure-docs articles/event-grid/event-schema-key-vault.md
# (Event Grid schema tab), quirks included: "ObjectName " key, " ee05..." version,
# NBF/EXP as strings. It is a *secret* event.
DOCS_SAMPLE: dict[str, Any] = {
    "id": "00eccf70-95a7-4e7c-8299-2eb17ee9ad64",
    "topic": DOCS_VAULT_ID,
    "subject": "newsecret",
    "eventType": "Microsoft.KeyVault.SecretNewVersionCreated",
    "eventTime": "2019-07-25T01:08:33.1036736Z",
    "data": {
        "Id": "https://sample-kv.vault.azure.net/secrets/newsecret/ee059b2bb5bc48398a53b168c6cdcb10",
        "VaultName": "sample-kv",
        "ObjectType": "Secret",
        "ObjectName ": "newsecret",
        "Version": " ee059b2bb5bc48398a53b168c6cdcb10",
        "NBF": "1559081980",
        "EXP": "1559082102",
    },
    "dataVersion": "1",
    "metadataVersion": "1",
}

# The docs sample turned into a certificate event, with data.Id pointing at another host.
DOCS_CERT_SAMPLE: dict[str, Any] = {
    **DOCS_SAMPLE,
    "eventType": NEW_VERSION,
    "subject": "newcert",
    "data": {
        **DOCS_SAMPLE["data"],
        "Id": f"https://{ATTACKER_HOST}/certificates/newcert/ee059b2bb5bc48398a53b168c6cdcb10",
        "ObjectType": "Certificate",
        "ObjectName ": "newcert",
    },
}

CERT_DATA: dict[str, Any] = {
    "Id": "https://kv1.vault.azure.net/certificates/web-tls/0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "VaultName": "kv1",
    "ObjectType": "Certificate",
    "ObjectName": "web-tls",
    "Version": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    "NBF": 1749411621,
    "EXP": 1749418821,
}

EG_EVENT: dict[str, Any] = {
    "id": "eg-1",
    "topic": VAULT_ID,
    "subject": "web-tls",
    "eventType": NEAR_EXPIRY,
    "eventTime": "2025-06-08T19:52:25.1524887Z",
    "data": CERT_DATA,
    "dataVersion": "1",
    "metadataVersion": "1",
}

CLOUD_EVENT: dict[str, Any] = {
    "id": "ce-1",
    "source": VAULT_ID,
    "specversion": "1.0",
    "type": EXPIRED,
    "subject": "web-tls",
    "time": "2025-06-08T19:52:25Z",
    "data": CERT_DATA,
}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with top-level keys replaced (``None`` deletes the key)."""
    event = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def _with_data(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with ``data`` keys replaced (``None`` deletes the key)."""
    return _with(base, data=_with(base["data"], **changes))


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


EG_EXPECTED = CertificateEvent(
    kind=NEAR_EXPIRY,
    event_id="eg-1",
    vault_id=VAULT_ID,
    vault_name="kv1",
    certificate="web-tls",
    version="0a1b2c3d4e5f60718293a4b5c6d7e8f9",
    not_before=_utc(1749411621),
    expires=_utc(1749418821),
    event_time=datetime(2025, 6, 8, 19, 52, 25, 152488, tzinfo=UTC),
)

CASES = [
    pytest.param(
        DOCS_CERT_SAMPLE,
        CertificateEvent(
            kind=NEW_VERSION,
            event_id="00eccf70-95a7-4e7c-8299-2eb17ee9ad64",
            vault_id=DOCS_VAULT_ID,
            vault_name="sample-kv",
            certificate="newcert",
            version="ee059b2bb5bc48398a53b168c6cdcb10",
            not_before=_utc(1559081980),
            expires=_utc(1559082102),
            event_time=datetime(2019, 7, 25, 1, 8, 33, 103673, tzinfo=UTC),
        ),
        id="docs-sample-quirks",
    ),
    pytest.param(EG_EVENT, EG_EXPECTED, id="event-grid-schema"),
    pytest.param(
        CLOUD_EVENT,
        CertificateEvent(
            kind=EXPIRED,
            event_id="ce-1",
            vault_id=VAULT_ID,
            vault_name="kv1",
            certificate="web-tls",
            version="0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            not_before=_utc(1749411621),
            expires=_utc(1749418821),
            event_time=datetime(2025, 6, 8, 19, 52, 25, tzinfo=UTC),
        ),
        id="cloudevents",
    ),
    pytest.param(_with(EG_EVENT, data=json.dumps(CERT_DATA)), EG_EXPECTED, id="data-json-string"),
    pytest.param(
        _with(EG_EVENT, data={k.lower(): v for k, v in CERT_DATA.items()}),
        EG_EXPECTED,
        id="lower-case-keys",
    ),
    pytest.param(
        _with(EG_EVENT, data={k.upper(): v for k, v in CERT_DATA.items()}),
        EG_EXPECTED,
        id="upper-case-keys",
    ),
    pytest.param(
        _with(EG_EVENT, topic=VAULT_ID.upper() + "/"),
        replace(EG_EXPECTED, vault_id=VAULT_ID.upper(), vault_name="KV1"),
        id="topic-upper-case-trailing-slash",
    ),
    pytest.param(
        _with(EG_EVENT, eventType=NEW_VERSION.lower()),
        replace(EG_EXPECTED, kind=NEW_VERSION),
        id="type-case-insensitive",
    ),
    pytest.param(
        _with_data(EG_EVENT, ObjectName=None, VaultName=None, ObjectType=None, Version=None),
        replace(EG_EXPECTED, version=None),
        id="name-from-subject",
    ),
    pytest.param(
        _with(EG_EVENT, subject="other-cert"),
        EG_EXPECTED,
        id="object-name-beats-subject",
    ),
    pytest.param(
        _with(EG_EVENT, data=None, eventTime=None),
        replace(EG_EXPECTED, version=None, not_before=None, expires=None, event_time=None),
        id="no-data-no-time",
    ),
    pytest.param(
        _with_data(EG_EVENT, NBF=1749411621.5, EXP="1749418821.25"),
        replace(EG_EXPECTED, not_before=_utc(1749411621.5), expires=_utc(1749418821.25)),
        id="fractional-unix-seconds",
    ),
    pytest.param(
        _with(EG_EVENT, eventTime="2025-06-08T21:52:25.1+02:00"),
        replace(EG_EXPECTED, event_time=datetime(2025, 6, 8, 19, 52, 25, 100000, tzinfo=UTC)),
        id="time-with-offset",
    ),
    pytest.param(
        _with(EG_EVENT, eventTime=datetime(2025, 6, 8, 19, 52, 25, 152488, tzinfo=UTC)),
        EG_EXPECTED,
        id="time-as-aware-datetime",
    ),
]


@pytest.mark.parametrize(("item", "expected"), CASES)
def test_parse_event(item: dict[str, Any], expected: CertificateEvent) -> None:
    event = parse_event(item)
    assert event == expected
    for moment in (event.not_before, event.expires, event.event_time):
        assert moment is None or moment.utcoffset() is not None


def test_data_id_is_never_used() -> None:
    event = parse_event(DOCS_CERT_SAMPLE)
    assert all(ATTACKER_HOST not in str(value) for value in astuple(event))
    assert "https://" not in repr(event)


BAD = [
    pytest.param(DOCS_SAMPLE, IgnoredEvent, "SecretNewVersionCreated", id="docs-secret-sample"),
    pytest.param(
        _with(EG_EVENT, eventType="Microsoft.Storage.BlobCreated"),
        IgnoredEvent,
        "Microsoft.Storage.BlobCreated",
        id="unknown-type",
    ),
    pytest.param(
        _with(EG_EVENT, eventType="Microsoft.KeyVault.VaultAccessPolicyChanged", id=None),
        IgnoredEvent,
        "VaultAccessPolicyChanged",
        id="access-policy-ignored-before-validation",
    ),
    pytest.param(
        _with(EG_EVENT, eventType="Microsoft.EventGrid.SubscriptionValidationEvent"),
        IgnoredEvent,
        "SubscriptionValidationEvent",
        id="subscription-validation",
    ),
    pytest.param(
        _with_data(EG_EVENT, ObjectType="Key"),
        IgnoredEvent,
        "'Key'",
        id="object-type-not-certificate",
    ),
    pytest.param(["not", "a", "dict"], InvalidInput, "event:", id="not-a-mapping"),
    pytest.param(_with(EG_EVENT, id=None), InvalidInput, "id:", id="missing-id"),
    pytest.param(_with(EG_EVENT, id="  "), InvalidInput, "id:", id="blank-id"),
    pytest.param(
        _with(EG_EVENT, id="eg-1\n2026-01-01 INFO certrotate: forged"),
        InvalidInput,
        "has control characters",
        id="id-with-newline",
    ),
    pytest.param(_with(EG_EVENT, id="x" * 257), InvalidInput, "over 256", id="id-too-long"),
    pytest.param(_with(EG_EVENT, eventType=None), InvalidInput, "eventType:", id="missing-type"),
    pytest.param(_with(CLOUD_EVENT, type=None), InvalidInput, "type:", id="ce-missing-type"),
    pytest.param(
        _with(CLOUD_EVENT, specversion="0.3"), InvalidInput, "specversion:", id="ce-old-spec"
    ),
    pytest.param(_with(EG_EVENT, topic=None), InvalidInput, "topic:", id="missing-topic"),
    pytest.param(_with(CLOUD_EVENT, source=None), InvalidInput, "source:", id="missing-source"),
    pytest.param(
        _with(
            EG_EVENT,
            topic=f"/subscriptions/{SUB}/resourceGroups/rg1"
            "/providers/Microsoft.Storage/storageAccounts/kv1",
        ),
        InvalidInput,
        "topic:",
        id="topic-storage-account",
    ),
    pytest.param(
        _with(EG_EVENT, topic=VAULT_ID + "/secrets/x"),
        InvalidInput,
        "topic:",
        id="topic-child-resource",
    ),
    pytest.param(
        _with(EG_EVENT, topic="https://kv1.vault.azure.net/"),
        InvalidInput,
        "topic:",
        id="topic-url",
    ),
    pytest.param(
        _with(EG_EVENT, topic=VAULT_ID.replace("vaults/kv1", "vaults/1kv")),
        InvalidInput,
        "topic:",
        id="topic-bad-vault-name",
    ),
    pytest.param(_with(EG_EVENT, data=[1]), InvalidInput, "data:", id="data-not-object"),
    pytest.param(_with(EG_EVENT, data="{oops"), InvalidInput, "data:", id="data-bad-json"),
    pytest.param(
        _with(EG_EVENT, data={**CERT_DATA, "objectname": "other"}),
        InvalidInput,
        "data.objectname:",
        id="conflicting-duplicate-keys",
    ),
    pytest.param(_with_data(EG_EVENT, EXP="soon"), InvalidInput, "data.EXP:", id="bad-exp"),
    pytest.param(_with_data(EG_EVENT, EXP="nan"), InvalidInput, "data.EXP:", id="nan-exp"),
    pytest.param(_with_data(EG_EVENT, EXP=float("inf")), InvalidInput, "data.EXP:", id="inf-exp"),
    pytest.param(_with_data(EG_EVENT, EXP=10**20), InvalidInput, "data.EXP:", id="huge-exp"),
    pytest.param(_with_data(EG_EVENT, NBF=True), InvalidInput, "data.NBF:", id="bool-nbf"),
    pytest.param(
        _with_data(EG_EVENT, NBF="\u0661\u0667\u0664\u0669"), InvalidInput, "data.NBF:",
        id="non-ascii-digits-nbf",
    ),
    pytest.param(_with_data(EG_EVENT, EXP="9" * 5000), InvalidInput, "data.EXP:", id="5000-digits"),
    pytest.param(
        _with_data(EG_EVENT, ObjectName="web tls"),
        InvalidInput,
        "data.ObjectName:",
        id="bad-certificate-name",
    ),
    pytest.param(
        _with_data(EG_EVENT, ObjectName="a" * 128),
        InvalidInput,
        "data.ObjectName:",
        id="certificate-name-too-long",
    ),
    pytest.param(
        _with(_with_data(EG_EVENT, ObjectName=None), subject="../web-tls"),
        InvalidInput,
        "from subject",
        id="bad-name-in-subject",
    ),
    pytest.param(
        _with(_with_data(EG_EVENT, ObjectName=" "), subject=None),
        InvalidInput,
        "data.ObjectName:",
        id="no-certificate-name",
    ),
    pytest.param(
        _with_data(EG_EVENT, VaultName="kv2"),
        InvalidInput,
        "data.VaultName:",
        id="vault-name-mismatch",
    ),
    pytest.param(
        _with_data(EG_EVENT, Version="v1/../x"),
        InvalidInput,
        "data.Version:",
        id="bad-version",
    ),
    pytest.param(
        _with_data(EG_EVENT, ObjectName=42), InvalidInput, "data.ObjectName:", id="name-not-str"
    ),
    pytest.param(
        _with(EG_EVENT, eventTime="yesterday"), InvalidInput, "eventTime:", id="bad-event-time"
    ),
    pytest.param(
        _with(EG_EVENT, eventTime="2025-06-08T19:52:25"),
        InvalidInput,
        "eventTime:",
        id="event-time-without-zone",
    ),
    pytest.param(
        _with(EG_EVENT, eventTime="2025-06-08T19:52:25.12345678Z"),
        InvalidInput,
        "eventTime:",
        id="event-time-8-fraction-digits",
    ),
    pytest.param(
        _with(EG_EVENT, eventTime="2025-13-08T19:52:25Z"),
        InvalidInput,
        "eventTime:",
        id="event-time-bad-month",
    ),
    pytest.param(
        _with(EG_EVENT, eventTime=datetime(2025, 6, 8)),
        InvalidInput,
        "eventTime:",
        id="event-time-naive-datetime",
    ),
    pytest.param(_with(CLOUD_EVENT, time="nope"), InvalidInput, "time:", id="bad-ce-time"),
]


@pytest.mark.parametrize(("item", "error", "substring"), BAD)
def test_parse_event_rejects(item: Any, error: type[Exception], substring: str) -> None:
    with pytest.raises(error) as caught:
        parse_event(item)
    assert substring in str(caught.value)


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(_with_data(EG_EVENT, ObjectName="a" * 100_000), id="name"),
        pytest.param(_with(EG_EVENT, topic="/subscriptions/" + "x" * 100_000), id="topic"),
        pytest.param(_with(EG_EVENT, eventType="x" * 100_000), id="type"),
        pytest.param(_with(EG_EVENT, id="\n" * 100_000), id="event-id"),
        pytest.param(_with_data(EG_EVENT, EXP="9" * 100_000), id="exp"),
    ],
)
def test_rejected_values_are_clipped_in_messages(item: dict[str, Any]) -> None:
    """Messages are logged: a megabyte-sized value must not become a megabyte log line."""
    with pytest.raises((InvalidInput, IgnoredEvent)) as caught:
        parse_event(item)
    assert len(str(caught.value)) < 300


def test_invalid_input_carries_field() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_event(_with_data(EG_EVENT, VaultName="kv2"))
    assert caught.value.field == "data.VaultName"


def test_module_is_pure() -> None:
    """No azure.functions (or any SDK / I/O module) import: handlers convert to dicts."""
    tree = ast.parse(Path(shared.domain.events.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    allowed = {
        "__future__",
        "collections.abc",
        "dataclasses",
        "datetime",
        "json",
        "math",
        "re",
        "shared.domain.errors",
        "typing",
    }
    assert imported <= allowed
