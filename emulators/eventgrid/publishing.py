"""Event Grid's data plane for custom topics: what ``EventGridPublisherClient`` posts to
``{topic_base_url}/topics/{name}/api/events``.

A request is authenticated (``aeg-sas-key``, ``aeg-sas-token`` or a bearer token for
``https://eventgrid.azure.net``; keys and SAS only while local auth is enabled), held to the
topic's input schema and the 1 MB limits, and what is accepted is stored for
``GET /eventgrid/published``: custom-topic events are stored, not routed.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from emulators.core import error_response
from emulators.eventgrid.model import (
    CLOUDEVENT_SCHEMA,
    EVENTGRID_AUDIENCE,
    ONE_MB,
    InvalidRequest,
)
from emulators.eventgrid.state import CustomTopic, State
from emulators.tokens import InvalidToken


class TopicPublishing:
    """Serves ``POST /topics/{name}/api/events`` for every custom topic."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.platform = state.wiring.platform

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
        endpoint = f"{self.state.topic_base_url}/topics/{topic.name}/api/events".lower()
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

    async def publish(self, request: web.Request) -> web.Response:
        topic = self.state.custom_topics.get(request.match_info["name"].lower())
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
            self.state.published.append({"topic": topic.name, "schema": topic.input_schema,
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

