"""Azure Resource Manager front door: auth, api-version, routing, resource groups,
long-running operations and paging, shared by the resource-provider emulators.

Theory of operation: ARM paths are case-insensitive, so instead of aiohttp's router the
ARM app has one catch-all handler that matches ``{var}`` patterns case-insensitively. A
provider declares each resource type it serves as a :class:`ResourceRoutes` (list, item
verbs and actions below the item, by ARM's path convention) and hands it to
``Arm.resources``, optionally wrapping every handler. Dispatch runs after checking the
bearer token (audience ``https://management.azure.com``; 401 ``InvalidAuthenticationToken``
otherwise) and the presence of ``api-version`` (400 ``MissingApiVersionParameter``); a path
no route matches is 404 ``InvalidResourceType``, one served for other methods 405.
Resource groups must exist before resources are put in them (404
``ResourceGroupNotFound``), as in Azure.

Long-running operations follow the ``Azure-AsyncOperation`` pattern the SDK's
``ARMPolling`` tries first: the provider answers its PUT with 200/201 plus the header
pointing at ``/subscriptions/{sub}/providers/{ns}/locations/{loc}/{collection}/{id}``,
whose GET returns ``{name, status, startTime[, endTime, error]}``; the provider later
calls ``Operation.finish``. A provider chooses the collection and the hints: Compute's
cloud services use ``CsOperations``, with Azure's recorded headers (no ``Retry-After``,
so a client polls at its own interval, which the local stack sets short) and .NET
round-trip times (``2023-02-20T06:16:45.9003596+00:00``); an action (POST, DELETE, a
walk) also gets a ``Location`` on the same URL with ``monitor=true``, which answers 202
while the operation runs and an empty 200 once it has ended. Other providers keep the
``operations`` collection and ``Retry-After: 0``. List responses are paged with an
absolute ``nextLink`` that carries ``api-version`` (the SDK follows it verbatim).

Control-plane authorization (Azure RBAC) is asked of an :class:`AccessCheck` (set by
:mod:`emulators.authorization`): a provider calls :meth:`Arm.authorize` with the action and
scope of a write, plus the linked actions ARM checks on resources the body references; a
refusal is ARM's 403 ``AuthorizationFailed`` or ``LinkedAuthorizationFailed`` in its
recorded wording. A write that was checked marks its operation, and a poll of that
operation is then checked too, as ``{namespace}/locations/{collection}/read`` at the poll's
own (subscription-level) path. Whether a write is checked at all is the access check's
choice (the stack opts in per resource group, see its docstring).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from aiohttp import web

from emulators.arm_operations import (
    GENERIC,
    STYLES,
    Operation,
    OperationStyle,
    operation_time,
)
from emulators.core import Platform, error_response, json_response
from emulators.tokens import InvalidToken

ARM_AUDIENCES = ("https://management.azure.com", "https://management.core.windows.net")
SUBSCRIPTION = "/subscriptions/{subscription}"
# Where a resource group's resources live: followed by ``{namespace}/{type}``.
RG_PROVIDERS = SUBSCRIPTION + "/resourceGroups/{resourceGroup}/providers/"
RouteHandler = Callable[["ArmRequest"], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ResourceRoutes:
    """One resource type's ARM routes, by ARM's convention, mapped onto handlers.

    ``GET {collection}`` lists; ``GET``/``PUT``/``PATCH``/``DELETE
    {collection}/{{item}}`` act on one resource; each action is ``(method, sub-path below
    the item, handler)`` (a POST action, a child collection or child resource). A
    collection in a resource group is also listed subscription-wide by ``list_all``
    (``/subscriptions/{subscription}/providers/{namespace}/{type}``). A handler left out
    is a route not served: ARM's dispatch answers 405 if the path has other methods.
    """

    collection: str
    item: str  # the path parameter naming one resource, e.g. "vaultName"
    list: RouteHandler | None = None
    get: RouteHandler | None = None
    put: RouteHandler | None = None
    patch: RouteHandler | None = None
    delete: RouteHandler | None = None
    list_all: RouteHandler | None = None
    actions: tuple[tuple[str, str, RouteHandler], ...] = ()

    def routes(self) -> Iterator[tuple[str, str, RouteHandler]]:
        """``(method, pattern, handler)`` of every route served."""
        item = f"{self.collection}/{{{self.item}}}"
        if self.list_all is not None:
            if not self.collection.startswith(RG_PROVIDERS):
                raise ValueError(f"{self.collection} is not in a resource group: no list_all")
            yield ("GET", f"{SUBSCRIPTION}/providers/{self.collection[len(RG_PROVIDERS):]}",
                   self.list_all)
        if self.list is not None:
            yield "GET", self.collection, self.list
        for method, handler in (("PUT", self.put), ("PATCH", self.patch), ("GET", self.get),
                                ("DELETE", self.delete)):
            if handler is not None:
                yield method, item, handler
        for method, below, handler in self.actions:
            yield method, f"{item}/{below}", handler


class AccessCheck(Protocol):
    """Azure RBAC for control-plane actions, as :mod:`emulators.authorization` answers it."""

    def enforced(self, principal_id: str, scope: str) -> bool:
        """Whether calls by ``principal_id`` on ``scope`` are checked at all."""
        ...

    def allows_action(self, principal_id: str, scope: str, action: str) -> bool:
        ...


def _forbidden(code: str, message: str) -> web.HTTPForbidden:
    return web.HTTPForbidden(
        text=json.dumps({"error": {"code": code, "message": message}}),
        content_type="application/json",
    )


@dataclass
class ArmRequest:
    http: web.Request
    params: dict[str, str]
    api_version: str
    claims: dict[str, Any]

    @property
    def method(self) -> str:
        return self.http.method

    async def json_body(self) -> Any:
        """The JSON body, or raise an HTTP 400 in ARM's format."""
        try:
            return json.loads(await self.http.text())
        except ValueError as exc:
            raise _bad_request("InvalidRequestContent", f"Bad JSON: {exc}") from exc

    async def resource_body(self) -> dict[str, Any]:
        """A tracked resource's PUT body: a JSON object with a ``location``, as ARM
        requires before any provider sees it; otherwise an HTTP 400 in ARM's format."""
        body = await self.json_body()
        if not isinstance(body, dict):
            raise _bad_request(
                "InvalidRequestContent", "The request content must be a JSON object."
            )
        location = body.get("location")
        if not isinstance(location, str) or not location:
            raise _bad_request(
                "LocationRequired", "The location property is required for this definition."
            )
        return body


def _bad_request(code: str, message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=json.dumps({"error": {"code": code, "message": message}}),
        content_type="application/json",
    )


@dataclass
class Arm:
    platform: Platform
    base_url: str = ""  # set once the listener is bound: https://127.0.0.1:PORT
    page_size: int = 100
    resource_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    access: AccessCheck | None = None
    _routes: list[tuple[str, re.Pattern[str], RouteHandler]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.platform.reset_hooks.append(self._reset)
        self.resources(ResourceRoutes(SUBSCRIPTION + "/resourceGroups", "resourceGroup",
                                      list=self._list_rgs, get=self._get_rg, put=self._put_rg))
        for style in STYLES:
            self.resources(ResourceRoutes(
                SUBSCRIPTION + "/providers/{namespace}/locations/{location}/" + style.collection,
                "op", get=self._get_operation))

    def _reset(self) -> None:
        self.resource_groups.clear()
        self.operations.clear()

    def _route(self, method: str, pattern: str, handler: RouteHandler) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(pattern))
        self._routes.append((method, re.compile(f"^{regex}/?$", re.IGNORECASE), handler))

    def resources(
        self, routes: ResourceRoutes, wrap: Callable[[RouteHandler], RouteHandler] | None = None
    ) -> None:
        """Serve one resource type; ``wrap`` (if given) wraps each of its handlers, as a
        provider that adds its own headers or error rendering to every answer does."""
        for method, pattern, handler in routes.routes():
            self._route(method, pattern, wrap(handler) if wrap is not None else handler)

    def build(self) -> web.Application:
        app = self.platform.make_app("arm")
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    # -- helpers for providers ---------------------------------------------------------

    def url(self, path: str, api_version: str, **query: str) -> str:
        extra = "".join(f"&{k}={quote(v)}" for k, v in query.items())
        return f"{self.base_url}{path}?api-version={api_version}{extra}"

    def require_rg(self, req: ArmRequest) -> None:
        if req.params["resourceGroup"].lower() not in self.resource_groups:
            raise web.HTTPNotFound(
                text=json.dumps(
                    {
                        "error": {
                            "code": "ResourceGroupNotFound",
                            "message": f"Resource group '{req.params['resourceGroup']}' could not "
                            "be found.",
                        }
                    }
                ),
                content_type="application/json",
            )

    def check_subscription(self, req: ArmRequest) -> None:
        if req.params["subscription"].lower() != self.platform.subscription_id.lower():
            raise web.HTTPNotFound(
                text=json.dumps(
                    {
                        "error": {
                            "code": "SubscriptionNotFound",
                            "message": f"The subscription '{req.params['subscription']}' could not "
                            "be found.",
                        }
                    }
                ),
                content_type="application/json",
            )

    def authorize(
        self, req: ArmRequest, action: str, scope: str,
        linked: tuple[tuple[str, str], ...] = (), *, always: bool = False,
    ) -> bool:
        """RBAC for one control-plane call: ``action`` on ``scope``, then each (linked
        action, linked scope) the request body references. Raises ARM's 403; returns whether
        the call was checked (False when the access check does not enforce this scope and
        ``always`` is not set)."""
        principal = str(req.claims.get("oid") or "")
        access = self.access
        if access is None or not (always or access.enforced(principal, scope)):
            return False
        client = f"The client '{principal}' with object id '{principal}'"
        if not access.allows_action(principal, scope, action):
            raise _forbidden(
                "AuthorizationFailed",
                f"{client} does not have authorization to perform action '{action}' over "
                f"scope '{scope}' or the scope is invalid. If access was recently granted, "
                "please refresh your credentials.")
        missing = [(a, s) for a, s in linked if not access.allows_action(principal, s, a)]
        if missing:
            raise _forbidden(
                "LinkedAuthorizationFailed",
                f"{client} has permission to perform action '{action}' on scope '{scope}'; "
                "however, it does not have permission to perform action(s) "
                f"'{', '.join(dict.fromkeys(a for a, _ in missing))}' on the linked "
                f"scope(s) '{', '.join(dict.fromkeys(s for _, s in missing))}' or the linked "
                "scope(s) are invalid.")
        return True

    def start_operation(
        self, namespace: str, location: str, style: OperationStyle = GENERIC
    ) -> Operation:
        now = self.platform.now()
        op = Operation(
            id=str(uuid.uuid4()),
            location=location.replace(" ", "").lower(),
            namespace=namespace,
            start_time=operation_time(now) if style.dotnet_times else now.isoformat(),
            style=style,
        )
        self.operations[op.id] = op
        return op

    def async_headers(
        self, op: Operation, api_version: str, *, monitor: bool = False, write: bool = False
    ) -> dict[str, str]:
        """``Azure-AsyncOperation``; for an action also ``Location`` with ``monitor=true``
        (written as Azure does, ``monitor`` first); for the write that started the operation
        the style's timeout; and the style's ``Retry-After`` hint."""
        path = op.path(self.platform.subscription_id)
        headers = {"Azure-AsyncOperation": self.url(path, api_version)}
        if monitor:
            headers["Location"] = (
                f"{self.base_url}{path}?monitor=true&api-version={quote(api_version)}")
        if write and op.style.timeout:
            headers["x-ms-async-operation-timeout"] = op.style.timeout
        if op.style.retry_hint:
            headers["Retry-After"] = "0"
        return headers

    def page(self, req: ArmRequest, items: list[dict[str, Any]]) -> web.Response:
        """One page of ``items`` with an absolute ``nextLink`` (``$skiptoken`` = offset).

        The request's other query parameters (``$expand``, ``$top``) ride along in the
        nextLink: the SDK follows it verbatim, so a dropped ``$expand`` would change what
        the second page contains.
        """
        start = int(req.http.query.get("$skiptoken", "0") or 0)
        size = int(req.http.query.get("$top", self.page_size) or self.page_size)
        body: dict[str, Any] = {"value": items[start : start + size]}
        if start + size < len(items):
            keep = {
                k: v for k, v in req.http.query.items() if k not in ("api-version", "$skiptoken")
            }
            body["nextLink"] = self.url(
                req.http.path, req.api_version, **keep, **{"$skiptoken": str(start + size)}
            )
        return json_response(body)

    # -- the front door ----------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            claims = self.platform.bearer_claims(request, ARM_AUDIENCES)
        except InvalidToken as exc:
            return error_response(
                401,
                "InvalidAuthenticationToken",
                f"The access token is invalid: {exc}.",
                {
                    "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/'
                    f'{self.platform.tenant_id}", error="invalid_token"'
                },
            )
        api_version = request.query.get("api-version", "")
        if not api_version:
            return error_response(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        allowed = False
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if match is None:
                continue
            allowed = True
            if method == request.method:
                return await handler(ArmRequest(request, match.groupdict(), api_version, claims))
        if allowed:
            return error_response(
                405, "MethodNotAllowed", f"The requested method {request.method} is not allowed."
            )
        return error_response(
            404, "InvalidResourceType", f"No route for '{request.path}' in this emulator."
        )

    async def _put_rg(self, req: ArmRequest) -> web.Response:
        self.check_subscription(req)
        body = await req.resource_body()
        name = req.params["resourceGroup"]
        created = name.lower() not in self.resource_groups
        rg = {
            "id": f"/subscriptions/{self.platform.subscription_id}/resourceGroups/{name}",
            "name": name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": body["location"],
            "tags": body.get("tags") or {},
            "properties": {"provisioningState": "Succeeded"},
        }
        self.resource_groups[name.lower()] = rg
        return json_response(rg, 201 if created else 200)

    async def _get_rg(self, req: ArmRequest) -> web.Response:
        self.check_subscription(req)
        self.require_rg(req)
        return json_response(self.resource_groups[req.params["resourceGroup"].lower()])

    async def _list_rgs(self, req: ArmRequest) -> web.Response:
        self.check_subscription(req)
        return self.page(req, list(self.resource_groups.values()))

    async def _get_operation(self, req: ArmRequest) -> web.Response:
        op = self.operations.get(req.params["op"])
        collection = req.http.path.rstrip("/").rsplit("/", 2)[-2]
        if op is None or collection.lower() != op.style.collection.lower():
            return error_response(
                404, "OperationNotFound", f"The operation '{req.params['op']}' was not found."
            )
        if op.checked:
            path = op.path(self.platform.subscription_id)
            self.authorize(req, f"{op.namespace}/locations/{op.style.collection}/read", path,
                           always=True)
        hints = {"Retry-After": "0"} if op.style.retry_hint else None
        if req.http.query.get("monitor", "").lower() == "true":
            if op.status != "InProgress":
                return web.Response(status=200, headers=hints)
            location = self.async_headers(op, req.api_version, monitor=True)["Location"]
            return web.Response(status=202, headers={**(hints or {}), "Location": location})
        return json_response(op.body(), headers=hints)
