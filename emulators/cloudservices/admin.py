"""The admin API of Cloud Services (tests only; not an Azure contract): the services'
state, operation and settle lengths, and failures or instance status codes armed for the
next operation.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from emulators.cloudservices.model import AdminRoute, Failure
from emulators.cloudservices.state import State
from emulators.cloudservices.views import Views
from emulators.core import json_response


def admin_routes(state: State, views: Views) -> list[AdminRoute]:
    """``/cloudservices`` state, operation length, and armed operation failures."""

    async def show(request: web.Request) -> web.Response:
        return json_response({
            "update_seconds": state.update_seconds,
            "settle_seconds": state.settle_seconds,
            "services": [
                {"resourceGroup": s.resource_group, "name": s.name,
                 "provisioningState": s.state, "modelVersion": s.version,
                 "targetVersion": s.target, "nextUpdateDomain": s.next_update_domain(),
                 "package": {"url": s.package.url, "size": s.package.size,
                             "sha256": s.package.sha256},
                 "poweredOff": s.powered_off,
                 "instances": {i.name: {"updateDomain": s.update_domain_of(i),
                                        "appliedVersion": i.applied,
                                        "statuses": list(views.instance_codes(s, i))}
                               for i in s.instances}}
                for s in state.services.values()
            ],
        })

    async def settings(request: web.Request) -> web.Response:
        """``update_seconds`` (absent or null: the stack's default) and
        ``settle_seconds`` (if given; null: 0)."""
        body = await _admin_json(request)
        chosen: dict[str, float] = {}
        for name, default in (("update_seconds", state.wiring.default_update_seconds),
                              ("settle_seconds", 0.0)):
            if name == "settle_seconds" and name not in body:
                continue
            seconds = body.get(name)
            if seconds is None:
                chosen[name] = default
            elif isinstance(seconds, (int, float)) and not isinstance(seconds, bool) \
                    and seconds >= 0:
                chosen[name] = float(seconds)
            else:
                return json_response({"error": f"{name} must be a number >= 0 or null"},
                                     400)
        state.update_seconds = chosen["update_seconds"]
        state.settle_seconds = chosen.get("settle_seconds", state.settle_seconds)
        return json_response({"update_seconds": state.update_seconds,
                              "settle_seconds": state.settle_seconds})

    async def fail_next(request: web.Request) -> web.Response:
        body = await _admin_json(request)
        fields = [body.get(k) for k in ("resourceGroup", "name", "code", "message")]
        if not all(isinstance(v, str) and v for v in fields):
            return json_response(
                {"error": "resourceGroup, name, code and message are required strings"}, 400)
        group, name, code, message = (str(v) for v in fields)
        state.armed_failures[(group.lower(), name.lower())] = Failure(code, message)
        return json_response({"armed": len(state.armed_failures)}, 201)

    async def instances_next(request: web.Request) -> web.Response:
        body = await _admin_json(request)
        fields = [body.get(k) for k in ("resourceGroup", "name", "code")]
        if not all(isinstance(v, str) and v for v in fields):
            return json_response(
                {"error": "resourceGroup, name and code are required strings"}, 400)
        group, name, code = (str(v) for v in fields)
        if not code.lower().startswith(("provisioningstate/", "rolestate/")):
            return json_response(
                {"error": "code must be a ProvisioningState/... or RoleState/... code"}, 400)
        state.armed_states[(group.lower(), name.lower())] = code
        return json_response({"armed": len(state.armed_states)}, 201)

    return [
        ("GET", "/cloudservices", show),
        ("POST", "/cloudservices/settings", settings),
        ("POST", "/cloudservices/fail-next", fail_next),
        ("POST", "/cloudservices/instances-next", instances_next),
    ]


async def _admin_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body

