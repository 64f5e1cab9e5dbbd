"""Runs and their records: one vocabulary of outcomes and statuses, one stored form.

A run is what one invocation did for one certificate: a result per cloud service. While it
works the rotation layer holds a :class:`Run` (with the live :class:`Plan` and
:class:`Execution` of each service); what is stored, read back by later invocations, the
status page, ``certrotate`` and the HTTP API, is its :class:`RunRecord` (one JSON blob per
run). Later invocations finish a record's open writes by editing the record, never the
Run, so every reader goes through :meth:`RunRecord.from_json` and every writer through
:meth:`RunRecord.to_json`: the keys are spelled once, here.

Outcomes, run statuses and write statuses are :class:`~enum.StrEnum`\\ s: their values are
the strings the records and answers carry, and what each means (quiet, alerts, resumable,
...) is a property of the member rather than a set repeated in every module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.domain.messages import SERVICES_QUEUE
from shared.domain.model import PackageFacts, Plan, SecretUrl
from shared.domain.plan_diff import redacted_diff


class Outcome(StrEnum):
    """What a run did to one cloud service (``outcome`` in records and answers)."""

    ROTATED = "rotated"
    NOOP = "noop"
    DRY_RUN = "dry-run"
    UPDATING = "updating"  # Azure accepted the PUT; a follow look records how it ends
    QUEUED = "queued"  # a queued manual run has yet to reach the service
    PENDING = "pending"  # being worked on (never stored as a final outcome)
    REFUSED = "refused"  # bad input or a rule: nothing was sent
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    UNMANAGED = "unmanaged"
    OPTED_OUT = "opted-out"
    TRANSIENT = "transient"  # could not be done now; a retry will
    BACKOFF = "backoff"  # this version failed before; not tried again until it changes

    @property
    def quiet(self) -> bool:
        """Nothing to tell: a reconcile run of only these is neither stored nor announced."""
        return self in {Outcome.NOOP, Outcome.UNMANAGED, Outcome.OPTED_OUT, Outcome.BACKOFF}

    @property
    def failed_write(self) -> bool:
        """A write reached Azure and failed: its version backs off (:mod:`.backoff`)."""
        return self in {Outcome.FAILED, Outcome.ROLLED_BACK}

    @property
    def alerts(self) -> bool:
        """Someone must look: notifications send these as alerts."""
        return self in {Outcome.FAILED, Outcome.REFUSED, Outcome.ROLLED_BACK, Outcome.UNMANAGED}

    @property
    def digest(self) -> bool:
        """Good news worth telling (notifications' digest)."""
        return self in {Outcome.ROTATED, Outcome.UPDATING}

    @property
    def done(self) -> bool:
        """Nothing is left to do for the service (the CLI exits 0 only when all are)."""
        return self in {
            Outcome.ROTATED, Outcome.NOOP, Outcome.DRY_RUN, Outcome.UNMANAGED, Outcome.OPTED_OUT
        }

    @property
    def unsuccessful(self) -> bool:
        """The service's last run did not get it where it should be (status flags it)."""
        return self in {Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.REFUSED, Outcome.TRANSIENT}


class RunStatus(StrEnum):
    """Where a run stands (``status`` in records)."""

    QUEUED = "queued"  # an operator's run, written before its batch was sent
    RUNNING = "running"
    UPDATING = "updating"  # ended its invocation with updates still running in Azure
    TRANSIENT = "transient"  # a service failed transiently: the message is retried
    DONE = "done"

    @property
    def resumable(self) -> bool:
        """A queued manual run's batch may (still, or again) run it: queued, an attempt that
        died (running) or failed transiently. One that ended or left updates running is
        done with."""
        return self in {RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.TRANSIENT}

    @property
    def ended(self) -> bool:
        """Nothing of the run will change any more (``follow`` stops here)."""
        return self in {RunStatus.DONE, RunStatus.TRANSIENT}

    @classmethod
    def of(cls, outcomes: Iterable[Outcome], *, left_updating: bool) -> RunStatus:
        """The status of a run whose services ended with ``outcomes``."""
        seen = set(outcomes)
        if Outcome.TRANSIENT in seen:
            return cls.TRANSIENT
        return cls.UPDATING if left_updating or Outcome.UPDATING in seen else cls.DONE


class WriteStatus(StrEnum):
    """How a write to one service went, as the executor reports it."""

    PENDING = "pending"
    NOOP = "noop"  # re-planned under the lease: nothing left to write
    SUCCEEDED = "succeeded"
    UPDATING = "updating"
    FAILED = "failed"
    ROLLED_BACK = "rolled-back"
    NOT_APPLIED = "not-applied"  # a PUT without Azure's answer that never landed
    EARLIER_FAILED = "earlier-failed"  # an earlier invocation's write failed; none sent

    @property
    def failed(self) -> bool:
        """The write reached Azure and failed (a not-applied one never landed)."""
        return self in {WriteStatus.FAILED, WriteStatus.ROLLED_BACK}

    @property
    def ended(self) -> bool:
        """A write that reached Azure has ended: what a run records as its own result, and
        what the failure backoff is kept (or cleared) for."""
        return self in {WriteStatus.SUCCEEDED, WriteStatus.FAILED, WriteStatus.ROLLED_BACK}

    @property
    def outcome(self) -> Outcome:
        """The outcome a run records for a write that went this way."""
        return _WRITE_OUTCOMES[self]


_WRITE_OUTCOMES = {
    WriteStatus.NOOP: Outcome.NOOP,
    WriteStatus.SUCCEEDED: Outcome.ROTATED,
    WriteStatus.UPDATING: Outcome.UPDATING,
    WriteStatus.FAILED: Outcome.FAILED,
    WriteStatus.ROLLED_BACK: Outcome.ROLLED_BACK,
    WriteStatus.NOT_APPLIED: Outcome.FAILED,
    WriteStatus.EARLIER_FAILED: Outcome.FAILED,
    WriteStatus.PENDING: Outcome.PENDING,
}

QUEUED_MESSAGE = f"queued on {SERVICES_QUEUE}: a worker takes it"


@dataclass
class WriteResult:
    """How a journaled write ended (or that it has not yet)."""

    run_id: str
    status: WriteStatus
    message: str = ""
    final_thumbprints: dict[str, str] = field(default_factory=dict)
    # False: the run that sent the write already recorded the truth (an unconfirmed PUT
    # that did not land was recorded ``transient`` with Azure's answer): nothing to add.
    record: bool = True


@dataclass
class Execution:
    """What happened while executing (mutable while it runs, then read by the caller)."""

    status: WriteStatus = WriteStatus.PENDING
    message: str = ""
    operation_id: str | None = None
    package: PackageFacts | None = None  # the blob deployed, as read before the PUT
    sas_expiry: datetime | None = None
    continuation_token: str | None = None
    final_thumbprints: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    resumed: WriteResult | None = None  # an earlier invocation's write, finished first


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


@dataclass(frozen=True)
class Rollout:
    """Which version a result moves its service to, and from which versions: what
    notifications and telemetry report, for a result planned now or one finished later
    from its run record (where only the described plan is left)."""

    to_version: str
    to_thumbprint: str | None
    expires: datetime | None
    from_versions: tuple[str, ...]

    @classmethod
    def of(cls, plan: Plan) -> Rollout:
        return cls(
            plan.desired.version,
            plan.desired.thumbprint,
            plan.desired.expires,
            _versions_of(plan.secrets_removed, plan.certificate),
        )

    @classmethod
    def from_record(cls, described: dict[str, Any] | None, certificate: str) -> Rollout | None:
        """From a record's ``plan`` (see :func:`describe`); None for a record without one."""
        if not described:
            return None
        expires = described.get("desiredExpires")
        return cls(
            described["desiredVersion"],
            described.get("desiredThumbprint"),
            datetime.fromisoformat(expires) if expires else None,
            _versions_of(described["osProfile"]["removed"], certificate),
        )


def _versions_of(secret_urls: Iterable[str], certificate: str) -> tuple[str, ...]:
    """Versions of ``certificate`` among secret URLs (those a plan takes out of osProfile)."""
    parsed = (SecretUrl.parse(u) for u in secret_urls)
    return tuple(
        p.version for p in parsed if p and p.version and p.name.lower() == certificate.lower()
    )


def is_open(outcome: Outcome, operation_id: str | None) -> bool:
    """Whether another invocation may record how a result's write ends: it is still
    ``updating``, or it was left ``transient`` after Azure accepted its PUT (the journal
    holds it and ``follow_updates`` or the next run finishes it into the run's record)."""
    return outcome is Outcome.UPDATING or (outcome is Outcome.TRANSIENT and bool(operation_id))


def describe(plan: Plan) -> dict[str, Any]:
    """The plan as operators read it: versions, changes, cscfg diff, osProfile change.

    The diff shows only the certificates that change (and the thumbprints of settings the
    rotation rewrites): no other cscfg text, so no setting's secret, ever leaves here.
    """
    diff = redacted_diff(plan.configuration_before, plan.configuration_after)
    return {
        "desiredVersion": plan.desired.version,
        "desiredThumbprint": plan.desired.thumbprint,
        "desiredExpires": plan.desired.expires.isoformat() if plan.desired.expires else None,
        "changes": [
            {"role": c.role, "certificate": c.certificate, "from": c.old, "to": c.new}
            for c in plan.changes
        ],
        "cscfgDiff": diff,
        "osProfile": {"added": list(plan.secrets_added), "removed": list(plan.secrets_removed)},
        "warnings": list(plan.warnings),
        "noop": plan.is_noop,
    }


# -- the stored form -----------------------------------------------------------------------


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


@dataclass
class ServiceResult:
    """One service's result in a run being worked (see :class:`ServiceEntry` once stored)."""

    service_id: str
    outcome: Outcome
    message: str = ""
    plan: Plan | None = None
    execution: Execution | None = None
    resumed: Rollout | None = None  # a write finished after its run: the plan is gone
    # transient only because something in progress must end first (domain.errors.Waiting)
    waiting: bool = False

    def __post_init__(self) -> None:
        self.outcome = Outcome(self.outcome)  # a value read back as its string is one too

    @property
    def open(self) -> bool:
        """See :func:`is_open`."""
        operation = self.execution.operation_id if self.execution is not None else None
        return is_open(self.outcome, operation)

    @property
    def rollout(self) -> Rollout | None:
        return Rollout.of(self.plan) if self.plan is not None else self.resumed

    def entry(self) -> ServiceEntry:
        write = None
        if self.execution is not None:
            ex = self.execution
            write = WriteFacts(
                package=ex.package.to_json() if ex.package else None,
                operation_id=ex.operation_id,
                sas_expiry=ex.sas_expiry.isoformat() if ex.sas_expiry else None,
                continuation_token=(
                    ex.continuation_token if self.outcome is Outcome.UPDATING else None
                ),
                final_thumbprints=ex.final_thumbprints or None,
                timings=ex.timings,
            )
        plan = describe(self.plan) if self.plan is not None else None
        return ServiceEntry(self.service_id, self.outcome, self.message, plan, write)

    def to_json(self) -> dict[str, Any]:
        return self.entry().to_json()


@dataclass
class Run:
    """A run being worked: its results grow as services are converged."""

    id: str
    trigger: Trigger
    vault_id: str
    certificate: str
    dry_run: bool
    started: datetime
    status: RunStatus = RunStatus.RUNNING
    finished: datetime | None = None
    actions: list[Action] = field(default_factory=list)
    results: list[ServiceResult] = field(default_factory=list)
    force: bool = False  # an operator lifted the failure backoff for this run
    # Services a queued manual run has yet to reach: its record lists them ``queued`` (as
    # the HTTP answer did) until their result replaces them, so it never looks emptier
    # than what the operator was told.
    waiting: tuple[str, ...] = ()

    @property
    def quiet(self) -> bool:
        """A reconcile run that found everything converged: not stored, not announced
        (telemetry still sees it, for the days-to-expiry gauge)."""
        return (
            self.trigger.kind == "reconcile"
            and not self.actions
            and all(r.outcome.quiet for r in self.results)
        )

    @property
    def transient(self) -> bool:
        return any(r.outcome is Outcome.TRANSIENT for r in self.results)

    def adopt(self, stored: RunRecord) -> None:
        """Take over how another invocation recorded the end of an update this run left
        running, so the run's status and what it writes next agree with the record."""
        ended = stored.ended_entries()
        for result in self.results:
            entry = ended.get(result.service_id.lower())
            if result.open and entry is not None:
                result.outcome, result.message = entry.outcome, entry.message
                if result.execution is not None:
                    thumbprints = entry.write.final_thumbprints if entry.write else None
                    result.execution.final_thumbprints = dict(thumbprints or {})

    def record(self) -> RunRecord:
        reached = {r.service_id.lower() for r in self.results}
        return RunRecord(
            id=self.id,
            status=self.status,
            trigger=self.trigger,
            vault=self.vault_id,
            certificate=self.certificate,
            dry_run=self.dry_run,
            started=self.started.isoformat(),
            finished=self.finished.isoformat() if self.finished else None,
            actions=tuple(self.actions),
            services=tuple(r.entry() for r in self.results) + tuple(
                ServiceEntry(s, Outcome.QUEUED, QUEUED_MESSAGE)
                for s in self.waiting
                if s.lower() not in reached
            ),
            force=self.force,
        )

    def to_json(self) -> dict[str, Any]:
        return self.record().to_json()


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
