"""Certificate events reach `keyvault_events`: system topic, filter, retries, dead letters."""

from __future__ import annotations

import re

from tests.infra.bicep import ROOT, render, resource, template

SUBSCRIPTION = "app/event-subscription.bicep"
CERTIFICATE_EVENTS = {
    "Microsoft.KeyVault.CertificateNewVersionCreated",
    "Microsoft.KeyVault.CertificateNearExpiry",
    "Microsoft.KeyVault.CertificateExpired",
}


def test_each_vault_gets_a_system_topic_with_its_own_identity() -> None:
    topic = resource("app/vault.bicep", "systemTopic").body
    assert topic["properties"]["topicType"] == "Microsoft.KeyVault.vaults"
    assert render(topic["properties"]["source"]) == "vault.id"
    assert render(topic["location"]) == "vault.location"
    assert topic["identity"] == {"type": "SystemAssigned"}


def test_subscription_filters_exactly_the_certificate_events() -> None:
    props = resource(SUBSCRIPTION, "subscription").body["properties"]
    included = props["filter"]["includedEventTypes"]
    assert len(included) == len(set(included)) and set(included) == CERTIFICATE_EVENTS
    assert set(props["filter"]) == {"includedEventTypes"}
    assert props["eventDeliverySchema"] == "EventGridSchema"


def test_subscription_delivers_to_the_function_without_a_key() -> None:
    destination = resource(SUBSCRIPTION, "subscription").body["properties"]["destination"]
    assert destination["endpointType"] == "AzureFunction"
    assert destination["properties"]["resourceId"] == "functionId"
    assert destination["properties"]["maxEventsPerBatch"] == 1
    params = template("events.bicep")["modules"]["subscriptions"]["config"]["config"]["params"]
    assert params["functionId"] == "${functionAppId}/functions/keyvault_events"
    handler = (ROOT / "handlers" / "keyvault_events.py").read_text()
    # The trigger decorates keyvault_events (its queue output binding may stand between).
    assert re.search(r"@bp\.event_grid_trigger\(.*\)\n(@bp\.\w+\(.*\)\n)*def keyvault_events\(",
                     handler)


def test_subscription_retries_then_dead_letters_with_the_topic_identity() -> None:
    props = resource(SUBSCRIPTION, "subscription").body["properties"]
    assert props["retryPolicy"] == {
        "maxDeliveryAttempts": "maxDeliveryAttempts",
        "eventTimeToLiveInMinutes": "eventTimeToLiveInMinutes",
    }
    events = template("events.bicep")["parameters"]
    assert events["maxDeliveryAttempts"]["default"] == 30
    assert events["eventTimeToLiveInMinutes"]["default"] == 1440
    assert props["deadLetterWithResourceIdentity"] == {
        "identity": {"type": "SystemAssigned"},
        "deadLetterDestination": {
            "endpointType": "StorageBlob",
            "properties": {
                "resourceId": "deadLetterStorageId",
                "blobContainerName": "deadLetterContainerName",
            },
        },
    }
    assert "deadLetterDestination" not in props, "dead letters only with the topic's identity"
