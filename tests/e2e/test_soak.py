"""The small soak: a short seeded chaos stream on its own stack must leave no violation.

``make soak`` runs the full-size version and prints its figures; this keeps the same code
path (and its checks: converged, one write per change, nothing left mid-operation) in
``make test``.
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
