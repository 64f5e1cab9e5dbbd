"""In-memory stand-ins for what the journal's driver talks to: a cloud service whose
operations end when the test says, its role instances, and the lease's journal.

They implement the small protocols of :mod:`shared.rotation.writing` (``Operations``,
``PackageSigner``, ``JournalLease``), nothing more, and record every call so a test can
say what the driver asked. They are for unit tests of the driver's decisions; the stack
tests (real SDKs against the emulators) remain the proof of the I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from shared.domain.errors import PlatformRejected
from shared.domain.journal import Pending
from shared.domain.model import CloudServiceSnapshot, SecretGroup
from shared.domain.packages import PackageRef


@dataclass
class FakePoller:
    """An operation: running until ``done``; ``failure`` makes waiting on it raise."""

    token: str
    done: bool = True
    failure: PlatformRejected | None = None

    def continuation_token(self) -> str:
        return self.token


@dataclass
class FakeOperations:
    """One cloud service and its operations."""

    service: CloudServiceSnapshot
    domains: int = 0
    instances: dict[str, int] = field(
        default_factory=lambda: {"RoleState/RoleStateStarted": 1, "PowerState/Started": 1}
    )
    operation: FakePoller = field(default_factory=lambda: FakePoller("op"))
    walk_failure: PlatformRejected | None = None
    calls: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)  # configurations PUT

    def get(self, service_id: str) -> CloudServiceSnapshot:
        self.calls.append("get")
        return self.service

    def begin_update(
        self,
        service: CloudServiceSnapshot,
        configuration: str,
        secrets: tuple[SecretGroup, ...],
        package_sas_url: str | None,
        *,
        poll: bool = True,
    ) -> Any:
        self.calls.append("put")
        self.sent.append(configuration)
        self.service = replace(self.service, configuration=configuration, secrets=secrets,
                               provisioning_state="Succeeded")
        return FakePoller("rollback-op")

    def resume(self, service_id: str, token: str) -> Any:
        self.calls.append(f"resume:{token}")
        return self.operation

    def update_domains(self, service_id: str) -> int:
        self.calls.append("domains")
        return self.domains

    def begin_walk(self, service_id: str, domain: int, token: str | None = None) -> Any:
        self.calls.append(f"walk:{domain}")
        return FakePoller(f"walk-{domain}", failure=self.walk_failure if domain == 1 else None)

    def instance_states(self, service_id: str) -> dict[str, int]:
        self.calls.append("instances")
        return dict(self.instances)

    def wait(self, poller: Any, timeout: float, tick: Callable[[], None]) -> bool:
        if poller.failure is not None:
            raise poller.failure
        return bool(poller.done)

    def final(self, poller: Any) -> CloudServiceSnapshot:
        self.calls.append("final")
        return self.service


@dataclass
class FakeSigner:
    def package_sas(self, package: PackageRef, hours: float, now: datetime
                    ) -> tuple[str, datetime]:
        return f"{package.url}?sig=redacted", now


@dataclass
class FakeLease:
    """The journal as the lease holder sees it: every write kept, in order."""

    pending: Pending | None = None
    writes: list[Pending | None] = field(default_factory=list)

    def write(self, pending: Pending | None) -> None:
        self.pending = pending
        self.writes.append(pending)

    def renew(self) -> None:
        pass
