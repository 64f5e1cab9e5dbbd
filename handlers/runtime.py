"""The process-wide engine, built once per worker from the app settings.

Building it reads and validates settings; a bad setting then fails every invocation with
the same clear ConfigError instead of half-working.
"""

from __future__ import annotations

from functools import cache

from shared.config import Settings
from shared.engine import Engine


@cache
def engine() -> Engine:
    return Engine.from_settings(Settings.from_env())
