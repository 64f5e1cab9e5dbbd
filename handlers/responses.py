"""HTTP answers every handler gives the same way: JSON bodies and the error envelope.

Errors are ``{"error": {"message", "field"?}}`` so callers can point at what they sent
wrong; keeping the shape in one place keeps every endpoint's errors alike. Every HTTP
function is wrapped in :func:`enveloped`, so even an error while rendering an answer is
the envelope, never the host's empty 500. A request without a valid function key never
reaches these functions: the Functions host answers it 401 with an empty body (in Azure
too; docs/http-api.md "Keys and the empty 401").
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

import azure.functions as func

from shared.domain.errors import (
    ConfigError,
    InvalidInput,
    NotFound,
    PlanRefused,
    PlatformRejected,
    PreconditionFailed,
    RotationError,
    TransientError,
)
from shared.domain.json_body import BodyTooLarge

log = logging.getLogger("certrotate.http")
RETRY_AFTER = {"Retry-After": "30"}


def json_response(
    body: Any, status: int, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, indent=1), status_code=status, headers=headers, mimetype="application/json"
    )


def error_response(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    error: dict[str, Any] = {"message": message}
    if field:
        error["field"] = field
    return json_response({"error": error}, status, headers)


def error_for(exc: Exception) -> func.HttpResponse:
    """The one exception → HTTP answer table of every HTTP function, always the envelope.

    Anything not listed (a bug) is logged with its traceback and answered 500 with a
    generic message, never an empty body and never the exception's text.
    """
    if isinstance(exc, BodyTooLarge):
        return error_response(413, exc.detail, exc.field)
    if isinstance(exc, InvalidInput):
        return error_response(400, exc.detail, exc.field)
    if isinstance(exc, NotFound):
        return error_response(404, str(exc))
    if isinstance(exc, TransientError):
        return error_response(503, str(exc), headers=RETRY_AFTER)
    if isinstance(exc, (PlanRefused, PreconditionFailed)):
        return error_response(409, str(exc))
    if isinstance(exc, ConfigError):
        log.error("configuration: %s", exc)
        return error_response(500, f"the app is misconfigured: {exc}")
    if isinstance(exc, (PlatformRejected, RotationError)):
        return error_response(502, str(exc))
    log.exception("unexpected error answering an HTTP request")
    return error_response(500, f"internal error ({type(exc).__name__}); see the app's log")


def enveloped(
    handler: Callable[[func.HttpRequest], func.HttpResponse],
) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """``handler``, with any exception it lets out answered by :func:`error_for`."""

    @functools.wraps(handler)
    def answer(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except Exception as exc:  # every failure answers the JSON envelope
            return error_for(exc)

    return answer
