"""The replay suite's tally: how many recorded or example interactions the stack matches.

Every test under ``tests/replay`` is one case: an interaction Microsoft recorded against
real Azure (or a REST spec example) replayed against the local stack. A case that passes
matches; a known deviation is an ``xfail`` carrying its reason; a case the stack does not
implement is skipped with its reason. The summary line ``N of M cases match`` counts the
implemented cases (matched + xfailed) as M, and lists the xfail and skip reasons beneath,
so a deviation is always visible in the output, never a silent pass.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).parent
_OUTCOMES: Counter[str] = Counter()
_REASONS: list[str] = []


def _is_replay(report: pytest.TestReport) -> bool:
    return Path(str(report.fspath)).resolve().is_relative_to(HERE)


@pytest.hookimpl(trylast=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not _is_replay(report):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        if hasattr(report, "wasxfail"):
            _OUTCOMES["xfailed"] += 1
            _REASONS.append(f"xfail {report.nodeid}: {report.wasxfail}")
        elif report.skipped:
            _OUTCOMES["skipped"] += 1
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            _REASONS.append(f"skip {report.nodeid}: {reason}")
        else:
            _OUTCOMES[report.outcome] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _OUTCOMES:
        return
    matched = _OUTCOMES["passed"]
    implemented = matched + _OUTCOMES["xfailed"] + _OUTCOMES["failed"]
    terminalreporter.section("replay against Azure's recorded traffic")
    terminalreporter.write_line(
        f"{matched} of {implemented} cases match "
        f"({_OUTCOMES['xfailed']} known deviations, {_OUTCOMES['failed']} failing, "
        f"{_OUTCOMES['skipped']} not implemented by the stack)"
    )
    for line in sorted(_REASONS):
        terminalreporter.write_line(f"  {line}")
