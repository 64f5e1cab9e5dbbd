"""HTTP answers every handler gives the same way: JSON bodies and the error envelope.

Errors are ``{"error": {"code", "message", "field"?, "azureCode"?}}``: ``code`` says what
kind of failure it is (what the caller can do next), ``field`` points at what the caller
sent wrong, ``azureCode`` names what Azure answered when Azure refused.

Strategy (h11's: raise specific errors everywhere, translate once at the boundary):
handlers raise the product's errors (:mod:`shared.domain.errors`), and
:func:`answers_errors`, applied to every HTTP function, turns whatever escapes into an
answer through the one table :data:`ERRORS`. No handler picks a status code for an error,
so two endpoints cannot answer the same failure differently.

A request without a valid function key never reaches these functions: the Functions host
answers it 401 with an empty body (in Azure too; docs/http-api.md "Keys and the empty
401").
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from shared.domain.errors import (
    BackingOff,
    Busy,
    ConfigError,
    InvalidInput,
    NotFound,
    PlanRefused,
    PlatformRejected,
    PreconditionFailed,
    RotationError,
    TransientError,
    VaultAccessDenied,
    Waiting,
)
from shared.domain.json_body import BodyTooLarge

log = logging.getLogger("certrotate.http")
RETRY_AFTER_SECONDS = 30  # Azure's own polling pace; a lease or an update outlasts less


@dataclass(frozen=True)
class ErrorAnswer:
    """How one kind of error is answered. ``retry``: with ``Retry-After`` (worth asking
    again later, unchanged); ``echo``: the message is the caller's to read (otherwise it
    is logged and the answer says only where to look)."""

    status: int
    code: str
    retry: bool = False
    echo: bool = True


# The one exception -> HTTP table. The first row the error is an instance of answers, so a
# subclass comes before its base. docs/security.md ("HTTP errors") shows it to operators.
ERRORS: tuple[tuple[type[Exception], ErrorAnswer], ...] = (
    (BodyTooLarge, ErrorAnswer(413, "BodyTooLarge")),
    (InvalidInput, ErrorAnswer(400, "InvalidInput")),
    (NotFound, ErrorAnswer(404, "NotFound")),
    # Something on the service is in progress (a lease, an update): the request conflicts
    # with it now and will not later.
    (Busy, ErrorAnswer(409, "Busy", retry=True)),
    (Waiting, ErrorAnswer(409, "Waiting", retry=True)),
    (TransientError, ErrorAnswer(503, "Transient", retry=True)),
    # The world is not as the request needs; asking again unchanged cannot help.
    (BackingOff, ErrorAnswer(409, "BackingOff")),
    (PlanRefused, ErrorAnswer(409, "PlanRefused")),
    (PreconditionFailed, ErrorAnswer(409, "PreconditionFailed")),
    # Azure refused: a bad gateway, naming Azure's own code.
    (VaultAccessDenied, ErrorAnswer(502, "VaultAccessDenied")),
    (PlatformRejected, ErrorAnswer(502, "PlatformRejected")),
    # The operator's to fix; the log names the setting (its value stays out of answers).
    (ConfigError, ErrorAnswer(500, "ConfigError", echo=False)),
    (RotationError, ErrorAnswer(500, "RotationError")),
)
# Anything else is a bug: logged with its traceback, never echoed.
UNEXPECTED = ErrorAnswer(500, "InternalError", echo=False)


def answer_for(exc: Exception) -> ErrorAnswer:
    """The table's row for ``exc`` (pure: no logging, no I/O)."""
    return next((answer for kind, answer in ERRORS if isinstance(exc, kind)), UNEXPECTED)


def json_response(
    body: Any, status: int, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, indent=1), status_code=status, headers=headers, mimetype="application/json"
    )


def error_body(exc: Exception) -> dict[str, Any]:
    """The envelope for ``exc`` as the table answers it (pure)."""
    answer = answer_for(exc)
    error: dict[str, Any] = {"code": answer.code}
    if not answer.echo:
        error["message"] = (
            "the app is misconfigured; its log names the setting"
            if answer.code == "ConfigError"
            else "internal error; see the app's log"
        )
        return {"error": error}
    error["message"] = str(getattr(exc, "detail", None) or exc)
    field = getattr(exc, "field", None)
    if field:
        error["field"] = field
    if isinstance(exc, PlatformRejected):
        error["azureCode"] = exc.code
    return {"error": error}


def error_for(exc: Exception) -> func.HttpResponse:
    """The answer to ``exc``: always the envelope, at the table's status."""
    answer = answer_for(exc)
    if answer is UNEXPECTED:
        log.exception("unexpected error answering an HTTP request")
    elif not answer.echo:
        log.error("%s: %s", answer.code, exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if answer.retry else None
    return json_response(error_body(exc), answer.status, headers)


Handler = Callable[[func.HttpRequest], func.HttpResponse]


def answers_errors(handler: Handler) -> Handler:
    """Every HTTP function's wrapper: whatever it raises is answered by :data:`ERRORS`.

    Applied under the blueprint's decorators; ``functools.wraps`` keeps the signature and
    annotations the Functions worker indexes.
    """

    @functools.wraps(handler)
    def answering(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except Exception as exc:  # the table answers every failure, the envelope always
            return error_for(exc)

    return answering
