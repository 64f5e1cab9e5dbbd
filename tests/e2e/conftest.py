"""Fixtures of the end-to-end tests: the operator (provisioning) and a fresh world."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from emulators.provision import Operator
from tests.conftest import LocalStack
from tests.e2e.world import World


@pytest.fixture(scope="module")
def op(stack: LocalStack) -> Operator:
    return Operator(stack.env)


@pytest.fixture
def world(stack: LocalStack, op: Operator) -> Iterator[World]:
    yield World(stack, op)
    stack.admin("DELETE", "/faults")
