"""Every 4xx/5xx the app's HTTP functions answer is the JSON error envelope, even for an
error raised while rendering an answer (outside a handler's own ``try``). A request with no
valid function key is the Functions host's to answer (401, empty body, in Azure too) and is
checked end to end in tests/security/test_http_api.py. No I/O."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest

import function_app
from handlers import status


def http_functions() -> list[Any]:
    """The app's HTTP-triggered functions, from every blueprint function_app registers.

    azure-functions 1.x has no public list of an app's functions before indexing; the
    worker reads these same private ``_function_builders``/``_function`` attributes."""
    functions = [builder._function for builder in function_app.app._function_builders]
    return [f for f in functions if any(b.type == "httpTrigger" for b in f.get_bindings())]


def test_every_http_function_is_enveloped() -> None:
    functions = http_functions()
    assert {f.get_function_name() for f in functions} >= {
        "rotations", "rotation_status", "rotation_history", "status"}
    bare = [f.get_function_name() for f in functions
            if not hasattr(f.get_user_function(), "__wrapped__")]
    assert not bare, f"wrap these in handlers.responses.answers_errors: {bare}"


def test_an_error_while_rendering_is_the_envelope(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(found: Any) -> str:
        raise RuntimeError("a rendering bug, with a detail never shown")

    monkeypatch.setattr(status, "engine", lambda: object())
    monkeypatch.setattr(status, "gather", lambda engine: object())
    monkeypatch.setattr(status.status_html, "render", broken)
    request = func.HttpRequest("GET", "/api/status", params={"format": "html"}, body=b"")

    answer = status.status.build().get_user_function()(request)

    assert answer.status_code == 500
    assert answer.mimetype == "application/json"
    error = json.loads(answer.get_body())["error"]
    assert error["code"] == "InternalError"
    assert error["message"] == "internal error; see the app's log"
