"""Fixtures shared by the suite: one local stack per test session.

The stack (Azurite + emulators) starts once in a temporary folder with its own ports, so
a developer's ``make stack-up`` keeps running untouched. Its settings are exported into
``os.environ`` for the session, exactly as ``stack.env`` would be sourced, so the real
``DefaultAzureCredential`` finds the managed-identity endpoint.

The secret scan (``tests/security/secret_scan.py``) is wired in here: every log record of
the test process, every test's captured output and, at the end, every log file the
session's stacks and hosts wrote are scanned, and a SAS signature, access token, private
key or stack key in any of them fails the run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from emulators.stack import QUICK_QUEUES, Stack
from tests.security.secret_scan import Scanner, ScanningHandler


@dataclass(frozen=True)
class LocalStack:
    env: dict[str, str]
    folder: Path  # the stack's own folder: logs/, tls/, stack.env

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
    running = Stack.up(
        tmp_path_factory.mktemp("stack"), update_seconds=0.3, page_size=2,
        settings=QUICK_QUEUES,
    )
    SCAN.add_literals(
        value for key, value in running.env.items()
        if key == "IDENTITY_HEADER" or key.endswith("_KEY")
    )
    saved = dict(os.environ)
    os.environ.update(running.env)
    try:
        yield LocalStack(running.env, running.folder)
    finally:
        running.down()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def no_faults(stack: LocalStack) -> Iterator[None]:
    """Clear injected faults after a test that adds some."""
    yield
    stack.admin("DELETE", "/faults")


# -- the secret scan ---------------------------------------------------------------------

SCAN = Scanner()
_HANDLER = ScanningHandler(SCAN)
_BASETEMP = pytest.StashKey[Path]()
_LEVELS = pytest.StashKey[dict[str, int]]()
# The product's loggers at DEBUG; everything else that reaches the root at INFO and above.
_SCANNED_LEVELS = {"": logging.INFO, "certrotate": logging.DEBUG}


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_LEVELS] = {name: logging.getLogger(name).level for name in _SCANNED_LEVELS}
    for name, level in _SCANNED_LEVELS.items():
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)
    logging.getLogger().addHandler(_HANDLER)


def pytest_unconfigure(config: pytest.Config) -> None:
    logging.getLogger().removeHandler(_HANDLER)
    for name, level in config.stash.get(_LEVELS, {}).items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session", autouse=True)
def _scanned_log_folder(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Every stack and host of the session writes its logs below the session's basetemp."""
    request.config.stash[_BASETEMP] = tmp_path_factory.getbasetemp()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for title, content in report.sections:
        stream = title.startswith(("Captured stdout", "Captured stderr"))
        if stream and title.endswith(f" {report.when}"):
            SCAN.scan(f"{title} of {report.nodeid}", content)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """After every fixture (and so every stack) has stopped: scan the log files, and fail
    the run if anything was found."""
    basetemp = session.config.stash.get(_BASETEMP, None)
    if basetemp is not None:
        SCAN.scan_files(basetemp)
    if SCAN.findings and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    found = SCAN.report()
    summary = (
        f"{SCAN.lines} lines scanned ({SCAN.files} log files + in-process records and "
        f"captured output): {len(found)} with secrets"
    )
    if not found:
        terminalreporter.write_line(f"secret scan: {summary}")
        return
    terminalreporter.section("secret scan FAILED", sep="=", red=True, bold=True)
    terminalreporter.write_line(summary + " (shown redacted):")
    for line in found[:50]:
        terminalreporter.write_line(f"  {line}")
    if len(found) > 50:
        terminalreporter.write_line(f"  ... and {len(found) - 50} more")
