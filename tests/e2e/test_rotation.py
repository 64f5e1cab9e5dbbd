"""End-to-end: the product on the local stack, driven only through its public surfaces.

Inputs are what reaches the product in Azure: Key Vault certificate events that Event Grid
delivers to ``keyvault_events`` (a real webhook subscription on the vault's system topic
and real versions created with the Key Vault SDK, or crafted events raised through the
Event Grid emulator's own delivery path), and the HTTP API (``POST /api/rotations``,
``GET /api/rotations/{id}``). Results are read the way an operator reads them: the cloud
service through ComputeManagementClient (cscfg thumbprints per role, osProfile URLs), the
run records through ``GET /api/rotations/{id}``, and the stack's request log (what the
product itself sent, recognised by its ``certrotate`` user agent).

Every test gets its own resource group, vault, subscription and services, so the tests
are independent inside the one session stack; waits poll briefly up to a timeout. An
Event Grid delivery is logged only after the function answered, so "delivered" means
"the invocation finished".
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from azure.keyvault.certificates import (
    CertificateContentType,
    CertificatePolicy,
    CertificatePolicyAction,
    LifetimeAction,
)

from emulators.polling import wait_for
from emulators.provision import self_signed_pfx, thumbprint
from shared.domain.events import CertificateEvent, parse_event
from shared.domain.messages import SERVICES_QUEUE, Requested, ServiceBatch, to_text
from tests.e2e.world import (
    CERT,
    NEAR_EXPIRY,
    NEW_VERSION,
    ROLES,
    Deployed,
    World,
    api,
    call_kind,
    ended_run,
    engine_for,
    event_item,
    next_second,
    pfx_thumbprint,
    secret_of,
    unique,
    unix,
    version_of,
)
from tests.trap import Trap

# -- 1-2: the happy path ---------------------------------------------------------------------


def test_new_version_rotates_both_roles_with_one_put(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    mark = world.stack.request_mark()

    v2 = world.new_version()
    world.wait_delivered()

    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1
    product = world.product_calls(mark)
    calls = Counter(f"{c['service']} {c['method']}" for c in product)
    detail = Counter(
        f"{c['service']} {c['method']} {call_kind(c['path'])} {c['status']}" for c in product
    )
    print(f"\nproduct calls for one rotation (1 service, 2 roles): {dict(sorted(calls.items()))}")
    print(f"  by kind: {dict(sorted(detail.items()))}")
    assert calls["arm PUT"] == 1
    assert calls["keyvault POST"] == 0  # nothing written to Key Vault
    assert sum(calls.values()) < 60, calls  # bounded: no polling storm


def test_several_services_across_resource_groups_all_rotate(world: World) -> None:
    v1 = world.new_version()
    other_rg = world.op.resource_group(unique("rg"))
    services = [
        world.deploy(v1),
        world.deploy(v1, roles=("WebRole1",)),
        world.deploy(v1, rg=other_rg),
    ]
    world.subscribe()

    v2 = world.new_version()
    world.wait_delivered()

    for svc, roles in zip(services, (ROLES, ("WebRole1",), ROLES), strict=True):
        world.assert_on(svc, v2, roles)
        assert len(world.puts(svc)) == 1, svc.name
    (record,) = world.records()
    assert sorted(s["outcome"] for s in record["services"]) == ["rotated"] * 3


# -- 3-5: idempotence ------------------------------------------------------------------------


def test_duplicate_event_updates_once(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()  # before the subscription: no event yet
    world.subscribe()

    event_id = str(uuid.uuid4())
    world.raise_event(NEW_VERSION, version_of(v2), event_id=event_id)
    world.wait_delivered(1, event_id)
    world.assert_on(svc, v2)
    world.raise_event(NEW_VERSION, version_of(v2), event_id=event_id)  # delivered again
    world.wait_delivered(2, event_id)

    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1
    outcomes = [r["services"][0]["outcome"] for r in world.records()]
    assert outcomes == ["rotated", "noop"]


def test_old_version_event_after_rotation_changes_nothing(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    v2 = world.new_version()
    world.wait_delivered()
    world.assert_on(svc, v2)

    assert v1.properties is not None and v1.properties.created_on is not None
    late = world.raise_event(
        NEW_VERSION,
        version_of(v1),
        event_time=v1.properties.created_on.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
    )
    world.wait_delivered(1, late)

    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1
    assert world.record_for(late)["services"][0]["outcome"] == "noop"


def test_concurrent_events_for_one_certificate_update_once(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    world.subscribe()

    version = version_of(v2)
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    body = [
        {
            "source": world.vault_id,
            "eventType": NEW_VERSION,
            "subject": CERT,
            "id": event_id,
            "data": {
                "Id": f"{world.vault_url}certificates/{CERT}/{version}",
                "VaultName": world.vault_name,
                "ObjectType": "Certificate",
                "ObjectName": CERT,
                "Version": version,
                "NBF": unix(v2.properties.not_before if v2.properties else None),
                "EXP": unix(v2.properties.expires_on if v2.properties else None),
            },
        }
        for event_id in ids
    ]
    raised = world.stack.admin("POST", "/eventgrid/system-events", body)  # one loop turn
    assert [r["subscriptions"] for r in raised] == [1, 1]
    for event_id in ids:
        world.wait_delivered(1, event_id)

    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1
    attempts = Counter(e for d in world.deliveries() for e in d["event_ids"])
    print(f"\ndelivery attempts per concurrent event: {sorted(attempts.values())}")


# -- 6-9: what must not be rotated, or not to that version -----------------------------------


def test_untagged_service_is_reported_unmanaged_not_updated(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1, tagged=False)
    world.subscribe()
    world.new_version()
    world.wait_delivered()

    assert world.read(svc).thumbprints == {role: [thumbprint(v1)] for role in ROLES}
    (record,) = world.records()
    assert record["services"][0]["outcome"] == "unmanaged"
    assert "cert-rotation-package" in record["services"][0]["message"]

    resp = api(
        world.stack, "POST", "/api/rotations", {"vault": world.vault_id, "certificate": CERT}
    )
    answer = resp.json()
    assert (answer["status"], answer["finished"], answer["outcomes"]) == (
        "queued", False, {"queued": 1}
    )
    stored = ended_run(world, resp)
    assert stored["status"] == "done"
    (entry,) = stored["services"]
    assert (entry["cloudService"], entry["outcome"]) == (svc.id, "unmanaged")
    assert "cert-rotation-package" in entry["message"] and "tag" in entry["message"]
    assert world.puts(svc, succeeded=False) == []


def test_changed_package_is_refused(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    # Someone re-uploads different bytes over the deployed package.
    world.op.package("packages", f"{svc.name}.cspkg", b"PK\x03\x04" + b"y" * 4096)
    world.subscribe()
    world.new_version()
    world.wait_delivered()

    assert world.read(svc).thumbprints == {role: [thumbprint(v1)] for role in ROLES}
    assert world.puts(svc, succeeded=False) == []
    (record,) = world.records()
    result = record["services"][0]
    assert result["outcome"] == "refused"
    assert "package changed since it was tagged" in result["message"]
    # The refusal names the rule, never the blob's facts (no Content-MD5 of either side).
    assert svc.name in result["message"] and "==" not in result["message"]


def test_disabled_newest_version_converges_to_the_previous_one(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    next_second()  # so that v2 is newer than v1 even once v3 is out of the way
    v2 = world.new_version()
    v3 = world.new_version()
    world.kv.update_certificate_properties(CERT, version_of(v3), enabled=False)
    world.subscribe()

    event_id = world.raise_event(NEW_VERSION, version_of(v3))
    world.wait_delivered(1, event_id)

    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1


def test_not_yet_valid_version_is_not_chosen(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    now = dt.datetime.now(dt.UTC)
    future = self_signed_pfx("future", now + dt.timedelta(days=10), now + dt.timedelta(days=400))
    imported = world.kv.import_certificate(CERT, future)
    assert thumbprint(imported) == pfx_thumbprint(future)
    world.wait_delivered()

    world.assert_on(svc, v1)
    assert world.puts(svc, succeeded=False) == []
    (record,) = world.records()
    assert record["services"][0]["outcome"] == "noop"


def test_a_run_that_outlives_a_newer_version_does_not_undo_it(world: World) -> None:
    """Run 1 (for v2) is still busy with service A when v3 arrives and run 2 puts service B
    on v3; when run 1 reaches B it must see v3 and leave B alone (no PUT back to v2).

    Run 1 is a worker that follows its updates (an in-process engine, as a timer or an
    HTTP run does for ``OPERATION_WAIT_SECONDS``): its read of A after A's update is held
    3 s. Run 2 is v3's event through the host; nobody subscribed before v2, so only run 1
    acts on v2."""
    v1 = world.new_version()
    first, second = world.deploy(v1), world.deploy(v1, roles=("WebRole1",))
    v2 = world.new_version()
    world.subscribe()
    stack = world.stack
    # Run 1 reads A twice: under the lock (not delayed), then after its update (held 3 s).
    # The emulator's clock is shared by the whole session, so it is not advanced here.
    for delay_ms in (1, 3000):
        stack.admin(
            "POST",
            "/faults",
            {
                "service": "arm",
                "method": "GET",
                "path": f"(?i)/cloudservices/{first.name}$",
                "delay_ms": delay_ms,
                "count": 1,
            },
        )
    runs: list[Any] = []
    event = parse_event(event_item(world, version_of(v2)))
    run1 = threading.Thread(target=lambda: runs.append(engine_for(world).handle_event(event)))
    run1.start()
    try:
        wait_for(lambda: world.puts(first), "run 1's update of service A")
        v3 = world.new_version()  # run 2: A is locked by run 1 (it waits), B goes to v3
        on_v3 = Deployed({"WebRole1": [thumbprint(v3)]}, [secret_of(v3)], "Succeeded")
        wait_for(lambda: world.read(second) == on_v3, "run 2 to put B on v3")
        assert run1.is_alive(), "precondition: run 1 should still be busy with A"
    finally:
        run1.join(timeout=120)

    (first_run,) = runs
    assert [r.outcome for r in first_run.results] == ["rotated", "noop"]
    # Run 2 found A locked: its batch waits, and once A is free moves A to v3.
    wait_for(lambda: world.read(first).secrets == [secret_of(v3)], "A on v3", timeout=120)
    world.wait_hints_worked(timeout=120)
    world.assert_on(first, v3)
    world.assert_on(second, v3, ("WebRole1",))
    assert len(world.puts(second)) == 1  # run 2's; run 1 found B already past v2


# -- 10-12: the platform says no, or not now -------------------------------------------------


def test_failed_update_is_reported_with_the_platform_code_without_retries(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    code = "RoleInstanceStartupTimeoutError"
    world.stack.admin(
        "POST",
        "/cloudservices/fail-next",
        {
            "resourceGroup": svc.rg,
            "name": svc.name,
            "code": code,
            "message": "One or more role instances did not start within the allowed time.",
        },
    )
    world.new_version()
    world.wait_delivered()

    (record,) = world.records()
    result = record["services"][0]
    assert result["outcome"] == "failed", result
    assert code in result["message"]
    assert len(world.puts(svc, succeeded=False)) == 1
    # Acknowledged on the first attempt: Event Grid has nothing to redeliver.
    assert [d["outcome"] for d in world.deliveries()] == ["Succeeded"]
    assert world.read(svc).state == "Failed"


def test_conflict_on_put_is_retried_by_the_hint_queue(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    world.stack.admin(
        "POST",
        "/faults",
        {
            "service": "arm",
            "method": "PUT",
            "path": f"(?i)/cloudservices/{svc.name}$",
            "status": 409,
            "count": 1,
        },
    )
    v2 = world.new_version()
    world.wait_delivered()

    world.assert_on(svc, v2)
    # Event Grid was answered once, at once: the retry is the queue's, not a redelivery.
    attempts = world.deliveries()
    assert [(d["outcome"], d["status"]) for d in attempts] == [("Succeeded", 202)]
    assert [p["status"] for p in world.puts(svc, succeeded=False)] == [409, 200]
    # Each attempt is a run: the first says why it was retried, the second rotated.
    records = world.records()
    assert [r["services"][0]["outcome"] for r in records] == ["transient", "rotated"]


def test_throttled_reads_and_put_are_retried_by_the_sdk(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()
    for method in ("GET", "PUT"):
        world.stack.admin(
            "POST",
            "/faults",
            {
                "service": "arm",
                "method": method,
                "path": f"(?i)/cloudservices/{svc.name}$",
                "status": 429,
                "retry_after": 0,
                "count": 2,
            },
        )
    v2 = world.new_version()
    world.wait_delivered()

    world.assert_on(svc, v2)
    assert [d["outcome"] for d in world.deliveries()] == ["Succeeded"]
    assert [p["status"] for p in world.puts(svc, succeeded=False)] == [429, 429, 200]
    throttled_gets = [
        c
        for c in world.product_calls()
        if c["method"] == "GET" and c["status"] == 429 and c["path"].endswith(svc.name)
    ]
    assert len(throttled_gets) == 2


# -- 13-14: NearExpiry -----------------------------------------------------------------------


SELF_PFX = CertificatePolicy(
    issuer_name="Self",
    subject="CN=e2e-near-expiry",
    validity_in_months=12,
    content_type=CertificateContentType.pkcs12,
    exportable=True,
    lifetime_actions=[
        LifetimeAction(action=CertificatePolicyAction.email_contacts, days_before_expiry=30)
    ],
)


def expiring_version(world: World, days_left: int, policy: CertificatePolicy) -> Any:
    """A version that really is ``days_left`` from expiry (imported), then ``policy``."""
    now = dt.datetime.now(dt.UTC)
    issued = self_signed_pfx(
        "e2e-expiring", now - dt.timedelta(days=300), now + dt.timedelta(days=days_left)
    )
    v1 = world.kv.import_certificate(CERT, issued)
    world.kv.update_certificate_policy(CERT, policy)
    return v1


def near_expiry_hint(world: World, version: str | None) -> CertificateEvent:
    item = event_item(world, version or "")
    item["eventType"] = NEAR_EXPIRY
    if version is None:
        del item["data"]["Version"]
    return parse_event(item)


def test_genuine_near_expiry_of_self_signed_renews_and_rotates(world: World) -> None:
    # 20 days left: inside the policy's 30-day window, by Key Vault's own data.
    v1 = expiring_version(world, 20, SELF_PFX)
    svc = world.deploy(v1)
    engine = engine_for(world)

    run = engine.handle_event(near_expiry_hint(world, version_of(v1)))

    assert run is not None
    assert [a.kind for a in run.actions] == ["renew-requested"], run.actions
    versions = list(world.kv.list_properties_of_certificate_versions(CERT))
    assert len(versions) == 2
    renewed = next(v for v in versions if v.version != version_of(v1))
    # The new version's own NewVersionCreated (Key Vault raises it) converges the service.
    engine.handle_event(parse_event(event_item(world, str(renewed.version))))
    new = world.kv.get_certificate_version(CERT, str(renewed.version))
    world.assert_on(svc, new)
    assert len(world.puts(svc)) == 1


@pytest.mark.parametrize("replays", [1, 3])
def test_forged_or_replayed_near_expiry_of_a_long_valid_version_changes_nothing(
    world: World, replays: int
) -> None:
    v1 = world.new_version(SELF_PFX)  # valid for 12 months
    svc = world.deploy(v1)
    world.subscribe()
    mark = world.stack.request_mark()
    event_ids = [
        world.raise_event(NEAR_EXPIRY, version_of(v1), exp=int(time.time()) + 3600)
        for _ in range(replays)
    ]
    for event_id in event_ids:
        world.wait_delivered(1, event_id)

    creates = [c for c in world.product_calls(mark) if c["path"].rstrip("/").endswith("/create")]
    assert creates == [] and world.puts(svc, succeeded=False) == []
    assert len(list(world.kv.list_properties_of_certificate_versions(CERT))) == 1
    for event_id in event_ids:
        (action,) = world.record_for(event_id)["actions"]
        assert action["kind"] == "not-near-expiry"
        assert f"version {version_of(v1)} expires in 36" in action["message"], action
    # Control: the certificate is one the app would renew (Self, no auto-renew), so it is
    # the window that stopped it, not the issuer.
    engine = engine_for(world)
    state = engine.keyvault.certificate(world.vault_id, world.vault_url, CERT)
    assert engine.keyvault.can_renew(state)


def test_near_expiry_without_a_version_renews_only_inside_the_window(world: World) -> None:
    v1 = world.new_version(SELF_PFX)
    world.deploy(v1)
    mark = world.stack.request_mark()

    run = engine_for(world).handle_event(near_expiry_hint(world, None))

    assert run is not None and [a.kind for a in run.actions] == ["not-near-expiry"]
    assert not [c for c in world.product_calls(mark) if c["method"] in ("POST", "PUT")]


def test_near_expiry_of_unknown_issuer_asks_a_person(world: World) -> None:
    v1 = expiring_version(
        world, 20, CertificatePolicy(issuer_name="Unknown", subject="CN=e2e-unknown")
    )
    svc = world.deploy(v1)
    assert world.kv.get_certificate_policy(CERT).issuer_name == "Unknown"
    world.subscribe()
    mark = world.stack.request_mark()

    event_id = world.raise_event(NEAR_EXPIRY, version_of(v1))
    world.wait_delivered(1, event_id)

    assert len(list(world.kv.list_properties_of_certificate_versions(CERT))) == 1
    assert not [c for c in world.product_calls(mark) if c["method"] in ("POST", "PATCH", "PUT")]
    world.assert_on(svc, v1)
    actions = world.record_for(event_id)["actions"]
    action = next(a["message"] for a in actions if a["kind"] == "renew-required")
    assert "ACTION REQUIRED" in action and "renew" in action
    for name in (world.vault_name, CERT, svc.name):
        assert name in action, (name, action)


# -- 15: the HTTP API ------------------------------------------------------------------------


def test_http_api_dry_run_run_status_and_refusals(world: World) -> None:
    stack = world.stack
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()  # no subscription: only the HTTP API acts here
    old, new = thumbprint(v1), thumbprint(v2)
    body = {"vault": world.vault_id, "certificate": CERT}

    dry = api(stack, "POST", "/api/rotations", {**body, "dryRun": True})
    assert dry.status_code == 200, dry.text
    (planned,) = dry.json()["services"]
    assert planned["cloudService"] == svc.id and planned["outcome"] == "dry-run"
    diff = planned["plan"]["cscfgDiff"].splitlines()
    removed = [line for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line for line in diff if line.startswith("+") and not line.startswith("+++")]
    assert len(removed) == len(added) == len(ROLES)
    assert all(old in line for line in removed) and all(new in line for line in added)
    assert planned["plan"]["osProfile"] == {"added": [secret_of(v2)], "removed": [secret_of(v1)]}
    assert world.puts(svc, succeeded=False) == []

    resp = api(stack, "POST", "/api/rotations", body)
    run_id = resp.json()["id"]
    assert resp.headers["Location"] == f"/api/rotations/{run_id}"
    (queued,) = resp.json()["services"]
    assert (queued["cloudService"], queued["outcome"], queued["run"]) == (svc.id, "queued", run_id)
    record = ended_run(world, resp)
    assert "sig=" not in json.dumps(record)
    assert record["id"] == run_id and record["status"] == "done"
    # The same batch again (delivered twice, or forged): the run has ended, nothing runs.
    world.op.enqueue(SERVICES_QUEUE, to_text(
        ServiceBatch(world.vault_id, CERT, Requested(run_id), (svc.id,))
    ))
    world.wait_hints_worked()
    assert api(stack, "GET", resp.headers["Location"]).json() == record
    (result,) = record["services"]
    assert result["outcome"] == "rotated"
    assert result["operationId"] and result["sasExpiry"]
    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1

    # Refusals: nothing is read or written for any of these.
    mark = stack.request_mark()
    storage_id = world.vault_id.replace(
        "Microsoft.KeyVault/vaults", "Microsoft.Storage/storageAccounts"
    )
    bad = [
        (b"{not json", "body"),
        (json.dumps({"certificate": CERT}).encode(), "vault"),
        (json.dumps({**body, "vault": storage_id}).encode(), "vault"),
        (json.dumps({**body, "certificate": "web_tls!"}).encode(), "certificate"),
        (json.dumps({**body, "cloudServices": svc.id}).encode(), "cloudServices"),
        (json.dumps({**body, "cloudServices": [world.vault_id]}).encode(), "cloudServices"),
        (json.dumps({**body, "force": "yes"}).encode(), "force"),  # must be a boolean
    ]
    for raw, field in bad:
        answer = api(stack, "POST", "/api/rotations", raw=raw)
        assert answer.status_code == 400, (raw, answer.text)
        assert answer.json()["error"]["field"] == field, (raw, answer.text)
    missing_vault = world.vault_id.rsplit("/", 1)[0] + "/" + unique("kv")
    for unknown in ({**body, "vault": missing_vault}, {**body, "certificate": "no-such-cert"}):
        answer = api(stack, "POST", "/api/rotations", unknown)
        assert answer.status_code == 404, (unknown, answer.text)
        assert answer.json()["error"]["message"]
    assert api(stack, "GET", f"/api/rotations/20990101T000000Z-{'0' * 12}").status_code == 404
    for key in (None, "wrong-key"):
        assert api(stack, "POST", "/api/rotations", body, key=key).status_code == 401
        assert api(stack, "GET", f"/api/rotations/{run_id}", key=key).status_code == 401
    writes = [c for c in world.product_calls(mark) if c["method"] not in ("GET", "HEAD")]
    assert writes == []
    assert len(world.puts(svc)) == 1


# -- 16: security ----------------------------------------------------------------------------


def test_event_naming_another_host_never_sends_a_request_there(world: World) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    world.subscribe()
    version = version_of(v2)
    trap = Trap()
    try:
        trapped = world.raise_event(
            NEW_VERSION,
            version,
            data_id=f"https://127.0.0.1:{trap.port}/certificates/{CERT}/{version}",
        )
        world.wait_delivered(1, trapped)
        evil = world.raise_event(
            NEW_VERSION, version, data_id=f"https://evil.example.net/certificates/{CERT}/{version}"
        )
        world.wait_delivered(1, evil)
        assert trap.connections == 0
    finally:
        trap.close()

    # The rotation read the vault the service's osProfile names, and only the stack.
    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1
    calls = world.product_calls()
    assert {c["service"] for c in calls} <= {"arm", "keyvault", "identity"}
    assert any(c["service"] == "keyvault" and CERT in c["path"] for c in calls)
    assert [r["services"][0]["outcome"] for r in world.records()] == ["rotated", "noop"]
