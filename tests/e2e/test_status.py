"""End-to-end: ``GET /api/status`` on the local stack, through the Functions host.

One world holds what an operator wants the status to show: a managed service one version
behind (drift), an unmanaged one, a certificate expiring within 30 days and one expired,
a cscfg thumbprint whose certificate was deleted from the vault (an orphan) and a
certificate nobody uses. Every other test shares the stack, so answers are narrowed to
this world's resource group and vault before comparing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from azure.keyvault.certificates import KeyVaultCertificate

from emulators.provision import cscfg, thumbprint
from tests.e2e.world import (
    CERT,
    World,
    api,
    ended_run,
    rotate_over_http,
    secret_of,
    unique,
    version_of,
)


def status(world: World) -> dict[str, Any]:
    resp = api(world.stack, "GET", "/api/status")
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    found: dict[str, Any] = resp.json()
    mine = f"/resourceGroups/{world.rg_name}/".lower()
    found["services"] = [s for s in found["services"] if mine in s["id"].lower()]
    found["unusedCertificates"] = [
        u for u in found["unusedCertificates"] if u["vault"].lower() == world.vault_id.lower()
    ]
    found["orphanThumbprints"] = [
        o for o in found["orphanThumbprints"] if mine in o["cloudService"].lower()
    ]
    return found


def service_named(found: dict[str, Any], name: str) -> dict[str, Any]:
    (service,) = [s for s in found["services"] if s["name"] == name]
    return service


def imported(world: World, name: str, days_left: int) -> KeyVaultCertificate:
    """A certificate ``name`` whose only version expires ``days_left`` days from now."""
    return world.op.imported(world.vault_url, name, days_left)


def deploy_with(world: World, *certs: tuple[str, KeyVaultCertificate]) -> tuple[str, str]:
    """A tagged service whose one role uses ``(cscfg name, certificate)`` pairs: (name, id)."""
    name = unique("cs")
    package, md5 = world.op.package("packages", f"{name}.cspkg", b"PK\x03\x04" + b"s" * 512)
    world.op.cloud_service(
        world.rg,
        name,
        cscfg(name, {"WebRole1": {n: thumbprint(c) for n, c in certs}}),
        ["WebRole1"],
        world.vault_id,
        [secret_of(c) for _, c in certs],
        package,
        md5,
    )
    return name, f"{world.rg}/providers/Microsoft.Compute/cloudServices/{name}"


def test_status_shows_drift_expiry_management_orphans_unused_and_last_run(world: World) -> None:
    v1 = world.new_version()
    drifting = world.deploy(v1)
    legacy = world.op.new_version(world.vault_url, "legacy")
    soon = imported(world, "short-lived", 10)
    expired = imported(world, "expired", -2)
    mixed, _ = deploy_with(world, ("SslCert", v1), ("Legacy", legacy), ("Soon", soon))
    with_expired, _ = deploy_with(world, ("Old", expired))
    world.kv.begin_delete_certificate("legacy", _polling_interval=0).result()
    world.op.new_version(world.vault_url, "spare")
    v2 = world.new_version()  # no event subscription: nothing rotates by itself
    unmanaged = world.deploy(v2, tagged=False)

    found = status(world)

    rows = service_named(found, drifting.name)
    assert rows["managed"] is True
    assert [(c["role"], c["cscfgName"], c["certificate"]) for c in rows["certificates"]] == [
        ("WebRole1", "SslCert", CERT),
        ("WorkerRole1", "SslCert", CERT),
    ]
    for use in rows["certificates"]:
        assert use["vault"].lower() == world.vault_id.lower()
        assert (use["version"], use["desiredVersion"]) == (version_of(v1), version_of(v2))
        assert (use["thumbprint"], use["desiredThumbprint"]) == (thumbprint(v1), thumbprint(v2))
        assert use["drift"] is True and use["expiry"] == "ok" and use["lastRun"] is None
    other = service_named(found, unmanaged.name)
    assert other["managed"] is False and "cert-rotation-package" in other["reason"]
    assert [c["drift"] for c in other["certificates"]] == [False, False]

    uses = service_named(found, mixed)["certificates"]
    by_name = {c["cscfgName"] or c["certificate"]: c for c in uses}
    assert by_name["Soon"]["expiry"] == "soon" and 9 <= by_name["Soon"]["expiresInDays"] <= 10
    assert by_name["SslCert"]["drift"] is True
    assert "does not exist" in by_name["legacy"]["problem"]  # its osProfile secret
    assert found["orphanThumbprints"] == [
        {
            "cloudService": f"{world.rg}/providers/Microsoft.Compute/cloudServices/{mixed}",
            "role": "WebRole1",
            "cscfgName": "Legacy",
            "thumbprint": thumbprint(legacy),
        }
    ]
    (old,) = service_named(found, with_expired)["certificates"]
    assert (old["expiry"], old["drift"], old["desiredVersion"]) == ("expired", None, None)
    assert [u["certificate"] for u in found["unusedCertificates"]] == ["spare"]
    assert found["unusedCertificates"][0]["expiry"] == "ok"

    # A manual rotation of the drifting service shows up as its last run, drift gone.
    run_id = rotate_over_http(world, drifting)
    after = service_named(status(world), drifting.name)["certificates"]
    assert {(c["version"], c["drift"]) for c in after} == {(version_of(v2), False)}
    assert {(c["lastRun"]["id"], c["lastRun"]["outcome"]) for c in after} == {(run_id, "rotated")}


def test_status_page_is_escaped_html_with_expiry_flagged(world: World) -> None:
    soon = imported(world, "short-lived", 5)
    expired = imported(world, "expired", -1)
    deploy_with(world, ("Soon", soon), ("Gone", expired))

    resp = api(world.stack, "GET", "/api/status?format=html")

    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "script-src" not in resp.headers["Content-Security-Policy"]
    page = resp.text
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page.lower()
    today = dt.datetime.now(dt.UTC).date()
    assert f'<span class="nw">{today + dt.timedelta(days=5)}</span>' in page  # never wraps
    assert f'<span class="nw">{today - dt.timedelta(days=1)}</span>' in page
    assert '<span class="badge b-expiring">expiring</span>' in page
    assert '<span class="badge b-expired">expired</span>' in page
    assert secret_of(soon) not in page  # versions and thumbprints only, no secret URLs


def test_status_refuses_unknown_format_and_needs_the_function_key(world: World) -> None:
    bad = api(world.stack, "GET", "/api/status?format=xml")
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "format"
    assert api(world.stack, "GET", "/api/status", key=None).status_code == 401


def test_history_lists_runs_newest_first_paged_and_filtered(world: World) -> None:
    v1 = world.new_version()
    one, two = world.deploy(v1), world.deploy(v1)
    world.new_version()
    ids = []
    for svc in (one, two, one):
        resp = api(world.stack, "POST", "/api/rotations",
                   {"vault": world.vault_id, "certificate": CERT, "cloudServices": [svc.id],
                    "force": True})
        ids.append(ended_run(world, resp)["id"])  # queued: each waited on until it ended

    # Ids sort by start time to the second (then by their random part): compare as sets.
    first = api(world.stack, "GET", f"/api/rotations?limit=1&cloudService={one.id}").json()
    assert first["next"].startswith("/api/rotations?")
    second = api(world.stack, "GET", first["next"]).json()
    paged = [r["id"] for r in first["runs"] + second["runs"]]
    assert sorted(paged) == sorted([ids[0], ids[2]]) and second["next"] is None
    assert paged == sorted(paged, reverse=True)  # newest first
    page = api(world.stack, "GET", f"/api/rotations?format=html&cloudService={two.id}")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert ids[1] in page.text and ids[0] not in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    run = api(world.stack, "GET", f"/api/rotations/{ids[1]}?format=html")
    assert run.status_code == 200 and "<script" not in run.text.lower()
    assert "rotated" in run.text and "cscfg diff (secrets redacted)" in run.text
    for query, field in (("limit=0", "limit"), ("before=nope!", "before"),
                         ("cloudService=cs1", "cloudService"), ("format=xml", "format")):
        bad = api(world.stack, "GET", f"/api/rotations?{query}")
        assert bad.status_code == 400 and bad.json()["error"]["field"] == field, query
