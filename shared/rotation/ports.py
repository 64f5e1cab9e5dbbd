"""What the rotation layer needs from compute, Key Vault and its own storage: small Protocols.

The adapters in :mod:`shared.adapters` satisfy them structurally (nothing there imports this
module: adapters never import rotation), and ``tests/unit/fakes.py`` holds in-memory ones
for unit tests of converging a service, renewing and following a journal. Each module of
the rotation layer asks for the narrowest of them it needs; the stack tests run the same
code through the real SDKs and remain the proof that the adapters keep these contracts.

Every method may raise the :mod:`shared.domain.errors` taxonomy: ``NotFound``,
``TransientError`` (retry later), ``PlatformRejected`` (Azure refused), and the more
specific errors each adapter documents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from azure.core.polling import LROPoller

from shared.config import Settings
from shared.domain.backoff import Failure
from shared.domain.journal import Pending
from shared.domain.model import (
    Certificate,
    CloudServiceSnapshot,
    PackageFacts,
    SecretFacts,
    SecretGroup,
)
from shared.domain.packages import PackageRef
from shared.domain.records import RunRecord

# -- compute ---------------------------------------------------------------------------------


class ServiceReader(Protocol):
    def list_services(self) -> Iterable[CloudServiceSnapshot]:
        """Every cloud service in scope."""
        ...

    def get(self, service_id: str) -> CloudServiceSnapshot:
        """The service as Azure reports it now; NotFound if it is gone."""
        ...


class TagWriter(Protocol):
    def get(self, service_id: str) -> CloudServiceSnapshot: ...

    def set_tags(self, service_id: str, tags: dict[str, str]) -> None:
        """Replace the service's tags (and nothing else)."""
        ...


class CloudServices(ServiceReader, Protocol):
    """Reading and writing cloud services; the operations the executor follows."""

    def begin_update(
        self,
        service: CloudServiceSnapshot,
        configuration: str,
        secrets: tuple[SecretGroup, ...],
        package_url: str | None,
        poll: bool = True,
    ) -> LROPoller[Any]:
        """Send the one PUT. Raises Unconfirmed when it may have landed unanswered."""
        ...

    def resume(self, service_id: str, token: str) -> LROPoller[Any]: ...

    def update_domains(self, service_id: str) -> int: ...

    def begin_walk(
        self, service_id: str, domain: int, token: str | None = None
    ) -> LROPoller[None]: ...

    def instance_states(self, service_id: str) -> dict[str, int]: ...

    def wait(self, poller: LROPoller[Any], timeout: float, tick: Callable[[], None]) -> bool:
        """True once the operation succeeded, False while it still runs after ``timeout``;
        PlatformRejected when it failed."""
        ...

    def final(self, poller: LROPoller[Any]) -> CloudServiceSnapshot: ...


# -- Key Vault -------------------------------------------------------------------------------


class Certificates(Protocol):
    def certificate(self, vault_id: str, vault_url: str, name: str) -> Certificate:
        """The certificate and its versions, read once. VaultAccessDenied, NotFound."""
        ...

    def thumbprint(self, secret_url: str) -> str | None: ...

    def secret_facts(self, secret_id: str) -> SecretFacts: ...

    def can_renew(self, certificate: Certificate) -> bool:
        """Whether its issuer issues a new version without a person."""
        ...

    def renew(self, vault_url: str, name: str) -> bool:
        """Ask for a new version; False when one is being issued already."""
        ...


# -- storage ---------------------------------------------------------------------------------


class JournalLease(Protocol):
    """A held per-service lock and the service's journal (:mod:`shared.domain.journal`)."""

    pending: Pending | None

    def renew(self) -> None: ...

    def write(self, pending: Pending | None) -> None: ...


class Journals(Protocol):
    def lock(self, service_id: str) -> AbstractContextManager[JournalLease]:
        """Hold the service's lease (Busy when someone else does)."""
        ...

    def pending_services(self) -> set[str]:
        """Ids (lower case) of the services whose journal holds a write in flight."""
        ...


class Failures(Protocol):
    def failure(self, service_id: str, certificate: str) -> Failure | None: ...

    def record_failure(self, service_id: str, failure: Failure) -> None: ...

    def clear_failure(self, service_id: str, certificate: str) -> None: ...


class Packages(Protocol):
    def package_facts(self, package: PackageRef) -> PackageFacts: ...

    def package_sas(
        self, package: PackageRef, hours: float, now: datetime
    ) -> tuple[str, datetime]: ...


class RunRecords(Protocol):
    def save_record(self, record: RunRecord) -> None: ...

    def update_record(
        self, record_id: str, change: Callable[[RunRecord | None], RunRecord | None]
    ) -> RunRecord | None:
        """Write ``change(stored)`` unless the record changed meanwhile (then again)."""
        ...

    def load_record(self, record_id: str) -> RunRecord: ...


class Store(Journals, Failures, Packages, RunRecords, Protocol):
    """The app's own storage: journals, failure records, packages, run records."""


class MessageQueue(Protocol):
    def send_later(self, queue: str, text: str, delay_seconds: int) -> None: ...


@dataclass(frozen=True)
class Ports:
    """What every write and every look at a journaled write goes through."""

    compute: CloudServices
    storage: Store
    settings: Settings
    now: Callable[[], datetime]
