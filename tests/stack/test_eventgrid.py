"""Event Grid emulator through its real clients: ARM over HTTPS with a managed-identity
token (no management SDK is installed), a webhook receiver the test runs itself, Azurite
for dead letters, and ``azure-eventgrid``'s ``EventGridPublisherClient`` for custom topics.

The receiver is a plain ``ThreadingHTTPServer`` on 127.0.0.1 (Event Grid accepts plain http
only for loopback in this stack); each test scripts its own path: how to answer the
handshake and which statuses to return to notifications before a 200.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from azure.core.credentials import AzureKeyCredential, AzureSasCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient, generate_sas
from azure.identity import DefaultAzureCredential
from azure.keyvault.certificates import CertificateClient, CertificatePolicy
from azure.storage.blob import BlobServiceClient, ContainerClient

from emulators.polling import wait_for
from tests.conftest import LocalStack

API = "2025-02-15"
KV_NEW = "Microsoft.KeyVault.CertificateNewVersionCreated"
KV_NEAR = "Microsoft.KeyVault.CertificateNearExpiry"


# -- the webhook receiver ----------------------------------------------------------------


@dataclass
class Script:
    """How one receiver path behaves: ``handshake`` is "echo" (answer the code), "async"
    (200 without it) or an error status; ``fail`` lists notification statuses to return,
    in order, before answering 200; ``origin`` is the WebHook-Allowed-Origin to send."""

    handshake: str | int = "echo"
    fail: list[int] = field(default_factory=list)
    origin: str | None = "eventgrid.azure.net"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class Receiver:
    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _record(self) -> tuple[Script, Any]:
                path = self.path.split("?")[0]
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.received.append(Received(self.command, path, headers, body))
                    script = receiver.scripts.setdefault(path, Script())
                return script, body

            def _answer(self, status: int, body: Any = None,
                        headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_OPTIONS(self) -> None:
                script, _ = self._record()
                if isinstance(script.handshake, int):
                    self._answer(script.handshake)
                else:
                    origin = {"WebHook-Allowed-Origin": script.origin} if script.origin else {}
                    self._answer(200, headers=origin)

            def do_POST(self) -> None:
                script, body = self._record()
                if self.headers.get("aeg-event-type") == "SubscriptionValidation":
                    if isinstance(script.handshake, int):
                        self._answer(script.handshake)
                    elif script.handshake == "async":
                        self._answer(200)
                    else:
                        self._answer(200, {"validationResponse": body[0]["data"]["validationCode"]})
                    return
                with receiver.lock:
                    status = script.fail.pop(0) if script.fail else 200
                self._answer(status)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def path(self, script: Script | None = None) -> str:
        path = f"/hooks/{uuid.uuid4().hex[:12]}"
        self.scripts[path] = script or Script()
        return path

    def calls(self, path: str, method: str = "POST", event_type: str = "Notification"
              ) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path and r.method == method
                    and (method != "POST" or r.headers.get("aeg-event-type") == event_type)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()



# -- ARM over HTTPS ----------------------------------------------------------------------


class ArmClient:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.base = stack.env["ARM_ENDPOINT"]
        self.credential = DefaultAzureCredential()

    def call(self, method: str, path: str, body: Any = None,
             api_version: str = API) -> requests.Response:
        token = self.credential.get_token("https://management.azure.com/.default").token
        url = path if path.startswith("https://") else f"{self.base}{path}"
        params = None if "api-version=" in url else {"api-version": api_version}
        return requests.request(method, url, params=params, json=body, timeout=30,
                                headers={"Authorization": f"Bearer {token}"},
                                verify=self.stack.ca)

    def wait(self, resp: requests.Response, timeout: float = 15.0) -> dict[str, Any]:
        """Poll the Azure-AsyncOperation URL until the operation leaves InProgress."""
        url = resp.headers["Azure-AsyncOperation"]
        return dict(wait_for(
            lambda: (op := self.call("GET", url).json())["status"] != "InProgress" and op,
            timeout))

    def list_all(self, path: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        resp = self.call("GET", path)
        while True:
            resp.raise_for_status()
            page = resp.json()
            items += page["value"]
            if not page.get("nextLink"):
                return items
            resp = self.call("GET", page["nextLink"])


@dataclass(frozen=True)
class VaultTopic:
    """A resource group with a system topic on a (fictitious) vault's events."""

    arm: ArmClient
    rg: str
    vault_id: str
    topic_path: str

    def subscription_path(self, name: str) -> str:
        return f"{self.topic_path}/eventSubscriptions/{name}"

    def subscribe(self, name: str, url: str, **props: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """PUT an event subscription; return (final operation, GET body)."""
        destination_props = {"endpointUrl": url, **props.pop("destination", {})}
        body = {"properties": {"destination": {"endpointType": "WebHook",
                                               "properties": destination_props}, **props}}
        resp = self.arm.call("PUT", self.subscription_path(name), body)
        assert resp.status_code == 201, resp.text
        op = self.arm.wait(resp)
        return op, self.arm.call("GET", self.subscription_path(name)).json()

    def raise_event(self, event_type: str = KV_NEW, subject: str = "web-tls",
                    **extra: Any) -> dict[str, Any]:
        body = {"source": self.vault_id, "eventType": event_type, "subject": subject,
                "data": {"Id": f"https://kv/certificates/{subject}/v1"}, **extra}
        return dict(self.arm.stack.admin("POST", "/eventgrid/system-events", body))


# Named apart from their fixture names so other modules (tests/replay) can import them.
@pytest.fixture(scope="module", name="receiver")
def receiver_fixture() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module", name="arm")
def arm_fixture(stack: LocalStack) -> ArmClient:
    return ArmClient(stack)


def new_rg(arm: ArmClient) -> str:
    rg = f"rg-eg-{uuid.uuid4().hex[:8]}"
    resp = arm.call("PUT", f"/subscriptions/{arm.stack.subscription}/resourceGroups/{rg}",
                    {"location": "westeurope"}, api_version="2021-04-01")
    assert resp.status_code == 201, resp.text
    return rg


@pytest.fixture
def topic(arm: ArmClient) -> VaultTopic:
    sub = arm.stack.subscription
    rg = new_rg(arm)
    vault_id = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/kv1"
    path = (f"/subscriptions/{sub}/resourceGroups/{rg}"
            "/providers/Microsoft.EventGrid/systemTopics/kv1-events")
    resp = arm.call("PUT", path, {"location": "westeurope", "properties": {
        "source": vault_id, "topicType": "Microsoft.KeyVault.vaults"}})
    assert resp.status_code == 201, resp.text
    assert arm.wait(resp)["status"] == "Succeeded"
    return VaultTopic(arm, rg, vault_id, path)


def vault_with_topic(arm: ArmClient, permissions: list[str]) -> tuple[VaultTopic, dict[str, Any]]:
    """A real (emulated) vault in a fresh resource group, its access policy granting the
    app's principal these certificate ``permissions``, and a system topic on its events;
    returns the topic and the vault as ARM answered."""
    stack = arm.stack
    rg = new_rg(arm)
    vault_path = (f"/subscriptions/{stack.subscription}/resourceGroups/{rg}"
                  f"/providers/Microsoft.KeyVault/vaults/kv{uuid.uuid4().hex[:10]}")
    made = arm.call("PUT", vault_path, {"location": "westeurope", "properties": {
        "tenantId": stack.env["AZURE_TENANT_ID"], "sku": {"family": "A", "name": "standard"},
        "enabledForDeployment": True, "enableRbacAuthorization": False,
        "accessPolicies": [{"tenantId": stack.env["AZURE_TENANT_ID"],
                            "objectId": stack.env["MANAGED_IDENTITY_OBJECT_ID"],
                            "permissions": {"certificates": permissions, "secrets": ["get"]}}]}},
        api_version="2023-07-01")
    assert made.status_code in (200, 201), made.text
    vault = made.json()
    topic_path = (f"/subscriptions/{stack.subscription}/resourceGroups/{rg}"
                  "/providers/Microsoft.EventGrid/systemTopics/vault-events")
    resp = arm.call("PUT", topic_path, {"location": "westeurope", "properties": {
        "source": vault["id"], "topicType": "Microsoft.KeyVault.vaults"}})
    assert arm.wait(resp)["status"] == "Succeeded"
    return VaultTopic(arm, rg, vault["id"], topic_path), dict(vault)


def dead_letter_container(stack: LocalStack, rg: str) -> tuple[ContainerClient, dict[str, Any]]:
    """A fresh Azurite container and the ``StorageBlob`` destination that names it."""
    blobs = BlobServiceClient(stack.env["AZURITE_BLOB_URL"], credential=DefaultAzureCredential(),
                              connection_verify=stack.ca)
    container = blobs.create_container(f"dl-{uuid.uuid4().hex[:8]}")
    account_id = (f"/subscriptions/{stack.subscription}/resourceGroups/{rg}/providers/"
                  "Microsoft.Storage/storageAccounts/devstoreaccount1")
    return container, {"endpointType": "StorageBlob", "properties": {
        "resourceId": account_id, "blobContainerName": container.container_name}}


def deliveries(stack: LocalStack, name: str, kind: str = "Notification") -> list[dict[str, Any]]:
    return [d for d in stack.admin("GET", "/eventgrid/deliveries")
            if d["name"] == name and d["kind"] == kind]


# -- control plane -------------------------------------------------------------------------


def test_system_topic_resource_shape_and_validation(arm: ArmClient, topic: VaultTopic) -> None:
    got = arm.call("GET", topic.topic_path).json()
    assert got["type"] == "Microsoft.EventGrid/systemTopics"
    assert got["id"] == topic.topic_path
    assert got["properties"]["source"] == topic.vault_id
    assert got["properties"]["topicType"] == "Microsoft.KeyVault.vaults"
    assert got["properties"]["provisioningState"] == "Succeeded"
    uuid.UUID(got["properties"]["metricResourceId"])

    base = topic.topic_path.rsplit("/", 1)[0]
    bad_type = arm.call("PUT", f"{base}/other", {"location": "westeurope", "properties": {
        "source": topic.vault_id, "topicType": "Microsoft.Storage.StorageAccounts"}})
    assert bad_type.status_code == 400
    not_a_vault = arm.call("PUT", f"{base}/other", {"location": "westeurope", "properties": {
        "source": topic.vault_id.replace("vaults", "widgets"),
        "topicType": "Microsoft.KeyVault.vaults"}})
    assert not_a_vault.status_code == 400
    second = arm.call("PUT", f"{base}/other", {"location": "westeurope", "properties": {
        "source": topic.vault_id, "topicType": "Microsoft.KeyVault.vaults"}})
    assert second.status_code == 400
    assert "one system topic" in second.json()["error"]["message"]
    assert [t["name"] for t in arm.list_all(base)] == ["kv1-events"]
    assert arm.call("GET", f"{base}/missing").json()["error"]["code"] == "ResourceNotFound"


def test_subscription_validation_of_properties(receiver: Receiver, topic: VaultTopic) -> None:
    def put(**props: Any) -> requests.Response:
        dest = {"endpointUrl": receiver.base + receiver.path(), **props.pop("dest", {})}
        return topic.arm.call("PUT", topic.subscription_path("bad"), {"properties": {
            "destination": {"endpointType": "WebHook", "properties": dest}, **props}})

    remote_http = topic.arm.call("PUT", topic.subscription_path("bad"), {"properties": {
        "destination": {"endpointType": "WebHook",
                        "properties": {"endpointUrl": "http://example.com/hook"}}}})
    assert remote_http.status_code == 400
    assert "proper HTTPS URL" in remote_http.json()["error"]["message"]
    assert put(retryPolicy={"maxDeliveryAttempts": 31}).status_code == 400
    assert put(retryPolicy={"eventTimeToLiveInMinutes": 0}).status_code == 400
    assert put(dest={"maxEventsPerBatch": 5001}).status_code == 400
    assert put(filter={"includedEventTypes": ["Microsoft.Storage.BlobCreated"]}).status_code == 400
    combined = put(deadLetterDestination={"endpointType": "StorageBlob", "properties": {
        "resourceId": f"/subscriptions/{topic.arm.stack.subscription}/resourceGroups/{topic.rg}"
                      "/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
                      "/blobServices/default/containers/dl"}})
    assert combined.status_code == 400
    orphan = topic.arm.call("PUT", topic.topic_path + "-none/eventSubscriptions/x", {})
    assert orphan.json()["error"]["code"] == "ParentResourceNotFound"


def test_handshake_eventgrid_schema(receiver: Receiver, topic: VaultTopic) -> None:
    path = receiver.path()
    url = f"{receiver.base}{path}?functionName=onCert&code=secret-key"
    op, got = topic.subscribe("Sub-A", url)
    assert op["status"] == "Succeeded"
    props = got["properties"]
    assert props["provisioningState"] == "Succeeded"
    assert props["destination"]["properties"]["endpointBaseUrl"] == receiver.base + path
    assert "endpointUrl" not in props["destination"]["properties"]
    assert props["retryPolicy"] == {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}
    assert props["eventDeliverySchema"] == "EventGridSchema"
    assert props["topic"] == topic.topic_path
    full = topic.arm.call("POST", topic.subscription_path("Sub-A") + "/getFullUrl").json()
    assert full == {"endpointUrl": url}

    [hello] = receiver.calls(path, event_type="SubscriptionValidation")
    assert hello.headers["aeg-subscription-name"] == "SUB-A"
    assert hello.headers["content-type"] == "application/json; charset=utf-8"
    [event] = hello.body
    assert event["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    assert event["subject"] == ""
    assert (event["metadataVersion"], event["dataVersion"]) == ("1", "1")
    uuid.UUID(event["data"]["validationCode"])
    assert event["data"]["validationUrl"].startswith("https://")


def test_handshake_cloudevents_options(receiver: Receiver, topic: VaultTopic) -> None:
    path = receiver.path(Script(origin="*"))
    op, got = topic.subscribe("ce", receiver.base + path,
                              eventDeliverySchema="CloudEventSchemaV1_0")
    assert op["status"] == "Succeeded"
    assert got["properties"]["eventDeliverySchema"] == "CloudEventSchemaV1_0"
    [options] = receiver.calls(path, "OPTIONS")
    assert options.headers["webhook-request-origin"] == "eventgrid.azure.net"
    assert receiver.calls(path, event_type="SubscriptionValidation") == []


def test_handshake_failures_fail_the_subscription(receiver: Receiver, topic: VaultTopic) -> None:
    path = receiver.path(Script(handshake=404))
    op, got = topic.subscribe("nope", receiver.base + path + "?code=k")
    assert op["status"] == "Failed"
    assert op["error"]["code"] == "Url validation"
    assert op["error"]["message"].startswith(
        f"Webhook validation handshake failed for {receiver.base}{path}. "
        "Http POST request failed with response code NotFound.")
    assert got["properties"]["provisioningState"] == "Failed"
    assert topic.raise_event()["subscriptions"] == 0

    no_origin = receiver.path(Script(origin=None))
    op, got = topic.subscribe("ce-nope", receiver.base + no_origin,
                              eventDeliverySchema="CloudEventSchemaV1_0")
    assert op["status"] == "Failed"
    assert "OPTIONS" in op["error"]["message"]
    assert got["properties"]["provisioningState"] == "Failed"


def test_manual_validation_through_validation_url(stack: LocalStack, receiver: Receiver,
                                                  topic: VaultTopic) -> None:
    path = receiver.path(Script(handshake="async"))
    resp = topic.arm.call("PUT", topic.subscription_path("manual"), {"properties": {
        "destination": {"endpointType": "WebHook",
                        "properties": {"endpointUrl": receiver.base + path}}}})
    assert resp.status_code == 201
    hello = wait_for(lambda: receiver.calls(path, event_type="SubscriptionValidation"))
    wait_for(lambda: topic.arm.call("GET", topic.subscription_path("manual")).json()
             ["properties"]["provisioningState"] == "AwaitingManualAction")
    visit = requests.get(hello[0].body[0]["data"]["validationUrl"], verify=stack.ca, timeout=10)
    assert visit.status_code == 200
    assert topic.arm.wait(resp)["status"] == "Succeeded"
    assert topic.arm.call("GET", topic.subscription_path("manual")).json()[
        "properties"]["provisioningState"] == "Succeeded"


def test_list_pages_and_delete(receiver: Receiver, topic: VaultTopic) -> None:
    for name in ("s1", "s2", "s3"):
        assert topic.subscribe(name, receiver.base + receiver.path())[0]["status"] == "Succeeded"
    listed = topic.arm.list_all(topic.topic_path + "/eventSubscriptions")
    assert sorted(s["name"] for s in listed) == ["s1", "s2", "s3"]
    assert topic.arm.call("DELETE", topic.subscription_path("s2")).status_code == 202
    assert topic.arm.call("GET", topic.subscription_path("s2")).status_code == 404
    assert topic.arm.call("DELETE", topic.subscription_path("s2")).status_code == 204


# -- delivery ------------------------------------------------------------------------------


def test_delivers_eventgrid_schema_envelope(receiver: Receiver, topic: VaultTopic) -> None:
    path = receiver.path()
    topic.subscribe("eg", receiver.base + path)
    data = {"Id": "https://kv1.vault.azure.net/certificates/web-tls/0a1b", "VaultName": "kv1",
            "ObjectType": "Certificate", "ObjectName": "web-tls", "Version": "0a1b",
            "NBF": 1749411621, "EXP": 1749418821}
    raised = topic.arm.stack.admin("POST", "/eventgrid/system-events", {
        "source": topic.vault_id, "eventType": KV_NEAR, "subject": "web-tls", "data": data})
    assert raised["subscriptions"] == 1
    [got] = wait_for(lambda: receiver.calls(path))
    assert got.headers["content-type"] == "application/json; charset=utf-8"
    assert got.headers["aeg-event-type"] == "Notification"
    assert got.headers["aeg-subscription-name"] == "EG"
    assert got.headers["aeg-delivery-count"] == "0"
    assert (got.headers["aeg-data-version"], got.headers["aeg-metadata-version"]) == ("1", "1")
    assert got.body == [{"id": raised["id"], "topic": topic.vault_id, "subject": "web-tls",
                         "eventType": KV_NEAR, "eventTime": raised["eventTime"], "data": data,
                         "dataVersion": "1", "metadataVersion": "1"}]
    assert got.body[0]["eventTime"].endswith("Z") and len(got.body[0]["eventTime"]) == 28


def test_delivers_cloudevents_envelope(receiver: Receiver, topic: VaultTopic) -> None:
    path = receiver.path()
    topic.subscribe("ce", receiver.base + path, eventDeliverySchema="CloudEventSchemaV1_0")
    raised = topic.raise_event(KV_NEW, "web-tls")
    [got] = wait_for(lambda: receiver.calls(path))
    assert got.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    assert got.headers["aeg-event-type"] == "Notification"
    assert got.body == {"id": raised["id"], "source": topic.vault_id, "specversion": "1.0",
                        "type": KV_NEW, "subject": "web-tls", "time": raised["eventTime"],
                        "data": {"Id": "https://kv/certificates/web-tls/v1"}}


def test_filters_and_unmatched_sources(receiver: Receiver, topic: VaultTopic) -> None:
    path = receiver.path()
    topic.subscribe("near", receiver.base + path, filter={
        "includedEventTypes": [KV_NEAR], "subjectBeginsWith": "WEB-"})
    assert topic.raise_event(KV_NEW, "web-tls")["subscriptions"] == 0
    assert topic.raise_event(KV_NEAR, "api-tls")["subscriptions"] == 0
    other_vault = topic.vault_id.replace("/kv1", "/kv2")
    assert topic.arm.stack.admin("POST", "/eventgrid/system-events", {
        "source": other_vault, "eventType": KV_NEAR, "subject": "web-tls",
        "data": {}})["subscriptions"] == 0
    wanted = topic.raise_event(KV_NEAR, "web-tls")  # subject filters ignore case by default
    [got] = wait_for(lambda: receiver.calls(path))
    assert [e["id"] for e in got.body] == [wanted["id"]]
    time.sleep(0.2)
    assert len(receiver.calls(path)) == 1


def test_batches_what_arrives_together(receiver: Receiver, topic: VaultTopic) -> None:
    path = receiver.path()
    topic.subscribe("batch", receiver.base + path, destination={"maxEventsPerBatch": 2})
    raised = topic.arm.stack.admin("POST", "/eventgrid/system-events", [
        {"source": topic.vault_id, "eventType": KV_NEW, "subject": f"c{i}", "data": {}}
        for i in range(3)])
    calls = wait_for(lambda: len(receiver.calls(path)) == 2 and receiver.calls(path))
    assert sorted(len(c.body) for c in calls) == [1, 2]
    assert {e["id"] for c in calls for e in c.body} == {r["id"] for r in raised}


def test_retries_until_the_webhook_recovers(stack: LocalStack, receiver: Receiver,
                                            topic: VaultTopic) -> None:
    path = receiver.path(Script(fail=[500, 503]))
    topic.subscribe("flaky", receiver.base + path)
    raised = topic.raise_event()
    calls = wait_for(lambda: len(receiver.calls(path)) == 3 and receiver.calls(path))
    assert [c.headers["aeg-delivery-count"] for c in calls] == ["0", "1", "2"]
    assert {c.body[0]["id"] for c in calls} == {raised["id"]}
    log = wait_for(lambda: len(deliveries(stack, "flaky")) == 3 and deliveries(stack, "flaky"))
    assert [(d["attempt"], d["status"], d["outcome"]) for d in log] == [
        (1, 500, "InternalServerError"), (2, 503, "ServiceUnavailable"), (3, 200, "Succeeded")]


def test_dead_letters_into_azurite(stack: LocalStack, receiver: Receiver,
                                   topic: VaultTopic) -> None:
    client, destination = dead_letter_container(stack, topic.rg)
    path = receiver.path(Script(fail=[500] * 10))
    _, got = topic.subscribe("Dead-Sub", receiver.base + path,
                             retryPolicy={"maxDeliveryAttempts": 2},
                             deadLetterDestination=destination)
    assert got["properties"]["deadLetterDestination"] == destination
    raised = topic.raise_event(KV_NEAR, "web-tls")
    [blob] = wait_for(lambda: list(client.list_blobs()), timeout=15)
    assert blob.name.startswith("DEAD-SUB/") and blob.name.endswith(".json")
    [lettered] = json.loads(client.download_blob(blob.name).readall())
    assert lettered["id"] == raised["id"]
    assert lettered["topic"] == topic.vault_id
    assert lettered["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert lettered["deliveryAttempts"] == 2
    assert lettered["lastDeliveryOutcome"] == "InternalServerError"
    assert {"publishTime", "lastDeliveryAttemptTime"} <= lettered.keys()
    assert len(receiver.calls(path)) == 2
    # The blob is written first, then the delivery is logged: wait for both.
    [entry] = wait_for(lambda: deliveries(stack, "Dead-Sub", "DeadLettered"), timeout=15)
    assert entry["blob"] == blob.name


def test_bad_request_is_not_retried_and_dropped(stack: LocalStack, receiver: Receiver,
                                                topic: VaultTopic) -> None:
    path = receiver.path(Script(fail=[400]))
    topic.subscribe("reject", receiver.base + path)
    raised = topic.raise_event()
    [dropped] = wait_for(lambda: deliveries(stack, "reject", "Dropped"))
    assert dropped["event_ids"] == [raised["id"]]
    assert dropped["reason"] == "UndeliverableDueToHttpBadRequest"
    assert len(receiver.calls(path)) == 1


def test_key_vault_certificate_raises_delivered_event(stack: LocalStack, receiver: Receiver,
                                                     arm: ArmClient) -> None:
    """The whole chain: a certificate made with the real SDK in an emulated vault reaches
    the webhook as CertificateNewVersionCreated with Key Vault's data fields."""
    topic, vault = vault_with_topic(arm, ["get", "list", "create"])
    vault_name = vault["name"]
    path = receiver.path()
    topic.subscribe("certs", receiver.base + path, filter={"includedEventTypes": [KV_NEW]})

    certs = CertificateClient(vault["properties"]["vaultUri"], DefaultAzureCredential(),
                              verify_challenge_resource=False, connection_verify=stack.ca)
    certs.begin_create_certificate("web-tls", CertificatePolicy.get_default())
    [got] = wait_for(lambda: receiver.calls(path), timeout=15)
    [event] = got.body
    props = certs.get_certificate("web-tls").properties
    assert props is not None and props.not_before is not None and props.expires_on is not None
    assert event["eventType"] == KV_NEW
    assert event["topic"] == vault["id"]
    assert event["subject"] == "web-tls"
    data = event["data"]
    assert data.keys() == {"Id", "VaultName", "ObjectType", "ObjectName", "Version", "NBF", "EXP"}
    assert data["Id"] == props.id
    assert (data["VaultName"], data["ObjectType"], data["ObjectName"], data["Version"]) == (
        vault_name, "Certificate", "web-tls", props.version)
    assert data["NBF"] == int(props.not_before.timestamp())
    assert data["EXP"] == int(props.expires_on.timestamp())


# -- custom topics -------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomTopic:
    name: str
    endpoint: str
    key: str


def custom_topic(arm: ArmClient, rg: str, schema: str) -> CustomTopic:
    name = f"rotator-{uuid.uuid4().hex[:8]}"
    path = (f"/subscriptions/{arm.stack.subscription}/resourceGroups/{rg}"
            f"/providers/Microsoft.EventGrid/topics/{name}")
    resp = arm.call("PUT", path, {"location": "westeurope", "properties": {"inputSchema": schema}})
    assert resp.status_code == 201, resp.text
    assert arm.wait(resp)["status"] == "Succeeded"
    endpoint = arm.call("GET", path).json()["properties"]["endpoint"]
    keys = arm.call("POST", path + "/listKeys").json()
    assert keys.keys() == {"key1", "key2"}
    return CustomTopic(name, endpoint, keys["key1"])


def published(stack: LocalStack, topic: CustomTopic) -> list[dict[str, Any]]:
    return list(stack.admin("GET", f"/eventgrid/published?topic={topic.name}"))


def test_publish_eventgrid_events_with_key_and_sas(stack: LocalStack, arm: ArmClient) -> None:
    topic = custom_topic(arm, new_rg(arm), "EventGridSchema")
    assert topic.endpoint.startswith(stack.env["EVENTGRID_TOPIC_URL"])
    client = EventGridPublisherClient(topic.endpoint, AzureKeyCredential(topic.key))
    event = EventGridEvent(subject="certificates/c1", event_type="Rotator.CertRotated",
                           data={"thumbprint": "AB"}, data_version="1.0")
    client.send([event], connection_verify=stack.ca)
    [stored] = published(stack, topic)
    assert stored["event"]["id"] == str(event.id)
    assert stored["event"]["eventType"] == "Rotator.CertRotated"
    assert stored["event"]["data"] == {"thumbprint": "AB"}
    assert stored["event"]["topic"].endswith(f"/providers/Microsoft.EventGrid/topics/{topic.name}")

    sas = generate_sas(topic.endpoint, topic.key, datetime.now(UTC) + timedelta(hours=1))
    EventGridPublisherClient(topic.endpoint, AzureSasCredential(sas)).send(
        [event], connection_verify=stack.ca)
    assert len(published(stack, topic)) == 2

    with pytest.raises(ClientAuthenticationError):
        EventGridPublisherClient(topic.endpoint, AzureKeyCredential("d3Jvbmc=")).send(
            [event], connection_verify=stack.ca)
    with pytest.raises(HttpResponseError) as wrong_schema:
        client.send([CloudEvent(source="/rotator", type="Rotator.CertRotated", data={})],
                    connection_verify=stack.ca)
    assert wrong_schema.value.status_code == 400
    assert len(published(stack, topic)) == 2


def test_publish_cloud_events_with_bearer_token(stack: LocalStack, arm: ArmClient) -> None:
    topic = custom_topic(arm, new_rg(arm), "CloudEventSchemaV1_0")
    client = EventGridPublisherClient(topic.endpoint, AzureKeyCredential(topic.key))
    first = CloudEvent(source="/rotator", type="Rotator.CertRotated", data={"a": 1},
                       subject="c1")
    client.send([first], connection_verify=stack.ca)
    second = CloudEvent(source="/rotator", type="Rotator.CertRotated", data={"a": 2})
    EventGridPublisherClient(topic.endpoint, DefaultAzureCredential()).send(
        [second], connection_verify=stack.ca)
    events = [p["event"] for p in published(stack, topic)]
    assert [(e["id"], e["data"], e["specversion"]) for e in events] == [
        (first.id, {"a": 1}, "1.0"), (second.id, {"a": 2}, "1.0")]
    assert events[0]["subject"] == "c1"
    with pytest.raises(HttpResponseError) as too_big:
        client.send([CloudEvent(source="/r", type="T", data="x" * (1024 * 1024))],
                    connection_verify=stack.ca)
    assert too_big.value.status_code == 413


# -- AzureFunction destinations, identity dead letters, delayed delivery --------------------


def function_id(stack: LocalStack, function: str) -> str:
    return f"{stack.env['FUNCTION_APP_ID']}/functions/{function}"


def put_function_subscription(topic: VaultTopic, name: str, function: str,
                              **props: Any) -> requests.Response:
    """The shape infra/app/event-subscription.bicep deploys."""
    return topic.arm.call("PUT", topic.subscription_path(name), {"properties": {
        "destination": {"endpointType": "AzureFunction", "properties": {
            "resourceId": function_id(topic.arm.stack, function), "maxEventsPerBatch": 1,
            "preferredBatchSizeInKilobytes": 64}},
        "eventDeliverySchema": "EventGridSchema", **props}})


def test_azure_function_destination_is_delivered_through_the_event_grid_extension(
        stack: LocalStack, topic: VaultTopic) -> None:
    log = stack.folder / "logs" / "functions.log"
    start = log.stat().st_size
    resp = put_function_subscription(topic, "Fn-Sub", "keyvault_events")
    assert resp.status_code == 201, resp.text
    assert topic.arm.wait(resp)["status"] == "Succeeded"
    got = topic.arm.call("GET", topic.subscription_path("Fn-Sub")).json()
    assert got["properties"]["provisioningState"] == "Succeeded"
    assert got["properties"]["destination"] == {"endpointType": "AzureFunction", "properties": {
        "resourceId": function_id(stack, "keyvault_events"), "maxEventsPerBatch": 1,
        "preferredBatchSizeInKilobytes": 64}}
    assert deliveries(stack, "Fn-Sub", "SubscriptionValidation") == []  # no handshake
    full = topic.arm.call("POST", topic.subscription_path("Fn-Sub") + "/getFullUrl")
    assert full.status_code == 400  # no URL (and no key) to reveal

    # Data the product rejects before it sends any request: only the delivery path matters.
    raised = stack.admin("POST", "/eventgrid/system-events", {
        "source": topic.vault_id, "eventType": KV_NEAR, "subject": "web-tls", "data": {}})
    assert raised["subscriptions"] == 1
    [sent] = wait_for(lambda: deliveries(stack, "Fn-Sub"))
    assert (sent["status"], sent["outcome"]) == (202, "Succeeded")  # the extension's answer

    def written() -> str:
        with log.open("rb") as handle:
            handle.seek(start)
            return handle.read().decode()

    wait_for(lambda: "Executed 'Functions.keyvault_events' (Succeeded" in written(),
             "the keyvault_events invocation")
    lines = written()
    assert "Executing 'Functions.keyvault_events' (Reason='EventGrid trigger fired'" in lines
    assert "POST /runtime/webhooks/eventgrid -> 202" in lines


def test_azure_function_destination_refusals(stack: LocalStack, topic: VaultTopic) -> None:
    not_a_function = topic.arm.call("PUT", topic.subscription_path("bad"), {"properties": {
        "destination": {"endpointType": "AzureFunction", "properties": {
            "resourceId": stack.env["FUNCTION_APP_ID"]}}}})
    assert not_a_function.status_code == 400
    assert "function's resource id" in not_a_function.json()["error"]["message"]
    other_app = function_id(stack, "keyvault_events").replace("func-certrotate-local", "func-x")
    unknown_app = topic.arm.call("PUT", topic.subscription_path("bad"), {"properties": {
        "destination": {"endpointType": "AzureFunction", "properties": {"resourceId": other_app}}}})
    assert unknown_app.status_code == 400
    assert "'func-x'" in unknown_app.json()["error"]["message"]

    # A name the host has no Event Grid function for: the host answers 404.
    resp = put_function_subscription(topic, "ghost", "status",
                                     retryPolicy={"maxDeliveryAttempts": 1})
    assert topic.arm.wait(resp)["status"] == "Succeeded"
    raised = topic.raise_event(KV_NEW, "web-tls")
    [sent] = wait_for(lambda: deliveries(stack, "ghost"))
    assert (sent["status"], sent["outcome"]) == (404, "InvalidAzureFunctionDestination")
    [dropped] = wait_for(lambda: deliveries(stack, "ghost", "Dropped"))
    assert dropped["event_ids"] == [raised["id"]]


def test_dead_letters_with_the_system_topics_identity(stack: LocalStack, receiver: Receiver,
                                                      topic: VaultTopic) -> None:
    client, destination = dead_letter_container(stack, topic.rg)
    with_identity = {"identity": {"type": "SystemAssigned"}, "deadLetterDestination": destination}
    path = receiver.path(Script(fail=[400]))
    body = {"properties": {
        "destination": {"endpointType": "WebHook",
                        "properties": {"endpointUrl": receiver.base + path}},
        "deadLetterWithResourceIdentity": with_identity}}
    refused = topic.arm.call("PUT", topic.subscription_path("ident"), body)
    assert refused.status_code == 400
    assert "no system-assigned identity" in refused.json()["error"]["message"]

    resp = topic.arm.call("PUT", topic.topic_path, {
        "location": "westeurope", "identity": {"type": "SystemAssigned"},
        "properties": {"source": topic.vault_id, "topicType": "Microsoft.KeyVault.vaults"}})
    assert resp.status_code == 200, resp.text
    identity = topic.arm.call("GET", topic.topic_path).json()["identity"]
    assert identity["type"] == "SystemAssigned"
    uuid.UUID(identity["principalId"])
    assert identity["tenantId"] == stack.env["AZURE_TENANT_ID"]

    _, got = topic.subscribe("ident", receiver.base + path,
                             deadLetterWithResourceIdentity=with_identity)
    assert got["properties"]["deadLetterWithResourceIdentity"] == with_identity
    assert "deadLetterDestination" not in got["properties"]
    raised = topic.raise_event(KV_NEAR, "web-tls")
    [blob] = wait_for(lambda: list(client.list_blobs()), timeout=15)
    [lettered] = json.loads(client.download_blob(blob.name).readall())
    assert lettered["id"] == raised["id"]
    assert lettered["deadLetterReason"] == "UndeliverableDueToHttpBadRequest"
    assert lettered["deliveryAttempts"] == 1


def test_a_failing_endpoint_has_later_deliveries_delayed(stack: LocalStack, receiver: Receiver,
                                                         topic: VaultTopic) -> None:
    """delivery-and-retry.md, "Delayed Delivery": after the first 10 failed deliveries, new
    events wait too (404: 5 minutes of probation, times the stack's retry_scale of 0.01)."""
    path = receiver.path(Script(fail=[404] * 10))
    topic.subscribe("sick", receiver.base + path, retryPolicy={"maxDeliveryAttempts": 1})
    stack.admin("POST", "/eventgrid/system-events", [
        {"source": topic.vault_id, "eventType": KV_NEW, "subject": f"c{i}", "data": {}}
        for i in range(10)])
    wait_for(lambda: len(deliveries(stack, "sick", "Dropped")) == 10, "ten dropped events")
    assert deliveries(stack, "sick", "Delayed") == []  # positive control: failures 1-10
    failed_at = max(datetime.fromisoformat(d["time"]) for d in deliveries(stack, "sick"))

    late = topic.raise_event(KV_NEW, "c10")
    [delayed] = wait_for(lambda: deliveries(stack, "sick", "Delayed"))
    assert delayed["event_ids"] == [late["id"]]
    assert delayed["failures"] == 10
    assert 250 <= delayed["nominal_seconds"] <= 300
    [sent] = wait_for(lambda: [d for d in deliveries(stack, "sick") if d["status"] == 200],
                      "the delayed delivery", timeout=15)
    assert datetime.fromisoformat(sent["time"]) - failed_at >= timedelta(seconds=2.5)

    # A delivered event ends the probation: the next one goes at once.
    topic.raise_event(KV_NEW, "c11")
    wait_for(lambda: len([d for d in deliveries(stack, "sick") if d["status"] == 200]) == 2)
    assert len(deliveries(stack, "sick", "Delayed")) == 1
