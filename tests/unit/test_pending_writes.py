"""Writes that outlived their invocation (:class:`~shared.rotation.pending.PendingWrites`):
finishing a journaled write into the run that sent it, the backoff kept when it ends, a
follow message's look and the sweep, against in-memory fakes of the ports, no I/O."""

from __future__ import annotations

from datetime import timedelta

from shared.domain.backoff import Failure
from shared.domain.journal import Pending
from shared.domain.messages import Follow
from shared.domain.outcomes import Outcome, RunStatus, WriteStatus
from shared.domain.records import Trigger
from shared.domain.runs import Run, ServiceResult, WriteResult
from shared.rotation.pending import PendingWrites
from shared.rotation.recording import RunRecorder
from tests.unit.fakes import FakeCompute, FakeStorage
from tests.unit.test_converge import CONVERGED, OLD, SETTINGS
from tests.unit.test_planner import KV1, NOW, TP2, WEB2, WEB_V2

OTHER = OLD.id.replace("/rg/", "/elsewhere/")  # a service in a resource group out of scope


def entry(run_id: str = "r1") -> Pending:
    return Pending(
        run_id=run_id, kind="update", vault_id=KV1, certificate="web-tls", version=WEB_V2,
        package_url=str(OLD.package_url), expect_thumbprints=(TP2,), expect_secrets=(WEB2,),
        previous_configuration=OLD.configuration, previous_secrets=OLD.secrets,
        submitted=NOW.isoformat(), continuation_token="token",
    )


class Harness:
    def __init__(self, compute: FakeCompute) -> None:
        self.compute = compute
        self.storage = FakeStorage()
        self.announced: list[Run] = []
        records = RunRecorder(self.storage, lambda: NOW, self.announced.append)
        self.pending = PendingWrites(
            SETTINGS, compute, self.storage, lambda: NOW, records,  # type: ignore[arg-type]
            lambda service_id: "/rg/" in service_id,
        )

    def updating_run(self, run_id: str = "r1") -> None:
        """A run that left its update of OLD running, and the journal it left."""
        run = Run(run_id, Trigger("manual"), KV1, "web-tls", False, NOW,
                  status=RunStatus.UPDATING)
        run.results = [ServiceResult(OLD.id, Outcome.UPDATING, "update still running")]
        self.storage.save_record(run.record())
        self.storage.journals[OLD.id.lower()] = entry(run_id)


def test_a_write_that_ended_is_recorded_in_the_run_that_sent_it_and_announced() -> None:
    h = Harness(FakeCompute().add(CONVERGED))  # the update landed
    h.updating_run()
    outcome = h.pending.finish(OLD.id, 0.0, "reconcile")
    assert outcome is not None and outcome.status is WriteStatus.SUCCEEDED
    record = h.storage.load_record("r1")
    assert record.status is RunStatus.DONE
    (service,) = record.services
    assert service.outcome is Outcome.ROTATED
    assert service.message == f"now on version {WEB_V2} (finished by run reconcile)"
    assert h.storage.pending_services() == set()  # the journal let it go
    (announced,) = h.announced
    assert announced.id == "r1" and announced.results[0].outcome is Outcome.ROTATED


def test_nothing_journaled_is_nothing_to_finish() -> None:
    h = Harness(FakeCompute().add(OLD))
    assert h.pending.finish(OLD.id, 0.0, None) is None
    assert h.announced == []


def test_a_failed_write_starts_or_extends_the_backoff_and_a_success_clears_it() -> None:
    h = Harness(FakeCompute().add(OLD))
    ended = h.pending.ended(OLD.id)
    ended(entry(), WriteResult("r1", WriteStatus.FAILED, "the update failed: Failed"))
    first = h.storage.failure(OLD.id, "web-tls")
    assert first is not None and (first.version, first.attempts) == (WEB_V2, 1)
    ended(entry(), WriteResult("r1", WriteStatus.ROLLED_BACK, "restored"))
    again = h.storage.failure(OLD.id, "web-tls")
    assert again is not None and again.attempts == 2
    assert again.until == NOW + timedelta(hours=2)
    ended(entry(), WriteResult("r1", WriteStatus.SUCCEEDED, "now on version"))
    assert h.storage.failure(OLD.id, "web-tls") is None


def test_a_write_that_never_landed_keeps_no_backoff() -> None:
    h = Harness(FakeCompute().add(OLD))
    h.pending.ended(OLD.id)(entry(), WriteResult("r1", WriteStatus.NOT_APPLIED, "never"))
    assert h.storage.calls == []


def test_an_earlier_runs_write_found_by_another_run_is_recorded_in_its_own_run() -> None:
    h = Harness(FakeCompute().add(CONVERGED))
    h.updating_run("r1")
    h.pending.ended(OLD.id, "r2")(entry("r1"), WriteResult("r1", WriteStatus.SUCCEEDED, "done"))
    assert h.storage.load_record("r1").services[0].message == "done (finished by run r2)"


def test_a_look_keeps_what_is_held_or_running_and_drops_what_is_gone_or_out_of_scope() -> None:
    h = Harness(FakeCompute())  # OLD no longer exists
    gone = OLD.id
    held = OLD.id.replace("cs-web", "cs-held")
    h.storage.held.add(held.lower())
    h.storage.journals[gone.lower()] = entry()  # its journal is left, the service is not
    again = h.pending.look(Follow((gone, held, OTHER)))
    assert again == Follow((held,), 1)


def test_the_sweep_counts_what_it_finished_and_what_someone_else_holds() -> None:
    h = Harness(FakeCompute().add(CONVERGED))
    h.updating_run()
    held = OLD.id.replace("cs-web", "cs-held").lower()
    h.storage.journals[held] = entry("r9")
    h.storage.held.add(held)
    h.storage.journals[OTHER.lower()] = entry("r8")  # out of scope: not touched
    outcomes = h.pending.sweep(0.0)
    assert outcomes == {"resumed-succeeded": 1, "busy": 1}
    assert h.storage.journals[OTHER.lower()] is not None


def test_failure_records_are_per_certificate() -> None:
    h = Harness(FakeCompute().add(OLD))
    other = Failure("api-client", "v", "failed", "x", NOW, NOW, 1)
    h.storage.record_failure(OLD.id, other)
    h.pending.ended(OLD.id)(entry(), WriteResult("r1", WriteStatus.SUCCEEDED, "ok"))
    assert h.storage.failure(OLD.id, "api-client") == other
