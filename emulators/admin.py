"""Test-only admin API (plain http JSON): faults, the request log, the clock, reset.

It exists so tests and benchmarks can make the platform misbehave on cue and count what
the product sent. It is not part of any Azure contract.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from emulators.core import Fault, Platform, json_response


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"body is not JSON: {exc}") from exc


def build(platform: Platform, routes: list[tuple[str, str, Any]]) -> web.Application:
    """``routes`` lets other emulators add their own admin endpoints."""
    app = web.Application()

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
        return json_response({"reset": True})

    app.router.add_post("/faults", add_fault)
    app.router.add_delete("/faults", clear_faults)
    app.router.add_get("/requests", list_requests)
    app.router.add_get("/clock", clock)
    app.router.add_post("/clock", clock)
    app.router.add_post("/reset", reset)
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app
