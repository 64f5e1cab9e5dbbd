"""Converging one cloud service: each decision and its reason, then the act step through the
executor, against in-memory fakes of the ports (tests/unit/fakes.py), no I/O.

The decisions themselves are pure (:mod:`shared.domain.convergence`) and tested first on
their own; then :class:`~shared.rotation.converge.Converger` shows each decision becoming
the service's outcome with the reads and writes it implies (nothing locked or written for
a decision that does not write). The same paths run through the real SDKs in tests/e2e.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest

from shared.config import Settings
from shared.domain import convergence
from shared.domain.backoff import Failure
from shared.domain.convergence import Reason
from shared.domain.errors import TransientError
from shared.domain.model import OPT_OUT_TAG, PACKAGE_TAG, CloudServiceSnapshot
from shared.domain.outcomes import Outcome, WriteStatus
from shared.domain.records import Trigger
from shared.domain.runs import Run, ServiceResult, WriteResult
from shared.rotation.converge import Converger
from shared.rotation.pending import PendingWrites
from shared.rotation.ports import Ports
from shared.rotation.recording import RunRecorder
from tests.unit.fakes import FakeCompute, FakeKeyVault, FakeStorage
from tests.unit.test_planner import (
    API_URL,
    CLIENT_URL,
    NOW,
    SUB,
    TP1,
    TP2,
    V1,
    V2,
    WEB1,
    WEB2,
    WEB_V2,
    WORLD,
    certificate,
    cscfg,
    kv1,
    kv2,
    service,
)

SETTINGS = Settings.from_env(
    {
        "ROTATION_SUBSCRIPTIONS": SUB,
        "ROTATION_STORAGE_URL": "https://app.blob.core.windows.net",
        "PACKAGE_CONTAINERS": "https://pkgs.blob.core.windows.net/packages",
    }
)
CERT = certificate(V1, V2)  # V2 is the desired version at NOW
OLD = service(cscfg(TP1, TP1), kv1(WEB1, CLIENT_URL), kv2(API_URL))  # on V1: a write to make
CONVERGED = service(cscfg(TP2, TP2), kv1(WEB2, CLIENT_URL), kv2(API_URL))


def tagged(snapshot: CloudServiceSnapshot, **tags: str) -> CloudServiceSnapshot:
    return replace(snapshot, tags={**snapshot.tags, **tags})


def untagged(snapshot: CloudServiceSnapshot) -> CloudServiceSnapshot:
    return replace(snapshot, tags={k: v for k, v in snapshot.tags.items() if k != PACKAGE_TAG})


# -- the pure decisions --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snapshot", "untagged_mode", "reason"),
    [
        (tagged(OLD, **{OPT_OUT_TAG: "off"}), "report", Reason.OPTED_OUT),
        (untagged(OLD), "report", Reason.UNMANAGED),
        (untagged(OLD), "update", Reason.WRITE),  # a configuration-only update
        (OLD, "report", Reason.WRITE),
    ],
)
def test_admit(snapshot: CloudServiceSnapshot, untagged_mode: str, reason: Reason) -> None:
    assert convergence.admit(snapshot, untagged=untagged_mode).reason is reason


@pytest.mark.parametrize(
    ("earlier", "kwargs", "reason"),
    [
        (None, {"this_run": "r2"}, Reason.WRITE),
        (WriteResult("r1", WriteStatus.UPDATING), {"this_run": "r2"}, Reason.STILL_RUNNING),
        (WriteResult("r1", WriteStatus.UPDATING), {"version": "v"}, Reason.STILL_RUNNING),
        (WriteResult("r2", WriteStatus.SUCCEEDED, "now on v"), {"this_run": "r2"},
         Reason.OWN_WRITE_ENDED),
        (WriteResult("r1", WriteStatus.SUCCEEDED), {"this_run": "r2"}, Reason.WRITE),
        (WriteResult("r2", WriteStatus.NOT_APPLIED), {"this_run": "r2"}, Reason.WRITE),
        (WriteResult("r1", WriteStatus.FAILED), {"wrote": "v", "version": "v"},
         Reason.SAME_VERSION_FAILED),
        (WriteResult("r1", WriteStatus.FAILED), {"wrote": "v", "version": "w"}, Reason.WRITE),
        (WriteResult("r1", WriteStatus.SUCCEEDED), {"wrote": "v", "version": "v"}, Reason.WRITE),
    ],
)
def test_after_earlier_write(
    earlier: WriteResult | None, kwargs: dict[str, str], reason: Reason
) -> None:
    assert convergence.after_earlier_write(earlier, **kwargs).reason is reason  # type: ignore[arg-type]


def test_a_write_of_this_run_that_ended_is_its_result() -> None:
    decided = convergence.after_earlier_write(
        WriteResult("r2", WriteStatus.ROLLED_BACK, "restored"), this_run="r2"
    )
    assert (decided.outcome, decided.message) == (Outcome.ROLLED_BACK, "restored")


def test_a_plan_decides_noop_failed_state_dry_run_or_write() -> None:
    noop = _plan(CONVERGED)
    change = _plan(OLD)
    failed = replace(CONVERGED, provisioning_state="Failed")
    assert convergence.after_plan(CONVERGED, noop, dry_run=False).reason is Reason.NOOP
    assert convergence.after_plan(failed, noop, dry_run=False).reason is Reason.FAILED_STATE
    assert convergence.after_plan(OLD, change, dry_run=True).reason is Reason.DRY_RUN
    assert convergence.after_plan(OLD, change, dry_run=False).writes


def test_backoff_blocks_the_failed_version_until_it_ends_unless_forced() -> None:
    plan = _plan(OLD)
    failure = _failure(WEB_V2, minutes_ago=10)
    assert convergence.before_write(failure, plan, NOW, force=False).reason is Reason.BACKOFF
    assert convergence.before_write(failure, plan, NOW, force=True).writes
    later = NOW + timedelta(hours=2)
    assert convergence.before_write(failure, plan, later, force=False).writes
    other = _failure("0" * 32, minutes_ago=10)
    assert convergence.before_write(other, plan, NOW, force=False).writes


# -- the act step --------------------------------------------------------------------------


@dataclass
class World:
    compute: FakeCompute
    keyvault: FakeKeyVault = field(
        default_factory=lambda: FakeKeyVault({"web-tls": CERT}, dict(WORLD))
    )
    storage: FakeStorage = field(default_factory=FakeStorage)
    announced: list[Run] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    earlier: WriteResult | None = None  # what finishing a journaled write returns

    def converger(self) -> Converger:
        records = RunRecorder(self.storage, lambda: NOW, self.announced.append)
        pending = PendingWrites(
            SETTINGS, self.compute, self.storage, lambda: NOW, records,  # type: ignore[arg-type]
            lambda _: True,
        )

        def finish(
            service_id: str, wait: float, by_run: str | None, look: bool
        ) -> WriteResult | None:
            self.finished.append(service_id)
            return self.earlier

        return Converger(
            Ports(self.compute, self.storage, SETTINGS, lambda: NOW),  # type: ignore[arg-type]
            self.keyvault, records, finish, pending.ended,
        )

    def converge(
        self, snapshot: CloudServiceSnapshot, *, dry_run: bool = False, force: bool = False,
        pending: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> ServiceResult:
        run = Run("r2", Trigger("manual"), CERT.vault_id, CERT.name, dry_run, NOW, force=force)
        result = self.converger().converge(run, snapshot, CERT, lambda: 30.0, set(pending))
        run.results.append(result)
        return result


def world(*services: CloudServiceSnapshot) -> World:
    return World(FakeCompute().add(*services))


def test_opted_out_reads_and_writes_nothing() -> None:
    w = world(tagged(OLD, **{OPT_OUT_TAG: "off"}))
    result = w.converge(w.compute.get(OLD.id))
    assert (result.outcome, result.message) == (Outcome.OPTED_OUT, "tag cert-rotation=off")
    assert w.keyvault.calls == [] and w.storage.calls == []


def test_unmanaged_says_which_tag_is_missing() -> None:
    w = world(untagged(OLD))
    result = w.converge(w.compute.get(OLD.id))
    assert result.outcome is Outcome.UNMANAGED
    assert f"'{PACKAGE_TAG}' tag" in result.message
    assert w.storage.calls == []


def test_a_refused_package_tag_is_refused_before_anything_is_planned() -> None:
    hostile = tagged(OLD, **{PACKAGE_TAG: "https://evil.blob.core.windows.net/p/x.cspkg"})
    w = world(hostile)
    result = w.converge(hostile)
    assert result.outcome is Outcome.REFUSED
    assert result.plan is None and w.storage.calls == [] and w.compute.calls == []


def test_noop_when_already_on_the_desired_version() -> None:
    w = world(CONVERGED)
    result = w.converge(CONVERGED)
    assert (result.outcome, result.message) == (Outcome.NOOP, "already converged")
    assert w.storage.calls == []  # no lease, no backoff record read for a no-op


def test_a_failed_service_already_holding_the_version_is_failed_and_not_written() -> None:
    failed = replace(CONVERGED, provisioning_state="Failed")
    w = world(failed)
    result = w.converge(failed)
    assert result.outcome is Outcome.FAILED
    assert "state Failed" in result.message and "nothing was sent" in result.message
    assert w.compute.calls == []


def test_a_dry_run_plans_and_writes_nothing() -> None:
    w = world(OLD)
    result = w.converge(OLD, dry_run=True, pending={OLD.id.lower()})
    assert result.outcome is Outcome.DRY_RUN
    assert result.plan is not None and result.plan.desired.version == WEB_V2
    assert w.storage.calls == [] and w.compute.calls == [] and w.finished == []


def test_a_version_that_failed_backs_off() -> None:
    w = world(OLD)
    failure = _failure(WEB_V2, minutes_ago=10)
    w.storage.failures[(OLD.id.lower(), "web-tls")] = failure
    result = w.converge(OLD)
    assert (result.outcome, result.message) == (Outcome.BACKOFF, failure.describe())
    assert w.compute.calls == [] and "lock" not in w.storage.calls


def test_an_operator_forcing_it_writes_through_the_backoff() -> None:
    w = world(OLD)
    w.storage.failures[(OLD.id.lower(), "web-tls")] = _failure(WEB_V2, minutes_ago=10)
    result = w.converge(OLD, force=True)
    assert result.outcome is Outcome.ROTATED
    assert w.storage.calls[-1] == "failure cleared"  # a success ends the backoff


def test_a_write_goes_sas_journal_put_and_ends_rotated() -> None:
    w = world(OLD)
    result = w.converge(OLD)
    assert (result.outcome, result.message) == (Outcome.ROTATED, f"now on version {WEB_V2}")
    assert w.storage.calls[:4] == ["lock", "sas", "journal", "journal"]
    assert w.storage.calls[-1] == "journal cleared"
    assert w.compute.calls == ["put cs-web"]
    assert w.keyvault.calls == ["read web-tls"]  # read again under the lease
    now_on = w.compute.get(OLD.id)
    assert WEB2 in now_on.secrets[0].certificate_urls and TP2 in now_on.configuration
    (record,) = w.storage.records.values()  # saved when Azure accepted the PUT
    assert record.services[0].outcome is Outcome.UPDATING
    assert "sig=" not in str(record.to_json())  # the SAS is never recorded


def test_a_transient_failure_of_the_put_is_retried_later_and_leaves_no_journal() -> None:
    w = world(OLD)
    w.compute.put_fails = TransientError("updating cloud service cs-web: 409 Conflict")
    result = w.converge(OLD)
    assert result.outcome is Outcome.TRANSIENT and "409 Conflict" in result.message
    assert not result.waiting
    assert w.storage.pending_services() == set()


def test_an_earlier_write_still_running_is_waited_for_before_planning() -> None:
    w = world(OLD)
    w.earlier = WriteResult("r1", WriteStatus.UPDATING, "update still running")
    result = w.converge(OLD, pending={OLD.id.lower()})
    assert result.outcome is Outcome.TRANSIENT and result.waiting
    assert result.message == "the update sent by run r1 is still running"
    assert result.plan is None and w.compute.calls == []


def test_this_runs_own_earlier_write_is_its_result() -> None:
    w = world(CONVERGED)
    w.earlier = WriteResult("r2", WriteStatus.SUCCEEDED, f"now on version {WEB_V2}")
    result = w.converge(OLD, pending={OLD.id.lower()})
    assert (result.outcome, result.message) == (Outcome.ROTATED, f"now on version {WEB_V2}")
    assert result.plan is None  # not re-planned: 'noop' would hide what the run did


def test_an_earlier_write_that_ended_is_planned_afresh_from_the_service() -> None:
    w = world(CONVERGED)  # the earlier write (another run's) put V2 there
    w.earlier = WriteResult("r1", WriteStatus.SUCCEEDED, f"now on version {WEB_V2}")
    result = w.converge(OLD, pending={OLD.id.lower()})
    assert w.finished == [OLD.id]
    assert result.outcome is Outcome.NOOP


def test_a_failed_write_records_the_backoff() -> None:
    w = world(OLD)
    w.compute.instances = {"RoleState/RoleStateDestroyed": 1}
    result = w.converge(OLD)
    assert result.outcome is Outcome.FAILED
    failure = w.storage.failure(OLD.id, "web-tls")
    assert failure is not None and failure.version == WEB_V2 and failure.attempts == 1


def _plan(snapshot: CloudServiceSnapshot):  # type: ignore[no-untyped-def]
    from shared.domain.planner import plan_rotation
    from tests.unit.test_planner import observed

    return plan_rotation(snapshot, CERT, observed(snapshot), NOW)


def _failure(version: str, *, minutes_ago: int) -> Failure:
    when = NOW - timedelta(minutes=minutes_ago)
    return Failure("web-tls", version, "failed", "the update failed: Failed", when, when, 1)
