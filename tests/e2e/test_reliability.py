"""End-to-end: convergence without events, writes that outlive their invocation, rollback,
and Manual update domains.

Most tests run the engine in this process, built exactly as the function app builds it
(``Engine.from_settings(Settings.from_env())``) from the stack's environment, scoped to the
test's own resource group so the session's other services stay out of the way. A second
``Engine`` instance stands for "another invocation, later, maybe on another host": it
shares nothing with the first but the stack. A process killed with SIGKILL stands for a
host that dies mid-update.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
import requests

from emulators.polling import wait_for
from emulators.provision import cscfg, thumbprint
from shared.domain.events import parse_event
from shared.domain.records import Trigger
from tests.e2e.world import (
    CERT,
    ROLES,
    RUNS_CONTAINER,
    World,
    api,
    call_kind,
    engine_for,
    event_item,
    secret_of,
    version_of,
)

LOCKS_CONTAINER = "cert-rotation-locks"


def update_seconds(world: World, seconds: float | None) -> None:
    world.stack.admin("POST", "/cloudservices/settings", {"update_seconds": seconds})


@pytest.fixture
def slow(world: World) -> Any:
    yield
    update_seconds(world, None)


def pending_journals(world: World) -> list[str]:
    """This world's services with a journaled write (the locks container is session-wide)."""
    mine = f"/resourcegroups/{world.rg_name.lower()}/"
    return sorted(s for s in engine_for(world).storage.pending_services() if mine in s)


def writes(world: World, mark: int) -> list[dict[str, Any]]:
    """The product's ARM writes on this world's services (others may be finishing elsewhere)."""
    mine = f"/resourcegroups/{world.rg_name.lower()}/"
    return [
        c
        for c in world.product_calls(mark)
        if c["method"] not in ("GET", "HEAD")
        and c["service"] == "arm"
        and mine in c["path"].lower()
    ]


# -- reconcile --------------------------------------------------------------------------------


def test_reconcile_repairs_a_missed_event_and_then_does_nothing(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()  # no subscription: the event is never delivered
    engine = engine_for(world)

    report = engine.reconcile()
    world.assert_on(svc, v2)
    assert report["outcomes"] == {"rotated": 1}, report
    assert len(report["runs"]) == 1

    mark = world.stack.request_mark()
    records = len(world.records())
    quiet = engine_for(world).reconcile()  # a later tick, another worker
    assert quiet["outcomes"] == {"noop": 1}, quiet
    assert quiet["runs"] == []
    assert writes(world, mark) == []
    assert len(world.records()) == records  # nothing stored either
    calls = world.product_calls(mark)
    kv_reads = [c for c in calls if c["service"] == "keyvault" and c["status"] == 200]
    print(f"\nreconcile with nothing to do: {len(calls)} calls, {len(kv_reads)} Key Vault reads")
    assert len(kv_reads) <= 3  # the certificate and its version list, once


def test_reconcile_repairs_a_manual_edit_that_reintroduced_an_old_thumbprint(
    world: World,
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    engine_for(world).reconcile()
    world.assert_on(svc, v2)
    # An operator redeploys the old cscfg by hand (osProfile still carries v1's secret).
    cs = world.op.compute.cloud_services.get(svc.rg, svc.name)
    assert cs.properties is not None and cs.properties.os_profile is not None
    cs.properties.configuration = cscfg(svc.name, {r: {"SslCert": thumbprint(v1)} for r in ROLES})
    cs.properties.package_url = world.op.package_sas(cs.tags["cert-rotation-package"])
    group = cs.properties.os_profile.secrets[0]
    group.vault_certificates[0].certificate_url = secret_of(v1)
    world.op.compute.cloud_services.begin_create_or_update(svc.rg, svc.name, cs).result()
    world.assert_on(svc, v1)

    report = engine_for(world).reconcile()
    assert report["outcomes"] == {"rotated": 1}, report
    world.assert_on(svc, v2)


def test_the_reconcile_timer_queues_what_has_a_change_to_make(world: World) -> None:
    """A new version nobody was told of (no event subscription): the timer in the host
    plans it as a dry run and queues the service as a batch, which a queue worker converges
    as a reconcile run: one PUT, recorded with the reconcile trigger."""
    env = world.stack.env
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()

    resp = requests.post(
        f"{env['FUNCTIONS_URL']}/admin/functions/reconcile",
        json={"input": ""},
        headers={"x-functions-key": env["FUNCTIONS_MASTER_KEY"]},
        timeout=120,
    )
    assert resp.status_code == 202, resp.text
    wait_for(lambda: world.records(), "the reconcile batch's run record", timeout=120)
    world.wait_hints_worked()

    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1
    (record,) = world.records()
    assert record["trigger"]["kind"] == "reconcile"
    assert [e["outcome"] for e in record["services"]] == ["rotated"]


# -- writes that outlive their invocation ------------------------------------------------------


def test_an_update_that_outlives_the_run_is_followed_not_resent(world: World, slow: Any) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    update_seconds(world, 2.0)
    mark = world.stack.request_mark()

    run = engine_for(world).rotate(world.vault_id, CERT, Trigger("manual"), wait_seconds=0.2)
    assert [r.outcome for r in run.results] == ["updating"]
    assert run.status == "updating"
    assert pending_journals(world) == [svc.id.lower()]

    # Later, elsewhere: the follow look the run queued follows the same operation to its
    # end and records it (nobody reads the run to make that happen: GET only reads).
    record = wait_for(
        lambda: (r := stored_record(world, run.id))["status"] == "done" and r,
        "the run to be finished by its follow look",
        timeout=120,
    )
    assert record["services"][0]["outcome"] == "rotated", record
    assert api(world.stack, "GET", f"/api/rotations/{run.id}").json() == record
    assert record["services"][0]["continuationToken"] is None
    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1
    assert [c["method"] for c in writes(world, mark)] == ["PUT"]
    assert pending_journals(world) == []


def test_an_update_is_followed_by_looks_not_by_a_worker_in_a_poll_loop(
    world: World, slow: Any
) -> None:
    """EVENT_WAIT_SECONDS is 0 (the default): the worker returns once the PUT is accepted
    and the run says ``updating``; follow looks (FOLLOW_POLL_SECONDS 1 here) read the
    service while the 4 s update runs, ask the operation only once it has ended, and
    write ``rotated`` into the run that sent it."""
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    update_seconds(world, 4.0)
    v2 = world.new_version()
    world.wait_delivered()

    world.assert_on(svc, v2)
    (record,) = world.records()
    (entry,) = record["services"]
    assert (record["status"], entry["outcome"]) == ("done", "rotated"), record
    logs = (world.stack.folder / "logs" / "functions.log").read_text()
    assert f"run {record['id']}: 1 update(s) still running; looked at again in 1 s" in logs
    assert "look 2 at the update(s) of 1 service(s)" in logs  # the update outlived a look
    (put,) = world.puts(svc)
    calls = world.product_calls()
    after = calls[calls.index(put) + 1 :]
    kinds = [call_kind(c["path"]) for c in after if c["service"] == "arm"]
    # One operation poll, after the update ended: no poller ran while it did.
    assert kinds.count("operation") == 1, kinds
    assert kinds.count("service") >= 3, kinds  # the looks' reads of the service


def stored_record(world: World, run_id: str) -> dict[str, Any]:
    """A run record as stored, read from the app's storage directly."""
    blob = world.op.blobs.get_blob_client(RUNS_CONTAINER, f"{run_id}.json")
    return dict(json.loads(blob.download_blob().readall()))


def test_an_event_follows_its_updates_briefly_and_the_follow_timer_finishes_them(
    world: World, slow: Any
) -> None:
    """A worker follows its updates for EVENT_WAIT_SECONDS in all (not per service); what
    is left is journaled, and when its follow look is lost (here: the engine has no queue
    endpoint to send one with), the ``follow_updates`` sweep finishes it."""
    v1 = world.new_version()
    first, second = world.deploy(v1), world.deploy(v1)
    v2 = world.new_version()
    update_seconds(world, 1.0)
    mark = world.stack.request_mark()

    # 1.5 s would see either update through on its own; shared, the second gets what is left.
    event = parse_event(event_item(world, version_of(v2)))
    no_looks = {"AzureWebJobsStorage__queueServiceUri": ""}
    run = engine_for(world, EVENT_WAIT_SECONDS="1.5", **no_looks).handle_event(event)
    assert run is not None and run.status in ("updating", "done") and not run.transient
    assert run.results[-1].outcome == "updating", [r.outcome for r in run.results]
    assert pending_journals(world), "the unfinished update is journaled"

    # A timer tick while another invocation holds a service: that one is left to it.
    with engine_for(world).storage.lock(second.id):
        outcomes = engine_for(world).finish_pending()
    assert outcomes.get("busy") == 1 and outcomes.get("transient") is None, outcomes

    # The sweep only looks: once Azure has applied the update, it finishes it.
    wait_for(lambda: world.read(second).state == "Succeeded", "the second update to end")
    resp = requests.post(
        f"{world.stack.env['FUNCTIONS_URL']}/admin/functions/follow_updates",
        json={"input": ""},
        headers={"x-functions-key": world.stack.env["FUNCTIONS_MASTER_KEY"]},
        timeout=120,
    )
    assert resp.status_code == 202, resp.text
    record = wait_for(
        lambda: (r := stored_record(world, run.id))["status"] == "done" and r,
        "the follow_updates timer to finish the run",
    )
    assert [e["outcome"] for e in record["services"]] == ["rotated", "rotated"], record
    assert "finished by run follow_updates" in record["services"][-1]["message"]
    world.assert_on(first, v2)
    world.assert_on(second, v2)
    assert [c["method"] for c in writes(world, mark)] == ["PUT", "PUT"]  # none sent twice
    assert pending_journals(world) == []
    assert engine_for(world).finish_pending() == {}  # nothing left: a tick is one listing


def test_an_update_finished_while_its_run_goes_on_stays_finished_in_the_record(
    world: World, slow: Any
) -> None:
    """The run and the invocation that finishes one of its updates both write the run's
    record; the run's later writes must not turn the finished update back to ``updating``."""
    v1 = world.new_version()
    services = {svc.id.lower(): svc for svc in (world.deploy(v1), world.deploy(v1))}
    v2 = world.new_version()
    first, second = (  # in the order the run takes them
        services[s.id.lower()] for s in engine_for(world).services_using(world.vault_id, CERT)
    )
    update_seconds(world, 1.0)
    # The second service's PUT is held 3 s: the first one's update ends meanwhile.
    world.stack.admin(
        "POST",
        "/faults",
        {"service": "arm", "method": "PUT", "path": f"(?i)/cloudservices/{second.name}$",
         "delay_ms": 3000, "count": 1},
    )
    runs: list[Any] = []
    owner = threading.Thread(
        target=lambda: runs.append(
            engine_for(world).rotate(world.vault_id, CERT, Trigger("manual"), wait_seconds=0.2)
        )
    )
    owner.start()
    try:
        wait_for(lambda: first.id.lower() in pending_journals(world), "the first update to run")
        finished = wait_for(
            lambda: (o := engine_for(world).finish_pending(wait_seconds=10)).get(
                "resumed-succeeded"
            ) and o,
            "another invocation to finish the first update",
        )
        # The second service's lease is the run's while its PUT is held ("busy").
        assert set(finished) <= {"resumed-succeeded", "busy"}, finished
    finally:
        owner.join(timeout=60)
    (run,) = runs
    assert [r.outcome for r in run.results] == ["rotated", "updating"]  # adopted from the record
    assert run.status == "updating"
    record = stored_record(world, run.id)
    assert [e["outcome"] for e in record["services"]] == ["rotated", "updating"], record
    assert record["services"][0]["continuationToken"] is None
    assert record["status"] == "updating"

    assert engine_for(world).finish_pending(wait_seconds=10) == {"resumed-succeeded": 1}
    record = stored_record(world, run.id)
    assert [e["outcome"] for e in record["services"]] == ["rotated", "rotated"], record
    assert record["status"] == "done"
    world.assert_on(first, v2)
    world.assert_on(second, v2)


def test_a_host_killed_after_the_put_is_noticed_and_recorded_once(world: World, slow: Any) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    # The PUT is held 3 s before the platform takes it; the sender is killed a second after
    # journaling its intent (the SAS and the PUT follow within milliseconds), so it never
    # hears Azure's answer: no continuation token, no record of the service.
    world.stack.admin(
        "POST",
        "/faults",
        {
            "service": "arm",
            "method": "PUT",
            "path": f"(?i)/cloudservices/{svc.name}$",
            "delay_ms": 3000,
            "count": 1,
        },
    )
    script = textwrap.dedent(
        f"""
        import logging, os
        logging.basicConfig(level=logging.INFO)
        logging.getLogger("azure").setLevel(logging.WARNING)
        from emulators.stack import app_settings
        from shared.config import Settings
        from shared.rotation.engine import Engine
        from shared.domain.records import Trigger
        env = {{**os.environ, **app_settings(dict(os.environ)),
               "ROTATION_RESOURCE_GROUPS": {world.rg_name!r}}}
        Engine.from_settings(Settings.from_env(env)).rotate(
            {world.vault_id!r}, {CERT!r}, Trigger("manual"))
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        wait_for(lambda: pending_journals(world), "the intent to be journaled", timeout=30)
        time.sleep(1.0)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    wait_for(lambda: world.puts(svc, succeeded=False), "the held PUT to reach the platform")

    # Until the dead host's lease runs out (15 s) reconcile reports it busy and writes nothing.
    report = wait_for(
        lambda: (r := engine_for(world).reconcile())["outcomes"].get("resumed-succeeded") and r,
        "reconcile to finish the dead host's update",
        timeout=40,
    )
    assert report["outcomes"] == {"resumed-succeeded": 1, "noop": 1}, report
    world.assert_on(svc, v2)
    assert len(world.puts(svc, succeeded=False)) == 1  # never sent twice
    (record,) = world.records()
    assert record["status"] == "done"
    assert [s["outcome"] for s in record["services"]] == ["rotated"]
    assert "finished by run reconcile" in record["services"][0]["message"]
    assert pending_journals(world) == []


# -- failures and rollback ---------------------------------------------------------------------


def fail_next(world: World, svc: Any, code: str = "RoleInstanceStartupFailed") -> None:
    world.stack.admin(
        "POST",
        "/cloudservices/fail-next",
        {
            "resourceGroup": svc.rg,
            "name": svc.name,
            "code": code,
            "message": "Role instance WebRole1_IN_0 failed to start.",
        },
    )


def test_failed_update_is_rolled_back_when_asked(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.new_version()
    fail_next(world, svc)

    run = engine_for(world, ROTATION_ROLLBACK="true").rotate(
        world.vault_id, CERT, Trigger("manual")
    )

    (result,) = run.results
    assert result.outcome == "rolled-back", result.message
    assert "RoleInstanceStartupFailed" in result.message
    world.assert_on(svc, v1)
    assert world.read(svc).state == "Succeeded"
    assert len(world.puts(svc, succeeded=False)) == 2  # the update, then the rollback
    assert pending_journals(world) == []


def test_failed_update_without_rollback_is_reported_and_left_alone(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.new_version()
    fail_next(world, svc)

    run = engine_for(world).rotate(world.vault_id, CERT, Trigger("manual"))
    (result,) = run.results
    assert result.outcome == "failed"
    assert "RoleInstanceStartupFailed" in result.message
    assert world.read(svc).state == "Failed"
    assert len(world.puts(svc, succeeded=False)) == 1
    # Reconcile does not blindly resend it: the model already names the desired version.
    again = engine_for(world).reconcile()
    assert again["outcomes"] == {"failed": 1}, again
    assert len(world.puts(svc, succeeded=False)) == 1


# -- upgradeMode Manual ------------------------------------------------------------------------


def domains_walked(world: World, mark: int) -> list[str]:
    return [
        c["path"].rsplit("/", 1)[-1]
        for c in world.product_calls(mark)
        if c["method"] == "PUT" and "/updatedomains/" in c["path"].lower()
    ]


def instances(world: World, svc: Any) -> dict[str, Any]:
    state = world.stack.admin("GET", "/cloudservices")
    found = next(s for s in state["services"] if s["name"] == svc.name)
    return dict(found)


def test_manual_upgrade_mode_walks_every_update_domain_in_order(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1, upgrade_mode="Manual")
    v2 = world.new_version()
    mark = world.stack.request_mark()

    run = engine_for(world).rotate(world.vault_id, CERT, Trigger("manual"))

    assert [r.outcome for r in run.results] == ["rotated"], run.to_json()
    assert domains_walked(world, mark) == ["0", "1"]
    world.assert_on(svc, v2)
    state = instances(world, svc)
    assert {i["appliedVersion"] for i in state["instances"].values()} == {state["targetVersion"]}


def test_manual_walk_stops_at_the_first_failed_domain_and_says_where(
    world: World, slow: Any
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1, upgrade_mode="Manual")
    world.new_version()
    update_seconds(world, 0.8)
    mark = world.stack.request_mark()
    engine = engine_for(world)

    results: list[Any] = []
    worker = threading.Thread(
        target=lambda: results.append(engine.rotate(world.vault_id, CERT, Trigger("manual")))
    )
    worker.start()
    wait_for(lambda: domains_walked(world, mark) == ["0"], "domain 0 to be walked", timeout=30)
    fail_next(world, svc, "UpdateDomainWalkFailed")  # domain 0's walk is the one running
    worker.join(timeout=60)

    (result,) = results[0].results
    assert result.outcome == "failed"
    assert "update domain 0 of 2" in result.message, result.message
    assert domains_walked(world, mark) == ["0"]  # stopped: domain 1 never walked
    assert pending_journals(world) == []
