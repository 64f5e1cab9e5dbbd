"""Runs: what one invocation does for one certificate, a result per cloud service.

While it works the rotation layer holds a :class:`Run` with the live :class:`Plan` and
:class:`Execution` of each service; :meth:`Run.record` gives the stored form
(:mod:`shared.domain.records`), and :class:`WriteResult` is how a journaled write ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.domain.messages import SERVICES_QUEUE
from shared.domain.model import PackageFacts, Plan, SecretUrl
from shared.domain.outcomes import Outcome, RunStatus, WriteStatus
from shared.domain.plan_diff import redacted_diff
from shared.domain.records import (
    Action,
    RunRecord,
    ServiceEntry,
    Trigger,
    WriteFacts,
    is_open,
)

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
