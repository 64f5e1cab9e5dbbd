"""Run id and cloud service id on every log line written while a run works on a service.

Operators search logs by run id (from the HTTP answer or a notification) and by service.
Rather than threading both through every call, they live in context variables, and a log
record factory (the stdlib's hook for contextual information) copies them onto every
record: as ``run_id`` / ``service_id`` attributes for structured exporters, and as a
``[run=… service=…]`` prefix of the message for plain-text hosts such as the Functions
console. Records from the Azure SDKs made during the run get them too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_run_id: ContextVar[str | None] = ContextVar("certrotate_run_id", default=None)
_service_id: ContextVar[str | None] = ContextVar("certrotate_service_id", default=None)
_previous_factory = logging.getLogRecordFactory()


def _factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    run_id, service_id = _run_id.get(), _service_id.get()
    record.run_id, record.service_id = run_id, service_id
    if (run_id or service_id) and isinstance(record.msg, str):
        parts = [f"run={run_id}"] if run_id else []
        if service_id:
            parts.append(f"service={service_id}")
        record.msg = f"[{' '.join(parts)}] {record.msg}"
    return record


logging.setLogRecordFactory(_factory)


@contextmanager
def bound(*, run_id: str | None = None, service_id: str | None = None) -> Iterator[None]:
    """Attach ``run_id`` and/or ``service_id`` to every record logged inside the block."""
    tokens = []
    if run_id is not None:
        tokens.append((_run_id, _run_id.set(run_id)))
    if service_id is not None:
        tokens.append((_service_id, _service_id.set(service_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)

