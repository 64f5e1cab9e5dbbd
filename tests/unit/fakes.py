"""In-memory fakes of the rotation layer's ports (:mod:`shared.rotation.ports`), no I/O.

Each keeps its state in plain dicts and records the calls that change something in
``calls``, so a test can say what was (not) read or written, in which order. They hold
the ports' contracts as the adapters do (a PUT replaces the service's model; a held
lease is ``Busy``), not the adapters' SDK details: the stack tests (tests/e2e) remain the
proof that the real adapters behave so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.domain.backoff import Failure
from shared.domain.errors import Busy, NotFound
from shared.domain.journal import Pending
from shared.domain.model import (
    Certificate,
    CloudServiceSnapshot,
    PackageFacts,
    SecretFacts,
    SecretGroup,
    secret_key,
)
from shared.domain.packages import PackageRef
from shared.domain.planner import PFX
from shared.domain.records import RunRecord


@dataclass
class FakePoller:
    """An operation: ``final`` is what it left (None: a domain walk); still running while
    not ``done``; ``failure`` is what waiting on it raises (Azure said it failed)."""

    final: CloudServiceSnapshot | None
    token: str = "token"
    done: bool = True
    failure: Exception | None = None

    def continuation_token(self) -> str:
        return self.token

    def polling_method(self) -> Any:
        raise AttributeError  # no operation id: records carry None


@dataclass
class FakeCompute:
    """Cloud services by id; a PUT applies at once and succeeds unless ``put_fails``.

    ``calls`` lists what changes something (PUTs, walks, tags), ``reads`` every read. An
    operation followed by token runs while ``running`` and fails with ``operation_fails``;
    ``domains`` update domains, of which ``walk_fails`` fails domain 1.
    """

    services: dict[str, CloudServiceSnapshot] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    put_fails: Exception | None = None
    instances: dict[str, int] = field(default_factory=lambda: {"RoleState/RoleStateStarted": 2})
    running: bool = False
    operation_fails: Exception | None = None
    domains: int = 1
    walk_fails: Exception | None = None
    sent: list[str] = field(default_factory=list)  # the configurations PUT

    def add(self, *services: CloudServiceSnapshot) -> FakeCompute:
        for s in services:
            self.services[s.id.lower()] = s
        return self

    def list_services(self) -> Iterable[CloudServiceSnapshot]:
        return list(self.services.values())

    def get(self, service_id: str) -> CloudServiceSnapshot:
        self.reads.append("get")
        try:
            return self.services[service_id.lower()]
        except KeyError:
            raise NotFound(f"cloud service {service_id} does not exist") from None

    def begin_update(
        self,
        service: CloudServiceSnapshot,
        configuration: str,
        secrets: tuple[SecretGroup, ...],
        package_url: str | None,
        poll: bool = True,
    ) -> FakePoller:
        self.calls.append(f"put {service.name}")
        self.sent.append(configuration)
        if self.put_fails is not None:
            raise self.put_fails
        updated = replace(
            self.get(service.id), configuration=configuration, secrets=secrets,
            provisioning_state="Succeeded",
        )
        self.services[service.id.lower()] = updated
        return FakePoller(updated)

    def resume(self, service_id: str, token: str) -> FakePoller:
        self.reads.append(f"resume {token}")
        service = self.services[service_id.lower()]
        return FakePoller(service, token, not self.running, self.operation_fails)

    def update_domains(self, service_id: str) -> int:
        self.reads.append("domains")
        return self.domains

    def begin_walk(self, service_id: str, domain: int, token: str | None = None) -> FakePoller:
        self.calls.append(f"walk {domain}")
        fails = self.walk_fails if domain == 1 else None
        return FakePoller(None, f"walk-{domain}", failure=fails)

    def instance_states(self, service_id: str) -> dict[str, int]:
        self.reads.append("instances")
        return dict(self.instances)

    def wait(self, poller: FakePoller, timeout: float, tick: Callable[[], None]) -> bool:
        if poller.failure is not None:
            raise poller.failure
        return poller.done

    def final(self, poller: FakePoller) -> CloudServiceSnapshot:
        self.reads.append("final")
        assert poller.final is not None
        return poller.final

    def set_tags(self, service_id: str, tags: dict[str, str]) -> None:
        self.calls.append(f"tags {service_id.rsplit('/', 1)[-1]}")
        self.services[service_id.lower()] = replace(self.get(service_id), tags=dict(tags))


@dataclass
class FakeKeyVault:
    """Certificates by name and the thumbprint behind every secret URL that exists."""

    certificates: dict[str, Certificate] = field(default_factory=dict)
    thumbprints: dict[tuple[str, str, str], str] = field(default_factory=dict)
    issuer_renews: bool = False
    issuing: bool = False  # a new version is being issued already
    calls: list[str] = field(default_factory=list)

    def certificate(self, vault_id: str, vault_url: str, name: str) -> Certificate:
        self.calls.append(f"read {name}")
        try:
            return self.certificates[name]
        except KeyError:
            raise NotFound(f"certificate '{name}' does not exist in {vault_url}") from None

    def thumbprint(self, secret_url: str) -> str | None:
        return self.thumbprints.get(secret_key(secret_url))

    def secret_facts(self, secret_id: str) -> SecretFacts:
        return SecretFacts(PFX, True)

    def can_renew(self, certificate: Certificate) -> bool:
        return self.issuer_renews

    def renew(self, vault_url: str, name: str) -> bool:
        self.calls.append(f"renew {name}")
        return not self.issuing


@dataclass
class FakeLease:
    storage: FakeStorage
    service_id: str
    pending: Pending | None

    def renew(self) -> None:
        pass

    def write(self, pending: Pending | None) -> None:
        self.storage.calls.append("journal" if pending is not None else "journal cleared")
        self.storage.written.append(pending)
        self.storage.journals[self.service_id] = pending
        self.pending = pending


@dataclass
class FakeStorage:
    """Journals, leases, failure records, packages and run records, in memory."""

    journals: dict[str, Pending | None] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)  # leases someone else holds
    failures: dict[tuple[str, str], Failure] = field(default_factory=dict)
    records: dict[str, RunRecord] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    written: list[Pending | None] = field(default_factory=list)  # journal entries, in order

    @contextmanager
    def lock(self, service_id: str) -> Iterator[FakeLease]:
        key = service_id.lower()
        if key in self.held:
            raise Busy("another invocation is updating this cloud service")
        self.calls.append("lock")
        self.held.add(key)
        try:
            yield FakeLease(self, key, self.journals.get(key))
        finally:
            self.held.discard(key)

    def pending_services(self) -> set[str]:
        return {k for k, v in self.journals.items() if v is not None}

    def failure(self, service_id: str, certificate: str) -> Failure | None:
        return self.failures.get((service_id.lower(), certificate.lower()))

    def record_failure(self, service_id: str, failure: Failure) -> None:
        self.calls.append(f"failure {failure.version}")
        self.failures[(service_id.lower(), failure.certificate.lower())] = failure

    def clear_failure(self, service_id: str, certificate: str) -> None:
        self.calls.append("failure cleared")
        self.failures.pop((service_id.lower(), certificate.lower()), None)

    def package_facts(self, package: PackageRef) -> PackageFacts:
        return PackageFacts(package.url, None, '"etag"')

    def package_sas(
        self, package: PackageRef, hours: float, now: datetime
    ) -> tuple[str, datetime]:
        self.calls.append("sas")
        return f"{package.url}?sig=secret", now + timedelta(hours=hours)

    def save_record(self, record: RunRecord) -> None:
        self.records[record.id] = record

    def update_record(
        self, record_id: str, change: Callable[[RunRecord | None], RunRecord | None]
    ) -> RunRecord | None:
        record = change(self.records.get(record_id))
        if record is not None:
            self.records[record_id] = record
        return record

    def load_record(self, record_id: str) -> RunRecord:
        try:
            return self.records[record_id]
        except KeyError:
            raise NotFound(f"no run {record_id}") from None


@dataclass
class FakeQueues:
    sent: list[tuple[str, str, int]] = field(default_factory=list)

    def send_later(self, queue: str, text: str, delay_seconds: int) -> None:
        self.sent.append((queue, text, delay_seconds))
