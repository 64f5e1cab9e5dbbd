"""What every emulator shares: the emulated clock, the request log, fault injection,
bearer-token checks and the listeners.

Theory of operation: one asyncio process hosts all emulators (Azurite runs beside it,
behind the storage gate of :mod:`emulators.storagegate`, which is how storage fails).
Each emulator is an aiohttp application bound to its own loopback port and wrapped by
``Platform.middleware(service)``, which (1) applies a matching injected fault (delay
and/or an error status with ``Retry-After``) before the handler runs, or, for an
``apply`` fault, lets the handler act first and then throws its answer away: after the
delay the client gets the error status instead, or (``drop``) its connection is closed
with no answer at all, as when Azure answers a PUT 500 after ~44 s although the update
runs, or an answer is lost on the way; and (2) appends ``{service, method, path, status,
time}`` to the request log after it ran, so tests and benchmarks count calls exactly as
the wire saw them. Emulators keep their state in
memory, register a reset hook with the platform, and read time only from
``Platform.now()`` so ``POST /clock`` can move certificate lifetimes forward.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from emulators.tokens import MissingToken, TokenAuthority

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The emulators wrapped by ``Platform.middleware``. The Functions host is a separate
# process without it, so a fault for it could never fire: it is not listed.
SERVICES = ("arm", "keyvault", "identity", "eventgrid")


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=json.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """The ``{"error": {"code", "message"}}`` envelope ARM and Key Vault both use."""
    return json_response({"error": {"code": code, "message": message, **extra}}, status, headers)


@dataclass
class Fault:
    service: str
    method: str | None
    path: re.Pattern[str]
    status: int | None
    retry_after: float | None
    delay_ms: int
    remaining: int
    code: str | None = None
    message: str | None = None
    agent: str | None = None  # only requests whose User-Agent contains this
    apply: bool = False  # the handler acts first; its answer is replaced by the fault's
    drop: bool = False  # no answer: the connection is closed (after the handler if ``apply``)

    @classmethod
    def from_json(cls, body: Any) -> Fault:
        if not isinstance(body, dict):
            raise ValueError("fault must be a JSON object")
        service = body.get("service")
        if service not in SERVICES:
            raise ValueError(
                f"service must be one of {SERVICES} (storage: POST /storage takes it away)"
            )
        status = body.get("status")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError("status must be an integer 400-599")
        delay = body.get("delay_ms", 0)
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise ValueError("delay_ms must be an integer >= 0")
        apply, drop = body.get("apply", False), body.get("drop", False)
        if not isinstance(apply, bool) or not isinstance(drop, bool):
            raise ValueError("apply and drop must be true or false")
        if drop and status is not None:
            raise ValueError("a fault either answers a status or drops the connection")
        if apply and status is None and not drop and not delay:
            raise ValueError(
                "an apply fault needs a status, drop or delay_ms: what becomes of the answer"
            )
        if status is None and not delay and not drop:
            raise ValueError("a fault needs a status, a delay_ms, drop, or a combination")
        retry_after = body.get("retry_after")
        if retry_after is not None and (
            isinstance(retry_after, bool)
            or not isinstance(retry_after, (int, float))
            or retry_after < 0
        ):
            raise ValueError("retry_after must be a number >= 0")
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        method = body.get("method")
        if method is not None and not isinstance(method, str):
            raise ValueError("method must be a string such as \"GET\"")
        try:
            path = re.compile(str(body.get("path", "")))
        except re.error as exc:
            raise ValueError(f"path is not a valid regex: {exc}") from exc
        return cls(
            service=service,
            method=method.upper() if method else None,
            path=path,
            status=status,
            retry_after=retry_after,
            delay_ms=delay,
            remaining=count,
            code=body.get("code"),
            message=body.get("message"),
            agent=str(body["agent"]) if body.get("agent") else None,
            apply=apply,
            drop=drop,
        )

    def matches(self, service: str, request: web.Request) -> bool:
        return (
            self.remaining > 0
            and self.service == service
            and (self.method is None or self.method == request.method)
            and self.path.search(request.path) is not None
            and (self.agent is None or self.agent in request.headers.get("User-Agent", ""))
        )


_DEFAULT_FAULT_BODY = {
    408: ("RequestTimeout", "The request timed out."),
    409: (
        "Conflict",
        "The request failed due to conflict with a concurrent request. To resolve it, please "
        "refer to https://aka.ms/activitylog to get more details on the conflicting requests.",
    ),
    429: (
        "TooManyRequests",
        "The server rejected the request because too many requests have been received for "
        "this subscription.",
    ),
    500: ("InternalServerError", "An internal server error occurred."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
}


async def _handle(handler: Handler, request: web.Request) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return exc


@dataclass
class Platform:
    """State and services shared by every emulator in the process."""

    tokens: TokenAuthority
    subscription_id: str
    tls: ssl.SSLContext | None = None
    clock_offset: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    reset_hooks: list[Callable[[], None]] = field(default_factory=list)
    clock_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    runners: list[web.AppRunner] = field(default_factory=list)

    @property
    def tenant_id(self) -> str:
        return self.tokens.tenant_id

    def now(self) -> dt.datetime:
        """Emulated UTC time: wall clock plus whatever ``POST /clock`` added."""
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.clock_offset)

    async def advance_clock(self, seconds: float) -> None:
        self.clock_offset += seconds
        for hook in self.clock_hooks:
            await hook()

    def reset(self) -> None:
        self.clock_offset = 0.0
        self.requests.clear()
        self.faults.clear()
        for hook in self.reset_hooks:
            hook()

    def bearer_claims(self, request: web.Request, audiences: tuple[str, ...]) -> dict[str, Any]:
        """Validate ``Authorization: Bearer``; raise the InvalidToken saying what is wrong."""
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer "):
            raise MissingToken
        return self.tokens.validate(header[7:].strip(), audiences)

    def middleware(self, service: str) -> Any:
        @web.middleware
        async def log_and_inject(request: web.Request, handler: Handler) -> web.StreamResponse:
            fault = next((f for f in self.faults if f.matches(service, request)), None)
            response: web.StreamResponse
            applied: int | None = None  # the status the handler answered, if it ran
            handled: web.StreamResponse | None = None  # its answer, kept for an apply fault
            if fault is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.faults.remove(fault)
                if fault.apply:
                    handled = await _handle(handler, request)
                    applied = handled.status
                if fault.delay_ms:
                    # The body is taken first, as a front door does: a client that hangs up
                    # while the request is held does not take back a request it sent.
                    await request.read()
                    await asyncio.sleep(fault.delay_ms / 1000)
            if fault is not None and fault.status is not None:
                code, message = _DEFAULT_FAULT_BODY.get(fault.status, ("Fault", "Injected fault."))
                headers = {"x-ms-request-id": str(uuid.uuid4())}
                if fault.retry_after is not None:
                    headers["Retry-After"] = str(fault.retry_after)
                response = error_response(
                    fault.status, fault.code or code, fault.message or message, headers
                )
            elif fault is not None and fault.drop:
                response = web.Response(status=499)  # logged only: nothing is sent
            elif handled is not None:
                response = handled  # it acted at once; its own answer comes after the delay
            else:
                response = await _handle(handler, request)
            self.requests.append(
                {
                    "service": service,
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string,
                    "status": response.status,
                    "time": dt.datetime.now(dt.UTC).isoformat(),
                    "injected": fault is not None and (fault.status is not None or fault.drop),
                    "agent": request.headers.get("User-Agent", ""),
                    **({"applied": applied} if applied is not None else {}),
                    **({"dropped": True} if fault is not None and fault.drop else {}),
                }
            )
            if fault is not None and fault.drop and request.transport is not None:
                request.transport.abort()  # the client sees the connection end, no answer
                raise asyncio.CancelledError
            return response

        return log_and_inject

    def make_app(self, service: str) -> web.Application:
        return web.Application(middlewares=[self.middleware(service)], client_max_size=8 << 20)

    async def serve(self, app: web.Application, *, tls: bool, port: int = 0) -> int:
        """Bind ``app`` on 127.0.0.1 (port 0 = any free one) and return the port."""
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=self.tls if tls else None)
        await site.start()
        self.runners.append(runner)
        return int(runner.addresses[-1][1])

    async def close(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
