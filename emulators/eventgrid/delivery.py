"""Routing system events to subscriptions and pushing them: batching, Event Grid's retry
schedule, delayed delivery (probation) and dead-lettering.

Theory of operation: :meth:`Delivery.route` matches an event against every ``Succeeded``
subscription of the system topics whose source raised it and queues it per subscription; a
flush scheduled with ``call_soon`` cuts what arrived in the same loop turn into batches and
starts one task per batch. A task POSTs its batch until it is delivered (200-204), not
retried (per destination kind), out of attempts or time to live, then dead-letters it to
Azurite or drops it. Every attempt, delay, dead letter and drop goes to the delivery log.
The subscription may be deleted meanwhile: a task checks before each attempt and stops.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from typing import Any
from urllib.parse import quote

import aiohttp
from azure.core.exceptions import AzureError

from emulators.eventgrid.config import Destination
from emulators.eventgrid.model import (
    AZURE_FUNCTION,
    AZURE_RESOURCE_MIN_RETRY_S,
    CLOUDEVENT_SCHEMA,
    DEAD_LETTER_DELAY_S,
    DEAD_LETTER_GIVE_UP_S,
    DEFAULT_MIN_RETRY_S,
    DELIVERY_TIMEOUT_S,
    MIN_RETRY_S,
    NO_RETRY,
    PROBATION_AFTER_FAILURES,
    RETRY_SCHEDULE_S,
    WEBHOOK,
    Event,
    Outcome,
    eg_time,
    probation_seconds,
    status_name,
)
from emulators.eventgrid.state import EndpointHealth, EventSubscription, State


class Delivery:
    """Routes raised events to subscriptions and runs one delivery task per batch."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.platform = state.wiring.platform
        self.blobs = state.wiring.blobs
        self.retry_scale = state.wiring.retry_scale

    def route(self, source: str, event_type: str, subject: str, data: Any,
              event_id: str | None = None, event_time: str | None = None) -> tuple[Event, int]:
        """Route one event to every matching subscription; return it and the match count."""
        now = self.platform.now()
        event = Event(id=event_id or str(uuid.uuid4()), source=source, event_type=event_type,
                      subject=subject, data=data, event_time=event_time or eg_time(now),
                      published=now)
        matched = 0
        for topic in self.state.system_topics.values():
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
                self.state.spawn(self._deliver(sub, batch))
                batch, size = [], 0
            batch.append(event)
            size += event_size
        if batch:
            self.state.spawn(self._deliver(sub, batch))

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
            async with self.state.http().post(
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
        return Outcome(status, "TimedOut" if status == 408 else status_name(status))

    def _target_url(self, destination: Destination) -> str | None:
        """Where a delivery goes: the webhook URL, or the function app's Event Grid
        extension endpoint with its system key (None when the app is gone)."""
        if destination.endpoint_type == WEBHOOK:
            return destination.endpoint_url
        app = self.state.function_apps.get(destination.site_id)
        if app is None:
            return None
        return (f"{app.url}/runtime/webhooks/eventgrid"
                f"?functionName={quote(destination.function_name)}"
                f"&code={quote(app.eventgrid_key)}")

    async def _hold_for_probation(self, sub: EventSubscription, ids: list[str]) -> None:
        """Delayed delivery: wait out the endpoint's probation before any attempt."""
        health = self.state.health.get(sub.config.destination.key)
        if health is None:
            return
        remaining = health.probation_until - asyncio.get_running_loop().time()
        if remaining <= 0:
            return
        nominal = remaining / self.retry_scale if self.retry_scale > 0 else 0.0
        self.state.log("Delayed", sub, event_ids=ids, failures=health.failures,
                       nominal_seconds=round(nominal, 1))
        await asyncio.sleep(remaining)

    def _record_health(self, destination: Destination, outcome: Outcome) -> None:
        if outcome.delivered:
            self.state.health.pop(destination.key, None)
            return
        health = self.state.health.setdefault(destination.key, EndpointHealth())
        health.failures += 1
        if health.failures >= PROBATION_AFTER_FAILURES:
            until = (asyncio.get_running_loop().time()
                     + probation_seconds(outcome) * self.retry_scale)
            health.probation_until = max(health.probation_until, until)

    def _live(self, sub: EventSubscription) -> bool:
        topic = sub.topic
        return (self.state.system_topics.get((topic.resource_group.lower(), topic.name.lower()))
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
            self.state.log("Notification", sub, event_ids=ids, attempt=attempts,
                           delivery_count=attempts - 1, status=outcome.status,
                           outcome=outcome.outcome, answered_s=answered_s)
            if outcome.delivered:
                return
            kind = sub.config.destination.endpoint_type
            if outcome.status in NO_RETRY[kind]:
                reason = f"UndeliverableDueToHttp{status_name(outcome.status or 0)}"
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
            await self.state.wait(delay)
            if (self.platform.now() - events[0].published).total_seconds() >= ttl_s:
                reason = "TimeToLiveExceeded"
                break
        await self._dead_letter(sub, events, reason, attempts, outcome, last_time)

    async def _dead_letter(self, sub: EventSubscription, events: list[Event], reason: str,
                           attempts: int, outcome: Outcome, last_time: dt.datetime) -> None:
        ids = [e.id for e in events]
        target = sub.config.dead_letter
        if target is None:
            self.state.log("Dropped", sub, event_ids=ids, reason=reason, attempts=attempts)
            return
        await self.state.wait(DEAD_LETTER_DELAY_S)
        schema = sub.config.schema
        # The fields delivery-and-retry.md shows: CloudEvents dead letters carry the first
        # four, in lower case, without lastDeliveryAttemptTime.
        extra: dict[str, Any] = {
            "deadLetterReason": reason, "deliveryAttempts": attempts,
            "lastDeliveryOutcome": outcome.outcome,
        }
        lettered = []
        for event in events:
            fields = {**extra, "publishTime": eg_time(event.published)}
            if schema == CLOUDEVENT_SCHEMA:
                fields = {k.lower(): v for k, v in fields.items()}
            else:
                fields["lastDeliveryAttemptTime"] = eg_time(last_time)
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
                    self.state.log("Dropped", sub, event_ids=ids, reason=reason, attempts=attempts,
                                   dead_letter_error=str(exc).splitlines()[0])
                    return
                waited_s += DEAD_LETTER_DELAY_S
                await self.state.wait(DEAD_LETTER_DELAY_S)
                continue
            self.state.log("DeadLettered", sub, event_ids=ids, reason=reason, attempts=attempts,
                           container=target.container, blob=blob)
            return
