"""Replay: what the Event Grid emulator sends and answers, against Microsoft's own data.

The oracle is under ``tests/fixtures/azure/eventgrid`` (see its PROVENANCE.md): the Event Grid
data-plane schemas for Key Vault events (``KeyVault.json``) and for both delivery envelopes
(``EventGrid.json``: ``EventGridEvent``, ``CloudEventEvent``), their published examples, the
management spec's event-subscription shape and ``delivery-and-retry.md``'s figures.

Every Key Vault event the stack raises is produced for real: a certificate imported with the
real SDK into an emulated vault raises ``CertificateNewVersionCreated``, and because it has
already expired, the vault's lifetime check raises ``CertificateNearExpiry`` and
``CertificateExpired``. Each reaches one webhook per delivery schema; each delivered event is
validated with jsonschema. The swagger leaves the data object open (no ``required``, extra
properties allowed), which would let anything pass, so the data is checked strictly: every
property the schema defines, none it does not (the TypeSpec marks NBF/EXP required since
2024-01-01). Volatile values (ids, times, names) are not compared; key sets and formats are.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from azure.identity import DefaultAzureCredential
from azure.keyvault.certificates import CertificateClient

from emulators import eventgrid
from emulators.polling import wait_for
from emulators.provision import self_signed_pfx
from tests.conftest import LocalStack
from tests.stack.test_eventgrid import (
    ArmClient,
    Receiver,
    Script,
    VaultTopic,
    arm_fixture,  # noqa: F401 (the fixtures "arm" and "receiver": one of each per module)
    dead_letter_container,
    receiver_fixture,  # noqa: F401
    vault_with_topic,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "azure" / "eventgrid"
CERT_EVENTS = ("CertificateNewVersionCreated", "CertificateNearExpiry", "CertificateExpired")
SCHEMAS = ("EventGridSchema", "CloudEventSchemaV1_0")
ENVELOPE_DEFINITION = {"EventGridSchema": "EventGridEvent",
                       "CloudEventSchemaV1_0": "CloudEventEvent"}
EXAMPLE = {"EventGridSchema": "event-grid-schema-secret_new_version_created.json",
           "CloudEventSchemaV1_0": "cloud-events-schema-secret_new_version_created.json"}
EG_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")  # as in the examples
FORMATS = jsonschema.FormatChecker()


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def definition(spec: str, name: str) -> dict[str, Any]:
    return dict(fixture(spec)["definitions"][name])


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "required": sorted(schema["properties"]), "additionalProperties": False}


def keys(value: Any, prefix: str = "") -> set[str]:
    """Every key path of a JSON value, recursively (``data.Id``, ``properties.topic``...)."""
    if not isinstance(value, dict):
        return set()
    found = set()
    for key, item in value.items():
        found.add(prefix + key)
        found |= keys(item, f"{prefix}{key}.")
    return found


@pytest.fixture(scope="module")
def vault_topic(arm: ArmClient) -> tuple[VaultTopic, str]:
    """A vault whose access policy lets the app's principal import certificates, and its
    system topic; returns the topic and the vault URI."""
    topic, vault = vault_with_topic(arm, ["get", "list", "import"])
    return topic, vault["properties"]["vaultUri"]


@pytest.fixture(scope="module")
def delivered(stack: LocalStack, receiver: Receiver,
              vault_topic: tuple[VaultTopic, str]) -> dict[tuple[str, str], Any]:
    """(delivery schema, event type) -> the event as the webhook received it."""
    topic, vault_uri = vault_topic
    paths = {schema: receiver.path() for schema in SCHEMAS}
    for schema, path in paths.items():
        op, _ = topic.subscribe(f"replay-{schema[:5].lower()}", receiver.base + path,
                                eventDeliverySchema=schema, filter={"includedEventTypes": [
                                    f"Microsoft.KeyVault.{e}" for e in CERT_EVENTS]})
        assert op["status"] == "Succeeded"
    now = dt.datetime.fromisoformat(stack.admin("GET", "/clock")["now"])
    pfx = self_signed_pfx("replay.example", now - dt.timedelta(days=90),
                          now - dt.timedelta(days=1))
    certs = CertificateClient(vault_uri, DefaultAzureCredential(),
                              verify_challenge_resource=False, connection_verify=stack.ca)
    certs.import_certificate("replay-tls", pfx)
    found: dict[tuple[str, str], Any] = {}
    for schema, path in paths.items():
        calls = wait_for(lambda path=path: len(receiver.calls(path)) >= 3
                         and receiver.calls(path), "three certificate events", 15)
        for call in calls:
            [event] = call.body if isinstance(call.body, list) else [call.body]
            kind = event["eventType"] if schema == "EventGridSchema" else event["type"]
            found[(schema, kind.removeprefix("Microsoft.KeyVault."))] = event
    return found


# -- every Key Vault event the stack raises, in both delivery schemas -------------------------


@pytest.mark.parametrize("schema", SCHEMAS)
@pytest.mark.parametrize("event_type", CERT_EVENTS)
def test_certificate_event_validates_against_keyvault_json(
        delivered: dict[tuple[str, str], Any], vault_topic: tuple[VaultTopic, str],
        schema: str, event_type: str) -> None:
    event = delivered[(schema, event_type)]
    envelope = definition("EventGrid.json", ENVELOPE_DEFINITION[schema])
    jsonschema.validate(event, envelope, format_checker=FORMATS)
    data = definition("KeyVault.json", f"KeyVault{event_type}EventData")
    jsonschema.validate(event["data"], strict(data), format_checker=FORMATS)

    example = fixture(f"examples/{EXAMPLE[schema]}")
    assert keys(event) == keys(example)  # envelope and data, recursively
    topic, vault_uri = vault_topic
    source = event["topic"] if schema == "EventGridSchema" else event["source"]
    assert source == topic.vault_id  # the vault's ARM id, as in the example
    when = event["eventTime"] if schema == "EventGridSchema" else event["time"]
    assert EG_TIME.match(when), when
    assert event["subject"] == event["data"]["ObjectName"] == "replay-tls"
    assert event["data"]["ObjectType"] == "Certificate"
    assert event["data"]["Id"] == f"{vault_uri}certificates/replay-tls/{event['data']['Version']}"
    assert re.fullmatch(r"[0-9a-f]{32}", event["data"]["Version"])
    assert event["data"]["EXP"] < dt.datetime.now(dt.UTC).timestamp() + 86400 * 365
    if schema == "EventGridSchema":
        assert (event["dataVersion"], event["metadataVersion"]) == ("1", "1")
    else:
        assert event["specversion"] == "1.0"
    uuid.UUID(event["id"])


def test_the_examples_own_nbf_and_exp_disagree_with_their_schema() -> None:
    """The published examples carry NBF/EXP as strings although the schema (and the
    TypeSpec: float32) says number; the stack follows the schema, so its events do not
    validate against this part of the example. Recorded, not a stack deviation."""
    example = fixture("examples/event-grid-schema-secret_new_version_created.json")
    data = definition("KeyVault.json", "KeyVaultSecretNewVersionCreatedEventData")
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'number'"):
        jsonschema.validate(example["data"], data)
    assert keys(example) == keys(fixture("examples/secret_new_version_created.json"))


@pytest.mark.parametrize("family", ["Key", "Secret", "VaultAccessPolicyChanged"])
def test_other_key_vault_events(family: str) -> None:
    pytest.skip(f"not implemented by the stack: the vault emulator models certificates only, "
                f"so it never raises the {family} events KeyVault.json also defines")


def test_subscription_validation_event_validates(receiver: Receiver,
                                                 vault_topic: tuple[VaultTopic, str]) -> None:
    topic, _ = vault_topic
    path = receiver.path()
    op, _ = topic.subscribe("replay-handshake", receiver.base + path)
    assert op["status"] == "Succeeded"
    [hello] = receiver.calls(path, event_type="SubscriptionValidation")
    [event] = hello.body
    jsonschema.validate(event, definition("EventGrid.json", "EventGridEvent"),
                        format_checker=FORMATS)
    jsonschema.validate(event["data"], strict(definition(
        "EventGrid.json", "SubscriptionValidationEventData")))
    assert event["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    assert EG_TIME.match(event["eventTime"])


# -- the AzureFunction destination, as the management spec shows it ---------------------------


def test_azure_function_subscription_get_has_the_example_keys(
        stack: LocalStack, vault_topic: tuple[VaultTopic, str]) -> None:
    topic, _ = vault_topic
    function_id = f"{stack.env['FUNCTION_APP_ID']}/functions/keyvault_events"
    resp = topic.arm.call("PUT", topic.subscription_path("replay-fn"), {"properties": {
        "destination": {"endpointType": "AzureFunction",
                        "properties": {"resourceId": function_id}},
        "filter": {"isSubjectCaseSensitive": False, "subjectBeginsWith": "ExamplePrefix",
                   "subjectEndsWith": "ExampleSuffix"},
        "labels": ["label1", "label2"]}})
    assert resp.status_code == 201, resp.text
    assert topic.arm.wait(resp)["status"] == "Succeeded"
    got = topic.arm.call("GET", topic.subscription_path("replay-fn")).json()
    example = fixture("examples/EventSubscriptions_GetForCustomTopic_AzureFunctionDestination"
                      ".json")["responses"]["200"]["body"]
    assert keys(example) <= keys(got)
    spec = fixture("event-subscription-properties.json")
    assert set(got["properties"]) <= set(spec["EventSubscriptionProperties"])
    assert set(got["properties"]["destination"]["properties"]) <= {
        "resourceId", "maxEventsPerBatch", "preferredBatchSizeInKilobytes"}
    assert got["properties"]["destination"]["endpointType"] == "AzureFunction"
    assert got["properties"]["destination"]["properties"]["resourceId"] == function_id
    assert got["properties"]["provisioningState"] in spec["provisioningState"]
    assert got["properties"]["eventDeliverySchema"] in spec["eventDeliverySchema"]
    assert got["properties"]["retryPolicy"] == spec["retryPolicyDefaults"]
    assert got["properties"]["filter"] == example["properties"]["filter"]


# -- dead letters, as delivery-and-retry.md shows them -----------------------------------------


DEAD_LETTER_FIELDS = {"EventGridSchema": "eventGridSchemaFields",
                      "CloudEventSchemaV1_0": "cloudEventsFields"}


@pytest.mark.parametrize("schema", SCHEMAS)
def test_dead_letter_adds_the_documented_fields(stack: LocalStack, receiver: Receiver,
                                                vault_topic: tuple[VaultTopic, str],
                                                schema: str) -> None:
    topic, _ = vault_topic
    client, destination = dead_letter_container(stack, topic.rg)
    path = receiver.path(Script(fail=[404]))
    name = f"replay-dl-{schema[:5].lower()}"
    topic.subscribe(name, receiver.base + path, eventDeliverySchema=schema,
                    retryPolicy={"maxDeliveryAttempts": 1}, deadLetterDestination=destination)
    raised = topic.raise_event("Microsoft.KeyVault.CertificateNearExpiry", "replay-tls")
    [blob] = wait_for(lambda: list(client.list_blobs()), "the dead-letter blob", 15)
    [lettered] = json.loads(client.download_blob(blob.name).readall())
    sent = {"id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion",
            "metadataVersion"} if schema == "EventGridSchema" else {
            "id", "source", "specversion", "type", "subject", "time", "data"}
    documented = set(fixture("delivery-and-retry.json")["deadLetter"][DEAD_LETTER_FIELDS[schema]])
    assert set(lettered) - sent == documented
    assert lettered["id"] == raised["id"]
    reason, attempts, outcome = (documented_name(schema, f) for f in (
        "deadLetterReason", "deliveryAttempts", "lastDeliveryOutcome"))
    assert (lettered[reason], lettered[attempts], lettered[outcome]) == (
        "MaxDeliveryAttemptsExceeded", 1, "NotFound")  # the doc example's values


def documented_name(schema: str, field: str) -> str:
    return field if schema == "EventGridSchema" else field.lower()


# -- delivery-and-retry.md's figures ----------------------------------------------------------


def test_retry_schedule_timeout_and_success_codes_are_the_documented_ones() -> None:
    facts = fixture("delivery-and-retry.json")
    assert list(eventgrid.RETRY_SCHEDULE_S) == facts["retryScheduleSeconds"]
    assert facts["responseWaitSeconds"] == eventgrid.DELIVERY_TIMEOUT_S
    assert [s for s in range(100, 600) if eventgrid.Outcome(s, "").delivered] == facts[
        "successStatuses"]
    assert facts["deadLetter"]["delaySeconds"] == eventgrid.DEAD_LETTER_DELAY_S
    assert facts["deadLetter"]["dropAfterUnavailableSeconds"] == eventgrid.DEAD_LETTER_GIVE_UP_S
    not_retried = facts["notRetried"]
    also = set(facts["notRetriedInFailureTable"])
    assert eventgrid.NO_RETRY["WebHook"] == set(not_retried["WebHook"]) | also
    assert eventgrid.NO_RETRY["AzureFunction"] == set(not_retried["AzureResources"]) | also
    minimum = facts["minimumRetrySeconds"]
    assert {408: minimum["408"], 503: minimum["503"]} == eventgrid.MIN_RETRY_S
    assert {
        **eventgrid.MIN_RETRY_S, 401: minimum["401"]["AzureResources"],
        404: minimum["404"]["AzureResources"]} == eventgrid.AZURE_RESOURCE_MIN_RETRY_S
    assert minimum["other"] == eventgrid.DEFAULT_MIN_RETRY_S


def test_delayed_delivery_probation_is_the_documented_one() -> None:
    facts = fixture("delivery-and-retry.json")
    probation = facts["probationSeconds"]
    assert facts["delayedDelivery"]["failuresBeforeDelay"] == eventgrid.PROBATION_AFTER_FAILURES
    outcomes = {  # what the emulator sees -> the doc's LastDeliveryOutcome
        eventgrid.Outcome(404, "NotFound"): "NotFound",
        eventgrid.Outcome(401, "Unauthorized"): "Unauthorized",
        eventgrid.Outcome(403, "Forbidden"): "Forbidden",
        eventgrid.Outcome(503, "ServiceUnavailable"): "Busy",
        eventgrid.Outcome(None, "TimedOut"): "TimedOut",
        eventgrid.Outcome(None, "GenericError"): "SocketError",
        eventgrid.Outcome(404, "InvalidAzureFunctionDestination"):
            "InvalidAzureFunctionDestination",
    }
    for outcome, documented in outcomes.items():
        assert eventgrid.probation_seconds(outcome) == probation[documented], documented


def test_functions_extension_endpoint_is_the_documented_one(stack: LocalStack) -> None:
    """What an AzureFunction destination resolves to: the documented webhook path, with
    ``aeg-event-type: Notification`` and the ``eventgrid_extension`` system key (an empty
    batch here: 202 with the key, 401 without)."""
    ext = fixture("delivery-and-retry.json")["functionsExtension"]
    url = stack.env["FUNCTIONS_URL"] + ext["webhookPath"]
    headers = dict(ext["headers"])
    params = {"functionName": "keyvault_events", "code": stack.env["EVENTGRID_WEBHOOK_KEY"]}
    ok = requests.post(url, params=params, headers=headers, data="[]", timeout=30)
    assert ok.status_code == 202
    keyless = requests.post(url, params={"functionName": "keyvault_events"}, headers=headers,
                            data="[]", timeout=30)
    assert keyless.status_code == 401
