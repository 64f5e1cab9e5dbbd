"""The ``Microsoft.Compute/cloudServices`` resource through ARM: PUT (after the platform
checks of :mod:`~emulators.cloudservices.checks`), PATCH of tags, GET, DELETE and the lists,
each starting or reading the operations of :mod:`~emulators.cloudservices.operations`; and
the lookups and response headers every route of the provider shares.
"""

from __future__ import annotations

import uuid

from aiohttp import web

from emulators.arm import ArmRequest
from emulators.cloudservices.checks import PutChecks
from emulators.cloudservices.model import (
    CONFLICT_MESSAGE,
    RATE_LIMITS,
    RESOURCE_TYPE,
    ArmError,
    ArmHandler,
    Bucket,
    Service,
    invalid,
    linked_access,
    missing_property,
)
from emulators.cloudservices.operations import Operations
from emulators.cloudservices.state import State
from emulators.cloudservices.views import Views
from emulators.core import json_response


class Lookup:
    """What every route starts with: the service a path names (404 in ARM's words), the
    409 while it is busy, RBAC, and ARM's headers on whatever the handler answered."""

    def __init__(self, state: State, operations: Operations) -> None:
        self.state = state
        self.platform = state.wiring.platform
        self.arm = state.wiring.arm
        self.operations = operations

    def guard(self, handler: ArmHandler) -> ArmHandler:
        """Settle due operations first, render ArmError, add ARM's response headers."""

        async def run(req: ArmRequest) -> web.StreamResponse:
            self.operations.settle()
            try:
                response = await handler(req)
            except ArmError as exc:
                response = exc.response()
            kind = {"GET": "reads", "DELETE": "deletes"}.get(req.method, "writes")
            capacity, refill = RATE_LIMITS[kind]
            bucket = self.state.buckets.setdefault(
                kind, Bucket(capacity, refill, float(capacity), self.platform.now()))
            request_id = str(uuid.uuid4())
            response.headers[f"x-ms-ratelimit-remaining-subscription-{kind}"] = str(
                bucket.take(self.platform.now()))
            response.headers["x-ms-request-id"] = request_id
            response.headers["x-ms-correlation-request-id"] = request_id
            return response

        return run

    def key(self, req: ArmRequest) -> tuple[str, str]:
        return req.params["resourceGroup"].lower(), req.params["cloudService"].lower()

    def service(self, req: ArmRequest) -> Service:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        service = self.state.services.get(self.key(req))
        if service is None:
            raise ArmError(
                404, "ResourceNotFound",
                f"The Resource '{RESOURCE_TYPE}/{req.params['cloudService']}' under resource "
                f"group '{req.params['resourceGroup']}' was not found. For more details please "
                "go to https://aka.ms/ARMResourceNotFoundFix")
        return service

    def refuse_if_busy(self, key: tuple[str, str]) -> None:
        service = self.state.services.get(key)
        if service is not None and service.pending is not None:
            raise ArmError(409, "Conflict", CONFLICT_MESSAGE)

    def authorize(self, req: ArmRequest, action: str, scope: str,
                  linked: tuple[tuple[str, str], ...] = ()) -> bool:
        """RBAC for a write on a service (see the module docstring); whether it was checked."""
        return self.arm.authorize(req, f"{RESOURCE_TYPE}/{action}", scope, linked)

    @staticmethod
    def service_path(req: ArmRequest) -> str:
        path = req.http.path.rstrip("/")
        marker = "/cloudservices/"
        start = path.lower().index(marker) + len(marker)
        end = path.find("/", start)
        return path if end < 0 else path[:end]

    def child_not_found(self, req: ArmRequest, kind: str, name: str) -> ArmError:
        return ArmError(
            404, "ResourceNotFound",
            f"The Resource '{RESOURCE_TYPE}/{req.params['cloudService']}/{kind}/{name}' under "
            f"resource group '{req.params['resourceGroup']}' was not found. For more details "
            "please go to https://aka.ms/ARMResourceNotFoundFix")


class RouteHandlers:
    """What the provider's route handlers share: the state, the lookups every route starts
    with, the wire shapes they answer in and the operations they start."""

    def __init__(self, state: State, lookup: Lookup, views: Views,
                 operations: Operations) -> None:
        self.state = state
        self.platform = state.wiring.platform
        self.arm = state.wiring.arm
        self.lookup = lookup
        self.views = views
        self.operations = operations


class ServiceCrud(RouteHandlers):
    """Handlers for the cloud service resource itself and its lists."""

    def __init__(self, state: State, lookup: Lookup, views: Views,
                 operations: Operations) -> None:
        super().__init__(state, lookup, views, operations)
        self.checks = PutChecks(state)

    async def put(self, req: ArmRequest) -> web.StreamResponse:
        self.arm.check_subscription(req)
        body = await req.resource_body()
        checked = self.lookup.authorize(req, "write", self.lookup.service_path(req),
                                        linked_access(body.get("properties")))
        self.arm.require_rg(req)
        key = self.lookup.key(req)
        self.lookup.refuse_if_busy(key)
        draft = await self.checks.check(body, self.state.services.get(key))
        self.lookup.refuse_if_busy(key)  # another PUT may have committed while we downloaded
        now = self.platform.now()
        existing = self.state.services.get(key)
        if existing is None:
            if draft.package is None:  # the service went away while we checked
                raise missing_property("packageUrl")
            service = Service(
                resource_group=req.params["resourceGroup"], name=req.params["cloudService"],
                location=draft.location, tags=draft.tags, zones=draft.zones,
                properties=draft.properties, roles=draft.roles, package=draft.package,
                created_at=now, modified_at=now, state="Creating",
                powered_off=draft.properties.get("startCloudService") is False,
            )
            self.state.services[key] = service
        else:
            service = existing
            service.location, service.tags, service.zones = draft.location, draft.tags, draft.zones
            service.properties, service.roles = draft.properties, draft.roles
            service.package = draft.package or service.package
            service.version += 1
            service.modified_at = now
        created = existing is None
        op = self.operations.begin(service, "create" if created else "update",
                                   "Creating" if created else "Updating", roles=draft.roles)
        op.checked = checked
        return json_response(self.views.body(service), 201 if created else 200,
                             self.arm.async_headers(op, req.api_version, write=True))

    async def patch(self, req: ArmRequest) -> web.StreamResponse:
        """CloudServices_Update: the body is a ``CloudServiceUpdate``, which holds only
        ``tags``; they replace the whole tag set (other members are ignored). Like a PUT it
        answers 200 in ``Updating`` with an operation, and 409 while another one runs."""
        checked = self.lookup.authorize(req, "write", self.lookup.service_path(req))
        service = self.lookup.service(req)
        self.lookup.refuse_if_busy(self.lookup.key(req))
        body = await req.json_body()
        if not isinstance(body, dict):
            raise ArmError(400, "InvalidRequestContent",
                           "The request content must be a JSON object.")
        tags = body.get("tags")
        if tags is not None:
            if not isinstance(tags, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
                raise invalid("The tags must be an object of string names and string values.",
                              "tags")
            service.tags = dict(tags)
        service.modified_at = self.platform.now()
        op = self.operations.begin(service, "tags", "Updating", state_after=service.state)
        op.checked = checked
        return json_response(self.views.body(service), 200,
                             self.arm.async_headers(op, req.api_version, write=True))

    async def get(self, req: ArmRequest) -> web.StreamResponse:
        return json_response(self.views.body(self.lookup.service(req)))

    async def delete(self, req: ArmRequest) -> web.StreamResponse:
        self.arm.check_subscription(req)
        checked = self.lookup.authorize(req, "delete", self.lookup.service_path(req))
        self.arm.require_rg(req)
        key = self.lookup.key(req)
        service = self.state.services.get(key)
        if service is None:
            return web.Response(status=204)
        self.lookup.refuse_if_busy(key)
        op = self.operations.begin(service, "delete", "Deleting")
        op.checked = checked
        return web.Response(status=202,
                            headers=self.arm.async_headers(op, req.api_version, monitor=True))

    async def list(self, req: ArmRequest) -> web.StreamResponse:
        self.arm.check_subscription(req)
        self.arm.require_rg(req)
        group = req.params["resourceGroup"].lower()
        return self.arm.page(req, [self.views.body(s) for (rg, _), s in self.state.services.items()
                                   if rg == group])

    async def list_all(self, req: ArmRequest) -> web.StreamResponse:
        self.arm.check_subscription(req)
        return self.arm.page(req, [self.views.body(s) for s in self.state.services.values()])
