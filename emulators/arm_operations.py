"""ARM long-running operations as the recordings show them: one status resource per
operation, polled through ``Azure-AsyncOperation``, in each provider's own style.

Providers (cloud services, Event Grid) start an :class:`Operation` when a write is
accepted and finish it when the work is done; :class:`~emulators.arm.Arm` serves its
status. Times are written as each provider writes them (:func:`operation_time`,
:func:`system_time`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


def operation_time(moment: dt.datetime) -> str:
    """A time as Compute's operation status and instance views write it: .NET's round-trip
    form of a ``DateTimeOffset``, seven fraction digits and ``+00:00``."""
    utc = moment.astimezone(dt.UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}0+00:00"


def system_time(moment: dt.datetime) -> str:
    """A ``systemData`` time as recorded: up to seven fraction digits, trailing zeros
    dropped, and ``Z`` (``2023-02-20T06:16:45.978514Z``)."""
    utc = moment.astimezone(dt.UTC)
    fraction = f"{utc.microsecond:06d}0".rstrip("0")
    return f"{utc:%Y-%m-%dT%H:%M:%S}{'.' + fraction if fraction else ''}Z"


@dataclass(frozen=True)
class OperationStyle:
    """How a provider's operations look on the wire."""

    collection: str  # the path segment the status lives under
    retry_hint: bool  # answer with ``Retry-After: 0``
    timeout: str | None  # ``x-ms-async-operation-timeout`` on the write that started it
    dotnet_times: bool  # ``operation_time`` instead of Python's isoformat


GENERIC = OperationStyle("operations", retry_hint=True, timeout=None, dotnet_times=False)
# Compute's cloud services, as the Update/New-AzCloudService recordings (2022-09-04) show.
CS_OPERATIONS = OperationStyle("CsOperations", retry_hint=False, timeout="PT8H20M",
                               dotnet_times=True)
STYLES = (GENERIC, CS_OPERATIONS)


@dataclass
class Operation:
    """An ARM async operation; providers finish it when the work is done."""

    id: str
    location: str
    namespace: str
    start_time: str
    style: OperationStyle = GENERIC
    status: str = "InProgress"
    end_time: str | None = None
    error: dict[str, Any] | None = None
    checked: bool = False  # started by a write that RBAC checked: its polls are checked too

    def finish(self, end_time: str, error: dict[str, Any] | None = None) -> None:
        self.status = "Failed" if error else "Succeeded"
        self.end_time = end_time
        self.error = error

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"startTime": self.start_time}
        if self.end_time:
            out["endTime"] = self.end_time
        out["status"] = self.status
        if self.error:
            out["error"] = self.error
        out["name"] = self.id
        return out

    def path(self, subscription: str) -> str:
        return (f"/subscriptions/{subscription}/providers/{self.namespace}"
                f"/locations/{self.location}/{self.style.collection}/{self.id}")
