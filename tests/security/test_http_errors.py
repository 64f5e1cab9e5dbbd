"""Every HTTP function answers a failure through the one table (handlers/responses.py):
the same failure gets the same status, code and envelope on every endpoint, and nothing of
the exception's internals leaves.

Issue 14 found each endpoint choosing its own statuses (``POST /api/rotations`` letting
``PlatformRejected`` escape as a bare 500, ``GET /api/rotations/{id}`` answering every
``RotationError`` 503, ``GET /api/status`` 502); these tests hit each endpoint with the same
failure and compare the answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e.world import CERT, World, api

RUN = "20990101T000000Z-000000000000"


def _assert_envelope(
    answer: requests.Response, status: int, code: str, where: str
) -> dict[str, Any]:
    assert answer.status_code == status, (where, answer.text[:300])
    assert answer.headers["Content-Type"].startswith("application/json"), where
    error: dict[str, Any] = answer.json()["error"]
    assert error["code"] == code and error["message"], (where, error)
    assert "Traceback" not in answer.text and "azure.core" not in answer.text, where
    return error


@pytest.fixture
def storage_down(world: World) -> Iterator[World]:
    """A world with a service to rotate, whose app storage (blobs and queues) is gone."""
    world.deploy(world.new_version())
    world.new_version()
    world.stack.admin("POST", "/storage", {"available": False})
    try:
        yield world
    finally:
        world.stack.admin("POST", "/storage", {"available": True})


def test_storage_lost_is_503_transient_with_retry_after_on_every_endpoint(
    storage_down: World,
) -> None:
    world = storage_down
    body = {"vault": world.vault_id, "certificate": CERT}
    calls = {
        "POST /api/rotations": ("POST", "/api/rotations", body),
        "GET /api/rotations/{id}": ("GET", f"/api/rotations/{RUN}", None),
        "GET /api/rotations/{id}?format=html": ("GET", f"/api/rotations/{RUN}?format=html", None),
        "GET /api/rotations": ("GET", "/api/rotations", None),
        "GET /api/rotations?format=html": ("GET", "/api/rotations?format=html", None),
    }
    for where, (method, path, sent) in calls.items():
        answer = api(world.stack, method, path, sent)
        _assert_envelope(answer, 503, "Transient", where)
        assert answer.headers.get("Retry-After") == "30", where
    # Status is not failed by it: it says what it could not read, service by service.
    status = api(world.stack, "GET", "/api/status")
    assert status.status_code == 200 and status.json()["summary"]["unreadable"], status.text


def test_azure_refusing_is_502_naming_azures_code_on_every_endpoint(world: World) -> None:
    """ARM refuses the app's reads of cloud services (a 400 with its own code): the POST
    (its services are checked first) and the status page answer alike."""
    world.deploy(world.new_version())
    world.stack.admin("POST", "/faults", {
        "service": "arm", "method": "GET", "path": "cloudServices", "status": 400,
        "code": "InvalidParameter", "message": "refused by the test", "count": 1000,
        "agent": "certrotate",
    })
    body = {"vault": world.vault_id, "certificate": CERT}
    calls = {
        "POST /api/rotations": ("POST", "/api/rotations", body),
        "POST /api/rotations (dry run)": ("POST", "/api/rotations", {**body, "dryRun": True}),
        "GET /api/status": ("GET", "/api/status", None),
    }
    for where, (method, path, sent) in calls.items():
        error = _assert_envelope(api(world.stack, method, path, sent), 502, "PlatformRejected",
                                 where)
        assert error["azureCode"] == "InvalidParameter", (where, error)
        assert "refused by the test" in error["message"], (where, error)


def test_bad_input_and_unknown_runs_answer_alike_on_every_endpoint(world: World) -> None:
    for path in ("/api/status", "/api/rotations", f"/api/rotations/{RUN}"):
        error = _assert_envelope(
            api(world.stack, "GET", f"{path}?format=xml"), 400, "InvalidInput", path
        )
        assert error["field"] == "format", (path, error)
    for path in (f"/api/rotations/{RUN}", f"/api/rotations/{RUN}?format=html"):
        _assert_envelope(api(world.stack, "GET", path), 404, "NotFound", path)
    error = _assert_envelope(api(world.stack, "GET", "/api/rotations/nope!"), 400,
                             "InvalidInput", "a bad run id")
    assert error["field"] == "id"
