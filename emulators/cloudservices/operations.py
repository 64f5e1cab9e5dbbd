"""The long-running operations a cloud service plays: one at a time per service, ending
``update_seconds`` of emulated time after it began (a timer, the clock hook and every
request settle due ones). Ending an operation applies it: instances are rebuilt, moved to
the new configuration (all at once, or one walked update domain at a time for ``Manual``),
powered off or on, and settle through Busy and Starting; an armed failure ends it
``Failed`` instead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from emulators.arm_operations import CS_OPERATIONS, Operation, operation_time
from emulators.cloudservices.model import PROVIDER, Instance, Pending, Service
from emulators.cloudservices.state import State


class Operations:
    """Starts, times and applies the operations of every service."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.platform = state.wiring.platform
        self.arm = state.wiring.arm

    async def on_clock(self) -> None:
        self.settle()

    def begin(self, service: Service, kind: str, state: str, **extra: Any) -> Operation:
        """Start ``kind`` on ``service``; it ends ``update_seconds`` of emulated time later."""
        op = self.arm.start_operation(PROVIDER, service.location, CS_OPERATIONS)
        deadline = self.platform.now() + dt.timedelta(seconds=self.state.update_seconds)
        service.pending = Pending(op, kind, deadline, **extra)
        service.state = state
        self._schedule((service.resource_group.lower(), service.name.lower()),
                       self.state.update_seconds)
        return op

    def _schedule(self, key: tuple[str, str], seconds: float) -> None:
        old = self.state.timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self.state.timers[key] = loop.call_later(max(0.0, seconds), self._tick, key)

    def _tick(self, key: tuple[str, str]) -> None:
        """Timer callback: settle, and re-arm if the timer fired before the deadline."""
        self.state.timers.pop(key, None)
        self.settle()
        service = self.state.services.get(key)
        if service is not None and service.pending is not None:
            left = (service.pending.deadline - self.platform.now()).total_seconds()
            self._schedule(key, left + 0.005)

    def settle(self) -> None:
        now = self.platform.now()
        for key, service in list(self.state.services.items()):
            if service.pending is not None and service.pending.deadline <= now:
                self._finish(key, service)

    def _finish(self, key: tuple[str, str], service: Service) -> None:
        pending = service.pending
        assert pending is not None
        service.pending = None
        end = operation_time(self.platform.now())
        if pending.kind == "delete":
            del self.state.services[key]
            pending.op.finish(end)
            return
        failure = self.state.armed_failures.pop(key, None)
        if failure is not None:
            service.state = "Failed"
            pending.op.finish(end, {"code": failure.code, "message": failure.message})
            return
        service.state = pending.state_after
        moved: list[Instance] = []  # instances that took a new configuration
        if pending.kind == "walk":
            for instance in service.instances:
                if service.update_domain_of(instance) == pending.update_domain:
                    instance.applied = service.target
                    moved.append(instance)
        elif pending.kind in ("poweroff", "start"):
            service.powered_off = pending.kind == "poweroff"
            moved = [] if service.powered_off else list(service.instances)
        elif pending.kind not in ("tags", "restart"):
            manual = (pending.kind == "update"
                      and str(service.properties.get("upgradeMode", "")).lower() == "manual")
            before = {i.name.lower(): i for i in service.instances}
            service.target = service.version
            service.instances = [
                Instance(role.name, index, service.version)
                for role in pending.roles for index in range(role.count)
            ]
            for instance in service.instances:
                previous = before.get(instance.name.lower())
                if manual and previous is not None:  # keeps running what it ran
                    instance.applied = previous.applied
                    instance.settling_until, instance.forced = (previous.settling_until,
                                                                previous.forced)
                else:
                    moved.append(instance)
        self._settle_instances(key, service, moved)
        pending.op.finish(end)

    def _settle_instances(self, key: tuple[str, str], service: Service,
                          moved: list[Instance]) -> None:
        """Instances that took a new configuration settle (a stopped service's stay
        stopped); an armed status code lands on them."""
        if not moved:
            return
        until = self.platform.now() + dt.timedelta(seconds=self.state.settle_seconds)
        forced = self.state.armed_states.pop(key, None)
        for instance in moved:
            instance.settling_until = None if service.powered_off else until
            instance.forced = forced
