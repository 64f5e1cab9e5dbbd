"""Event Grid's control plane, through ARM: system topics and their event subscriptions,
and custom topics with their access keys.

A webhook subscription's PUT starts a long-running operation that the validation handshake
(:mod:`emulators.eventgrid.handshake`) finishes; every other write is finished at once.
Deletes are long-running in the spec: the work is done, so the operation is too.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from typing import Any

from aiohttp import web

from emulators.arm import RG_PROVIDERS, Arm, ArmRequest, ResourceRoutes
from emulators.arm_operations import Operation
from emulators.core import error_response, json_response
from emulators.eventgrid.config import Destination, SubscriptionConfig
from emulators.eventgrid.handshake import Handshake
from emulators.eventgrid.model import (
    AZURE_FUNCTION,
    CLOUDEVENT_SCHEMA,
    EVENTGRID_SCHEMA,
    KEYVAULT_TOPIC_TYPE,
    NAMESPACE,
    TOPIC_NAME,
    VAULT_ID,
    WEBHOOK,
    InvalidRequest,
    TopicIdentity,
    bad_request,
    not_found,
)
from emulators.eventgrid.state import (
    CustomTopic,
    EventSubscription,
    State,
    SystemTopic,
    check_dead_letter_identity,
)


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def finished_operation(arm: Arm, location: str) -> Operation:
    """Writes are long-running operations in the spec; where the work is done at once, the
    operation is too."""
    op = arm.start_operation(NAMESPACE, location)
    op.finish(arm.platform.now().isoformat())
    return op


def accepted_delete(arm: Arm, location: str, api_version: str) -> web.Response:
    op = finished_operation(arm, location)
    return web.Response(status=202, headers=arm.async_headers(op, api_version))


class SystemTopics:
    """``Microsoft.EventGrid/systemTopics`` and their ``eventSubscriptions``."""

    def __init__(self, state: State, handshake: Handshake) -> None:
        self.state = state
        self.platform = state.wiring.platform
        self.arm = state.wiring.arm
        self.handshake = handshake
        topics = RG_PROVIDERS + NAMESPACE + "/systemTopics"
        self.arm.resources(ResourceRoutes(
            topics, "topic", list=self._list_system_topics, list_all=self._list_system_topics,
            get=self._get_system_topic, put=self._put_system_topic,
            delete=self._delete_system_topic))
        self.arm.resources(ResourceRoutes(
            topics + "/{topic}/eventSubscriptions", "name", list=self._list_subscriptions,
            get=self._get_subscription, put=self._put_subscription,
            delete=self._delete_subscription,
            actions=(("POST", "getFullUrl", self._get_full_url),)))

    def _system_topic(self, req: ArmRequest) -> SystemTopic | None:
        return self.state.system_topics.get(
            (req.params["resourceGroup"].lower(), req.params["topic"].lower()))

    async def _put_system_topic(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        body = await req.resource_body()
        props = body.get("properties") or {}
        source, topic_type = str(props.get("source") or ""), props.get("topicType")
        if not isinstance(topic_type, str) or topic_type.lower() != KEYVAULT_TOPIC_TYPE.lower():
            return bad_request(
                f"Topic type '{topic_type}' is not supported by this emulator; "
                f"only '{KEYVAULT_TOPIC_TYPE}' is."
            )
        match = VAULT_ID.match(source)
        if match is None:
            return bad_request(
                f"The source '{source}' is not a valid resource id for topic type "
                f"'{KEYVAULT_TOPIC_TYPE}'."
            )
        if match["sub"].lower() != self.platform.subscription_id.lower():
            return bad_request(f"The source '{source}' is not in subscription "
                               f"'{self.platform.subscription_id}'.")
        key = (req.params["resourceGroup"].lower(), req.params["topic"].lower())
        existing = self.state.system_topics.get(key)
        for other_key, other in self.state.system_topics.items():
            if other_key != key and other.source.lower() == source.lower():
                return bad_request(
                    f"Only one system topic is allowed per source. System topic "
                    f"'{other.name}' already exists for source '{source}'."
                )
        if existing is not None and existing.source.lower() != source.lower():
            return bad_request("The property 'source' of a system topic cannot be updated.")
        try:
            identity = TopicIdentity.parse(body.get("identity"),
                                           existing.identity if existing else TopicIdentity(),
                                           self.platform.tenant_id)
        except InvalidRequest as exc:
            return bad_request(str(exc))
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
        self.state.system_topics[key] = topic
        op = finished_operation(self.arm, topic.location)
        return json_response(topic.render(), 200 if existing else 201,
                             self.arm.async_headers(op, req.api_version))

    async def _get_system_topic(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._system_topic(req)
        if topic is None:
            return not_found(f"{NAMESPACE}/systemTopics", req.params["topic"],
                             req.params["resourceGroup"])
        return json_response(topic.render())

    async def _delete_system_topic(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._system_topic(req)
        if topic is None:
            return web.Response(status=204)
        del self.state.system_topics[(topic.resource_group.lower(), topic.name.lower())]
        for sub in topic.subscriptions.values():
            sub.generation += 1  # a pending handshake no longer changes its state
        return accepted_delete(self.arm, topic.location, req.api_version)

    async def _list_system_topics(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        rg = req.params.get("resourceGroup")
        if rg is not None:
            self.arm.require_rg(req)
        items = [t.render() for t in self.state.system_topics.values()
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
            check_dead_letter_identity(config.dead_letter, topic)
        except InvalidRequest as exc:
            return bad_request(str(exc))
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
            self.state.spawn(self.handshake.run(sub, sub.generation, op))
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
            return bad_request(f"getFullUrl is only available for '{WEBHOOK}' destinations; "
                               f"this one is '{destination.endpoint_type}'.")
        return json_response({"endpointUrl": destination.endpoint_url})

    def _check_destination(self, destination: Destination) -> None:
        """A function destination must name a function app the platform knows (in Azure,
        Event Grid reads the app's ``eventgrid_extension`` key through ARM)."""
        if (destination.endpoint_type == AZURE_FUNCTION
                and destination.site_id not in self.state.function_apps):
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
        return accepted_delete(self.arm, topic.location, req.api_version)

    async def _list_subscriptions(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._topic_or_404(req)
        return self.arm.page(req, [s.render() for s in topic.subscriptions.values()])


class CustomTopics:
    """``Microsoft.EventGrid/topics``: where the product publishes its own events (their
    data plane is :mod:`emulators.eventgrid.publishing`)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.platform = state.wiring.platform
        self.arm = state.wiring.arm
        self.arm.resources(ResourceRoutes(
            RG_PROVIDERS + NAMESPACE + "/topics", "name", list=self._list_topics,
            get=self._get_topic, put=self._put_topic, delete=self._delete_topic,
            actions=(("POST", "listKeys", self._list_keys),
                     ("POST", "regenerateKey", self._regenerate_key))))

    def _render_topic(self, topic: CustomTopic) -> dict[str, Any]:
        return {"id": topic.id, "name": topic.name, "type": f"{NAMESPACE}/topics",
                "location": topic.location, "tags": topic.tags,
                "properties": {
                    "provisioningState": "Succeeded",
                    "endpoint": f"{self.state.topic_base_url}/topics/{topic.name}/api/events",
                    "inputSchema": topic.input_schema,
                    "metricResourceId": topic.metric_resource_id,
                    "publicNetworkAccess": "Enabled",
                    "disableLocalAuth": topic.disable_local_auth,
                    "dataResidencyBoundary": "WithinGeopair",
                }}

    def _custom_topic(self, req: ArmRequest) -> CustomTopic | None:
        topic = self.state.custom_topics.get(req.params["name"].lower())
        if topic is None or topic.resource_group.lower() != req.params["resourceGroup"].lower():
            return None
        return topic

    async def _put_topic(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        name = req.params["name"]
        if not TOPIC_NAME.match(name) or name.lower().startswith(
                ("microsoft-", "eventgrid-", "system-")):
            return bad_request("Topic name must be between 3 and 50 characters in length.")
        body = await req.resource_body()
        props = body.get("properties") or {}
        schema = props.get("inputSchema") or EVENTGRID_SCHEMA
        if schema not in (EVENTGRID_SCHEMA, CLOUDEVENT_SCHEMA):
            return bad_request(f"Input schema '{schema}' is not supported by this emulator.")
        existing = self.state.custom_topics.get(name.lower())
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
            key1=existing.key1 if existing else new_key(),
            key2=existing.key2 if existing else new_key(),
        )
        self.state.custom_topics[name.lower()] = topic
        op = finished_operation(self.arm, topic.location)
        return json_response(self._render_topic(topic), 201,
                             self.arm.async_headers(op, req.api_version))

    async def _get_topic(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._custom_topic(req)
        if topic is None:
            return not_found(f"{NAMESPACE}/topics", req.params["name"],
                             req.params["resourceGroup"])
        return json_response(self._render_topic(topic))

    async def _delete_topic(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._custom_topic(req)
        if topic is None:
            return web.Response(status=204)
        del self.state.custom_topics[topic.name.lower()]
        return accepted_delete(self.arm, topic.location, req.api_version)

    async def _list_topics(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        rg = req.params["resourceGroup"].lower()
        return self.arm.page(req, [self._render_topic(t) for t in self.state.custom_topics.values()
                                   if t.resource_group.lower() == rg])

    async def _list_keys(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._custom_topic(req)
        if topic is None:
            return not_found(f"{NAMESPACE}/topics", req.params["name"],
                             req.params["resourceGroup"])
        return json_response({"key1": topic.key1, "key2": topic.key2})

    async def _regenerate_key(self, req: ArmRequest) -> web.Response:
        self.arm.check_subscription(req)
        topic = self._custom_topic(req)
        if topic is None:
            return not_found(f"{NAMESPACE}/topics", req.params["name"],
                             req.params["resourceGroup"])
        body = await req.json_body()
        key_name = body.get("keyName") if isinstance(body, dict) else None
        if key_name == "key1":
            topic.key1 = new_key()
        elif key_name == "key2":
            topic.key2 = new_key()
        else:
            return bad_request("The key name must be 'key1' or 'key2'.")
        return json_response({"key1": topic.key1, "key2": topic.key2})
