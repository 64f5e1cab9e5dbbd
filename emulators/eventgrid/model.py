"""Event Grid's vocabulary: the constants its docs and recordings fix, the errors, the
events it holds and what a delivery attempt came to.

Everything here is plain data or a pure function; the stateful parts live in
:mod:`emulators.eventgrid.state` and act on these.
"""

from __future__ import annotations

import datetime as dt
import http
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from emulators.core import error_response

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

VAULT_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.KeyVault/vaults/(?P<name>[^/]+)$",
    re.IGNORECASE,
)
STORAGE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Storage"
    r"/storageAccounts/(?P<account>[^/]+)$",
    re.IGNORECASE,
)
FUNCTION_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Web"
    r"/sites/(?P<site>[^/]+)/functions/(?P<function>[^/]+)$",
    re.IGNORECASE,
)
TOPIC_NAME = re.compile(r"^[A-Za-z0-9-]{3,50}$")
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


def eg_time(moment: dt.datetime) -> str:
    """Event Grid's timestamp format: UTC with seven fractional digits and ``Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def status_name(status: int) -> str:
    """The .NET ``HttpStatusCode`` name Azure puts in messages (``NotFound``...)."""
    try:
        return http.HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return str(status)


def base_url(url: str) -> str:
    """The endpoint without its query string (which may hold a function key)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def not_found(kind: str, name: str, rg: str) -> web.Response:
    return error_response(
        404, "ResourceNotFound",
        f"The Resource '{kind}/{name}' under resource group '{rg}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def bad_request(message: str) -> web.Response:
    return error_response(400, "BadRequest", message)


def int_in(value: Any, name: str, low: int, high: int, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(
            f"The attribute '{name}' has an invalid value '{value}'. "
            f"Valid values are between {low} and {high}."
        )
    return value



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
class Outcome:
    """What one POST to a webhook came to."""

    status: int | None
    outcome: str

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status <= 204



def probation_seconds(outcome: Outcome) -> float:
    """Probation after a failure, by outcome (delivery-and-retry.md's table)."""
    if outcome.outcome == "InvalidAzureFunctionDestination":
        return PROBATION_INVALID_FUNCTION_S
    if outcome.status is None:
        return PROBATION_TIMEOUT_S if outcome.outcome == "TimedOut" else PROBATION_SOCKET_ERROR_S
    return PROBATION_S.get(outcome.status, DEFAULT_PROBATION_S)


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

