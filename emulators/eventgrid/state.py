"""What the parts of the Event Grid emulator share: the resources ARM created (system
topics with their subscriptions, custom topics), what was delivered and published, each
endpoint's delayed-delivery health and the handshakes waiting for a manual visit.

Theory of operation: one :class:`State` is built by the facade and handed to every part
(control plane, handshake, delivery, topic publishing), so no part holds another's data and
a reset clears everything in one place. :class:`Wiring` is what the emulator is plugged
into and never changes; the rest is the mutable store.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from emulators.arm import Arm
from emulators.arm_operations import Operation
from emulators.blobs import Blobs
from emulators.core import Platform
from emulators.eventgrid.config import DeadLetterTarget, SubscriptionConfig
from emulators.eventgrid.model import NAMESPACE, Event, FunctionApp, InvalidRequest, TopicIdentity


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


def check_dead_letter_identity(target: DeadLetterTarget | None, topic: SystemTopic) -> None:
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



@dataclass(frozen=True)
class Wiring:
    """What the emulator is plugged into, fixed for the life of the process."""

    platform: Platform
    arm: Arm
    blobs: Blobs
    retry_scale: float  # every nominal retry/dead-letter wait is multiplied by this


@dataclass
class State:
    """The store every part reads and writes, and the background tasks that act on it."""

    wiring: Wiring
    topic_base_url: str = ""  # set by server.py once the topic listener is bound
    system_topics: dict[tuple[str, str], SystemTopic] = field(default_factory=dict)
    custom_topics: dict[str, CustomTopic] = field(default_factory=dict)
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)
    # Platform wiring, not test state: kept across resets.
    function_apps: dict[str, FunctionApp] = field(default_factory=dict)
    health: dict[str, EndpointHealth] = field(default_factory=dict)
    manual: dict[str, ManualValidation] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    session: aiohttp.ClientSession | None = None

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        self.system_topics.clear()
        self.custom_topics.clear()
        self.deliveries.clear()
        self.published.clear()
        self.health.clear()
        self.manual.clear()

    async def close(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def http(self) -> aiohttp.ClientSession:
        """One session for all pushes, created in the running loop on first use."""
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.wiring.blobs.tls)
            )
        return self.session

    async def wait(self, nominal_seconds: float) -> None:
        await asyncio.sleep(nominal_seconds * self.wiring.retry_scale)

    def log(self, kind: str, sub: EventSubscription, **details: Any) -> None:
        self.deliveries.append({
            "kind": kind, "subscription": sub.id, "name": sub.name,
            "time": self.wiring.platform.now().isoformat(), **details,
        })
