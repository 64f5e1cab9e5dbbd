"""The process-wide engine, built once per worker from the app settings.

Building it reads and validates settings; a bad setting then fails every invocation with
the same clear ConfigError instead of half-working. Telemetry is switched on first (once,
only with ``APPLICATIONINSIGHTS_CONNECTION_STRING``), so the engine's first Azure calls
are already traced.
"""

from __future__ import annotations

from functools import cache

from shared.config import Settings
from shared.observability import telemetry
from shared.rotation.engine import Engine


@cache
def engine() -> Engine:
    telemetry.setup()
    return Engine.from_settings(Settings.from_env())
