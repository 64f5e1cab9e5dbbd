"""Event Grid emulator: system topics for Key Vault, event subscriptions to webhooks (with
the validation handshake) and to Azure Functions, push delivery with Event Grid's retry,
delayed-delivery and dead-letter rules, and custom topics that ``EventGridPublisherClient``
publishes to.

Theory of operation
-------------------
Control plane (through ``Arm``, api-version 2025-02-15 shapes): ``systemTopics`` bind a
source resource (a vault's ARM id, topic type ``Microsoft.KeyVault.vaults``; one system
topic per source, as in Azure), may carry a managed ``identity`` and hold
``eventSubscriptions``. A destination is a ``WebHook`` URL or an ``AzureFunction``: a
function's resource id (``.../Microsoft.Web/sites/{app}/functions/{fn}``, as
``infra/events.bicep`` uses), which Event Grid resolves itself to the app's Event Grid
extension endpoint, ``/runtime/webhooks/eventgrid?functionName={fn}&code={system key}``; so
no key is configured anywhere, the app must be known to the platform (the stack registers
its Functions host through the admin API, standing in for the key lookup Azure does through
ARM), there is no handshake and ``getFullUrl`` has nothing to reveal. Creating a webhook
subscription is a long-running operation: while it runs the webhook must pass the validation
handshake, exactly as Azure insists before it sends a single event (Event Grid schema: a
``SubscriptionValidationEvent`` POST answered 200 with ``{"validationResponse": code}``,
or a later GET of the ``validationUrl`` served by the topic listener; CloudEvents: an
``OPTIONS`` abuse-protection request answered 200 with ``WebHook-Allowed-Origin``). A
failed handshake fails the operation and leaves the subscription ``Failed``. GET hides
the endpoint's query string (it carries the Functions key) behind ``endpointBaseUrl``;
``getFullUrl`` reveals it, as in Azure. Dead letters go to a storage container named by
``deadLetterDestination``, or by ``deadLetterWithResourceIdentity``, whose identity
(``SystemAssigned``, or a ``UserAssigned`` id) the system topic must have; the blob is
written with Azurite's account key either way (Azurite has no RBAC, so the identity's role
on the account is not checked).

Data plane: Key Vault calls ``publish_system_event`` synchronously from its handlers. The
event is matched against every ``Succeeded`` subscription of the system topic whose source
is that vault (filters: ``includedEventTypes``, subject prefix/suffix) and queued per
subscription; a flush scheduled with ``call_soon`` batches what arrived in the same turn of
the loop (``maxEventsPerBatch``/``preferredBatchSizeInKilobytes``; one event per request by
default) and starts one asyncio task per batch. A task POSTs the batch (Event Grid schema:
JSON array; CloudEvents: one object, or a batch array) with the ``aeg-*`` headers, counts
200-204 as delivered, and otherwise retries on Event Grid's schedule (10 s, 30 s, 1 min,
5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h) raised to the per-status minimum, every
delay multiplied by ``retry_scale`` so tests need not wait hours. 400/401/403/413 are not
retried for webhooks, 400/403/413 for functions (Azure-resource destinations, which also
wait at least 5 minutes after a 401 or 404; current delivery-and-retry doc). Delayed
delivery: after ``PROBATION_AFTER_FAILURES`` failed deliveries in a row to one endpoint (a
webhook URL, or a function), the endpoint is on probation: every later attempt to it,
retries and new events alike, waits until the probation ends (10 s for a timeout or busy
endpoint, 30 s after a connection error, 5 minutes for 401/403/404, 10 minutes for an
``InvalidAzureFunctionDestination`` (a 404 from the host: no Event Grid function of that
name), also scaled by ``retry_scale``) and is logged as ``Delayed``; a delivered batch ends
it. When ``maxDeliveryAttempts`` or ``eventTimeToLiveInMinutes`` runs out (TTL counts
nominal schedule time and the emulated clock, whichever is further) the batch is
dead-lettered, after the scaled 5-minute delay, as a JSON array blob in Azurite with the
doc's dead-letter fields added (``deadLetterReason``, ``deliveryAttempts``,
``lastDeliveryOutcome``, ``publishTime``, ``lastDeliveryAttemptTime``; CloudEvents: the
first four in lower case), or dropped when no dead-letter destination is set. Every attempt,
dead letter and drop is logged for ``GET /eventgrid/deliveries``.

Custom topics (``Microsoft.EventGrid/topics``) exist so the product can publish its own
events: one HTTPS listener serves every topic at ``{topic_base_url}/topics/{name}/api/events``
(the SDK posts to the endpoint verbatim), authenticating ``aeg-sas-key``,
``aeg-sas-token`` or a bearer token for ``https://eventgrid.azure.net``, enforcing the
topic's input schema and the 1 MB limits, and storing what it accepted for
``GET /eventgrid/published``. Custom-topic events are stored, not routed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import http
import json
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp
from aiohttp import web
from azure.core.exceptions import AzureError

from emulators.arm import Arm, ArmRequest, Operation
from emulators.blobs import Blobs
from emulators.core import Platform, error_response, json_response
from emulators.tokens import InvalidToken

AdminHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NAMESPACE = "Microsoft.EventGrid"
KEYVAULT_TOPIC_TYPE = "Microsoft.KeyVault.vaults"
KEYVAULT_EVENT_TYPES = (
    *(f"Microsoft.KeyVault.{kind}{what}"
      for kind in ("Certificate", "Key", "Secret")
      for what in ("NewVersionCreated", "NearExpiry", "Expired")),
    "Microsoft.KeyVault.VaultAccessPolicyChanged",
)
EVENTGRID_SCHEMA = "EventGridSchema"
CLOUDEVENT_SCHEMA = "CloudEventSchemaV1_0"
EVENTGRID_AUDIENCE = "https://eventgrid.azure.net"
REQUEST_ORIGIN = "eventgrid.azure.net"
VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"
TROUBLESHOOT = "For troublehooting, visit https://aka.ms/esvalidation."  # sic, as Azure says
ONE_MB = 1024 * 1024

# Event Grid's documented retry schedule (seconds); the last step repeats.
RETRY_SCHEDULE_S = (10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 43200)
# Minimum wait before retrying after these statuses (delivery-and-retry.md's failure table).
MIN_RETRY_S = {408: 120, 503: 30}
DEFAULT_MIN_RETRY_S = 10
# Not scaled by retry_scale: a handler that works for seconds (following an update) must
# not be cut off and redelivered sooner than Event Grid would.
DELIVERY_TIMEOUT_S = 30.0
DEAD_LETTER_DELAY_S = 300
DEAD_LETTER_GIVE_UP_S = 4 * 3600
MANUAL_VALIDATION_WINDOW_S = 300

_VAULT_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.KeyVault/vaults/(?P<name>[^/]+)$",
    re.IGNORECASE,
)
_STORAGE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Storage"
    r"/storageAccounts/(?P<account>[^/]+)$",
    re.IGNORECASE,
)
_FUNCTION_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Web"
    r"/sites/(?P<site>[^/]+)/functions/(?P<function>[^/]+)$",
    re.IGNORECASE,
)
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9-]{3,50}$")
WEBHOOK = "WebHook"
AZURE_FUNCTION = "AzureFunction"
# Statuses never retried, per destination kind: the doc's "Retry schedule" table (webhooks
# 400/401/413, Azure resources 400/413) and its failure-code table (403: not retried).
NO_RETRY = {WEBHOOK: frozenset({400, 401, 403, 413}),
            AZURE_FUNCTION: frozenset({400, 403, 413})}
# Minimum waits that hold for Azure-resource destinations only ("... for Azure Resources
# Endpoints" in the failure-code table).
AZURE_RESOURCE_MIN_RETRY_S = {**MIN_RETRY_S, 401: 300, 404: 300}
# Delayed delivery: once this many deliveries to one endpoint have failed in a row, Event
# Grid puts the endpoint on probation and holds every later attempt to it, new events
# included, for the probation duration of the last failure (the doc's table; durations by
# outcome, here keyed by what we saw: a status, a timeout or a connection error).
PROBATION_AFTER_FAILURES = 10
PROBATION_S = {404: 300, 401: 300, 403: 300, 408: 10, 429: 10, 503: 10}
PROBATION_TIMEOUT_S = 10
PROBATION_SOCKET_ERROR_S = 30
PROBATION_INVALID_FUNCTION_S = 600
DEFAULT_PROBATION_S = 10
IDENTITY_TYPES = ("None", "SystemAssigned", "UserAssigned", "SystemAssigned, UserAssigned")


class InvalidRequest(ValueError):
    """A request body Event Grid would refuse with 400; the text is the message."""


def _eg_time(moment: dt.datetime) -> str:
    """Event Grid's timestamp format: UTC with seven fractional digits and ``Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _status_name(status: int) -> str:
    """The .NET ``HttpStatusCode`` name Azure puts in messages (``NotFound``...)."""
    try:
        return http.HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return str(status)


def _base_url(url: str) -> str:
    """The endpoint without its query string (which may hold a function key)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _not_found(kind: str, name: str, rg: str) -> web.Response:
    return error_response(
        404, "ResourceNotFound",
        f"The Resource '{kind}/{name}' under resource group '{rg}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def _bad_request(message: str) -> web.Response:
    return error_response(400, "BadRequest", message)


def _int_in(value: Any, name: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(
            f"The attribute '{name}' has an invalid value '{value}'. "
            f"Valid values are between {low} and {high}."
        )
    return value


# -- value data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One system event as Event Grid holds it, renderable in either delivery schema."""

    id: str
    source: str
    event_type: str
    subject: str
    data: Any
    event_time: str
    published: dt.datetime
    data_version: str = "1"
    metadata_version: str = "1"

    def render(self, schema: str) -> dict[str, Any]:
        if schema == CLOUDEVENT_SCHEMA:
            return {"id": self.id, "source": self.source, "specversion": "1.0",
                    "type": self.event_type, "subject": self.subject, "time": self.event_time,
                    "data": self.data}
        return {"id": self.id, "topic": self.source, "subject": self.subject,
                "eventType": self.event_type, "eventTime": self.event_time, "data": self.data,
                "dataVersion": self.data_version, "metadataVersion": self.metadata_version}

    def size(self, schema: str) -> int:
        return len(json.dumps(self.render(schema)).encode())


@dataclass(frozen=True)
class DeadLetterTarget:
    """Where undeliverable events go. ``identity`` is None for ``deadLetterDestination``
    (Event Grid's own access) or the topic identity ``deadLetterWithResourceIdentity``
    names (``SystemAssigned``, or ``UserAssigned`` with ``user_identity``)."""

    resource_id: str
    account: str
    container: str
    identity: str | None = None
    user_identity: str | None = None

    def render(self) -> dict[str, Any]:
        destination = {"endpointType": "StorageBlob", "properties": {
            "resourceId": self.resource_id, "blobContainerName": self.container}}
        if self.identity is None:
            return {"deadLetterDestination": destination}
        identity: dict[str, str] = {"type": self.identity}
        if self.user_identity is not None:
            identity["userAssignedIdentity"] = self.user_identity
        return {"deadLetterWithResourceIdentity": {
            "identity": identity, "deadLetterDestination": destination}}


@dataclass(frozen=True)
class Destination:
    """A subscription's destination: a webhook URL (its query may hold a key) or a
    function's resource id, which Event Grid resolves to the app's Event Grid extension
    endpoint with the ``eventgrid_extension`` system key, so no key is ever configured."""

    endpoint_type: str
    endpoint_url: str = ""
    function_id: str = ""

    @property
    def key(self) -> str:
        """What delayed delivery tracks as one endpoint."""
        return (self.function_id.lower() if self.endpoint_type == AZURE_FUNCTION
                else self.endpoint_url)

    @property
    def site_id(self) -> str:
        return self.function_id.lower().rsplit("/functions/", 1)[0]

    @property
    def function_name(self) -> str:
        return self.function_id.rsplit("/", 1)[-1]

    def render(self) -> dict[str, Any]:
        if self.endpoint_type == AZURE_FUNCTION:
            return {"endpointType": AZURE_FUNCTION, "properties": {"resourceId": self.function_id}}
        return {"endpointType": WEBHOOK,
                "properties": {"endpointBaseUrl": _base_url(self.endpoint_url)}}

    @classmethod
    def parse(cls, destination: Any) -> Destination:
        if not isinstance(destination, dict):
            raise InvalidRequest("The attribute 'destination' is required.")
        kind = str(destination.get("endpointType", ""))
        dest = destination.get("properties") or {}
        if kind.lower() == WEBHOOK.lower():
            url = dest.get("endpointUrl")
            if not isinstance(url, str) or not _webhook_url_ok(url):
                raise InvalidRequest(
                    "Invalid event subscription request: Supplied URL is invalid. It cannot be "
                    "null or empty and should be a proper HTTPS URL like "
                    "https://www.example.com."
                )
            return cls(WEBHOOK, endpoint_url=url)
        if kind.lower() == AZURE_FUNCTION.lower():
            resource_id = dest.get("resourceId")
            if not isinstance(resource_id, str) or not _FUNCTION_ID.match(resource_id):
                raise InvalidRequest(
                    f"The destination 'resourceId' '{resource_id}' is not a function's resource "
                    "id (/subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.Web/sites/"
                    "{app}/functions/{function})."
                )
            return cls(AZURE_FUNCTION, function_id=resource_id)
        raise InvalidRequest(
            f"Destination endpoint type '{destination.get('endpointType')}' is not supported "
            f"by this emulator; only '{WEBHOOK}' and '{AZURE_FUNCTION}' are."
        )


@dataclass(frozen=True)
class SubscriptionConfig:
    """What a PUT of an event subscription asked for, validated as Event Grid does."""

    destination: Destination
    max_events_per_batch: int
    preferred_batch_kb: int
    schema: str
    included_event_types: tuple[str, ...] | None
    subject_begins_with: str
    subject_ends_with: str
    subject_case_sensitive: bool
    max_delivery_attempts: int
    ttl_minutes: int
    dead_letter: DeadLetterTarget | None
    labels: tuple[str, ...]
    expiration: dt.datetime | None

    @classmethod
    def parse(cls, body: Any, now: dt.datetime) -> SubscriptionConfig:
        props = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(props, dict):
            raise InvalidRequest("The request body must contain 'properties'.")
        destination = Destination.parse(props.get("destination"))
        dest = props["destination"].get("properties") or {}
        filt = props.get("filter") or {}
        if not isinstance(filt, dict):
            raise InvalidRequest("The attribute 'filter' must be an object.")
        if filt.get("advancedFilters"):
            raise InvalidRequest("Advanced filters are not supported by this emulator.")
        types = filt.get("includedEventTypes")
        if types is not None:
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                raise InvalidRequest(
                    "The attribute 'includedEventTypes' must be a list of strings.")
            known = {t.lower() for t in KEYVAULT_EVENT_TYPES}
            unknown = [t for t in types if t.lower() not in known]
            if unknown:
                raise InvalidRequest(
                    f"Invalid event type(s) {unknown} for topic type '{KEYVAULT_TOPIC_TYPE}'. "
                    f"Supported event types are: {', '.join(KEYVAULT_EVENT_TYPES)}."
                )
        schema = props.get("eventDeliverySchema") or EVENTGRID_SCHEMA
        if schema not in (EVENTGRID_SCHEMA, CLOUDEVENT_SCHEMA):
            raise InvalidRequest(
                f"Event delivery schema '{schema}' is not supported for this topic; use "
                f"'{EVENTGRID_SCHEMA}' or '{CLOUDEVENT_SCHEMA}'."
            )
        retry = props.get("retryPolicy") or {}
        labels = props.get("labels") or []
        if (props.get("deadLetterDestination") is not None
                and props.get("deadLetterWithResourceIdentity") is not None):
            raise InvalidRequest("Only one of 'deadLetterDestination' and "
                                 "'deadLetterWithResourceIdentity' may be set.")
        return cls(
            destination=destination,
            max_events_per_batch=_int_in(dest.get("maxEventsPerBatch"), "maxEventsPerBatch",
                                         1, 5000, 1),
            preferred_batch_kb=_int_in(dest.get("preferredBatchSizeInKilobytes"),
                                       "preferredBatchSizeInKilobytes", 1, 1024, 64),
            schema=schema,
            included_event_types=tuple(types) if types is not None else None,
            subject_begins_with=str(filt.get("subjectBeginsWith") or ""),
            subject_ends_with=str(filt.get("subjectEndsWith") or ""),
            subject_case_sensitive=bool(filt.get("isSubjectCaseSensitive", False)),
            max_delivery_attempts=_int_in(retry.get("maxDeliveryAttempts"),
                                          "maxDeliveryAttempts", 1, 30, 30),
            ttl_minutes=_int_in(retry.get("eventTimeToLiveInMinutes"),
                                "eventTimeToLiveInMinutes", 1, 1440, 1440),
            dead_letter=(_parse_dead_letter(props.get("deadLetterDestination"))
                         or _parse_dead_letter_with_identity(
                             props.get("deadLetterWithResourceIdentity"))),
            labels=tuple(str(label) for label in labels),
            expiration=_parse_expiration(props.get("expirationTimeUtc"), now),
        )

    def matches(self, event: Event, now: dt.datetime) -> bool:
        if self.expiration is not None and now >= self.expiration:
            return False
        if self.included_event_types is not None and event.event_type.lower() not in {
            t.lower() for t in self.included_event_types
        }:
            return False
        subject, begins, ends = event.subject, self.subject_begins_with, self.subject_ends_with
        if not self.subject_case_sensitive:
            subject, begins, ends = subject.lower(), begins.lower(), ends.lower()
        return subject.startswith(begins) and subject.endswith(ends)

    def render(self, topic_id: str, state: str) -> dict[str, Any]:
        filt: dict[str, Any] = {
            "subjectBeginsWith": self.subject_begins_with,
            "subjectEndsWith": self.subject_ends_with,
            "isSubjectCaseSensitive": self.subject_case_sensitive,
        }
        if self.included_event_types is not None:
            filt["includedEventTypes"] = list(self.included_event_types)
        destination = self.destination.render()
        destination["properties"].update({
            "maxEventsPerBatch": self.max_events_per_batch,
            "preferredBatchSizeInKilobytes": self.preferred_batch_kb,
        })
        props: dict[str, Any] = {
            "topic": topic_id,
            "provisioningState": state,
            "destination": destination,
            "filter": filt,
            "labels": list(self.labels),
            "eventDeliverySchema": self.schema,
            "retryPolicy": {"maxDeliveryAttempts": self.max_delivery_attempts,
                            "eventTimeToLiveInMinutes": self.ttl_minutes},
        }
        if self.dead_letter is not None:
            props.update(self.dead_letter.render())
        if self.expiration is not None:
            props["expirationTimeUtc"] = self.expiration.isoformat().replace("+00:00", "Z")
        return props


def _webhook_url_ok(url: str) -> bool:
    """Azure only pushes to https; plain http is tolerated for loopback test receivers."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def _parse_dead_letter(value: Any) -> DeadLetterTarget | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("endpointType") != "StorageBlob":
        raise InvalidRequest("The dead letter destination endpoint type must be 'StorageBlob'.")
    props = value.get("properties") or {}
    resource_id = props.get("resourceId")
    container = props.get("blobContainerName")
    match = _STORAGE_ID.match(resource_id) if isinstance(resource_id, str) else None
    if match is None or not isinstance(resource_id, str):
        raise InvalidRequest(
            "The dead letter destination 'resourceId' must be a storage account resource id "
            "(/subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.Storage/"
            "storageAccounts/{name}); the container goes in 'blobContainerName'."
        )
    if not isinstance(container, str) or not container:
        raise InvalidRequest("The dead letter destination 'blobContainerName' is required.")
    return DeadLetterTarget(resource_id, match["account"], container)


def _parse_dead_letter_with_identity(value: Any) -> DeadLetterTarget | None:
    """``{"identity": {"type", "userAssignedIdentity"?}, "deadLetterDestination": ...}``;
    whether the topic has that identity is checked when the subscription is stored."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRequest("The attribute 'deadLetterWithResourceIdentity' must be an object.")
    identity = value.get("identity")
    kind = identity.get("type") if isinstance(identity, dict) else None
    if kind not in ("SystemAssigned", "UserAssigned"):
        raise InvalidRequest(
            "The attribute 'deadLetterWithResourceIdentity.identity.type' must be "
            f"'SystemAssigned' or 'UserAssigned', not '{kind}'.")
    user = identity.get("userAssignedIdentity") if isinstance(identity, dict) else None
    if kind == "UserAssigned" and not isinstance(user, str):
        raise InvalidRequest("The attribute 'deadLetterWithResourceIdentity.identity."
                             "userAssignedIdentity' is required for a 'UserAssigned' identity.")
    target = _parse_dead_letter(value.get("deadLetterDestination"))
    if target is None:
        raise InvalidRequest("The attribute 'deadLetterWithResourceIdentity."
                             "deadLetterDestination' is required.")
    return replace(target, identity=kind, user_identity=user if kind == "UserAssigned" else None)


def _parse_expiration(value: Any, now: dt.datetime) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest("Invalid expiration time.") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    if moment <= now:
        raise InvalidRequest("Invalid expiration time.")
    return moment


@dataclass(frozen=True)
class Outcome:
    """What one POST to a webhook came to."""

    status: int | None
    outcome: str

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status <= 204


# -- mutable state -------------------------------------------------------------------------


@dataclass
class SystemTopic:
    id: str
    name: str
    resource_group: str
    location: str
    tags: dict[str, str]
    source: str
    topic_type: str
    metric_resource_id: str
    identity: TopicIdentity
    subscriptions: dict[str, EventSubscription] = field(default_factory=dict)

    def render(self) -> dict[str, Any]:
        body = {"id": self.id, "name": self.name, "type": f"{NAMESPACE}/systemTopics",
                "location": self.location, "tags": self.tags,
                "properties": {"source": self.source, "topicType": self.topic_type,
                               "metricResourceId": self.metric_resource_id,
                               "provisioningState": "Succeeded"}}
        if self.identity.type != "None":
            body["identity"] = self.identity.render()
        return body


@dataclass(frozen=True)
class TopicIdentity:
    """A system topic's managed identity: what ``deadLetterWithResourceIdentity`` uses."""

    type: str = "None"
    principal_id: str = ""
    tenant_id: str = ""
    user_assigned: tuple[str, ...] = ()

    @property
    def system_assigned(self) -> bool:
        return "SystemAssigned" in self.type

    def has_user(self, resource_id: str) -> bool:
        return resource_id.lower() in (u.lower() for u in self.user_assigned)

    def render(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type}
        if self.system_assigned:
            body.update(principalId=self.principal_id, tenantId=self.tenant_id)
        if self.user_assigned:
            body["userAssignedIdentities"] = {u: {} for u in self.user_assigned}
        return body

    @classmethod
    def parse(cls, value: Any, existing: TopicIdentity, tenant_id: str) -> TopicIdentity:
        """A system-assigned principal survives updates that keep it, as in Azure."""
        if value is None:
            return existing
        kind = value.get("type") if isinstance(value, dict) else None
        if kind not in IDENTITY_TYPES:
            raise InvalidRequest(f"The identity type '{kind}' is invalid; use one of "
                                 f"{', '.join(IDENTITY_TYPES)}.")
        users = value.get("userAssignedIdentities") or {}
        if "UserAssigned" in kind and (not isinstance(users, dict) or not users):
            raise InvalidRequest("'userAssignedIdentities' is required for a 'UserAssigned' "
                                 "identity.")
        principal = ""
        if "SystemAssigned" in kind:
            principal = existing.principal_id or str(uuid.uuid4())
        return cls(kind, principal, tenant_id if principal else "",
                   tuple(users) if "UserAssigned" in kind else ())


@dataclass(frozen=True)
class FunctionApp:
    """A function app Event Grid can deliver to: where its host listens and the
    ``eventgrid_extension`` system key Azure would read through the app's keys."""

    resource_id: str
    url: str
    eventgrid_key: str


@dataclass
class EndpointHealth:
    """Delayed delivery state of one endpoint: failures in a row and the loop time the
    current probation ends."""

    failures: int = 0
    probation_until: float = 0.0


@dataclass
class EventSubscription:
    name: str
    topic: SystemTopic
    config: SubscriptionConfig
    state: str
    generation: int = 0
    pending: list[Event] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.topic.id}/eventSubscriptions/{self.name}"

    def render(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name,
                "type": f"{NAMESPACE}/systemTopics/eventSubscriptions",
                "properties": self.config.render(self.topic.id, self.state)}


@dataclass
class CustomTopic:
    id: str
    name: str
    resource_group: str
    location: str
    tags: dict[str, str]
    input_schema: str
    disable_local_auth: bool
    metric_resource_id: str
    key1: str
    key2: str


@dataclass
class ManualValidation:
    """A handshake waiting for someone to GET its validationUrl."""

    subscription: EventSubscription
    generation: int
    operation: Operation
    deadline: dt.datetime


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


# -- the emulator --------------------------------------------------------------------------


class EventGrid:
    def __init__(self, platform: Platform, arm: Arm, blobs: Blobs, retry_scale: float) -> None:
        self.platform = platform
        self.arm = arm
        self.blobs = blobs
        self.retry_scale = retry_scale
        self.topic_base_url = ""  # set by server.py once the topic listener is bound
        self.system_topics: dict[tuple[str, str], SystemTopic] = {}
        self.custom_topics: dict[str, CustomTopic] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.published: list[dict[str, Any]] = []
        # Platform wiring, not test state: kept across resets.
        self.function_apps: dict[str, FunctionApp] = {}
        self._health: dict[str, EndpointHealth] = {}
        self._manual: dict[str, ManualValidation] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        platform.reset_hooks.append(self._reset)
        self._register_routes()

    # -- lifecycle ---------------------------------------------------------------------

    def _reset(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self.system_topics.clear()
        self.custom_topics.clear()
        self.deliveries.clear()
        self.published.clear()
        self._health.clear()
        self._manual.clear()

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _http(self) -> aiohttp.ClientSession:
        """One session for all pushes, created in the running loop on first use."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.blobs.tls)
            )
        return self._session

    async def _wait(self, nominal_seconds: float) -> None:
        await asyncio.sleep(nominal_seconds * self.retry_scale)

    def _log(self, kind: str, sub: EventSubscription, **details: Any) -> None:
        self.deliveries.append({
            "kind": kind, "subscription": sub.id, "name": sub.name,
            "time": self.platform.now().isoformat(), **details,
        })

    # -- ARM routes ----------------------------------------------------------------------

    def _register_routes(self) -> None:
        rg = "/subscriptions/{subscription}/resourceGroups/{resourceGroup}/providers/"
        st = rg + NAMESPACE + "/systemTopics"
        es = st + "/{topic}/eventSubscriptions"
        tp = rg + NAMESPACE + "/topics"
        route = self.arm.route
        route("PUT", st + "/{topic}", self._put_system_topic)
        route("GET", st + "/{topic}", self._get_system_topic)
        route("DELETE", st + "/{topic}", self._delete_system_topic)
        route("GET", st, self._list_system_topics)
        route("GET", "/subscriptions/{subscription}/providers/" + NAMESPACE + "/systemTopics",
              self._list_system_topics)
        route("PUT", es + "/{name}", self._put_subscription)
        route("GET", es + "/{name}", self._get_subscription)
        route("DELETE", es + "/{name}", self._delete_subscription)
        route("POST", es + "/{name}/getFullUrl", self._get_full_url)
        route("GET", es, self._list_subscriptions)
        route("PUT", tp + "/{name}", self._put_topic)
        route("GET", tp + "/{name}", self._get_topic)
        route("DELETE", tp + "/{name}", self._delete_topic)
        route("GET", tp, self._list_topics)
        route("POST", tp + "/{name}/listKeys", self._list_keys)
        route("POST", tp + "/{name}/regenerateKey", self._regenerate_key)

    def _accepted_delete(self, location: str, api_version: str) -> web.Response:
        """Deletes are LROs in the spec; the work is done, so the operation is too."""
        op = self.arm.start_operation(NAMESPACE, location)
        op.finish(self.platform.now().isoformat())
        return web.Response(status=202, headers=self.arm.async_headers(op, api_version))

    # system topics

    def _system_topic(self, req: ArmRequest) -> SystemTopic | None:
        return self.system_topics.get(
            (req.params["resourceGroup"].lower(), req.params["topic"].lower()))

    async def _put_system_topic(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        body = await req.resource_body()
        props = body.get("properties") or {}
        source, topic_type = str(props.get("source") or ""), props.get("topicType")
        if not isinstance(topic_type, str) or topic_type.lower() != KEYVAULT_TOPIC_TYPE.lower():
            return _bad_request(
                f"Topic type '{topic_type}' is not supported by this emulator; "
                f"only '{KEYVAULT_TOPIC_TYPE}' is."
            )
        match = _VAULT_ID.match(source)
        if match is None:
            return _bad_request(
                f"The source '{source}' is not a valid resource id for topic type "
                f"'{KEYVAULT_TOPIC_TYPE}'."
            )
        if match["sub"].lower() != self.platform.subscription_id.lower():
            return _bad_request(f"The source '{source}' is not in subscription "
                                f"'{self.platform.subscription_id}'.")
        key = (req.params["resourceGroup"].lower(), req.params["topic"].lower())
        existing = self.system_topics.get(key)
        for other_key, other in self.system_topics.items():
            if other_key != key and other.source.lower() == source.lower():
                return _bad_request(
                    f"Only one system topic is allowed per source. System topic "
                    f"'{other.name}' already exists for source '{source}'."
                )
        if existing is not None and existing.source.lower() != source.lower():
            return _bad_request("The property 'source' of a system topic cannot be updated.")
        try:
            identity = TopicIdentity.parse(body.get("identity"),
                                           existing.identity if existing else TopicIdentity(),
                                           self.platform.tenant_id)
        except InvalidRequest as exc:
            return _bad_request(str(exc))
        if existing is not None:
            existing.location, existing.tags = body["location"], body.get("tags") or {}
            existing.topic_type = topic_type
            existing.identity = identity
            topic = existing
        else:
            topic = SystemTopic(
                id=(f"/subscriptions/{self.platform.subscription_id}/resourceGroups/"
                    f"{req.params['resourceGroup']}/providers/{NAMESPACE}/systemTopics/"
                    f"{req.params['topic']}"),
                name=req.params["topic"], resource_group=req.params["resourceGroup"],
                location=body["location"], tags=body.get("tags") or {}, source=source,
                topic_type=topic_type, metric_resource_id=str(uuid.uuid4()),
                identity=identity,
            )
        self.system_topics[key] = topic
        op = self.arm.start_operation(NAMESPACE, topic.location)
        op.finish(self.platform.now().isoformat())
        return json_response(topic.render(), 200 if existing else 201,
                             self.arm.async_headers(op, req.api_version))

    async def _get_system_topic(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._system_topic(req)
        if topic is None:
            return _not_found(f"{NAMESPACE}/systemTopics", req.params["topic"],
                              req.params["resourceGroup"])
        return json_response(topic.render())

    async def _delete_system_topic(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._system_topic(req)
        if topic is None:
            return web.Response(status=204)
        del self.system_topics[(topic.resource_group.lower(), topic.name.lower())]
        for sub in topic.subscriptions.values():
            sub.generation += 1  # a pending handshake no longer changes its state
        return self._accepted_delete(topic.location, req.api_version)

    async def _list_system_topics(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        rg = req.params.get("resourceGroup")
        if rg is not None:
            self.arm.require_rg(req)
        items = [t.render() for t in self.system_topics.values()
                 if rg is None or t.resource_group.lower() == rg.lower()]
        return self.arm.page(req, items)

    # event subscriptions

    def _topic_or_404(self, req: ArmRequest) -> SystemTopic:
        topic = self._system_topic(req)
        if topic is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": {
                    "code": "ParentResourceNotFound",
                    "message": "Can not perform requested operation on nested resource. Parent "
                               f"resource '{req.params['topic']}' not found.",
                }}),
                content_type="application/json",
            )
        return topic

    async def _put_subscription(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        topic = self._topic_or_404(req)
        body = await req.json_body()
        try:
            config = SubscriptionConfig.parse(body, self.platform.now())
            self._check_destination(config.destination)
            _check_dead_letter_identity(config.dead_letter, topic)
        except InvalidRequest as exc:
            return _bad_request(str(exc))
        existing = topic.subscriptions.get(req.params["name"].lower())
        op = self.arm.start_operation(NAMESPACE, topic.location)
        if existing is None:
            sub = EventSubscription(req.params["name"], topic, config, "Creating")
            topic.subscriptions[sub.name.lower()] = sub
            revalidate = True
        else:
            sub = existing
            revalidate = (sub.state != "Succeeded" or sub.config.schema != config.schema
                          or sub.config.destination != config.destination)
            sub.config, sub.state = config, "Updating"
            sub.generation += 1
        if revalidate and config.destination.endpoint_type == WEBHOOK:
            self._spawn(self._handshake(sub, sub.generation, op))
        else:
            sub.state = "Succeeded"
            op.finish(self.platform.now().isoformat())
        return json_response(sub.render(), 201, self.arm.async_headers(op, req.api_version))

    def _subscription(self, req: ArmRequest) -> EventSubscription:
        sub = self._topic_or_404(req).subscriptions.get(req.params["name"].lower())
        if sub is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": {
                    "code": "ResourceNotFound",
                    "message": f"The Resource '{NAMESPACE}/systemTopics/{req.params['topic']}/"
                               f"eventSubscriptions/{req.params['name']}' under resource group "
                               f"'{req.params['resourceGroup']}' was not found. For more details "
                               "please go to https://aka.ms/ARMResourceNotFoundFix",
                }}),
                content_type="application/json",
            )
        return sub

    async def _get_subscription(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        return json_response(self._subscription(req).render())

    async def _get_full_url(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        destination = self._subscription(req).config.destination
        if destination.endpoint_type != WEBHOOK:
            return _bad_request(f"getFullUrl is only available for '{WEBHOOK}' destinations; "
                                f"this one is '{destination.endpoint_type}'.")
        return json_response({"endpointUrl": destination.endpoint_url})

    def _check_destination(self, destination: Destination) -> None:
        """A function destination must name a function app the platform knows (in Azure,
        Event Grid reads the app's ``eventgrid_extension`` key through ARM)."""
        if (destination.endpoint_type == AZURE_FUNCTION
                and destination.site_id not in self.function_apps):
            raise InvalidRequest(
                f"The function app '{destination.site_id.rsplit('/', 1)[-1]}' of destination "
                f"'{destination.function_id}' was not found.")

    async def _delete_subscription(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._topic_or_404(req)
        sub = topic.subscriptions.pop(req.params["name"].lower(), None)
        if sub is None:
            return web.Response(status=204)
        sub.generation += 1
        return self._accepted_delete(topic.location, req.api_version)

    async def _list_subscriptions(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._topic_or_404(req)
        return self.arm.page(req, [s.render() for s in topic.subscriptions.values()])

    # custom topics

    def _render_topic(self, topic: CustomTopic) -> dict[str, Any]:
        return {"id": topic.id, "name": topic.name, "type": f"{NAMESPACE}/topics",
                "location": topic.location, "tags": topic.tags,
                "properties": {
                    "provisioningState": "Succeeded",
                    "endpoint": f"{self.topic_base_url}/topics/{topic.name}/api/events",
                    "inputSchema": topic.input_schema,
                    "metricResourceId": topic.metric_resource_id,
                    "publicNetworkAccess": "Enabled",
                    "disableLocalAuth": topic.disable_local_auth,
                    "dataResidencyBoundary": "WithinGeopair",
                }}

    def _custom_topic(self, req: ArmRequest) -> CustomTopic | None:
        topic = self.custom_topics.get(req.params["name"].lower())
        if topic is None or topic.resource_group.lower() != req.params["resourceGroup"].lower():
            return None
        return topic

    async def _put_topic(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        name = req.params["name"]
        if not _TOPIC_NAME.match(name) or name.lower().startswith(
                ("microsoft-", "eventgrid-", "system-")):
            return _bad_request("Topic name must be between 3 and 50 characters in length.")
        body = await req.resource_body()
        props = body.get("properties") or {}
        schema = props.get("inputSchema") or EVENTGRID_SCHEMA
        if schema not in (EVENTGRID_SCHEMA, CLOUDEVENT_SCHEMA):
            return _bad_request(f"Input schema '{schema}' is not supported by this emulator.")
        existing = self.custom_topics.get(name.lower())
        if existing is not None and (
                existing.resource_group.lower() != req.params["resourceGroup"].lower()):
            return error_response(409, "Conflict", f"Topic with name {name} already exists. "
                                                   "Choose a different topic name.")
        topic = CustomTopic(
            id=(f"/subscriptions/{self.platform.subscription_id}/resourceGroups/"
                f"{req.params['resourceGroup']}/providers/{NAMESPACE}/topics/"
                f"{existing.name if existing else name}"),
            name=existing.name if existing else name,
            resource_group=req.params["resourceGroup"], location=body["location"],
            tags=body.get("tags") or {}, input_schema=schema,
            disable_local_auth=bool(props.get("disableLocalAuth", False)),
            metric_resource_id=existing.metric_resource_id if existing else str(uuid.uuid4()),
            key1=existing.key1 if existing else _new_key(),
            key2=existing.key2 if existing else _new_key(),
        )
        self.custom_topics[name.lower()] = topic
        op = self.arm.start_operation(NAMESPACE, topic.location)
        op.finish(self.platform.now().isoformat())
        return json_response(self._render_topic(topic), 201,
                             self.arm.async_headers(op, req.api_version))

    async def _get_topic(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._custom_topic(req)
        if topic is None:
            return _not_found(f"{NAMESPACE}/topics", req.params["name"],
                              req.params["resourceGroup"])
        return json_response(self._render_topic(topic))

    async def _delete_topic(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._custom_topic(req)
        if topic is None:
            return web.Response(status=204)
        del self.custom_topics[topic.name.lower()]
        return self._accepted_delete(topic.location, req.api_version)

    async def _list_topics(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        rg = req.params["resourceGroup"].lower()
        return self.arm.page(req, [self._render_topic(t) for t in self.custom_topics.values()
                                   if t.resource_group.lower() == rg])

    async def _list_keys(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._custom_topic(req)
        if topic is None:
            return _not_found(f"{NAMESPACE}/topics", req.params["name"],
                              req.params["resourceGroup"])
        return json_response({"key1": topic.key1, "key2": topic.key2})

    async def _regenerate_key(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._custom_topic(req)
        if topic is None:
            return _not_found(f"{NAMESPACE}/topics", req.params["name"],
                              req.params["resourceGroup"])
        body = await req.json_body()
        key_name = body.get("keyName") if isinstance(body, dict) else None
        if key_name == "key1":
            topic.key1 = _new_key()
        elif key_name == "key2":
            topic.key2 = _new_key()
        else:
            return _bad_request("The key name must be 'key1' or 'key2'.")
        return json_response({"key1": topic.key1, "key2": topic.key2})

    # -- the validation handshake --------------------------------------------------------

    async def _handshake(self, sub: EventSubscription, generation: int, op: Operation) -> None:
        base = _base_url(sub.config.destination.endpoint_url)
        if sub.config.schema == CLOUDEVENT_SCHEMA:
            error = await self._options_handshake(sub)
        else:
            code = str(uuid.uuid4())
            token = secrets.token_urlsafe(24)
            url = (f"{self.topic_base_url}/eventsubscriptions/{quote(sub.name)}/validate"
                   f"?id={code}&t={quote(_eg_time(self.platform.now()))}"
                   f"&apiVersion=2018-05-01-preview&token={token}")
            result = await self._post_handshake(sub, code, url)
            if result == "manual":
                if sub.generation == generation:
                    sub.state = "AwaitingManualAction"
                deadline = self.platform.now() + dt.timedelta(seconds=MANUAL_VALIDATION_WINDOW_S)
                self._manual[token] = ManualValidation(sub, generation, op, deadline)
                await self._wait(MANUAL_VALIDATION_WINDOW_S)
                if self._manual.pop(token, None) is None:
                    return  # validated through the URL meanwhile
                error = (f"Webhook validation handshake failed for {base}. The validation URL "
                         "was not visited within 5 minutes of the validation request. "
                         f"{TROUBLESHOOT}")
            else:
                error = result
        self._finish_handshake(sub, generation, op, error)

    def _finish_handshake(self, sub: EventSubscription, generation: int, op: Operation,
                          error: str | None) -> None:
        if sub.generation == generation:
            sub.state = "Failed" if error else "Succeeded"
        op.finish(self.platform.now().isoformat(),
                  {"code": "Url validation", "message": error} if error else None)

    async def _post_handshake(self, sub: EventSubscription, code: str, url: str) -> str | None:
        """None when validated, ``"manual"`` when the endpoint answered 200 without the
        code (asynchronous validation), else the failure message."""
        endpoint = sub.config.destination.endpoint_url
        base = _base_url(endpoint)
        now = self.platform.now()
        body = [{"id": str(uuid.uuid4()), "topic": sub.topic.source, "subject": "",
                 "data": {"validationCode": code, "validationUrl": url},
                 "eventType": VALIDATION_EVENT_TYPE, "eventTime": _eg_time(now),
                 "metadataVersion": "1", "dataVersion": "1"}]
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "aeg-event-type": "SubscriptionValidation",
                   "aeg-subscription-name": sub.name.upper(), "aeg-delivery-count": "0",
                   "aeg-data-version": "1", "aeg-metadata-version": "1"}
        status: int | None = None
        reply: Any = None
        try:
            async with self._http().post(
                endpoint, data=json.dumps(body).encode(), headers=headers,
                timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S), allow_redirects=False,
            ) as resp:
                status = resp.status
                text = await resp.text()
            reply = json.loads(text) if text.strip() else None
        except (TimeoutError, aiohttp.ClientError):
            pass
        except ValueError:
            reply = None
        self._log("SubscriptionValidation", sub, method="POST", status=status)
        if status != 200:
            name = "Unknown" if status is None else _status_name(status)
            return (f"Webhook validation handshake failed for {base}. Http POST request failed "
                    f"with response code {name}. {TROUBLESHOOT}")
        answer = reply.get("validationResponse") if isinstance(reply, dict) else None
        if answer is None:
            return "manual"
        if answer != code:
            return (f"Webhook validation handshake failed for {base}. Http POST request "
                    f"returned 2XX response with an invalid validationResponse. {TROUBLESHOOT}")
        return None

    async def _options_handshake(self, sub: EventSubscription) -> str | None:
        """CloudEvents 1.0 abuse protection: OPTIONS, then 200 + WebHook-Allowed-Origin."""
        url = sub.config.destination.endpoint_url
        base = _base_url(url)
        status: int | None = None
        allowed = ""
        try:
            async with self._http().options(
                url, headers={"WebHook-Request-Origin": REQUEST_ORIGIN},
                timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S), allow_redirects=False,
            ) as resp:
                status = resp.status
                allowed = resp.headers.get("WebHook-Allowed-Origin", "")
                await resp.read()
        except (TimeoutError, aiohttp.ClientError):
            pass
        self._log("SubscriptionValidation", sub, method="OPTIONS", status=status)
        if status != 200:
            name = "Unknown" if status is None else _status_name(status)
            return (f"Webhook validation handshake failed for {base}. Http OPTIONS request "
                    f"failed with response code {name}. {TROUBLESHOOT}")
        if allowed.strip() not in (REQUEST_ORIGIN, "*"):
            return (f"Webhook validation handshake failed for {base}. Http OPTIONS request "
                    f"returned 200 without a WebHook-Allowed-Origin header allowing "
                    f"{REQUEST_ORIGIN}. {TROUBLESHOOT}")
        return None

    async def _validate_url(self, request: web.Request) -> web.Response:
        """GET on a validationUrl: the manual half of the handshake."""
        pending = self._manual.get(request.query.get("token", ""))
        if pending is None or pending.subscription.name.lower() != (
                request.match_info["name"].lower()):
            return web.Response(status=404, text="The validation request was not found.")
        del self._manual[request.query["token"]]
        if self.platform.now() > pending.deadline:
            base = _base_url(pending.subscription.config.destination.endpoint_url)
            self._finish_handshake(pending.subscription, pending.generation, pending.operation,
                                   f"Webhook validation handshake failed for {base}. "
                                   f"The validation URL has expired. {TROUBLESHOOT}")
            return web.Response(status=400, text="The validation URL has expired.")
        self._finish_handshake(pending.subscription, pending.generation, pending.operation, None)
        return web.Response(text="Webhook successfully validated as a subscription endpoint.")

    # -- publishing system events and delivering them --------------------------------------

    def publish_system_event(
        self, source: str, event_type: str, subject: str, data: dict[str, Any]
    ) -> None:
        self._raise(source, event_type, subject, data)

    def _raise(self, source: str, event_type: str, subject: str, data: Any,
               event_id: str | None = None, event_time: str | None = None) -> tuple[Event, int]:
        """Route one event to every matching subscription; return it and the match count."""
        now = self.platform.now()
        event = Event(id=event_id or str(uuid.uuid4()), source=source, event_type=event_type,
                      subject=subject, data=data, event_time=event_time or _eg_time(now),
                      published=now)
        matched = 0
        for topic in self.system_topics.values():
            if topic.source.lower() != source.lower():
                continue
            for sub in topic.subscriptions.values():
                if sub.state == "Succeeded" and sub.config.matches(event, now):
                    matched += 1
                    if not sub.pending:
                        asyncio.get_running_loop().call_soon(self._flush, sub)
                    sub.pending.append(event)
        return event, matched

    def _flush(self, sub: EventSubscription) -> None:
        """Cut what arrived in this loop turn into batches and start delivering each."""
        events, sub.pending = sub.pending, []
        config = sub.config
        limit = config.preferred_batch_kb * 1024
        batch: list[Event] = []
        size = 0
        for event in events:
            event_size = event.size(config.schema)
            if batch and (len(batch) >= config.max_events_per_batch or size + event_size > limit):
                self._spawn(self._deliver(sub, batch))
                batch, size = [], 0
            batch.append(event)
            size += event_size
        if batch:
            self._spawn(self._deliver(sub, batch))

    async def _post(self, sub: EventSubscription, events: list[Event], count: int) -> Outcome:
        config = sub.config
        if config.schema == CLOUDEVENT_SCHEMA:
            payload: Any = events[0].render(config.schema)
            content_type = "application/cloudevents+json; charset=utf-8"
            if len(events) > 1:
                payload = [e.render(config.schema) for e in events]
                content_type = "application/cloudevents-batch+json; charset=utf-8"
        else:
            payload = [e.render(config.schema) for e in events]
            content_type = "application/json; charset=utf-8"
        headers = {"Content-Type": content_type, "aeg-event-type": "Notification",
                   "aeg-subscription-name": sub.name.upper(), "aeg-delivery-count": str(count),
                   "aeg-data-version": events[0].data_version,
                   "aeg-metadata-version": events[0].metadata_version}
        url = self._target_url(config.destination)
        if url is None:
            return Outcome(None, "NotFound")
        try:
            async with self._http().post(
                url, data=json.dumps(payload).encode(), headers=headers,
                timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S), allow_redirects=False,
            ) as resp:
                await resp.read()
                status = resp.status
        except TimeoutError:
            return Outcome(None, "TimedOut")
        except aiohttp.ClientError:
            return Outcome(None, "GenericError")
        if 200 <= status <= 204:
            return Outcome(status, "Succeeded")
        if status == 404 and config.destination.endpoint_type == AZURE_FUNCTION:
            # The host knows no Event Grid function by that name.
            return Outcome(status, "InvalidAzureFunctionDestination")
        return Outcome(status, "TimedOut" if status == 408 else _status_name(status))

    def _target_url(self, destination: Destination) -> str | None:
        """Where a delivery goes: the webhook URL, or the function app's Event Grid
        extension endpoint with its system key (None when the app is gone)."""
        if destination.endpoint_type == WEBHOOK:
            return destination.endpoint_url
        app = self.function_apps.get(destination.site_id)
        if app is None:
            return None
        return (f"{app.url}/runtime/webhooks/eventgrid"
                f"?functionName={quote(destination.function_name)}"
                f"&code={quote(app.eventgrid_key)}")

    async def _hold_for_probation(self, sub: EventSubscription, ids: list[str]) -> None:
        """Delayed delivery: wait out the endpoint's probation before any attempt."""
        health = self._health.get(sub.config.destination.key)
        if health is None:
            return
        remaining = health.probation_until - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        nominal = remaining / self.retry_scale if self.retry_scale > 0 else 0.0
        self._log("Delayed", sub, event_ids=ids, failures=health.failures,
                  nominal_seconds=round(nominal, 1))
        await asyncio.sleep(remaining)

    def _record_health(self, destination: Destination, outcome: Outcome) -> None:
        if outcome.delivered:
            self._health.pop(destination.key, None)
            return
        health = self._health.setdefault(destination.key, EndpointHealth())
        health.failures += 1
        if health.failures >= PROBATION_AFTER_FAILURES:
            until = (asyncio.get_running_loop().time()
                     + probation_seconds(outcome) * self.retry_scale)
            health.probation_until = max(health.probation_until, until)

    def _live(self, sub: EventSubscription) -> bool:
        topic = sub.topic
        return (self.system_topics.get((topic.resource_group.lower(), topic.name.lower()))
                is topic and topic.subscriptions.get(sub.name.lower()) is sub)

    async def _deliver(self, sub: EventSubscription, events: list[Event]) -> None:
        """Push one batch until it is delivered, dead-lettered or dropped."""
        attempts = 0
        nominal_s = 0.0
        ids = [e.id for e in events]
        while True:
            if not self._live(sub):
                return  # subscription or topic deleted: Azure drops what it was retrying
            await self._hold_for_probation(sub, ids)
            if not self._live(sub):
                return
            last_time = self.platform.now()
            posted = time.monotonic()
            outcome = await self._post(sub, events, attempts)
            # How long the endpoint took to answer (admin log only: what Event Grid waits
            # for, at most DELIVERY_TIMEOUT_S; the bench's delivery -> acknowledgement).
            answered_s = round(time.monotonic() - posted, 4)
            self._record_health(sub.config.destination, outcome)
            attempts += 1
            self._log("Notification", sub, event_ids=ids, attempt=attempts,
                      delivery_count=attempts - 1, status=outcome.status, outcome=outcome.outcome,
                      answered_s=answered_s)
            if outcome.delivered:
                return
            kind = sub.config.destination.endpoint_type
            if outcome.status in NO_RETRY[kind]:
                reason = f"UndeliverableDueToHttp{_status_name(outcome.status or 0)}"
                break
            if attempts >= sub.config.max_delivery_attempts:
                reason = "MaxDeliveryAttemptsExceeded"
                break
            minimums = AZURE_RESOURCE_MIN_RETRY_S if kind == AZURE_FUNCTION else MIN_RETRY_S
            delay = max(RETRY_SCHEDULE_S[min(attempts - 1, len(RETRY_SCHEDULE_S) - 1)],
                        minimums.get(outcome.status or 0, DEFAULT_MIN_RETRY_S))
            ttl_s = sub.config.ttl_minutes * 60
            nominal_s += delay
            if nominal_s >= ttl_s:
                reason = "TimeToLiveExceeded"
                break
            await self._wait(delay)
            if (self.platform.now() - events[0].published).total_seconds() >= ttl_s:
                reason = "TimeToLiveExceeded"
                break
        await self._dead_letter(sub, events, reason, attempts, outcome, last_time)

    async def _dead_letter(self, sub: EventSubscription, events: list[Event], reason: str,
                           attempts: int, outcome: Outcome, last_time: dt.datetime) -> None:
        ids = [e.id for e in events]
        target = sub.config.dead_letter
        if target is None:
            self._log("Dropped", sub, event_ids=ids, reason=reason, attempts=attempts)
            return
        await self._wait(DEAD_LETTER_DELAY_S)
        schema = sub.config.schema
        # The fields delivery-and-retry.md shows: CloudEvents dead letters carry the first
        # four, in lower case, without lastDeliveryAttemptTime.
        extra: dict[str, Any] = {
            "deadLetterReason": reason, "deliveryAttempts": attempts,
            "lastDeliveryOutcome": outcome.outcome,
        }
        lettered = []
        for event in events:
            fields = {**extra, "publishTime": _eg_time(event.published)}
            if schema == CLOUDEVENT_SCHEMA:
                fields = {k.lower(): v for k, v in fields.items()}
            else:
                fields["lastDeliveryAttemptTime"] = _eg_time(last_time)
            lettered.append({**event.render(schema), **fields})
        data = json.dumps(lettered).encode()
        waited_s = 0
        while True:
            now = self.platform.now()
            blob = (f"{sub.name.upper()}/{now.year}/{now.month}/{now.day}/{now.hour}/"
                    f"{uuid.uuid4()}.json")
            try:
                await self.blobs.write(target.account, target.container, blob, data)
            except (ValueError, AzureError) as exc:
                if waited_s >= DEAD_LETTER_GIVE_UP_S:
                    self._log("Dropped", sub, event_ids=ids, reason=reason, attempts=attempts,
                              dead_letter_error=str(exc).splitlines()[0])
                    return
                waited_s += DEAD_LETTER_DELAY_S
                await self._wait(DEAD_LETTER_DELAY_S)
                continue
            self._log("DeadLettered", sub, event_ids=ids, reason=reason, attempts=attempts,
                      container=target.container, blob=blob)
            return

    # -- custom topic publishing -----------------------------------------------------------

    def build_topic_app(self) -> web.Application:
        app = self.platform.make_app("eventgrid")
        app.router.add_post("/topics/{name}/api/events", self._publish)
        app.router.add_get("/eventsubscriptions/{name}/validate", self._validate_url)
        return app

    def _auth_error(self, request: web.Request, topic: CustomTopic) -> str | None:
        key = request.headers.get("aeg-sas-key")
        token = request.headers.get("aeg-sas-token")
        if key is not None or token is not None:
            if topic.disable_local_auth:
                return "Local authentication (keys and SAS tokens) is disabled for this topic."
            if key is not None:
                valid = any(hmac.compare_digest(key.encode(), k.encode())
                            for k in (topic.key1, topic.key2))
            else:
                valid = self._sas_valid(str(token), topic, request)
            return None if valid else (
                f"The request authorization key is not authorized for {request.host}.")
        try:
            self.platform.bearer_claims(request, (EVENTGRID_AUDIENCE,))
        except InvalidToken as exc:
            return f"The request is missing a valid authorization key or token: {exc}."
        return None

    def _sas_valid(self, token: str, topic: CustomTopic, request: web.Request) -> bool:
        """``r={resource}&e={expiry}&s={HMAC-SHA256 of "r=..&e=.." with the key}``."""
        unsigned, sep, signature = token.rpartition("&s=")
        fields = {k: v for k, _, v in (p.partition("=") for p in unsigned.split("&"))}
        if not sep or "r" not in fields or "e" not in fields:
            return False
        endpoint = f"{self.topic_base_url}/topics/{topic.name}/api/events".lower()
        if not unquote(fields["r"]).lower().startswith(endpoint):
            return False
        try:
            expiry = dt.datetime.fromisoformat(unquote(fields["e"]))
        except ValueError:
            return False
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=dt.UTC)
        if expiry <= dt.datetime.now(dt.UTC):  # wall clock, like bearer tokens
            return False
        for key in (topic.key1, topic.key2):
            digest = hmac.new(base64.b64decode(key), unsigned.encode("ascii"), hashlib.sha256)
            if hmac.compare_digest(base64.b64encode(digest.digest()).decode(), unquote(signature)):
                return True
        return False

    async def _publish(self, request: web.Request) -> web.Response:
        topic = self.custom_topics.get(request.match_info["name"].lower())
        if topic is None:
            return error_response(404, "NotFound",
                                  f"Topic '{request.match_info['name']}' does not exist.")
        if not request.query.get("api-version"):
            return error_response(400, "BadRequest", "The api-version query parameter is "
                                                     "required.")
        auth_error = self._auth_error(request, topic)
        if auth_error is not None:
            return error_response(401, "Unauthorized", auth_error)
        raw = await request.read()
        if len(raw) > ONE_MB:
            return error_response(413, "RequestEntityTooLarge",
                                  f"The maximum size ({ONE_MB}) has been exceeded.")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return error_response(400, "BadRequest", f"The request body is not JSON: {exc}.")
        try:
            events = self._validate_events(topic, request.content_type, body)
        except InvalidRequest as exc:
            return error_response(400, "BadRequest", str(exc))
        if any(len(json.dumps(e).encode()) > ONE_MB for e in events):
            return error_response(413, "RequestEntityTooLarge",
                                  f"An event exceeds the maximum size ({ONE_MB}).")
        received = self.platform.now().isoformat()
        for event in events:
            self.published.append({"topic": topic.name, "schema": topic.input_schema,
                                   "event": event, "receivedTime": received})
        return web.Response(status=200)

    def _validate_events(self, topic: CustomTopic, content_type: str,
                         body: Any) -> list[dict[str, Any]]:
        if topic.input_schema == CLOUDEVENT_SCHEMA:
            if content_type == "application/cloudevents+json" and isinstance(body, dict):
                body = [body]
            if content_type not in ("application/cloudevents-batch+json",
                                    "application/cloudevents+json") or not isinstance(body, list):
                raise InvalidRequest(
                    "This resource is configured to receive event in 'CloudEventV10' schema. "
                    "The JSON received does not conform to the expected schema.")
            return [_check_cloud_event(e, i) for i, e in enumerate(body)]
        if not isinstance(body, list) or content_type.startswith("application/cloudevents"):
            raise InvalidRequest(
                "This resource is configured to receive event in 'EventGridEvent' schema. "
                "The JSON received does not conform to the expected schema.")
        return [_check_eventgrid_event(e, i, topic.id) for i, e in enumerate(body)]

    # -- admin API -----------------------------------------------------------------------

    def admin_routes(self) -> list[tuple[str, str, AdminHandler]]:
        return [
            ("GET", "/eventgrid/deliveries", self._admin_deliveries),
            ("GET", "/eventgrid/published", self._admin_published),
            ("POST", "/eventgrid/system-events", self._admin_system_event),
            ("POST", "/eventgrid/function-apps", self._admin_function_app),
        ]

    async def _admin_function_app(self, request: web.Request) -> web.Response:
        """Register a function app (``{"resourceId", "url", "eventGridKey"}``) so
        ``AzureFunction`` destinations naming its functions can be delivered to."""
        try:
            body = await request.json()
        except ValueError as exc:
            return json_response({"error": f"body is not JSON: {exc}"}, 400)
        fields = ("resourceId", "url", "eventGridKey")
        if not isinstance(body, dict) or any(
                not isinstance(body.get(k), str) or not body[k] for k in fields):
            return json_response({"error": f"{', '.join(fields)} must be non-empty strings"},
                                 400)
        resource_id = body["resourceId"].rstrip("/")
        if _FUNCTION_ID.match(f"{resource_id}/functions/f") is None:
            return json_response({"error": "resourceId must be a Microsoft.Web/sites id"}, 400)
        app = FunctionApp(resource_id, body["url"].rstrip("/"), body["eventGridKey"])
        self.function_apps[resource_id.lower()] = app
        return json_response({"resourceId": app.resource_id, "url": app.url}, 201)

    async def _admin_deliveries(self, request: web.Request) -> web.Response:
        return json_response(self.deliveries)

    async def _admin_published(self, request: web.Request) -> web.Response:
        name = request.query.get("topic")
        return json_response([p for p in self.published
                              if name is None or p["topic"].lower() == name.lower()])

    async def _admin_system_event(self, request: web.Request) -> web.Response:
        """Raise events (duplicate ids, old eventTimes, odd data) through real delivery. A
        list is raised in one loop turn, as a vault raising several events at once."""
        try:
            body = await request.json()
        except ValueError as exc:
            return json_response({"error": f"body is not JSON: {exc}"}, 400)
        items = body if isinstance(body, list) else [body]
        for item in items:
            problem = _admin_event_problem(item)
            if problem:
                return json_response({"error": problem}, 400)
        raised = []
        for item in items:
            event, matched = self._raise(item["source"], item["eventType"], item["subject"],
                                         item["data"], item.get("id"), item.get("eventTime"))
            raised.append({"id": event.id, "eventTime": event.event_time,
                           "subscriptions": matched})
        return json_response(raised if isinstance(body, list) else raised[0], 202)


def probation_seconds(outcome: Outcome) -> float:
    """Probation after a failure, by outcome (delivery-and-retry.md's table)."""
    if outcome.outcome == "InvalidAzureFunctionDestination":
        return PROBATION_INVALID_FUNCTION_S
    if outcome.status is None:
        return PROBATION_TIMEOUT_S if outcome.outcome == "TimedOut" else PROBATION_SOCKET_ERROR_S
    return PROBATION_S.get(outcome.status, DEFAULT_PROBATION_S)


def _check_dead_letter_identity(target: DeadLetterTarget | None, topic: SystemTopic) -> None:
    """``deadLetterWithResourceIdentity`` uses the topic's own identity: it must have it."""
    if target is None or target.identity is None:
        return
    if target.identity == "SystemAssigned" and not topic.identity.system_assigned:
        raise InvalidRequest(
            f"The system topic '{topic.name}' has no system-assigned identity for "
            "'deadLetterWithResourceIdentity' to use.")
    if target.user_identity is not None and not topic.identity.has_user(target.user_identity):
        raise InvalidRequest(
            f"The user-assigned identity '{target.user_identity}' is not assigned to the "
            f"system topic '{topic.name}'.")


def _admin_event_problem(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "each event must be a JSON object"
    if any(not isinstance(item.get(k), str) for k in ("source", "eventType", "subject")):
        return "source, eventType and subject must be strings"
    if "data" not in item:
        return "data is required"
    if any(item.get(k) is not None and not isinstance(item[k], str) for k in ("id", "eventTime")):
        return "id and eventTime, when given, must be strings"
    return None


def _check_eventgrid_event(event: Any, index: int, topic_id: str) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidRequest(f"Event at index {index} is not a JSON object.")
    for name in ("id", "subject", "eventType", "eventTime", "dataVersion"):
        if not isinstance(event.get(name), str) or not event[name]:
            if name == "dataVersion" and isinstance(event.get(name), str):
                continue  # an empty dataVersion is allowed
            raise InvalidRequest(f"Required property '{name}' was not set for the event at "
                                 f"index {index}.")
    if "data" not in event:
        raise InvalidRequest(f"Required property 'data' was not set for the event at "
                             f"index {index}.")
    try:
        dt.datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest(f"The eventTime '{event['eventTime']}' of the event at index "
                             f"{index} is not a valid date and time.") from exc
    topic = event.get("topic")
    if topic is not None and str(topic).lower() != topic_id.lower():
        raise InvalidRequest(f"The topic '{topic}' of the event at index {index} does not "
                             "match the topic it was published to.")
    return {**event, "topic": topic_id, "metadataVersion": "1"}


def _check_cloud_event(event: Any, index: int) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidRequest(f"Event at index {index} is not a JSON object.")
    for name in ("id", "source", "type", "specversion"):
        if not isinstance(event.get(name), str) or not event[name]:
            raise InvalidRequest(f"Required attribute '{name}' was not set for the CloudEvent "
                                 f"at index {index}.")
    if event["specversion"] != "1.0":
        raise InvalidRequest(f"The specversion '{event['specversion']}' of the CloudEvent at "
                             f"index {index} is not supported; use '1.0'.")
    if "data" in event and "data_base64" in event:
        raise InvalidRequest(f"The CloudEvent at index {index} has both 'data' and "
                             "'data_base64'.")
    return event
