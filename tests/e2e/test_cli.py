"""End-to-end: the ``certrotate`` CLI against the local stack, as an operator runs it.

Each call is a real subprocess, ``python -m certrotate --env-file FILE ...``, with an
environment that holds nothing of the stack: everything (endpoints, CA, identity, scope)
comes from the env file, which is the stack's ``stack.env`` plus the app settings the
function app runs with, scoped to the test's own resource group. Outcomes are read the way
the other e2e tests read them: the services through the SDK, the records over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.compute.models import CloudServiceUpdate

from emulators.provision import cscfg, thumbprint
from emulators.stack import ROOT, app_settings
from tests.e2e.world import CERT, World, api, secret_of, unique, version_of


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.out)


def env_file_for(world: World, tmp_path: Path, groups: str | None = None) -> Path:
    """The stack's settings scoped to ``groups`` (default: the world's resource group)."""
    env_file = tmp_path / "stack.env"
    settings = {
        **world.stack.env,
        **app_settings(world.stack.env),
        "ROTATION_RESOURCE_GROUPS": groups or world.rg_name,
    }
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    env_file.chmod(0o600)
    return env_file


@pytest.fixture
def cli(world: World, tmp_path: Path) -> Any:
    env_file = env_file_for(world, tmp_path)
    bare = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}

    def run(*args: str, stdin: str | None = None, env: Path | None = None) -> Result:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "certrotate", "--env-file", str(env or env_file), *args],
            cwd=ROOT,
            env=bare,
            input=stdin,
            stdin=subprocess.DEVNULL if stdin is None else None,
            capture_output=True,
            text=True,
            timeout=180,
        )
        return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    return run


def test_status_table_and_json(world: World, cli: Any) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()

    table = cli("status")
    as_json = cli("status", "--json")

    assert table.code == 0, table.err
    header, *rows = table.out.splitlines()
    assert header.split()[:4] == ["ATTENTION", "SERVICE", "ROLE", "CSCFG"]
    mine = [r for r in rows if f" {svc.rg}/{svc.name} " in r]
    assert len(mine) == 2 and all(r.startswith("drift ") for r in mine)
    assert all("DRIFT" in r and version_of(v1)[:8] in r for r in mine)
    assert rows[-1] == "summary: 1 service(s), 1 need attention: 1 drift"
    assert all(f"/{CERT}" in r and version_of(v2)[:8] in r for r in mine)
    assert as_json.code == 0, as_json.err
    (service,) = as_json.json()["services"]  # scoped to the world's resource group
    assert service["id"] == svc.id and service["managed"] is True
    over_http = next(
        s for s in api(world.stack, "GET", "/api/status").json()["services"] if s["id"] == svc.id
    )
    for doc in (service, over_http):
        for use in doc["certificates"]:
            use.pop("expiresInDays")  # computed at each answer's own "now"
    assert service == over_http  # one document, whichever way it is asked for


def test_plan_shows_the_diff_and_changes_nothing(world: World, cli: Any) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()
    mark = world.stack.request_mark()

    shown = cli("plan", "--vault", world.vault_id, "--certificate", CERT)
    as_json = cli("plan", "--vault", world.vault_id, "--certificate", CERT, "--json")

    assert shown.code == 0, shown.err
    assert f"{svc.name}: dry-run" in shown.out
    assert f"WebRole1/SslCert: {thumbprint(v1)} -> {thumbprint(v2)}" in shown.out
    assert f"osProfile + {secret_of(v2)}" in shown.out
    assert "--- cscfg (deployed)" in shown.out
    assert f'+<Certificate name="SslCert" thumbprint="{thumbprint(v2)}"' in shown.out
    plan = as_json.json()
    assert plan["dryRun"] is True
    (entry,) = plan["services"]
    assert entry["outcome"] == "dry-run" and entry["plan"]["desiredVersion"] == version_of(v2)
    world.assert_on(svc, v1)
    assert [c for c in world.product_calls(mark) if c["method"] not in ("GET", "POST")] == []


def test_rotate_with_yes_shows_progress_waits_and_records(world: World, cli: Any) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()

    done = cli("rotate", "--vault", world.vault_id, "--certificate", CERT, "--yes")

    assert done.code == 0, done.err
    world.assert_on(svc, v2)  # waited for the update: already applied on return
    assert "[run=" in done.err and f"service={svc.id}" in done.err
    assert "submitted" in done.err
    run_line = done.out.splitlines()[-1]
    assert run_line.endswith(" finished: 1 rotated"), done.out
    run_id = run_line.split()[1]
    assert f"{svc.name}  rotated" in done.out
    print(f"\ncertrotate rotate (1 service, 2 roles) took {done.seconds:.1f}s")

    history = cli("history", "--cloud-service", svc.id)
    assert history.code == 0, history.err
    assert run_id in history.out and f"{svc.name}=rotated" in history.out
    records = cli("history", "--cloud-service", svc.id, "--json").json()
    assert [r["id"] for r in records] == [run_id]
    assert records[0] == api(world.stack, "GET", f"/api/rotations/{run_id}").json()
    none = cli("history", "--cloud-service", svc.id.replace(svc.name, "nothere"))
    assert none.code == 0 and none.out.strip() == "no runs found"


def test_rotate_failure_exits_non_zero(world: World, cli: Any) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.new_version()
    world.stack.admin(
        "POST",
        "/cloudservices/fail-next",
        {"resourceGroup": svc.rg, "name": svc.name, "code": "RoleInstanceStartupTimeoutError",
         "message": "One or more role instances did not start within the allowed time."},
    )

    failed = cli("rotate", "--vault", world.vault_id, "--certificate", CERT, "--yes", "--json")

    assert failed.code == 1
    (result,) = failed.json()["services"]
    assert result["outcome"] == "failed"
    assert "RoleInstanceStartupTimeoutError" in result["message"]
    assert "ERROR" in failed.err
    run_id = failed.json()["id"]

    shown = cli("show", run_id)
    assert shown.code == 1, shown.err
    assert f"{svc.name}: failed (the update failed: RoleInstanceStartupTimeoutError" in shown.out
    assert shown.out.splitlines()[-1] == f"run {run_id} finished: 1 failed"
    assert "done" not in shown.out.splitlines()[-1]

    check = cli("status", "--check")
    assert check.code == 3, (check.out, check.err)
    (line,) = [x for x in check.err.splitlines() if x.startswith("attention:")]
    assert line.startswith(f"attention: {svc.rg}/{svc.name}: failed, run-failed")
    assert "need attention: 1 failed, 1 last run failed" in check.out.splitlines()[-1]
    ignored = [f"--ignore={f}" for f in ("failed", "run-failed", "backoff", "drift")]
    assert cli("status", "--check", *ignored).code == 0
    failures = cli("history", "--outcome", "failed", "--vault", world.vault_name)
    assert run_id in failures.out and f"{svc.name}=failed" in failures.out
    assert "finished" in failures.out
    # history reads every run record (other tests' too): narrowed to this service
    rotated = cli("history", "--outcome", "rotated", "--cloud-service", svc.name)
    assert rotated.out.strip() == "no runs found"


def test_status_check_passes_when_all_is_well(world: World, cli: Any) -> None:
    world.deploy(world.new_version())
    check = cli("status", "--check")
    assert check.code == 0, (check.out, check.err)
    assert check.out.splitlines()[-1] == "summary: 1 service(s), 0 need attention"
    expiring = cli("status", "--check", "--expiring-days", "400")  # the version lives ~1 year
    assert expiring.code == 3 and "expiring" in expiring.err


def test_short_names_resolve_within_scope(world: World, cli: Any, tmp_path: Path) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.new_version()
    other_rg = unique("rg")
    world.op.resource_group(other_rg)
    twin = world.deploy(v1, rg=world.rg.replace(world.rg_name, other_rg))

    for vault, service in ((world.vault_name, svc.name), (world.vault_name.upper(), svc.name),
                           (world.vault_name, f"{svc.rg}/{svc.name}"), (world.vault_id, svc.id)):
        shown = cli("plan", "--vault", vault, "--certificate", CERT, "--cloud-service", service)
        assert shown.code == 0, shown.err
        assert f"{svc.name}: dry-run" in shown.out and twin.name not in shown.out

    both = env_file_for(world, tmp_path, f"{world.rg_name},{other_rg}")
    # twin is named differently; ask by a name shared by nothing, then by one shared by two
    missing = cli("plan", "--vault", world.vault_name, "--certificate", CERT,
                  "--cloud-service", "CS-Not-There", env=both)
    assert missing.code == 1
    assert "cloud service 'CS-Not-There' not found" in missing.err
    assert missing.err.count("certrotate: error:") == 1
    no_vault = cli("plan", "--vault", "kv-not-there", "--certificate", CERT)
    assert no_vault.code == 1 and "vault 'kv-not-there' not found" in no_vault.err


def test_ambiguous_short_name_lists_the_candidates(world: World, cli: Any, tmp_path: Path) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    other_rg = unique("rg")
    rg2 = world.op.resource_group(other_rg)
    package, md5 = world.op.package("packages", f"{unique('twin')}.cspkg", b"PK\x03\x04twin")
    world.op.cloud_service(
        rg2, svc.name, cscfg(svc.name, {"WebRole1": {"SslCert": thumbprint(v1)}}), ["WebRole1"],
        world.vault_id, [secret_of(v1)], package, md5,
    )
    both = env_file_for(world, tmp_path, f"{world.rg_name},{other_rg}")

    ambiguous = cli("plan", "--vault", world.vault_name, "--certificate", CERT,
                    "--cloud-service", svc.name, env=both)

    assert ambiguous.code == 2, ambiguous.err
    assert f"{svc.rg}/{svc.name}" in ambiguous.err and f"{other_rg}/{svc.name}" in ambiguous.err
    chosen = cli("plan", "--vault", world.vault_name, "--certificate", CERT,
                 "--cloud-service", f"{other_rg}/{svc.name}", env=both)
    assert chosen.code == 0, chosen.err


def test_follow_a_run_left_updating_until_it_ends(world: World, cli: Any) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    v2 = world.new_version()

    left = cli("rotate", "--vault", world.vault_name, "--certificate", CERT, "--yes",
               "--wait", "0")

    assert left.code == 1, left.err
    run_line, hint = left.out.splitlines()[-2:]
    run_id = run_line.split()[1]
    assert run_line.endswith("still updating: 1 updating") and hint.endswith(f"follow {run_id}")
    followed = cli("follow", run_id)
    assert followed.code == 0, followed.err
    assert followed.out.splitlines()[-1] == f"run {run_id} finished: 1 rotated"
    world.assert_on(svc, v2)
    assert cli("show", run_id).code == 0
    assert cli("show", "20991231T000000Z-000000000000").err.count("no rotation run") == 1


def test_version_and_a_closed_pipe_end_quietly(world: World, cli: Any, tmp_path: Path) -> None:
    shown = cli("--version")
    assert shown.code == 0 and shown.out.strip() == "certrotate 0.1.0"
    world.deploy(world.new_version())
    reader = subprocess.Popen(
        [sys.executable, "-m", "certrotate", "--env-file", str(env_file_for(world, tmp_path)),
         "status"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()  # as `| head -0` would: gone before anything is written
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=180) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err


BAD_INPUT = {
    "vault is no name": (["plan", "--vault", "kv 1!", "--certificate", CERT], "--vault:"),
    "certificate name": (["plan", "--vault", "{vault}", "--certificate", "a b"], "--certificate:"),
    "cloud service id": (
        ["plan", "--vault", "{vault}", "--certificate", CERT, "--cloud-service", "cs 1"],
        "--cloud-service:",
    ),
    "rotate without --yes and no terminal": (
        ["rotate", "--vault", "{vault}", "--certificate", CERT],
        "confirm with --yes",
    ),
    "package with a SAS": (
        ["adopt", "--cloud-service", "{service}", "--package", "https://a/b/c.cspkg?sig=x"],
        "--package:",
    ),
}


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_exits_2_and_changes_nothing(
    world: World, cli: Any, argv: list[str], message: str
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    mark = world.stack.request_mark()

    bad = cli(*(a.format(vault=world.vault_id, service=svc.id) for a in argv))

    assert bad.code == 2, (bad.out, bad.err)
    assert message in bad.err and bad.out == ""
    assert "sig=x" not in bad.err
    assert world.product_calls(mark) == []  # refused before anything was read


def test_unknown_certificate_exits_1(world: World, cli: Any) -> None:
    world.deploy(world.new_version())
    missing = cli("plan", "--vault", world.vault_id, "--certificate", "nothing-uses-this")
    assert missing.code == 1
    assert f"certificate 'nothing-uses-this' not found in vault {world.vault_name}" in missing.err
    world.op.new_version(world.vault_url, "Spare-Cert")
    unused = cli("plan", "--vault", world.vault_name, "--certificate", "Spare-Cert")
    assert unused.code == 1
    assert "certificate 'Spare-Cert' of vault" in unused.err and "used by no" in unused.err


def test_adopt_checks_the_blob_then_sets_both_tags(world: World, cli: Any) -> None:
    svc = world.deploy(world.new_version(), tagged=False)
    world.op.compute.cloud_services.begin_update(
        svc.rg, svc.name, parameters=CloudServiceUpdate(tags={"owner": "team-a"})
    ).result()
    package, md5 = world.op.package("packages", f"{unique('pkg')}.cspkg", b"PK\x03\x04adopt")

    missing = cli("adopt", "--cloud-service", svc.id, "--package", package + ".missing")
    assert missing.code == 1 and "does not exist" in missing.err
    assert world.op.compute.cloud_services.get(svc.rg, svc.name).tags == {"owner": "team-a"}

    adopted = cli("adopt", "--cloud-service", svc.id, "--package", package, "--json")

    assert adopted.code == 0, adopted.err
    assert adopted.json() == {"cloudService": svc.id, "package": package, "md5": md5}
    assert world.op.compute.cloud_services.get(svc.rg, svc.name).tags == {
        "owner": "team-a",
        "cert-rotation-package": package,
        "cert-rotation-package-md5": md5,
    }
    (service,) = cli("status", "--json").json()["services"]
    assert service["managed"] is True
