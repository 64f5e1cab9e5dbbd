"""The journal's driver (shared.rotation.follow) on in-memory fakes: which observations
it makes, which table rows it takes, and what it leaves in the journal. No I/O."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from shared.config import Settings
from shared.domain.errors import PlatformRejected
from shared.domain.journal import Pending
from shared.domain.model import CloudServiceSnapshot, SecretGroup
from shared.domain.outcomes import WriteStatus
from shared.rotation.follow import STOPPED_NOTE, follow
from shared.rotation.writing import Context
from tests.unit.fakes import FakeCompute, FakeLease, FakeStorage

NEW, OLD = "AB" * 20, "CD" * 20
SECRET = "https://kv.vault.azure.net/secrets/web-tls/{}"
CSCFG = (
    '<ServiceConfiguration xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/'
    'ServiceConfiguration"><Role name="Web"><Instances count="1"/><Certificates>'
    '<Certificate name="SslCert" thumbprint="{}" thumbprintAlgorithm="sha1"/>'
    "</Certificates></Role></ServiceConfiguration>"
)
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
CS1 = "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/cloudservices/cs1"


def service(tp: str = NEW, version: str = "v2", state: str = "Succeeded",
            mode: str = "Auto") -> CloudServiceSnapshot:
    return CloudServiceSnapshot(
        id=CS1,
        name="cs1", location="westeurope", tags={}, configuration=CSCFG.format(tp),
        secrets=(SecretGroup("kv", (SECRET.format(version),)),), provisioning_state=state,
        upgrade_mode=mode,
    )


def entry(**changes: object) -> Pending:
    base = Pending(
        run_id="r1", kind="update", vault_id="kv", certificate="web-tls", version="v2",
        package_url="", expect_thumbprints=(NEW,), expect_secrets=(SECRET.format("v2"),),
        previous_configuration=CSCFG.format(OLD),
        previous_secrets=(SecretGroup("kv", (SECRET.format("v1"),)),),
        submitted=NOW.isoformat(), continuation_token="op",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def on(service: CloudServiceSnapshot, **controls: object) -> FakeCompute:
    """The fake compute holding ``service``, with its operation/walk/instance controls."""
    compute = FakeCompute(**controls).add(service)  # type: ignore[arg-type]
    compute.reads.clear()
    return compute


def journal(entry: Pending) -> FakeLease:
    storage = FakeStorage()
    storage.journals[CS1] = entry
    return FakeLease(storage, CS1, entry)


def written(lease: FakeLease) -> list[str]:
    return lease.storage.calls


def context(ops: FakeCompute, lease: FakeLease, *, look: bool = False,
            rollback: bool = False, settle: float = 0.0, wait: float = 5.0) -> Context:
    settings = Settings(subscriptions=("s",), resource_groups=(), storage_url="https://sa",
                        settle_seconds=settle, rollback=rollback, arm_polling_interval=0.01)
    service = ops.services[CS1]
    return Context(
        service.id, service.name, service.upgrade_mode, ops, lease.storage,
        settings, lambda: NOW, lease, time.monotonic() + wait,
        looked=service if look else None,
    )


def test_a_look_at_a_running_update_asks_nothing_more_and_keeps_the_journal() -> None:
    ops = on(service(OLD, "v1", state="Updating"))
    lease = journal(entry())
    result = follow(context(ops, lease, look=True), lease.pending)  # type: ignore[arg-type]
    assert (result.status, result.message) == (WriteStatus.UPDATING, "update still running")
    assert ops.reads == [] and ops.calls == [] and lease.storage.written == []


def test_an_accepted_update_that_ended_is_polled_once_verified_settled_and_cleared() -> None:
    ops = on(service())
    lease = journal(entry())
    result = follow(context(ops, lease), lease.pending)  # type: ignore[arg-type]
    assert result.status is WriteStatus.SUCCEEDED and result.message == "now on version v2"
    assert result.final_thumbprints == {"Web/SslCert": NEW}
    assert ops.reads == ["resume op", "final", "instances"] and ops.calls == []
    first, *_, last = lease.storage.written  # settling, then cleared
    assert last is None and first is not None and first.settling_since == NOW.isoformat()


def test_an_ambiguous_put_is_adopted_by_the_state_it_left() -> None:
    """No token (Azure's answer was lost), but the service holds the model: it landed."""
    ops = on(service())
    lease = journal(entry(continuation_token=None, unconfirmed="500 after 44 s"))
    result = follow(context(ops, lease), lease.pending)  # type: ignore[arg-type]
    assert result.status is WriteStatus.SUCCEEDED
    assert ops.reads[:1] == ["get"] and ops.calls == []


@pytest.mark.parametrize(
    ("final_look", "cleared", "ends"),
    [(True, True, "; it is planned again"), (False, False, "the next run looks again")],
)
def test_a_put_that_never_landed_is_let_go_only_on_the_final_look(
    final_look: bool, cleared: bool, ends: str
) -> None:
    ops = on(service(OLD, "v1"))
    lease = journal(entry(continuation_token=None, unconfirmed="timed out"))
    result = follow(context(ops, lease), lease.pending, final_look=final_look)  # type: ignore[arg-type]
    assert result.status is WriteStatus.NOT_APPLIED and ends in result.message
    assert (lease.storage.written == [None]) is cleared


def test_manual_mode_walks_every_update_domain_in_order_journaling_each() -> None:
    ops = on(service(mode="Manual"), domains=3)
    lease = journal(entry())
    result = follow(context(ops, lease), lease.pending)  # type: ignore[arg-type]
    assert result.status is WriteStatus.SUCCEEDED
    assert ops.calls == ["walk 0", "walk 1", "walk 2"]
    walked = [w.next_update_domain for w in lease.storage.written if w is not None]
    assert walked[:2] == [0, 0] and 3 in walked  # started at 0, ended past the last


def test_a_failed_domain_stops_the_walk_there_and_fails_without_rollback_when_off() -> None:
    ops = on(service(mode="Manual"), domains=3,
                         walk_fails=PlatformRejected("Failed", "domain 1 failed"))
    lease = journal(entry())
    result = follow(context(ops, lease), lease.pending)  # type: ignore[arg-type]
    assert result.status is WriteStatus.FAILED
    assert "update domain 1 of 3 failed, walk stopped there" in result.message
    assert ops.calls == ["walk 0", "walk 1"] and lease.pending is None


def test_a_failed_update_is_rolled_back_when_asked_and_the_rollback_followed() -> None:
    ops = on(service(OLD, "v1"),
                         operation_fails=PlatformRejected("Failed", "boom"))
    lease = journal(entry())
    result = follow(context(ops, lease, rollback=True), lease.pending)  # type: ignore[arg-type]
    assert result.status is WriteStatus.ROLLED_BACK
    assert "the update failed (Failed: boom)" in result.message
    assert ops.sent == [CSCFG.format(OLD)] and lease.pending is None


def test_a_service_that_holds_someone_elses_model_is_never_rolled_back() -> None:
    ops = on(service(OLD, "v1"))  # ended Succeeded, without our write
    lease = journal(entry())
    result = follow(context(ops, lease, rollback=True), lease.pending)  # type: ignore[arg-type]
    assert result.status is WriteStatus.FAILED and "VerificationFailed" in result.message
    assert ops.calls == []


@pytest.mark.parametrize(
    ("instances", "status", "says"),
    [
        ({"PowerState/Stopped": 1}, WriteStatus.SUCCEEDED, STOPPED_NOTE),
        ({"RoleState/RoleStateBusy": 1}, WriteStatus.FAILED, "not rolled back: slow instances"),
    ],
)
def test_role_instances_that_stop_or_stay_busy(instances: dict[str, int],
                                               status: WriteStatus, says: str) -> None:
    ops = on(service(), instances=instances)
    lease = journal(entry())
    result = follow(context(ops, lease, rollback=True), lease.pending)  # type: ignore[arg-type]
    assert result.status is status and says in result.message
    assert ops.calls == []  # slow or stopped instances never trigger a rollback


def test_a_look_leaves_unsettled_instances_for_the_next_look() -> None:
    ops = on(service(), instances={"RoleState/RoleStateBusy": 1})
    lease = journal(entry())
    result = follow(context(ops, lease, look=True, settle=600), lease.pending)  # type: ignore[arg-type]
    assert (result.status, result.message) == (
        WriteStatus.UPDATING, "update applied; role instances settling")
    assert lease.pending is not None and lease.pending.settling_since == NOW.isoformat()
