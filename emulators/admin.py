"""Test-only admin API (plain http JSON): faults, the request log, the clock, reset, and
the storage gates (take Azurite's blob or queue service away and give it back).

It exists so tests and benchmarks can make the platform misbehave on cue and count what
the product sent. It is not part of any Azure contract. The storage gates
(:mod:`emulators.storagegate`) start and stop with this app, when the stack configured
them.
"""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from emulators.core import Fault, Platform, json_response
from emulators.storagegate import ENV, SERVICES, StorageGate


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from exc


def build(platform: Platform, routes: list[tuple[str, str, Any]]) -> web.Application:
    """``routes`` lets other emulators add their own admin endpoints."""
    app = web.Application()
    gates = StorageGate.from_env(os.environ)

    async def add_fault(request: web.Request) -> web.Response:
        try:
            fault = Fault.from_json(await _json(request))
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        platform.faults.append(fault)
        return json_response({"faults": len(platform.faults)}, 201)

    async def clear_faults(request: web.Request) -> web.Response:
        platform.faults.clear()
        return json_response({"faults": 0})

    async def list_requests(request: web.Request) -> web.Response:
        since = request.query.get("since", "0")
        if not since.isdigit():
            return json_response({"error": "since must be an integer >= 0"}, 400)
        return json_response(platform.requests[int(since):])

    async def clock(request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await _json(request)
            seconds = body.get("advance_seconds") if isinstance(body, dict) else None
            if not isinstance(seconds, (int, float)) or seconds < 0:
                return json_response({"error": "advance_seconds must be a number >= 0"}, 400)
            await platform.advance_clock(float(seconds))
        return json_response({"now": platform.now().isoformat(), "offset": platform.clock_offset})

    async def reset(request: web.Request) -> web.Response:
        platform.reset()
        for gate in gates.values():
            await gate.open()
        return json_response({"reset": True})

    async def storage(request: web.Request) -> web.Response:
        """``GET``: the gates' state; ``POST {"available": bool[, "service": name]}``: open or
        close one service's gate, or every gate (the whole account) without ``service``."""
        if not gates:
            return json_response({"error": f"this stack has no storage gate ({ENV} unset)"}, 404)
        if request.method == "POST":
            body = await _json(request)
            available = body.get("available") if isinstance(body, dict) else None
            if not isinstance(available, bool):
                return json_response({"error": "available must be true or false"}, 400)
            service = body.get("service")
            if service is not None and service not in gates:
                return json_response(
                    {"error": f"service must be one of {sorted(gates)} (of {SERVICES})"}, 400
                )
            for name, gate in gates.items():
                if service in (None, name):
                    await (gate.open() if available else gate.close())
        return json_response({
            "available": all(gate.available for gate in gates.values()),
            "connections": sum(gate.connections for gate in gates.values()),
            "services": {
                name: {"available": gate.available, "connections": gate.connections}
                for name, gate in gates.items()
            },
        })

    async def open_gate(app: web.Application) -> None:
        for gate in gates.values():
            await gate.open()

    async def shut_gate(app: web.Application) -> None:
        for gate in gates.values():
            await gate.shutdown()

    app.router.add_post("/faults", add_fault)
    app.router.add_delete("/faults", clear_faults)
    app.router.add_get("/requests", list_requests)
    app.router.add_get("/clock", clock)
    app.router.add_post("/clock", clock)
    app.router.add_post("/reset", reset)
    app.router.add_get("/storage", storage)
    app.router.add_post("/storage", storage)
    app.on_startup.append(open_gate)
    app.on_cleanup.append(shut_gate)
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app
