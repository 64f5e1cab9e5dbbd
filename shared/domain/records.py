"""Run records: the stored form of a run, read and written the same way by everyone.

One JSON blob per run. Later invocations finish a record's open writes by editing the
record (never the live :class:`~shared.domain.runs.Run`), and the status page, the CLI
and the HTTP API read it, so every reader goes through :meth:`RunRecord.from_json` and
every writer through :meth:`RunRecord.to_json`: the keys are spelled once, here
(``_camel`` derives a write's keys from its field names). Round trips are exact
(tests/unit/test_runs.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from shared.domain.outcomes import Outcome, RunStatus


@dataclass(frozen=True)
class Trigger:
    kind: str  # event | manual | reconcile
    event_type: str | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class Action:
    """What the run learned beyond per-service outcomes, for people and notifications.

    ``kind``: ``renew-requested`` (we asked the issuer), ``renew-pending`` (an issuance is
    already running), ``renew-required`` (a person must renew), ``newer-version`` (a
    NearExpiry event for a version already superseded) or ``expired``.
    """

    kind: str
    message: str


def is_open(outcome: Outcome, operation_id: str | None) -> bool:
    """Whether another invocation may record how a result's write ends: it is still
    ``updating``, or it was left ``transient`` after Azure accepted its PUT (the journal
    holds it and ``follow_updates`` or the next run finishes it into the run's record)."""
    return outcome is Outcome.UPDATING or (outcome is Outcome.TRANSIENT and bool(operation_id))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class WriteFacts:
    """What a service entry records of a write Azure was sent: the package, the operation,
    the SAS's expiry (never the SAS), the thumbprints it left, step timings."""

    package: dict[str, Any] | None = None
    operation_id: str | None = None
    sas_expiry: str | None = None
    continuation_token: str | None = None  # only while ``updating``
    final_thumbprints: dict[str, str] | None = None
    timings: dict[str, float] = field(default_factory=dict)


_WRITE_KEYS = {_camel(f.name): f.name for f in fields(WriteFacts)}


@dataclass(frozen=True)
class ServiceEntry:
    """One service of a stored run (``services[]`` in records and answers)."""

    cloud_service: str
    outcome: Outcome
    message: str = ""
    plan: dict[str, Any] | None = None  # :func:`describe`'s form
    write: WriteFacts | None = None  # None: nothing was sent (or nothing yet)

    @property
    def open(self) -> bool:
        return is_open(self.outcome, self.write.operation_id if self.write else None)

    @property
    def ended(self) -> bool:
        """Its write has ended (not open, not still queued)."""
        return not self.open and self.outcome is not Outcome.QUEUED

    def is_for(self, service_id: str) -> bool:
        return self.cloud_service.lower() == service_id.lower()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cloudService": self.cloud_service,
            "outcome": str(self.outcome),
            "message": self.message,
        }
        if self.plan is not None:
            out["plan"] = self.plan
        if self.write is not None:
            out.update({key: getattr(self.write, name) for key, name in _WRITE_KEYS.items()})
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServiceEntry:
        write = None
        if any(key in data for key in _WRITE_KEYS):
            write = WriteFacts(
                **{name: data.get(key) for key, name in _WRITE_KEYS.items() if key != "timings"},
                timings=dict(data.get("timings") or {}),
            )
        return cls(
            cloud_service=str(data["cloudService"]),
            outcome=Outcome(data.get("outcome", Outcome.PENDING)),
            message=str(data.get("message", "")),
            plan=data.get("plan"),
            write=write,
        )


@dataclass(frozen=True)
class RunRecord:
    """A stored run: what every reader of run records reads and every writer writes."""

    id: str
    status: RunStatus
    trigger: Trigger
    vault: str
    certificate: str
    dry_run: bool
    started: str  # ISO 8601, as stored
    finished: str | None
    actions: tuple[Action, ...] = ()
    services: tuple[ServiceEntry, ...] = ()
    force: bool = False

    def entry(self, service_id: str) -> ServiceEntry | None:
        return next((e for e in self.services if e.is_for(service_id)), None)

    def names(self, service_id: str) -> bool:
        return self.entry(service_id) is not None

    def queued_for(self, vault_id: str, certificate: str, services: Iterable[str]) -> bool:
        """Whether this is an operator's run of the vault and certificate naming every one
        of ``services``: what a queued batch (or its poison copy) claiming to be this run
        must match before it may act on the record (only someone with queue-write access
        can send one, and a forged one must not touch another run)."""
        return (
            self.trigger.kind == "manual"
            and self.vault.lower() == vault_id.lower()
            and self.certificate.lower() == certificate.lower()
            and all(self.names(s) for s in services)
        )

    def ended_entries(self) -> dict[str, ServiceEntry]:
        """Entries whose write has ended, by lower-cased service id."""
        return {e.cloud_service.lower(): e for e in self.services if e.ended}

    def with_entry(self, entry: ServiceEntry) -> RunRecord:
        """This record with ``entry`` in place of the service's (appended if absent)."""
        mine = [e for e in self.services if not e.is_for(entry.cloud_service)]
        if len(mine) == len(self.services):
            return replace(self, services=(*self.services, entry))
        return replace(
            self,
            services=tuple(entry if e.is_for(entry.cloud_service) else e for e in self.services),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": str(self.status),
            "trigger": {
                "kind": self.trigger.kind,
                "eventType": self.trigger.event_type,
                "eventId": self.trigger.event_id,
            },
            "vault": self.vault,
            "certificate": self.certificate,
            "dryRun": self.dry_run,
            "started": self.started,
            "finished": self.finished,
            "actions": [{"kind": a.kind, "message": a.message} for a in self.actions],
            "services": [e.to_json() for e in self.services],
            "force": self.force,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        trigger = data.get("trigger") or {}
        return cls(
            id=str(data["id"]),
            status=RunStatus(data["status"]),
            trigger=Trigger(str(trigger.get("kind", "")), trigger.get("eventType"),
                            trigger.get("eventId")),
            vault=str(data.get("vault", "")),
            certificate=str(data.get("certificate", "")),
            dry_run=bool(data.get("dryRun", False)),
            started=str(data.get("started", "")),
            finished=data.get("finished"),
            actions=tuple(Action(a["kind"], a["message"]) for a in data.get("actions", [])),
            services=tuple(ServiceEntry.from_json(e) for e in data.get("services", [])),
            force=bool(data.get("force", False)),
        )


def keep_finished(record: RunRecord, stored: RunRecord | None) -> RunRecord:
    """The run's ``record`` to write over ``stored``, keeping what another invocation wrote
    about how one of the run's updates ended (the run itself still says ``updating``), and
    the entries of services this run does not name."""
    if stored is None:
        return record
    ended = stored.ended_entries()
    kept = tuple(
        ended.get(e.cloud_service.lower(), e) if e.open else e for e in record.services
    )
    others = tuple(e for e in stored.services if not record.names(e.cloud_service))
    return replace(record, services=kept + others)
