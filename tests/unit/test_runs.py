"""Run records without I/O: the stored form round-trips, and the outcome/status enums say
what each value means (tables, one row per member where it matters)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.adapters.storage import parse_record
from shared.domain.errors import PreconditionFailed
from shared.domain.outcomes import Outcome, RunStatus, WriteStatus
from shared.domain.records import (
    Action,
    RunRecord,
    ServiceEntry,
    Trigger,
    WriteFacts,
    keep_finished,
)
from shared.domain.runs import Execution, Run, ServiceResult

CS = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/cloudServices/"
VAULT = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1"


def stored(*entries: dict[str, Any], status: str = "updating") -> dict[str, Any]:
    return {
        "id": "20261203T000000Z-abc",
        "status": status,
        "trigger": {"kind": "event", "eventType": "CertificateNewVersionCreated", "eventId": "e1"},
        "vault": VAULT,
        "certificate": "web-tls",
        "dryRun": False,
        "started": "2026-12-03T00:00:00+00:00",
        "finished": None,
        "actions": [{"kind": "renew-requested", "message": "asked the issuer"}],
        "services": list(entries),
        "force": False,
    }


WRITTEN = {
    "cloudService": CS + "cs1",
    "outcome": "updating",
    "message": "update still running",
    "plan": {"desiredVersion": "v2", "noop": False},
    "package": {"url": "https://a/b.cspkg", "md5": "x"},
    "operationId": "op1",
    "sasExpiry": "2026-12-03T02:00:00+00:00",
    "continuationToken": "tok",
    "finalThumbprints": None,
    "timings": {"submitted": 0.4},
}
REFUSED = {"cloudService": CS + "cs2", "outcome": "refused", "message": "no tag"}


@pytest.mark.parametrize("entries", [(), (WRITTEN,), (REFUSED,), (WRITTEN, REFUSED)])
def test_a_record_round_trips_exactly(entries: tuple[dict[str, Any], ...]) -> None:
    data = stored(*entries)
    record = RunRecord.from_json(data)
    assert record.to_json() == data
    assert RunRecord.from_json(record.to_json()) == record


def test_a_record_reads_typed_values() -> None:
    record = RunRecord.from_json(stored(WRITTEN, REFUSED))
    assert record.status is RunStatus.UPDATING
    assert record.trigger == Trigger("event", "CertificateNewVersionCreated", "e1")
    assert record.actions == (Action("renew-requested", "asked the issuer"),)
    first = record.entry((CS + "CS1").upper())  # ARM ids compare case-insensitively
    assert first is not None and first.outcome is Outcome.UPDATING and first.open
    assert first.write is not None and first.write.operation_id == "op1"
    second = record.entry(CS + "cs2")
    assert second is not None and second.write is None and not second.open


def test_an_unknown_outcome_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'done-ish'"):
        RunRecord.from_json(stored({**REFUSED, "outcome": "done-ish"}))


OUTCOME_MEANINGS = {
    # outcome: (quiet, failed_write, alerts, digest, done, unsuccessful)
    Outcome.ROTATED: (False, False, False, True, True, False),
    Outcome.NOOP: (True, False, False, False, True, False),
    Outcome.DRY_RUN: (False, False, False, False, True, False),
    Outcome.UPDATING: (False, False, False, True, False, False),
    Outcome.QUEUED: (False, False, False, False, False, False),
    Outcome.PENDING: (False, False, False, False, False, False),
    Outcome.REFUSED: (False, False, True, False, False, True),
    Outcome.FAILED: (False, True, True, False, False, True),
    Outcome.ROLLED_BACK: (False, True, True, False, False, True),
    Outcome.UNMANAGED: (True, False, True, False, True, False),
    Outcome.OPTED_OUT: (True, False, False, False, True, False),
    Outcome.TRANSIENT: (False, False, False, False, False, True),
    Outcome.BACKOFF: (True, False, False, False, False, False),
}


def test_every_outcome_has_its_meanings_listed() -> None:
    assert set(OUTCOME_MEANINGS) == set(Outcome)


@pytest.mark.parametrize(("outcome", "meaning"), OUTCOME_MEANINGS.items())
def test_what_an_outcome_means(outcome: Outcome, meaning: tuple[bool, ...]) -> None:
    got = (outcome.quiet, outcome.failed_write, outcome.alerts, outcome.digest, outcome.done,
           outcome.unsuccessful)
    assert got == meaning


@pytest.mark.parametrize(
    ("status", "resumable", "ended"),
    [
        (RunStatus.QUEUED, True, False),
        (RunStatus.RUNNING, True, False),
        (RunStatus.UPDATING, False, False),
        (RunStatus.RETRYING, True, False),
        (RunStatus.TRANSIENT, False, True),
        (RunStatus.DONE, False, True),
    ],
)
def test_what_a_run_status_means(status: RunStatus, resumable: bool, ended: bool) -> None:
    assert (status.resumable, status.ended) == (resumable, ended)


@pytest.mark.parametrize(
    ("outcomes", "left_updating", "retried", "status"),
    [
        ((Outcome.ROTATED, Outcome.NOOP), False, False, RunStatus.DONE),
        ((Outcome.ROTATED, Outcome.UPDATING), False, False, RunStatus.UPDATING),
        ((Outcome.UPDATING, Outcome.TRANSIENT), False, False, RunStatus.TRANSIENT),
        ((Outcome.UPDATING, Outcome.TRANSIENT), False, True, RunStatus.RETRYING),
        ((Outcome.ROTATED,), False, True, RunStatus.DONE),
        ((Outcome.FAILED,), True, False, RunStatus.UPDATING),
        ((), False, False, RunStatus.DONE),
    ],
)
def test_a_run_status_follows_its_outcomes(
    outcomes: tuple[Outcome, ...], left_updating: bool, retried: bool, status: RunStatus
) -> None:
    assert RunStatus.of(outcomes, left_updating=left_updating, retried=retried) is status


@pytest.mark.parametrize(
    ("write", "outcome"),
    [
        (WriteStatus.SUCCEEDED, Outcome.ROTATED),
        (WriteStatus.NOT_APPLIED, Outcome.FAILED),
        (WriteStatus.EARLIER_FAILED, Outcome.FAILED),
        (WriteStatus.ROLLED_BACK, Outcome.ROLLED_BACK),
        (WriteStatus.UPDATING, Outcome.UPDATING),
        (WriteStatus.NOOP, Outcome.NOOP),
    ],
)
def test_a_write_status_maps_to_one_outcome(write: WriteStatus, outcome: Outcome) -> None:
    assert write.outcome is outcome


def test_every_write_status_has_an_outcome() -> None:
    assert all(isinstance(w.outcome, Outcome) for w in WriteStatus)


def _run(*results: ServiceResult, waiting: tuple[str, ...] = ()) -> Run:
    return Run(
        id="20261203T000000Z-abc", trigger=Trigger("manual"), vault_id=VAULT,
        certificate="web-tls", dry_run=False, started=datetime(2026, 12, 3, tzinfo=UTC),
        status=RunStatus.QUEUED, results=list(results), waiting=waiting,
    )


def test_a_queued_run_lists_the_services_it_has_yet_to_reach() -> None:
    run = _run(ServiceResult(CS + "cs1", Outcome.ROTATED), waiting=(CS + "CS1", CS + "cs2"))
    services = run.record().services
    assert [(e.cloud_service, e.outcome) for e in services] == [
        (CS + "cs1", Outcome.ROTATED), (CS + "cs2", Outcome.QUEUED),
    ]


def test_keep_finished_keeps_what_another_invocation_recorded() -> None:
    mine = RunRecord.from_json(stored(WRITTEN))
    ended = ServiceEntry(CS + "cs1", Outcome.ROTATED, "now on version v2 (finished by run r2)",
                         write=WriteFacts(operation_id="op1"))
    other = ServiceEntry(CS + "cs9", Outcome.NOOP, "already converged")
    theirs = RunRecord.from_json(stored()).with_entry(ended).with_entry(other)
    merged = keep_finished(mine, theirs)
    assert [e.outcome for e in merged.services] == [Outcome.ROTATED, Outcome.NOOP]
    assert keep_finished(mine, None) is mine


def test_a_run_adopts_how_its_open_write_ended() -> None:
    result = ServiceResult(CS + "cs1", Outcome.UPDATING, execution=Execution(operation_id="op1"))
    run = _run(result)
    ended = ServiceEntry(CS + "cs1", Outcome.FAILED, "the update failed: Failed",
                         write=WriteFacts(final_thumbprints={"Web/ssl": "AB"}))
    run.adopt(RunRecord.from_json(stored()).with_entry(ended))
    assert (result.outcome, result.message) == (Outcome.FAILED, "the update failed: Failed")
    assert result.execution is not None
    assert result.execution.final_thumbprints == {"Web/ssl": "AB"}


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"{not json", "JSONDecodeError"),
        (json.dumps(stored({**REFUSED, "outcome": "done-ish"})).encode(), "'done-ish'"),
        (json.dumps({**stored(), "status": "paused"}).encode(), "'paused'"),
        (json.dumps({"status": "done"}).encode(), "KeyError"),
    ],
)
def test_a_stored_record_that_cannot_be_read_is_named_not_a_crash(data: bytes, says: str
                                                                  ) -> None:
    with pytest.raises(PreconditionFailed) as refused:
        parse_record("20261203T000000Z-abc", data)
    assert "run record 20261203T000000Z-abc cannot be read" in str(refused.value)
    assert says in str(refused.value)
