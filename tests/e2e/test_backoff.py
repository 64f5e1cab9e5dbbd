"""No retry loops: a version whose update failed waits out its backoff; and services without
a package tag can be rotated with configuration-only updates (``ROTATION_UNTAGGED``)."""

from __future__ import annotations

from datetime import timedelta

from shared.domain.records import Trigger
from shared.status.gather import gather
from tests.e2e.test_reliability import fail_next
from tests.e2e.world import CERT, World, api, ended_run, engine_for, version_of


def test_a_rolled_back_version_is_not_retried_until_its_backoff_ends(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    fail_next(world, svc)
    engine = engine_for(world, ROTATION_ROLLBACK="true")

    first = engine.rotate(world.vault_id, CERT, Trigger("manual"))
    assert [r.outcome for r in first.results] == ["rolled-back"]
    assert len(world.puts(svc, succeeded=False)) == 2  # the update and its rollback

    # The hourly reconcile and a redelivered event: no PUT, the reason said.
    report = engine.reconcile()
    assert report["outcomes"].get("backoff") == 1, report
    assert report["runs"] == []  # a backoff alone is not stored or announced again
    again = engine.rotate(world.vault_id, CERT, Trigger("event", "NewVersion", "evt-again"))
    (result,) = again.results
    assert result.outcome == "backoff"
    assert result.message.startswith("backing off until ")
    assert f"after 1 failure(s) of version {version_of(v2)}" in result.message
    assert "RoleInstanceStartupFailed" in result.message
    assert len(world.puts(svc, succeeded=False)) == 2
    record = api(world.stack, "GET", f"/api/rotations/{again.id}").json()
    assert record["services"][0]["message"] == result.message
    (status,) = [s for s in gather(engine).services if s.id == svc.id]
    assert status.backoff == engine.storage.failure(svc.id, CERT).describe()  # type: ignore[union-attr]

    # An operator's explicit request lifts it; success forgets the failure.
    forced = api(
        world.stack,
        "POST",
        "/api/rotations",
        {"vault": world.vault_id, "certificate": CERT, "force": True},
    )
    assert [s["outcome"] for s in ended_run(world, forced)["services"]] == ["rotated"]
    world.assert_on(svc, v2)
    assert engine.storage.failure(svc.id, CERT) is None


def test_each_failure_of_the_same_version_doubles_the_wait_and_a_newer_one_goes_at_once(
    world: World,
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.new_version()
    engine = engine_for(world, ROTATION_ROLLBACK="true")
    for _ in range(2):
        fail_next(world, svc)
        run = engine.rotate(world.vault_id, CERT, Trigger("manual"), force=True)
        assert [r.outcome for r in run.results] == ["rolled-back"]
    failure = engine.storage.failure(svc.id, CERT)
    assert failure is not None and failure.attempts == 2
    assert failure.until - failure.last == timedelta(hours=2)

    v3 = world.new_version()  # a new reason: tried at once
    run = engine.rotate(world.vault_id, CERT, Trigger("manual"))
    assert [r.outcome for r in run.results] == ["rotated"]
    world.assert_on(svc, v3)
    assert engine.storage.failure(svc.id, CERT) is None


def test_untagged_services_get_configuration_only_updates_when_asked(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1, tagged=False)
    v2 = world.new_version()

    reported = engine_for(world).rotate(world.vault_id, CERT, Trigger("manual"))
    assert [r.outcome for r in reported.results] == ["unmanaged"]
    assert world.puts(svc, succeeded=False) == []

    run = engine_for(world, ROTATION_UNTAGGED="update").rotate(
        world.vault_id, CERT, Trigger("manual")
    )
    (result,) = run.results
    assert result.outcome == "rotated", result.message
    assert result.execution is not None
    assert result.execution.package is None and result.execution.sas_expiry is None
    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1


def test_an_untagged_update_azure_refuses_says_the_service_needs_the_tag(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1, tagged=False)
    world.new_version()
    world.stack.admin(
        "POST",
        "/faults",
        {"service": "arm", "method": "PUT", "path": f"(?i)/cloudservices/{svc.name}$",
         "status": 400, "code": "InvalidParameter",
         "message": "The value of parameter packageUrl is invalid.", "count": 1},
    )

    run = engine_for(world, ROTATION_UNTAGGED="update").rotate(
        world.vault_id, CERT, Trigger("manual")
    )

    (result,) = run.results
    assert result.outcome == "failed"
    assert "needs the cert-rotation-package tag" in result.message
    world.assert_on(svc, v1)
