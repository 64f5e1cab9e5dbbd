"""The small soak: a short seeded chaos stream on its own stack must leave no violation.

``make soak`` runs the full-size version and prints its figures (``SOAK_ARGS=--azure`` with
Azure's timings and faults); this keeps the same code paths (and their checks: converged,
one write per change, no loop, nothing left mid-operation or untracked) in ``make test``.
"""

from __future__ import annotations

import io
from pathlib import Path

from emulators.soak import Config, run


def test_small_soak_converges_without_violations(tmp_path: Path) -> None:
    out = io.StringIO()
    status = run(Config.small(), tmp_path / "soak", out)
    print(out.getvalue())
    assert status == 0, out.getvalue()
    assert '"violations": []' in out.getvalue()


def test_small_soak_with_azure_timings_has_no_loop_and_nothing_untracked(tmp_path: Path) -> None:
    out = io.StringIO()
    status = run(Config.azure_timings(small=True), tmp_path / "soak-azure", out)
    print(out.getvalue())
    assert status == 0, out.getvalue()
    assert '"loops": 0' in out.getvalue()
    assert '"untracked_operations": 0' in out.getvalue()
