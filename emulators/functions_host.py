"""A small local Azure Functions host for a Python v2-model app (``function_app.py``).

Core Tools cannot be installed here, so this process stands in for the Functions host *and*
the Python worker, and serves the same HTTP surface the real host serves in Azure:

* ``/{routePrefix}/{route}`` for HTTP triggers (``routePrefix`` from ``host.json``
  ``extensions.http.routePrefix``, default ``api``);
* ``/runtime/webhooks/eventgrid?functionName=NAME&code=KEY`` for Event Grid triggers,
  following the Functions Event Grid extension (``HttpRequestProcessor`` and
  ``EventGridExtensionConfigProvider`` in azure-sdk-for-net);
* ``POST /admin/functions/NAME`` (run a timer function now) and ``GET /admin/host/status``;
* queue triggers, polling Azure Queue storage as the Storage Queues extension does, and
  queue output bindings (:mod:`emulators.queue_trigger` holds their theory of operation and
  the host.json ``extensions.queues`` settings honoured).

Theory of operation. At start-up the host puts the app folder first on ``sys.path``, makes it
the working directory, imports ``function_app`` and takes the one module-level
``FunctionRegister`` (``func.FunctionApp``), as the worker does. It calls
``app.get_functions()`` exactly once (a second call raises) and indexes each function by
name from its raw bindings, the JSON the worker sends the host. ``%NAME%`` expressions in
a timer's ``schedule`` and a queue's ``queueName`` are replaced by app settings, as the
WebJobs SDK's name resolver does; a function whose expression names a missing setting is
"in error", as in Azure: logged (``'%NAME%' does not resolve to a value.``) and not
served, while the other functions are. Loading fails loudly on what this host cannot
honour: a trigger other than HTTP, Event Grid, timer or queue, any
binding besides the trigger, the HTTP ``$return`` and queue outputs, a queue connection
without identity-based settings, or a Python parameter that no binding fills.

Each invocation gets an id, runs ``async def`` functions on the event loop and plain ones
in the default thread pool (as the worker does), and is logged as ``Executing`` /
``Executed`` with outcome and duration. Trigger payloads become ``func`` objects through
azure-functions' own converters, so the app sees exactly what the worker gives it (e.g.
any event with ``specversion`` arrives as ``func.CloudEvent``). HTTP requests reach the app as
they do out of process: empty query-string values are dropped (``?a=&b=1`` gives only
``b``), and a body is passed only when ``Content-Length`` is above zero (a chunked body
arrives empty). Python ``logging`` goes to stdout with timestamps and the current invocation
id; the worker's own lines (``Function name: ..., Function Type: ...`` per invocation) use
the worker's logger, ``azure.functions``, so an app that silences the ``azure`` tree hides
them as it would in Azure. Keys are read from the environment
and removed from it before the app is imported (the real worker never sees them); request
headers and query strings are never logged, because they carry keys.

Known differences from the real host: timers never fire on their schedule (only through
the admin API, which runs nothing but timers here; ``runOnStartup`` is ignored),
``host.json`` settings other than the route prefix and ``extensions.queues`` are ignored
(no ``functionTimeout``, no log levels), there is one function key for every function, no
CORS, proxies or HTTP streaming, and the Python ``context`` parameter and bindings other
than queue outputs are refused. Several instances may serve one app (``emulators.stack``
starts N): each polls the queues on its own, as scaled-out instances do. App settings named
``AzureFunctionsJobHost__path__to__setting`` override host.json values, as on the real host
(the tests use this to shorten ``extensions.queues`` retry timings).

Run: ``python -m emulators.functions_host --app-dir DIR --port 0 --ready FILE`` with
``FUNCTIONS_KEY`` (function key), ``FUNCTIONS_MASTER_KEY`` (master key) and
``EVENTGRID_WEBHOOK_KEY`` (the ``eventgrid_extension`` system key) set; ``FILE`` receives
``{"pid", "port"}`` once the listener accepts connections. App settings are simply the
process environment, which the functions inherit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import hmac
import importlib
import inspect
import json
import logging
import os
import re
import signal
import sys
import time
import typing
import uuid
from collections.abc import Callable, Mapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import azure.functions as func
from aiohttp import web
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.http import HttpRequestConverter, HttpResponseConverter
from azure.functions.queue import QueueMessageInConverter, QueueMessageOutConverter
from azure.functions.timer import TimerRequestConverter
from azure.storage.queue import QueueMessage
from multidict import CIMultiDict, MultiDict

from emulators.queue_trigger import (
    POISON_SUFFIX,
    QueueClients,
    QueueConfigError,
    QueueListener,
    QueuesOptions,
    add_message,
    lease_seconds,
    output_messages,
    trigger_metadata,
)

HTTP, EVENT_GRID, TIMER, QUEUE = "httpTrigger", "eventGridTrigger", "timerTrigger", "queueTrigger"
# The worker's check of each trigger parameter's annotation.
_ANNOTATION_CHECKS: dict[str, Callable[[type], bool]] = {
    HTTP: HttpRequestConverter.check_input_type_annotation,
    EVENT_GRID: EventGridEventInConverter.check_input_type_annotation,
    TIMER: TimerRequestConverter.check_input_type_annotation,
    QUEUE: QueueMessageInConverter.check_input_type_annotation,
}
_QUEUE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]")  # Azure's queue names
_HTTP_RETURN = [{"direction": "OUT", "type": "http", "name": "$return"}]
KEY_VARIABLES = ("FUNCTIONS_KEY", "FUNCTIONS_MASTER_KEY", "EVENTGRID_WEBHOOK_KEY")
# Origins the Event Grid extension echoes in Webhook-Allowed-Origin; others get the first.
_EVENTGRID_ORIGINS = (
    "eventgrid.azure.net",
    "eventgrid.azure.us",
    "eventgrid.azure.eaglex.ic.gov",
    "eventgrid.azure.microsoft.scloud",
    "eventgrid.azure.cn",
)
# Timer info as the host sends it to the worker for an admin-API run.
_TIMER_INFO = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": False}
_ADMIN_REASON = "This function was programmatically called via the host APIs."
_SHUTDOWN_GRACE_S = 5.0

log = logging.getLogger("functions_host")
# The Python worker's own logger: the V2 library worker logs under "azure.functions", so an
# app that silences the whole "azure" tree also silences the worker's lines.
worker_log = logging.getLogger("azure.functions")
_invocation: contextvars.ContextVar[str] = contextvars.ContextVar("invocation", default="-")


class AppLoadError(Exception):
    """The app cannot be served the way the real host would serve it."""


class FunctionInError(Exception):
    """One function the real host would not index (it logs it and serves the others)."""


# Binding properties the host resolves ``%NAME%`` app-setting expressions in (the
# extensions' [AutoResolve] properties this host honours).
_RESOLVED_PROPERTIES = ("schedule", "queueName")


def resolve_app_settings(text: str, settings: Mapping[str, str]) -> str:
    """``text`` with each ``%NAME%`` replaced by the app setting NAME, with the messages of
    the WebJobs SDK's ``NameResolverExtensions.ResolveWholeString``; FunctionInError when a
    setting is missing or a ``%`` is not closed."""
    resolved, at = [], 0
    while (start := text.find("%", at)) >= 0:
        end = text.find("%", start + 1)
        if end < 0:
            raise FunctionInError(f"The '%' at position {start} does not have a closing '%'")
        name = text[start + 1 : end]
        value = settings.get(name)
        if value is None:
            raise FunctionInError(f"'%{name}%' does not resolve to a value.")
        resolved += [text[at:start], value]
        at = end + 1
    return "".join([*resolved, text[at:]])


# --- Route templates ------------------------------------------------------------------


def _is_int(value: str) -> bool:
    return re.fullmatch(r"-?\d+", value) is not None and -(2**31) <= int(value) < 2**31


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": _is_int,
    "guid": _is_guid,
    "bool": lambda value: value.lower() in ("true", "false"),
    "alpha": lambda value: re.fullmatch(r"[A-Za-z]+", value) is not None,
}
_PARAMETER = re.compile(r"\{(\*?)([A-Za-z_]\w*)(?::([a-z]+))?(\??)\}")


@dataclasses.dataclass(frozen=True)
class _Segment:
    literal: str | None  # lower-cased; None for a parameter
    name: str = ""
    constraint: str | None = None
    optional: bool = False
    catch_all: bool = False

    @property
    def rank(self) -> int:
        """ASP.NET route precedence: literal, constrained, plain, optional, catch-all."""
        if self.literal is not None:
            return 0
        if self.catch_all:
            return 4
        return 3 if self.optional else 1 if self.constraint else 2


class RouteTemplate:
    """An ASP.NET-style route template: ``items/{id}``, ``{id:int}``, ``{id?}``, ``{*rest}``.

    Literal segments match case-insensitively; parameter values are percent-decoded.
    Complex segments (``{name}.{ext}``) and other constraints are refused.
    """

    def __init__(self, template: str) -> None:
        self.template = template.strip("/")
        self.segments: list[_Segment] = []
        parts = self.template.split("/") if self.template else []
        for index, part in enumerate(parts):
            match = _PARAMETER.fullmatch(part)
            if match is None:
                if "{" in part or "}" in part or not part:
                    raise AppLoadError(f"route '{template}': unsupported segment '{part}'")
                self.segments.append(_Segment(literal=part.lower()))
                continue
            star, name, constraint, optional = match.groups()
            if constraint is not None and constraint not in _CONSTRAINTS:
                raise AppLoadError(f"route '{template}': unsupported constraint '{constraint}'")
            if star and index != len(parts) - 1:
                raise AppLoadError(f"route '{template}': a catch-all must be the last segment")
            self.segments.append(
                _Segment(None, name, constraint, optional=bool(optional), catch_all=bool(star))
            )
        trailing = [s.optional or s.catch_all for s in self.segments]
        if trailing != sorted(trailing):
            raise AppLoadError(f"route '{template}': optional parameters must come last")

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(segment.rank for segment in self.segments)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """Route values for the decoded path segments, or None when they do not match."""
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.catch_all:
                values[segment.name] = "/".join(parts[index:])
                return values
            if index >= len(parts):
                return values if segment.optional else None
            part = parts[index]
            if segment.literal is not None:
                if part.lower() != segment.literal:
                    return None
                continue
            if not part or (segment.constraint and not _CONSTRAINTS[segment.constraint](part)):
                return None
            values[segment.name] = part
        return values if len(parts) == len(self.segments) else None


# --- Loading the app --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QueueBinding:
    """A queue trigger or queue output: the parameter (or ``$return``), queue, connection."""

    name: str
    queue_name: str
    connection: str

    @classmethod
    def from_json(cls, function: str, binding: Mapping[str, Any]) -> QueueBinding:
        queue = str(binding.get("queueName") or "")
        if not _QUEUE_NAME.fullmatch(queue):
            raise AppLoadError(f"function '{function}': queue name {queue!r} is not a valid "
                               "Azure queue name (3-63 lower-case letters, digits, single "
                               "hyphens)")
        return cls(str(binding["name"]), queue,
                   str(binding.get("connection") or "AzureWebJobsStorage"))


@dataclasses.dataclass(frozen=True)
class Function:
    name: str
    trigger: str
    arg_name: str
    user_function: Callable[..., Any]
    route: RouteTemplate | None = None
    methods: frozenset[str] | None = None  # None: every method
    auth_level: str = "function"
    queue: QueueBinding | None = None  # the queue trigger's
    schedule: str | None = None  # a timer's, its %SETTING% expressions resolved
    outputs: tuple[QueueBinding, ...] = ()  # queue output bindings (``$return`` possible)


class _Out(func.Out[Any]):
    """The worker's value holder for an output parameter."""

    def __init__(self) -> None:
        self.value: Any = None

    def set(self, val: Any) -> None:
        self.value = val

    def get(self) -> Any:
        return self.value


def _check_outputs(name: str, user: Callable[..., Any], outputs: tuple[QueueBinding, ...]) -> None:
    """Each queue output parameter is ``func.Out[T]`` with a T the queue converter takes."""
    hints = typing.get_type_hints(user)
    for output in outputs:
        annotation = hints.get("return" if output.name == "$return" else output.name)
        if output.name != "$return":
            if typing.get_origin(annotation) is not func.Out:
                raise AppLoadError(f"function '{name}': output '{output.name}' must be "
                                   "annotated func.Out[...]")
            annotation = typing.get_args(annotation)[0]
        if annotation is not None and not QueueMessageOutConverter.check_output_type_annotation(
            annotation
        ):
            raise AppLoadError(
                f"function '{name}': annotation of '{output.name}' does not match binding 'queue'"
            )


def _check_signature(
    name: str, trigger: str, arg_name: str, user: Callable[..., Any],
    outputs: tuple[QueueBinding, ...] = (),
) -> None:
    """Refuse what the worker would refuse at load time, and what this host cannot bind."""
    declared = set(inspect.signature(user).parameters)
    expected = {arg_name} | {o.name for o in outputs if o.name != "$return"}
    if declared != expected:
        raise AppLoadError(
            f"function '{name}': parameters {sorted(declared)} do not match the bindings; "
            f"this host binds only the trigger parameter '{arg_name}' and queue outputs"
        )
    _check_outputs(name, user, outputs)
    hints = typing.get_type_hints(user)
    annotation = hints.get(arg_name)
    if annotation is not None and not (
        isinstance(annotation, type) and _ANNOTATION_CHECKS[trigger](annotation)
    ):
        raise AppLoadError(
            f"function '{name}': annotation of '{arg_name}' does not match binding '{trigger}'"
        )
    returns = hints.get("return")
    if trigger == HTTP and returns is not None and not (
        isinstance(returns, type) and HttpResponseConverter.check_output_type_annotation(returns)
    ):
        raise AppLoadError(f"function '{name}': return annotation does not match binding 'http'")


def _index(fn: Any, settings: Mapping[str, str]) -> Function:
    name = str(fn.get_function_name())
    bindings = [json.loads(raw) for raw in fn.get_raw_bindings()]
    for binding in bindings:
        for key in _RESOLVED_PROPERTIES:
            if isinstance(binding.get(key), str):
                binding[key] = resolve_app_settings(binding[key], settings)
    triggers = [b for b in bindings if str(b["type"]).endswith("Trigger")]
    if len(triggers) != 1 or triggers[0]["type"] not in _ANNOTATION_CHECKS:
        types = [b["type"] for b in bindings]
        raise AppLoadError(f"function '{name}': unsupported trigger in bindings {types}")
    trigger = triggers[0]
    kind, arg_name = str(trigger["type"]), str(trigger["name"])
    others = [b for b in bindings if b is not trigger]
    outputs = tuple(QueueBinding.from_json(name, b) for b in others
                    if b.get("type") == "queue" and str(b.get("direction")).upper() == "OUT")
    rest = [b for b in others if b.get("type") != "queue"]
    if rest != (_HTTP_RETURN if kind == HTTP else []) or (
        kind == HTTP and any(o.name == "$return" for o in outputs)
    ):
        raise AppLoadError(f"function '{name}': bindings other than the trigger, the HTTP "
                           "$return and queue outputs are not supported")
    user = fn.get_user_function()
    _check_signature(name, kind, arg_name, user, outputs)
    if kind == QUEUE:
        return Function(name, kind, arg_name, user, queue=QueueBinding.from_json(name, trigger),
                        outputs=outputs)
    if kind == TIMER:
        return Function(name, kind, arg_name, user, outputs=outputs,
                        schedule=str(trigger.get("schedule")))
    if kind != HTTP:
        return Function(name, kind, arg_name, user, outputs=outputs)
    methods = trigger.get("methods")
    return Function(
        name,
        kind,
        arg_name,
        user,
        route=RouteTemplate(str(trigger.get("route") or name)),
        methods=frozenset(str(m).upper() for m in methods) if methods else None,
        auth_level=str(trigger.get("authLevel", "function")).lower(),
        outputs=outputs,
    )


def load_app(app_dir: Path, settings: Mapping[str, str] | None = None) -> list[Function]:
    """Import ``function_app.py`` from ``app_dir`` (also made the working directory); the
    functions to serve, without those in error (``settings``: the app settings, by default
    the environment)."""
    settings = os.environ if settings is None else settings
    app_dir = app_dir.resolve()
    sys.path.insert(0, str(app_dir))
    os.chdir(app_dir)
    module = importlib.import_module("function_app")
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) != 1:
        raise AppLoadError(f"function_app.py must define one FunctionApp, found {len(apps)}")
    functions = []
    for fn in apps[0].get_functions():
        try:
            functions.append(_index(fn, settings))
        except FunctionInError as exc:  # the real host's words; its other functions run
            log.error("The '%s' function is in error: %s", fn.get_function_name(), exc)
    names = [f.name.lower() for f in functions]
    if len(set(names)) != len(names):
        raise AppLoadError("function names must be unique (case-insensitively)")
    return functions


OVERRIDE_PREFIX = "AzureFunctionsJobHost__"


def read_host_json(app_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """host.json, with the app settings that override its values applied on top, as the
    Functions host does (``AzureFunctionsJobHost__path__to__setting``, the docs' "Override
    host.json values"). An override's value is a string; one made only of digits becomes
    a number, as the host's configuration binder reads it into a numeric option."""
    host_json = app_dir / "host.json"
    settings = json.loads(host_json.read_text()) if host_json.exists() else {}
    if not isinstance(settings, dict):
        raise AppLoadError("host.json must hold a JSON object")
    for name, value in sorted((os.environ if env is None else env).items()):
        if not name.startswith(OVERRIDE_PREFIX):
            continue
        *path, leaf = name.removeprefix(OVERRIDE_PREFIX).split("__")
        node = settings
        for key in path:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise AppLoadError(f"app setting {name}: host.json {key} is not an object")
        node[leaf] = int(value) if value.isdigit() else value
    return settings


def read_route_prefix(app_dir: Path) -> str:
    prefix = read_host_json(app_dir).get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


# --- The host ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Keys:
    function: str
    master: str
    eventgrid: str

    @classmethod
    def pop_from_environment(cls) -> Keys:
        """Take the keys out of ``os.environ`` so the app never sees them."""
        values = [os.environ.pop(name, "") for name in KEY_VARIABLES]
        missing = [name for name, value in zip(KEY_VARIABLES, values, strict=True) if not value]
        if missing:
            raise AppLoadError(f"environment variables not set: {', '.join(missing)}")
        return cls(*values)


def _presented_key(request: web.Request) -> str:
    """The header wins over ``code``, as in the host's key lookup."""
    return request.headers.get("x-functions-key") or request.query.get("code", "")


def _key_matches(presented: str, *accepted: str) -> bool:
    data = presented.encode()
    return bool(presented) and any(hmac.compare_digest(data, key.encode()) for key in accepted)


def _joined(values: Mapping[str, str]) -> dict[str, str]:
    """Repeated headers or query parameters become one comma-joined value."""
    result: dict[str, str] = {}
    for key, value in values.items():
        result[key] = f"{result[key]},{value}" if key in result else value
    return result


def _query_params(query: Mapping[str, str]) -> dict[str, str]:
    """Query parameters as the worker passes them: joined, and without empty values (the
    host drops ``?a=`` before the app sees it)."""
    return _joined(MultiDict((key, value) for key, value in query.items() if value))


def _to_response(returned: Any) -> web.Response:
    """Turn a function's return value into HTTP the way the worker and host do.

    Like the worker, anything but a ``func.HttpResponse`` or a ``str`` (``None`` too) fails
    the invocation.
    """
    try:
        datum = HttpResponseConverter.encode(returned, expected_type=None)
    except NotImplementedError:
        raise TypeError(f"cannot return {type(returned).__name__} from an HTTP function") from None
    if datum.type == "string":
        return web.Response(text=datum.value, content_type="text/plain", charset="utf-8")
    value = datum.value
    headers: CIMultiDict[str] = CIMultiDict((k, v.value) for k, v in value["headers"].items())
    cookie: SimpleCookie
    for cookie in value["cookies"] or []:
        for morsel in cookie.values():
            headers.add("Set-Cookie", morsel.OutputString())
    return web.Response(
        status=int(value["status_code"].value), headers=headers, body=value["body"].value
    )


class FunctionsHost:
    def __init__(
        self, functions: list[Function], keys: Keys, route_prefix: str,
        queues: QueuesOptions | None = None, env: Mapping[str, str] | None = None,
    ) -> None:
        self.functions = {f.name: f for f in functions}
        self.queue_options = queues or QueuesOptions()
        self.queue_clients = QueueClients(os.environ if env is None else env)
        self.lease_s = lease_seconds(self.queue_clients.env)
        self.listeners: list[QueueListener] = []
        self.polling: set[asyncio.Task[None]] = set()
        try:  # connections fail at start-up, as the real host's indexing does
            for fn in functions:
                for binding in (*fn.outputs, *([fn.queue] if fn.queue else [])):
                    self.queue_clients.connection(binding.connection)
        except QueueConfigError as exc:
            raise AppLoadError(str(exc)) from None
        self.keys = keys
        self.route_prefix = route_prefix.lower().split("/") if route_prefix else []
        self.http_functions = sorted(
            (f for f in functions if f.route is not None),
            key=lambda f: f.route.precedence if f.route else (),
        )
        self.started = time.monotonic()
        self.background: set[asyncio.Task[None]] = set()

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._log_request], client_max_size=100 << 20)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    @web.middleware
    async def _log_request(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        started = time.monotonic()
        response: web.StreamResponse = await handler(request)
        elapsed = (time.monotonic() - started) * 1000
        # The path only: query strings and headers carry keys.
        log.info("%s %s -> %d (%.0fms)", request.method, request.path, response.status, elapsed)
        return response

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/").lower()
        if path == "/runtime/webhooks/eventgrid":
            return await self._eventgrid(request)
        if path == "/admin/host/status" and request.method == "GET":
            return self._host_status(request)
        if path.startswith("/admin/functions/") and request.method == "POST":
            return await self._admin_invoke(request, path.removeprefix("/admin/functions/"))
        return await self._http_trigger(request)

    # Invocation --------------------------------------------------------------------

    async def _invoke(
        self,
        fn: Function,
        make_argument: Callable[[], Any],
        reason: str,
        encode: Callable[[Any], Any] = lambda returned: returned,
    ) -> Any:
        """Run one invocation and log it. What the binding, the function or ``encode`` (of
        the return value) raises fails the invocation and is re-raised."""
        invocation_id = str(uuid.uuid4())
        token = _invocation.set(invocation_id)
        log.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", fn.name, reason, invocation_id)
        started = time.monotonic()
        outcome = "Failed"
        is_async = inspect.iscoroutinefunction(fn.user_function)
        try:
            worker_log.info("Function name: %s, Function Type: %s", fn.name,
                            "async" if is_async else "sync")
            holders = {o.name: _Out() for o in fn.outputs if o.name != "$return"}
            kwargs = {fn.arg_name: make_argument(), **holders}
            if is_async:
                returned = await fn.user_function(**kwargs)
            else:
                call = functools.partial(fn.user_function, **kwargs)
                context = contextvars.copy_context()
                returned = await asyncio.get_running_loop().run_in_executor(None, context.run, call)
            result = encode(returned)
            await self._write_outputs(fn, {**{k: h.get() for k, h in holders.items()},
                                           "$return": returned})
            outcome = "Succeeded"
            return result
        except Exception:
            log.exception("Exception while executing function: Functions.%s", fn.name)
            raise
        finally:
            log.info(
                "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)",
                fn.name, outcome, invocation_id, (time.monotonic() - started) * 1000,
            )
            _invocation.reset(token)

    # Queues ------------------------------------------------------------------------

    async def _write_outputs(self, fn: Function, values: Mapping[str, Any]) -> None:
        """Add each queue output's messages once the function has returned (an output
        that was never set adds nothing); a failure here fails the invocation."""
        for output in fn.outputs:
            value = values.get(output.name)
            if value is None:
                continue
            client = self.queue_clients.get(output.connection, output.queue_name)
            for content in output_messages(value, self.queue_options):
                await add_message(client, content)
            self._notify_queue(output.queue_name)

    def _notify_queue(self, queue: str) -> None:
        for listener in self.listeners:
            if listener.name == queue:
                listener.notify()

    def start_listeners(self) -> None:
        """One listener per queue-triggered function, polling until :meth:`drain`."""
        for fn in self.functions.values():
            if fn.queue is None:
                continue
            binding = fn.queue
            poison = binding.queue_name + POISON_SUFFIX
            listener = QueueListener(
                fn.name,
                self.queue_clients.get(binding.connection, binding.queue_name),
                self.queue_clients.get(binding.connection, poison),
                self.queue_options,
                functools.partial(self._queue_invoke, fn),
                functools.partial(self._notify_queue, poison),
                self.lease_s,
            )
            self.listeners.append(listener)
            task = asyncio.create_task(listener.run())
            self.polling.add(task)
            task.add_done_callback(self.polling.discard)

    async def _queue_invoke(self, fn: Function, message: QueueMessage, body: bytes) -> bool:
        try:
            datum = meta.Datum(body.decode(), "string")
        except UnicodeDecodeError:
            datum = meta.Datum(body, "bytes")
        metadata = trigger_metadata(message)
        queue = fn.queue.queue_name if fn.queue else ""
        try:
            await self._invoke(
                fn, lambda: QueueMessageInConverter.decode(datum, trigger_metadata=metadata),
                f"New queue message detected on '{queue}'.",
            )
        except Exception:  # _invoke logged it
            return False
        return True

    # HTTP triggers -----------------------------------------------------------------

    def _find_route(self, request: web.Request) -> tuple[Function, dict[str, str]] | None:
        raw = request.rel_url.raw_path.strip("/")
        parts = [unquote(part) for part in raw.split("/")] if raw else []
        prefix = self.route_prefix
        if [p.lower() for p in parts[: len(prefix)]] != prefix:
            return None
        parts = parts[len(prefix):]
        for fn in self.http_functions:
            values = fn.route.match(parts) if fn.route else None
            if values is not None and (fn.methods is None or request.method in fn.methods):
                return fn, values
        return None

    async def _http_trigger(self, request: web.Request) -> web.StreamResponse:
        found = self._find_route(request)
        if found is None:
            return web.Response(status=404)  # also for a known route with another method
        fn, route_params = found
        if fn.auth_level != "anonymous":
            admin = fn.auth_level == "admin"
            accepted = (self.keys.master,) if admin else (self.keys.function, self.keys.master)
            if not _key_matches(_presented_key(request), *accepted):
                return web.Response(status=401)
        # Out of process, the host hands the worker a body only when Content-Length says
        # there is one: a chunked request body arrives empty.
        body = await request.read() if request.content_length else b""

        def make_request() -> func.HttpRequest:
            return func.HttpRequest(
                method=request.method,
                url=str(request.url),
                headers=_joined(request.headers),
                params=_query_params(request.query),
                route_params=route_params,
                body=body,
            )

        try:
            response: web.Response = await self._invoke(
                fn, make_request, f"HTTP {request.method}", _to_response
            )
            return response
        except Exception:
            return web.Response(status=500)  # details are in the host log only

    # Event Grid webhook ------------------------------------------------------------

    async def _eventgrid(self, request: web.Request) -> web.StreamResponse:
        if not _key_matches(_presented_key(request), self.keys.eventgrid, self.keys.master):
            return web.Response(status=401)
        name = request.query.get("functionName", "")
        fn = self.functions.get(name)
        if fn is None or fn.trigger != EVENT_GRID:
            return web.Response(status=404, text=f"cannot find function: '{name}'")
        if request.method == "OPTIONS":
            origin = request.headers.get("WebHook-Request-Origin", "")
            allowed = origin if origin in _EVENTGRID_ORIGINS else _EVENTGRID_ORIGINS[0]
            return web.Response(status=200, headers={"Webhook-Allowed-Origin": allowed})
        kind = request.headers.get("aeg-event-type", "").lower()
        if kind == "unsubscribe":
            return web.Response(status=202)
        if kind not in ("subscriptionvalidation", "notification"):
            return web.Response(status=400)
        try:
            body = json.loads(await request.text())
            if kind == "subscriptionvalidation":
                return self._validation_response(fn, body)
            if not isinstance(body, (list, dict)):
                raise ValueError(f"the body should be a JSON object or array, not {body!r}")
        except (ValueError, LookupError, TypeError, RecursionError) as exc:
            # The extension throws on a body it cannot read; the host answers 500 without
            # details. (RecursionError: how Python's JSON reader fails on deep nesting.)
            log.warning("Event Grid request for '%s' not processed: %s", fn.name, exc)
            return web.Response(status=500)
        events = body if isinstance(body, list) else [body]
        return await self._notify(fn, events)

    @staticmethod
    def _validation_response(fn: Function, body: Any) -> web.Response:
        if isinstance(body, list):
            code = body[0]["data"]["validationCode"]
        elif isinstance(body, dict):  # CloudEvent: data is double-encoded JSON
            data = body["data"]
            code = (json.loads(data) if isinstance(data, str) else data)["validationCode"]
        else:
            raise ValueError(f"the body should be a JSON object or array, not {body!r}")
        log.info("perform handshake with eventGrid for function: %s", fn.name)
        # StringContent in the extension: the JSON goes out as text/plain.
        return web.Response(
            text=json.dumps({"validationResponse": str(code)}, separators=(",", ":")),
            content_type="text/plain",
            charset="utf-8",
        )

    async def _notify(self, fn: Function, events: list[Any]) -> web.Response:
        """Invoke once per event, all at once; any failure -> 500 so Event Grid retries."""

        def converter(event: Any) -> Callable[[], Any]:
            datum = meta.Datum(json.dumps(event), "json")
            return lambda: EventGridEventInConverter.decode(datum, trigger_metadata={})

        results = await asyncio.gather(
            *(self._invoke(fn, converter(event), "EventGrid trigger fired") for event in events),
            return_exceptions=True,
        )
        if any(isinstance(result, BaseException) for result in results):
            return web.Response(
                status=500, text=f"Exception while executing function: Functions.{fn.name}"
            )
        return web.Response(status=202)

    # Admin API ---------------------------------------------------------------------

    def _host_status(self, request: web.Request) -> web.Response:
        if not _key_matches(_presented_key(request), self.keys.master):
            return web.Response(status=401)
        uptime_ms = int((time.monotonic() - self.started) * 1000)
        return web.json_response({"id": "local", "state": "Running", "processUptime": uptime_ms})

    async def _admin_invoke(self, request: web.Request, name: str) -> web.Response:
        """Run a timer function now (``name`` is lower-cased: names are case-insensitive)."""
        if not _key_matches(_presented_key(request), self.keys.master):
            return web.Response(status=401)
        try:
            invocation = json.loads(await request.text())
        except ValueError:
            invocation = None
        if not isinstance(invocation, dict):
            return web.Response(status=400)
        fn = next((f for f in self.functions.values() if f.name.lower() == name), None)
        if fn is None:
            return web.Response(status=404)
        if fn.trigger != TIMER:
            return web.Response(status=400, text="this local host runs only timer functions here")
        datum = meta.Datum(json.dumps(_TIMER_INFO), "json")
        task = asyncio.create_task(self._run_in_background(fn, datum))
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return web.Response(status=202)

    async def _run_in_background(self, fn: Function, datum: meta.Datum) -> None:
        def make_timer() -> Any:
            return TimerRequestConverter.decode(datum, trigger_metadata={})

        with contextlib.suppress(Exception):  # _invoke logged it; nobody awaits the outcome
            await self._invoke(fn, make_timer, _ADMIN_REASON)

    async def drain(self) -> None:
        """Stop polling, then give background runs and queue invocations a moment to finish
        at shutdown (the listener's ``StopAsync`` waits for its invocations); a message
        still running stays invisible until its lease runs out."""
        for task in list(self.polling):
            task.cancel()
        await asyncio.gather(*self.polling, return_exceptions=True)
        running = {*self.background, *(t for lst in self.listeners for t in lst.processing)}
        if running:
            await asyncio.wait(running, timeout=_SHUTDOWN_GRACE_S)
        await self.queue_clients.close()


# --- Process entry point ----------------------------------------------------------------


class _InvocationFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.invocation_id = _invocation.get()
        return True


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_InvocationFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(invocation_id)s] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


async def run(app_dir: Path, port: int, ready: Path) -> None:
    keys = Keys.pop_from_environment()
    app_dir = app_dir.resolve()
    ready = ready.resolve()  # before load_app changes the working directory
    route_prefix = read_route_prefix(app_dir)
    try:
        queues = QueuesOptions.from_host_json(read_host_json(app_dir))
    except QueueConfigError as exc:
        raise AppLoadError(str(exc)) from None
    functions = load_app(app_dir)
    try:
        host = FunctionsHost(functions, keys, route_prefix, queues)
    except QueueConfigError as exc:
        raise AppLoadError(str(exc)) from None
    for fn in functions:
        if fn.schedule is not None:
            log.info("Function '%s' (%s) schedule '%s'", fn.name, fn.trigger, fn.schedule)
        elif fn.route is None:
            log.info("Function '%s' (%s)", fn.name, fn.trigger)
        else:
            route = "/".join(part for part in (route_prefix, fn.route.template) if part)
            log.info("Function '%s' (%s) /%s", fn.name, fn.trigger, route)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the ready file: a stop may follow it
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(host.build(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = int(runner.addresses[-1][1])
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "port": bound}))
    tmp.rename(ready)
    host.start_listeners()
    log.info("Host started: http://127.0.0.1:%d (%d functions)", bound, len(functions))
    await stop.wait()
    log.info("Host stopping")
    await runner.cleanup()
    await host.drain()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--app-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()
    configure_logging()
    try:
        asyncio.run(run(args.app_dir, args.port, args.ready))
    except AppLoadError as exc:
        log.error("Host not started: %s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
