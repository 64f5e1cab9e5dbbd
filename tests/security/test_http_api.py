"""Hostile requests to the HTTP surface on the local stack: function keys on every function,
and request bodies that are too big, too deep, ambiguous or not objects.

Every refusal answers a specific status with ``{"error": {"field", "message"}}`` and the
product sends no request at all (the stack's request log, by the product's user agent).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from emulators.provision import Operator
from emulators.stack import app_settings
from tests.conftest import LocalStack
from tests.e2e.world import CERT, World, api

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 64 * 1024  # handlers.rotations.MAX_BODY, as docs/security.md documents it
OTHER_SUBSCRIPTION = "00000000-0000-4000-8000-00000000beef"
# The functions the host serves, indexed the way it indexes them (a subprocess: importing
# function_app here would reconfigure this process's loggers).
LIST_FUNCTIONS = """
import json, sys
from pathlib import Path
from emulators.functions_host import load_app
print(json.dumps([
    {"name": f.name, "trigger": f.trigger, "auth": f.auth_level,
     "route": f.route.template if f.route else None, "methods": sorted(f.methods or ["GET"])}
    for f in load_app(Path(sys.argv[1]))
]))
"""


@pytest.fixture(scope="module")
def functions(stack: LocalStack) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", LIST_FUNCTIONS, str(ROOT)],
        capture_output=True, text=True, timeout=60, check=True, cwd=ROOT,
        env={**os.environ, **app_settings(stack.env)},  # the timers' %SCHEDULE% settings
    )
    found: list[dict[str, Any]] = json.loads(done.stdout.splitlines()[-1])
    return found


@pytest.fixture(scope="module")
def deployed(stack: LocalStack, op: Operator) -> World:
    """One world for the module whose certificate a managed service uses."""
    world = World(stack, op)
    world.deploy(world.new_version())
    return world


def call(stack: LocalStack, method: str, path: str, headers: dict[str, str]) -> int:
    url = stack.env["FUNCTIONS_URL"] + path
    return requests.request(method, url, headers=headers, data=b"{}", timeout=30).status_code


def test_every_http_function_needs_a_key(
    stack: LocalStack, functions: list[dict[str, Any]]
) -> None:
    http = [f for f in functions if f["route"] is not None]
    assert {f["name"] for f in http} >= {"rotations", "rotation_status"}
    assert [f["name"] for f in http if f["auth"] == "anonymous"] == []  # none is public
    mark = stack.request_mark()
    wrong = {"x-functions-key": "wrong-key"}
    function_key = {"x-functions-key": stack.env["FUNCTIONS_KEY"]}
    for fn in http:
        path = "/api/" + re.sub(r"\{[^}]+\}", "20990101T000000Z-000000000000", fn["route"])
        for method in fn["methods"]:
            where = f"{method} {path} ({fn['name']})"
            assert call(stack, method, path, {}) == 401, where
            assert call(stack, method, path, wrong) == 401, where
            assert call(stack, method, path + "?code=wrong-key", {}) == 401, where
            if fn["auth"] == "admin":
                assert call(stack, method, path, function_key) == 401, where
    product = [c for c in stack.requests_since(mark) if "certrotate" in c.get("agent", "")]
    assert product == []


def test_admin_api_needs_the_master_key(
    stack: LocalStack, functions: list[dict[str, Any]]
) -> None:
    timers = [f["name"] for f in functions if f["trigger"] == "timerTrigger"]
    assert sorted(timers) == ["follow_updates", "reconcile"]  # none left unindexed
    function_key = {"x-functions-key": stack.env["FUNCTIONS_KEY"]}
    for name in timers:  # running a timer by hand is an admin action
        for headers in ({}, function_key, {"x-functions-key": "wrong-key"}):
            assert call(stack, "POST", f"/admin/functions/{name}", headers) == 401, name
    assert call(stack, "GET", "/admin/host/status", function_key) == 401


def big(size: int) -> bytes:
    """A body of exactly ``size`` bytes that would otherwise be a valid request."""
    body = json.dumps({"vault": "x", "certificate": CERT, "cloudServices": []}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


def nested(depth: int) -> bytes:
    return b'{"cloudServices": ' + b"[" * depth + b"]" * depth + b"}"


# (id, body, status, field, message substring)
REFUSALS: list[tuple[str, bytes, int, str, str]] = [
    ("one-byte-over", big(LIMIT + 1), 413, "body", f"more than the limit of {LIMIT} bytes"),
    ("one-mebibyte", big(1 << 20), 413, "body", f"more than the limit of {LIMIT} bytes"),
    ("sixteen-mebibytes", big(16 << 20), 413, "body", f"more than the limit of {LIMIT} bytes"),
    ("five-levels", nested(4), 400, "cloudServices", "nested deeper than 4 levels"),
    ("recursion-bomb", nested(30_000), 400, "body", "nested deeper than 4 levels"),
    ("array", b"[]", 400, "body", "must be a JSON object, not an array"),
    ("string", b'"rotate"', 400, "body", "must be a JSON object, not a string"),
    ("null", b"null", 400, "body", "must be a JSON object, not null"),
    ("empty", b"", 400, "body", "not valid JSON"),
    ("not-utf-8", b'{"vault": "\xff"}', 400, "body", "not valid JSON"),
    (
        "duplicate-key",
        b'{"vault": "a", "certificate": "web-tls", "vault": "b"}',
        400,
        "vault",
        "given more than once",
    ),
]


@pytest.mark.parametrize(
    ("raw", "status", "field", "message"), [pytest.param(*c[1:], id=c[0]) for c in REFUSALS]
)
def test_hostile_body_is_refused_before_any_request(
    deployed: World, raw: bytes, status: int, field: str, message: str
) -> None:
    stack = deployed.stack
    mark = stack.request_mark()

    answer = api(stack, "POST", "/api/rotations", raw=raw)

    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["Content-Type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["field"] == field and message in error["message"], error
    assert error["code"] == ("BodyTooLarge" if status == 413 else "InvalidInput"), error
    assert deployed.product_calls(mark) == []


def test_a_body_of_exactly_the_limit_is_served(deployed: World) -> None:
    body = {"vault": deployed.vault_id, "certificate": CERT, "dryRun": True}
    raw = json.dumps(body).encode()
    raw = raw[:-1] + b" " * (LIMIT - len(raw)) + b"}"
    assert len(raw) == LIMIT
    mark = deployed.stack.request_mark()

    answer = api(deployed.stack, "POST", "/api/rotations", raw=raw)

    assert answer.status_code == 200, answer.text
    assert [s["outcome"] for s in answer.json()["services"]] == ["noop"]
    assert [c for c in deployed.product_calls(mark) if c["method"] != "GET"] == []


def test_vault_outside_the_subscriptions_is_404_without_a_request(deployed: World) -> None:
    stack = deployed.stack
    foreign = deployed.vault_id.replace(stack.subscription, OTHER_SUBSCRIPTION)
    mark = stack.request_mark()

    answer = api(stack, "POST", "/api/rotations", {"vault": foreign, "certificate": CERT})

    assert answer.status_code == 404, answer.text
    assert answer.json()["error"] == {
        "code": "NotFound",
        "field": "vault",
        "message": "the vault is in a subscription not in ROTATION_SUBSCRIPTIONS",
    }
    assert deployed.product_calls(mark) == []
