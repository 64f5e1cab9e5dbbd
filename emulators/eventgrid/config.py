"""What a PUT of an event subscription asks for (destination, filter, batching, retry
policy, dead-lettering), parsed and validated as Event Grid does before it stores anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from emulators.eventgrid.model import (
    AZURE_FUNCTION,
    CLOUDEVENT_SCHEMA,
    EVENTGRID_SCHEMA,
    FUNCTION_ID,
    KEYVAULT_EVENT_TYPES,
    KEYVAULT_TOPIC_TYPE,
    STORAGE_ID,
    WEBHOOK,
    Event,
    InvalidRequest,
    base_url,
    int_in,
)


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
                "properties": {"endpointBaseUrl": base_url(self.endpoint_url)}}

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
            if not isinstance(resource_id, str) or not FUNCTION_ID.match(resource_id):
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
            max_events_per_batch=int_in(dest.get("maxEventsPerBatch"), "maxEventsPerBatch",
                                        1, 5000, 1),
            preferred_batch_kb=int_in(dest.get("preferredBatchSizeInKilobytes"),
                                      "preferredBatchSizeInKilobytes", 1, 1024, 64),
            schema=schema,
            included_event_types=tuple(types) if types is not None else None,
            subject_begins_with=str(filt.get("subjectBeginsWith") or ""),
            subject_ends_with=str(filt.get("subjectEndsWith") or ""),
            subject_case_sensitive=bool(filt.get("isSubjectCaseSensitive", False)),
            max_delivery_attempts=int_in(retry.get("maxDeliveryAttempts"),
                                         "maxDeliveryAttempts", 1, 30, 30),
            ttl_minutes=int_in(retry.get("eventTimeToLiveInMinutes"),
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
    match = STORAGE_ID.match(resource_id) if isinstance(resource_id, str) else None
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

