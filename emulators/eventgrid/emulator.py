"""The Event Grid emulator as the rest of the stack sees it: one object that builds the
shared :class:`~emulators.eventgrid.state.State` and the parts acting on it, serves the
topic listener, takes system events from Key Vault and answers the admin API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from emulators.arm import Arm
from emulators.blobs import Blobs
from emulators.core import Platform, json_response
from emulators.eventgrid.control import CustomTopics, SystemTopics
from emulators.eventgrid.delivery import Delivery
from emulators.eventgrid.handshake import Handshake
from emulators.eventgrid.model import FUNCTION_ID, FunctionApp
from emulators.eventgrid.publishing import TopicPublishing
from emulators.eventgrid.state import State, Wiring

AdminHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class EventGrid:
    """The emulator: its parts, wired to one state."""

    def __init__(self, platform: Platform, arm: Arm, blobs: Blobs, retry_scale: float) -> None:
        self.state = State(Wiring(platform, arm, blobs, retry_scale))
        platform.reset_hooks.append(self.state.reset)
        self.handshake = Handshake(self.state)
        self.delivery = Delivery(self.state)
        self.publishing = TopicPublishing(self.state)
        self.system_topics = SystemTopics(self.state, self.handshake)
        self.custom_topics = CustomTopics(self.state)

    @property
    def topic_base_url(self) -> str:
        return self.state.topic_base_url

    @topic_base_url.setter
    def topic_base_url(self, url: str) -> None:
        """Set by server.py once the topic listener is bound."""
        self.state.topic_base_url = url

    async def close(self) -> None:
        await self.state.close()

    def build_topic_app(self) -> web.Application:
        app = self.state.wiring.platform.make_app("eventgrid")
        app.router.add_post("/topics/{name}/api/events", self.publishing.publish)
        app.router.add_get("/eventsubscriptions/{name}/validate", self.handshake.validate_url)
        return app

    def publish_system_event(
        self, source: str, event_type: str, subject: str, data: dict[str, Any]
    ) -> None:
        self.delivery.route(source, event_type, subject, data)

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
        if FUNCTION_ID.match(f"{resource_id}/functions/f") is None:
            return json_response({"error": "resourceId must be a Microsoft.Web/sites id"}, 400)
        app = FunctionApp(resource_id, body["url"].rstrip("/"), body["eventGridKey"])
        self.state.function_apps[resource_id.lower()] = app
        return json_response({"resourceId": app.resource_id, "url": app.url}, 201)

    async def _admin_deliveries(self, request: web.Request) -> web.Response:
        return json_response(self.state.deliveries)

    async def _admin_published(self, request: web.Request) -> web.Response:
        name = request.query.get("topic")
        return json_response([p for p in self.state.published
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
            event, matched = self.delivery.route(
                item["source"], item["eventType"], item["subject"], item["data"], item.get("id"),
                item.get("eventTime"))
            raised.append({"id": event.id, "eventTime": event.event_time,
                           "subscriptions": matched})
        return json_response(raised if isinstance(body, list) else raised[0], 202)


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

