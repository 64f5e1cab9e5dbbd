"""HTTP answers every handler gives the same way: JSON bodies and the error envelope.

Errors are ``{"error": {"message", "field"?}}`` so callers can point at what they sent
wrong; keeping the shape in one place keeps every endpoint's errors alike.
"""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func


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
