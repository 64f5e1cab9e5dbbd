"""No cscfg secret in any answer, record, log or notification; per-version PFX checks;
storage lost mid-update answered as the documented 503 and repaired afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from azure.keyvault.certificates import CertificateContentType, CertificatePolicy

from emulators.polling import wait_for
from emulators.provision import cscfg, thumbprint
from shared.domain.records import Trigger
from shared.observability.announcements import chat_messages, cloud_events
from tests.e2e.test_reliability import slow, update_seconds
from tests.e2e.world import (
    CERT,
    ROLES,
    RUNS_CONTAINER,
    Service,
    World,
    api,
    ended_run,
    engine_for,
    secret_of,
    unique,
)

__all__ = ["slow"]  # the fixture, shared with the reliability tests

SECRETS = {
    "BackupSas": "https://backup.blob.core.windows.net/c?sv=2024-08-04&amp;sig=U2VjcmV0U2ln%3D",
    "Storage": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=QWNjb3VudEtleQ==",
    "Db": "Server=db;User Id=app;Password=Hunter2Hunter2",
}
LEAKS = ("U2VjcmV0U2ln", "QWNjb3VudEtleQ", "Hunter2Hunter2")


def deploy_with_secret_settings(world: World, cert: Any) -> Service:
    """A service whose roles keep secrets in settings right next to the certificate."""
    name = unique("cs")
    package, md5 = world.op.package("packages", f"{name}.cspkg", b"PK\x03\x04" + b"x" * 512)
    settings = "".join(f'      <Setting name="{k}" value="{v}" />\n' for k, v in SECRETS.items())
    config = cscfg(name, {role: {"SslCert": thumbprint(cert)} for role in ROLES}).replace(
        '      <Setting name="Environment" value="demo" />\n', settings
    )
    world.op.cloud_service(
        world.rg, name, config, list(ROLES), world.vault_id, [str(cert.secret_id)], package, md5
    )
    return Service(
        world.rg_name, name, f"{world.rg}/providers/Microsoft.Compute/cloudServices/{name}"
    )


def assert_clean(text: str, where: str) -> None:
    for leak in LEAKS:
        assert leak not in text, f"{leak} leaked into {where}"


def test_setting_values_never_leave_in_diffs_records_logs_or_notifications(world: World) -> None:
    v1 = world.new_version()
    svc = deploy_with_secret_settings(world, v1)
    v2 = world.new_version()
    body = {"vault": world.vault_id, "certificate": CERT}

    dry = api(world.stack, "POST", "/api/rotations", {**body, "dryRun": True})
    assert dry.status_code == 200, dry.text
    assert thumbprint(v2) in dry.text  # the change itself is shown
    assert_clean(dry.text, "the dry-run answer")
    # Notifications of a run planning this change (built as the notifier sends them).
    planned = engine_for(world).rotate(world.vault_id, CERT, Trigger("manual"), dry_run=True)
    assert planned.results[0].plan is not None
    events = cloud_events(planned, "/certrotate/test", lambda: "id")
    messages = [m.__dict__ for m in chat_messages(planned)]
    assert_clean(json.dumps(events, default=str) + json.dumps(messages, default=str), "notify")

    done = api(world.stack, "POST", "/api/rotations", body)
    assert_clean(done.text, "the POST's answer")
    run_id = ended_run(world, done)["id"]
    record = api(world.stack, "GET", f"/api/rotations/{run_id}")
    assert record.json()["services"][0]["outcome"] == "rotated"
    assert_clean(record.text, "GET /api/rotations/{id}")
    blob = world.op.blobs.get_container_client(RUNS_CONTAINER).download_blob(f"{run_id}.json")
    assert_clean(blob.readall().decode(), "the run record blob")
    assert_clean((world.stack.folder / "logs" / "functions.log").read_text(), "the host's log")
    world.assert_on(svc, v2)


def test_a_pem_version_stays_refused_after_the_policy_is_switched_back_to_pfx(
    world: World,
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    pem = CertificatePolicy(
        issuer_name="Self",
        subject="CN=pem-then-pfx",
        content_type=CertificateContentType.pem,
        validity_in_months=12,
    )
    world.new_version(pem)
    # The policy says PFX again, but the newest version's secret is still PEM.
    world.kv.update_certificate_policy(
        CERT, CertificatePolicy(content_type=CertificateContentType.pkcs12)
    )
    assert world.kv.get_certificate_policy(CERT).content_type == CertificateContentType.pkcs12

    body = {"vault": world.vault_id, "certificate": CERT}
    resp = api(world.stack, "POST", "/api/rotations", body)

    record = ended_run(world, resp)
    (result,) = record["services"]
    assert result["outcome"] == "refused"
    assert "stores its secret as 'application/x-pem-file'" in result["message"]
    assert world.puts(svc, succeeded=False) == []
    world.assert_on(svc, v1)


@pytest.fixture
def storage(world: World) -> Iterator[None]:
    yield
    world.stack.admin("POST", "/storage", {"available": True})


def test_storage_lost_answers_503_json_and_queues_nothing(
    world: World, storage: None
) -> None:
    """The run record and the message are written before the answer: without storage
    the request is refused whole (503 JSON, Retry-After) and nothing runs."""
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.new_version()
    world.stack.admin("POST", "/storage", {"available": False})

    answer = api(world.stack, "POST", "/api/rotations",
                 {"vault": world.vault_id, "certificate": CERT})

    assert answer.status_code == 503, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["error"]["message"], answer.text
    assert answer.headers.get("Retry-After")
    world.stack.admin("POST", "/storage", {"available": True})
    world.wait_hints_worked()
    assert world.puts(svc, succeeded=False) == []


@pytest.mark.timeout(300)  # about a minute of it is the outage and the retries themselves
def test_storage_lost_mid_update_loses_nothing_and_the_record_is_corrected(
    world: World, storage: None, slow: None
) -> None:
    """Storage (blobs and queues) goes away once Azure has accepted the PUT, while the
    update runs: the invocation that meets the outage fails and says so; once storage is
    back, the journal and the message that came back finish the same run: rotated, one PUT.

    Where the outage meets the invocation is pinned: Azure applies the PUT at once and its
    answer is held (``apply`` + ``delay_ms``) until storage is gone, so the first thing the
    worker does after it (record the accepted write) meets the outage. Storage comes back
    once the worker has given the service up as transient, while it still retries saving
    the run, so the run is recorded ``retrying`` and its message is released for the next
    attempt (both would otherwise wait out the 10-minute message lease)."""
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    update_seconds(world, 3.0)
    world.stack.admin("POST", "/faults", {
        "service": "arm", "method": "PUT", "path": f"(?i)/cloudServices/{svc.name}$",
        "apply": True, "delay_ms": 10_000,
    })
    log = world.stack.folder / "logs" / "functions.log"
    seen = len(log.read_text())
    resp = api(world.stack, "POST", "/api/rotations",
               {"vault": world.vault_id, "certificate": CERT})
    assert resp.status_code == 202, resp.text

    wait_for(lambda: world.read(svc).secrets == [secret_of(v2)], "Azure to accept the PUT",
             timeout=60)
    world.stack.admin("POST", "/storage", {"available": False})
    wait_for(lambda: f"{svc.name}: will retry: " in log.read_text()[seen:],
             "the worker to meet the outage", timeout=90)
    world.stack.admin("POST", "/storage", {"available": True})
    wait_for(lambda: "(Failed, Id=" in log.read_text()[seen:],
             "the invocation that met the outage to fail", timeout=90)

    record = ended_run(world, resp)
    assert record["status"] == "done", record
    assert [s["outcome"] for s in record["services"]] == ["rotated"]
    world.wait_hints_worked(timeout=120)
    world.assert_on(svc, v2)
    assert len(world.puts(svc)) == 1
