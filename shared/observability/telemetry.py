"""Telemetry switch: OpenTelemetry to Application Insights only when it is configured.

The Azure Monitor distro pulls in some 25 packages and instruments libraries when it is
configured; an app without Application Insights should load none of it. So this module
imports nothing from OpenTelemetry: :func:`setup` imports :mod:`.otel` (which does)
only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, and :func:`record_run` is
a no-op until then. A connection string the distro rejects turns telemetry off with an
error in the log; it never stops rotations.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.domain.runs import Run

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"

log = logging.getLogger("certrotate.telemetry")
_recorder: Callable[[Run], None] | None = None
_attempted = False


def setup(env: Mapping[str, str] | None = None) -> bool:
    """Configure export once per process when the connection string is set; True if on."""
    global _recorder, _attempted
    if _attempted:
        return _recorder is not None
    _attempted = True
    connection_string = (os.environ if env is None else env).get(CONNECTION_STRING, "").strip()
    if not connection_string:
        return False
    try:
        from shared.observability import otel

        _recorder = otel.configure(connection_string)
    except Exception as exc:  # telemetry must never stop rotations
        log.error(
            "telemetry is off: Azure Monitor rejected %s (%s: %s)",
            CONNECTION_STRING,
            type(exc).__name__,
            exc,
        )
        return False
    log.info("telemetry: exporting traces, metrics and logs to Application Insights")
    return True


def record_run(run: Run) -> None:
    """The run's metrics (duration, outcomes, actions, days to expiry), when enabled."""
    if _recorder is not None:
        _recorder(run)
