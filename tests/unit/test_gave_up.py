"""The queue gave up on an operator's batch: the run it resumed ends ``transient`` with the
gave-up action, so a follower stops; a record the poison message does not match is left
alone. In-memory fakes, no I/O."""

from __future__ import annotations

from shared.domain.messages import Requested
from shared.domain.outcomes import Outcome, RunStatus
from shared.domain.records import RunRecord, Trigger
from shared.domain.runs import Run, ServiceResult
from shared.rotation.recording import RunRecorder
from tests.unit.fakes import FakeStorage
from tests.unit.test_converge import OLD
from tests.unit.test_planner import KV1, NOW

SECOND = OLD.id.replace("/cloudServices/", "/cloudServices/second-")


def recorder_with(status: RunStatus) -> tuple[RunRecorder, FakeStorage, list[Run]]:
    """A manual run ``m1`` of OLD (transient so far) and SECOND (not reached yet)."""
    storage, announced = FakeStorage(), []
    run = Run("m1", Trigger("manual"), KV1, "web-tls", False, NOW, status=status)
    run.results = [ServiceResult(OLD.id, Outcome.TRANSIENT, "Azure answered 503")]
    run.waiting = (OLD.id, SECOND)
    storage.save_record(run.record())
    return RunRecorder(storage, lambda: NOW, announced.append), storage, announced


def gave_up(recorder: RunRecorder, vault: str = KV1) -> None:
    recorder.gave_up(vault, "web-tls", Requested("m1"), (OLD.id, SECOND))


def test_a_retrying_manual_run_ends_transient_with_the_gave_up_action() -> None:
    recorder, storage, announced = recorder_with(RunStatus.RETRYING)
    gave_up(recorder)
    record = storage.load_record("m1")
    assert record.status is RunStatus.TRANSIENT and record.status.ended
    assert record.finished == NOW.isoformat()
    ((kind, message),) = [(a.kind, a.message) for a in record.actions]
    assert kind == "gave-up" and "failed every attempt the queue allows" in message
    (gave_up_run,) = announced  # the gave-up run of its own, named in the action
    assert message.endswith(f"(run {gave_up_run.id})")
    assert [(e.outcome, e.message.startswith("not reached: ")) for e in record.services] == [
        (Outcome.TRANSIENT, False),  # its own reason kept
        (Outcome.TRANSIENT, True),
    ]


def stored(storage: FakeStorage) -> RunRecord:
    return storage.load_record("m1")


def test_a_run_that_ended_meanwhile_is_left_as_it_is() -> None:
    recorder, storage, _ = recorder_with(RunStatus.DONE)
    before = stored(storage)
    gave_up(recorder)
    assert stored(storage) == before


def test_a_poison_message_that_does_not_match_the_run_leaves_it_alone() -> None:
    recorder, storage, announced = recorder_with(RunStatus.RETRYING)
    before = stored(storage)
    gave_up(recorder, vault=KV1 + "-other")
    assert stored(storage) == before
    assert len(announced) == 1  # the gave-up run is still recorded and announced
