"""The webhook validation handshake Event Grid insists on before it sends a single event.

Event Grid schema: a ``SubscriptionValidationEvent`` POST answered 200 with
``{"validationResponse": code}``, or answered 200 without it and followed, within five
minutes, by a GET of the ``validationUrl`` served by the topic listener (the manual half).
CloudEvents: an ``OPTIONS`` abuse-protection request answered 200 with
``WebHook-Allowed-Origin``. The outcome finishes the subscription's long-running operation;
a subscription changed or deleted meanwhile (its ``generation`` moved on) keeps its state.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from emulators.arm_operations import Operation
from emulators.eventgrid.model import (
    CLOUDEVENT_SCHEMA,
    DELIVERY_TIMEOUT_S,
    MANUAL_VALIDATION_WINDOW_S,
    REQUEST_ORIGIN,
    TROUBLESHOOT,
    VALIDATION_EVENT_TYPE,
    base_url,
    eg_time,
    status_name,
)
from emulators.eventgrid.state import EventSubscription, ManualValidation, State


class Handshake:
    """Validates a webhook subscription's endpoint and finishes its operation."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.platform = state.wiring.platform

    async def run(self, sub: EventSubscription, generation: int, op: Operation) -> None:
        base = base_url(sub.config.destination.endpoint_url)
        if sub.config.schema == CLOUDEVENT_SCHEMA:
            error = await self._options(sub)
        else:
            code = str(uuid.uuid4())
            token = secrets.token_urlsafe(24)
            url = (f"{self.state.topic_base_url}/eventsubscriptions/{quote(sub.name)}/validate"
                   f"?id={code}&t={quote(eg_time(self.platform.now()))}"
                   f"&apiVersion=2018-05-01-preview&token={token}")
            result = await self._post(sub, code, url)
            if result == "manual":
                if sub.generation == generation:
                    sub.state = "AwaitingManualAction"
                deadline = self.platform.now() + dt.timedelta(seconds=MANUAL_VALIDATION_WINDOW_S)
                self.state.manual[token] = ManualValidation(sub, generation, op, deadline)
                await self.state.wait(MANUAL_VALIDATION_WINDOW_S)
                if self.state.manual.pop(token, None) is None:
                    return  # validated through the URL meanwhile
                error = (f"Webhook validation handshake failed for {base}. The validation URL "
                         "was not visited within 5 minutes of the validation request. "
                         f"{TROUBLESHOOT}")
            else:
                error = result
        self._finish(sub, generation, op, error)

    def _finish(self, sub: EventSubscription, generation: int, op: Operation,
                error: str | None) -> None:
        if sub.generation == generation:
            sub.state = "Failed" if error else "Succeeded"
        op.finish(self.platform.now().isoformat(),
                  {"code": "Url validation", "message": error} if error else None)

    async def _post(self, sub: EventSubscription, code: str, url: str) -> str | None:
        """None when validated, ``"manual"`` when the endpoint answered 200 without the
        code (asynchronous validation), else the failure message."""
        endpoint = sub.config.destination.endpoint_url
        base = base_url(endpoint)
        now = self.platform.now()
        body = [{"id": str(uuid.uuid4()), "topic": sub.topic.source, "subject": "",
                 "data": {"validationCode": code, "validationUrl": url},
                 "eventType": VALIDATION_EVENT_TYPE, "eventTime": eg_time(now),
                 "metadataVersion": "1", "dataVersion": "1"}]
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "aeg-event-type": "SubscriptionValidation",
                   "aeg-subscription-name": sub.name.upper(), "aeg-delivery-count": "0",
                   "aeg-data-version": "1", "aeg-metadata-version": "1"}
        status: int | None = None
        reply: Any = None
        try:
            async with self.state.http().post(
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
        self.state.log("SubscriptionValidation", sub, method="POST", status=status)
        if status != 200:
            name = "Unknown" if status is None else status_name(status)
            return (f"Webhook validation handshake failed for {base}. Http POST request failed "
                    f"with response code {name}. {TROUBLESHOOT}")
        answer = reply.get("validationResponse") if isinstance(reply, dict) else None
        if answer is None:
            return "manual"
        if answer != code:
            return (f"Webhook validation handshake failed for {base}. Http POST request "
                    f"returned 2XX response with an invalid validationResponse. {TROUBLESHOOT}")
        return None

    async def _options(self, sub: EventSubscription) -> str | None:
        """CloudEvents 1.0 abuse protection: OPTIONS, then 200 + WebHook-Allowed-Origin."""
        url = sub.config.destination.endpoint_url
        base = base_url(url)
        status: int | None = None
        allowed = ""
        try:
            async with self.state.http().options(
                url, headers={"WebHook-Request-Origin": REQUEST_ORIGIN},
                timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT_S), allow_redirects=False,
            ) as resp:
                status = resp.status
                allowed = resp.headers.get("WebHook-Allowed-Origin", "")
                await resp.read()
        except (TimeoutError, aiohttp.ClientError):
            pass
        self.state.log("SubscriptionValidation", sub, method="OPTIONS", status=status)
        if status != 200:
            name = "Unknown" if status is None else status_name(status)
            return (f"Webhook validation handshake failed for {base}. Http OPTIONS request "
                    f"failed with response code {name}. {TROUBLESHOOT}")
        if allowed.strip() not in (REQUEST_ORIGIN, "*"):
            return (f"Webhook validation handshake failed for {base}. Http OPTIONS request "
                    f"returned 200 without a WebHook-Allowed-Origin header allowing "
                    f"{REQUEST_ORIGIN}. {TROUBLESHOOT}")
        return None

    async def validate_url(self, request: web.Request) -> web.Response:
        """GET on a validationUrl: the manual half of the handshake."""
        pending = self.state.manual.get(request.query.get("token", ""))
        if pending is None or pending.subscription.name.lower() != (
                request.match_info["name"].lower()):
            return web.Response(status=404, text="The validation request was not found.")
        del self.state.manual[request.query["token"]]
        if self.platform.now() > pending.deadline:
            base = base_url(pending.subscription.config.destination.endpoint_url)
            self._finish(pending.subscription, pending.generation, pending.operation,
                         f"Webhook validation handshake failed for {base}. "
                         f"The validation URL has expired. {TROUBLESHOOT}")
            return web.Response(status=400, text="The validation URL has expired.")
        self._finish(pending.subscription, pending.generation, pending.operation, None)
        return web.Response(text="Webhook successfully validated as a subscription endpoint.")
