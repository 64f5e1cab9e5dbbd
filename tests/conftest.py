"""Fixtures shared by the suite: one local stack per test session.

The stack (Azurite + emulators) starts once in a temporary folder with its own ports, so
a developer's ``make stack-up`` keeps running untouched. Its settings are exported into
``os.environ`` for the session, exactly as ``stack.env`` would be sourced, so the real
``DefaultAzureCredential`` finds the managed-identity endpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
import requests

from emulators.stack import Stack

T = TypeVar("T")


@dataclass(frozen=True)
class LocalStack:
    env: dict[str, str]

    @property
    def ca(self) -> str:
        return self.env["STACK_CA_BUNDLE"]

    @property
    def subscription(self) -> str:
        return self.env["AZURE_SUBSCRIPTION_ID"]

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        resp = requests.request(
            method, self.env["EMULATOR_ADMIN_URL"] + path, json=body, timeout=30
        )
        resp.raise_for_status()
        return resp.json()

    def requests_since(self, mark: int) -> list[dict[str, Any]]:
        return list(self.admin("GET", f"/requests?since={mark}"))

    def request_mark(self) -> int:
        return len(self.admin("GET", "/requests"))


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = Stack.up(tmp_path_factory.mktemp("stack"), update_seconds=0.3, page_size=2)
    saved = dict(os.environ)
    os.environ.update(running.env)
    try:
        yield LocalStack(running.env)
    finally:
        running.down()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def no_faults(stack: LocalStack) -> Iterator[None]:
    """Clear injected faults after a test that adds some."""
    yield
    stack.admin("DELETE", "/faults")


def wait_for(predicate: Callable[[], T], what: str = "condition", timeout: float = 20.0) -> T:
    """Poll ``predicate`` every 50 ms until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)
