"""README.md's "Try it locally" walkthrough, run as written against a sandbox of its own.

The sandbox (``python -m emulators.sandbox up``, what ``make sandbox`` runs) starts in this
test's own folder, as ``<tmp>/.local``, on free ports, so neither the session's stack nor a
developer's ``make sandbox`` is touched. The walkthrough's commands are taken from between
README's ``<!-- walkthrough:begin/end -->`` markers and run in one bash script from
``<tmp>`` (so ``.local/stack.env`` is the sandbox's), with real ``certrotate``, ``curl``
and ``jq``; each command's exit status and output are kept apart and checked against
:data:`EXPECTED`. A command README gains without an entry there fails the test, so README
and test cannot drift apart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators.sandbox import walkthrough
from emulators.stack import ROOT, read_env
from tests.e2e.browser import HEIGHT, SCREENSHOTS, WIDTH, chromium, fits, tiles_match

# The environment before any fixture of this session exported a stack's settings into it.
BASE_ENV = dict(os.environ)
# Lines the test does itself (start and stop the sandbox) or needs not (the venv's bin
# is put on PATH instead of activating it).
SETUP = ("make sandbox", ". .venv/bin/activate", "make stack-down")
# The start of each command -> (exit status, texts its stdout + stderr must hold).
EXPECTED: dict[str, tuple[int, tuple[str, ...]]] = {
    "set -a;": (0, ()),
    "certrotate status --check": (3, ("attention: rg-sandbox/cs-jobs: failed",
                                      "attention: rg-sandbox/cs-legacy: expired")),
    "certrotate status": (0, ("Azure left it in provisioningState Failed", "EXPIRED",
                              "cs-batch: unmanaged", "summary: 6 service(s), 6 need attention")),
    "certrotate plan": (0, ("cs-web: dry-run", "WebRole1/SslCert: ")),
    "certrotate rotate": (0, ("finished: 1 rotated",)),
    "RUN=": (0, ()),
    "certrotate show": (0, ("cs-web: rotated", "finished: 1 rotated")),
    'curl -fsS -H "x-functions-key: $FUNCTIONS_KEY" "$FUNCTIONS_URL/api/status?format=json"': (
        0, ('"failed": 1', '"expired": 1', '"unmanaged": 1')),
    "IDS=": (0, ()),
    "BODY=": (0, ()),
    'curl -fsS -H "x-functions-key: $FUNCTIONS_KEY" "$FUNCTIONS_URL/api/rotations" -d "$BODY, ': (
        0, ('"outcome": "dry-run"', '"dryRun": true')),
    "ID=": (0, ()),
    'certrotate follow "$ID"': (0, ("cs-api: rotated", "finished: 1 rotated")),
    'curl -fsS -H "x-functions-key: $FUNCTIONS_KEY" "$FUNCTIONS_URL/api/rotations/$ID"': (
        0, ('"done"', '"rotated"')),
    'curl -fsS -H "x-functions-key: $FUNCTIONS_KEY" "$FUNCTIONS_URL/api/status?format=html"': (
        0, ()),
    "curl -sS -o /dev/null": (0, ("401",)),
}


def commands(block: str) -> list[str]:
    """The block's shell commands: comment lines dropped, ``\\`` continuations joined."""
    found, pending = [], ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        found.append(pending + line)
        pending = ""
    return found


def expectation(command: str) -> tuple[int, tuple[str, ...]]:
    """The entry of :data:`EXPECTED` whose key starts ``command`` (the longest)."""
    keys = [k for k in EXPECTED if command.startswith(k)]
    assert keys, f"README's walkthrough has a command this test does not check: {command}"
    return EXPECTED[max(keys, key=len)]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    for tool in ("curl", "jq", "bash"):
        if shutil.which(tool) is None:
            pytest.fail(f"the walkthrough needs {tool}, which is not installed")
    home = tmp_path_factory.mktemp("sandbox")
    folder = home / ".local"
    started = subprocess.run(
        [sys.executable, "-m", "emulators.sandbox", "up", "--dir", str(folder)],
        cwd=ROOT, env=BASE_ENV, capture_output=True, text=True, timeout=240, check=False,
    )
    try:
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        assert "sandbox seeded and running" in started.stdout
        assert walkthrough() in started.stdout  # it prints README's commands
        yield home
    finally:
        subprocess.run([sys.executable, "-m", "emulators.stack", "down", "--dir", str(folder)],
                       cwd=ROOT, env=BASE_ENV, capture_output=True, timeout=60, check=False)


@pytest.mark.timeout(360)
def test_readme_walkthrough_runs_as_written(sandbox: Path) -> None:
    block = walkthrough()
    run = [c for c in commands(block) if not c.startswith(SETUP)]
    setup = [c.split("#")[0].strip() for c in commands(block) if c.startswith(SETUP)]
    assert setup == list(SETUP), "the walkthrough starts and stops the sandbox as README says"
    for command in run:
        expectation(command)  # every command is known before anything runs
    script = ["set -o pipefail", "mkdir -p .walk"]
    for index, command in enumerate(run):
        # A group on lines of its own: the command's trailing comment ends with its line.
        script += ["{", command, f"}} >.walk/{index}.out 2>.walk/{index}.err",
                   f"echo $? >.walk/{index}.rc"]
    env = {**BASE_ENV, "PATH": f"{Path(sys.executable).parent}:{BASE_ENV.get('PATH', '')}"}
    subprocess.run(["bash", "-c", "\n".join(script)], cwd=sandbox, env=env, timeout=300,
                   check=False)

    for index, command in enumerate(run):
        status, texts = expectation(command)
        walk = sandbox / ".walk"
        rc_file = walk / f"{index}.rc"
        assert rc_file.exists(), f"never ran: {command}"
        output = (walk / f"{index}.out").read_text() + (walk / f"{index}.err").read_text()
        assert int(rc_file.read_text()) == status, f"{command}\nexit {rc_file.read_text()}" \
            f" (expected {status}):\n{output[-3000:]}"
        for text in texts:
            assert text in output, f"{command}: no {text!r} in:\n{output[-3000:]}"
    sourced = sandbox / ".walk" / f"{_index(run, 'stack.env')}.err"
    assert sourced.read_text() == "", "the shell must source stack.env without an error"
    page = (sandbox / ".local" / "status.html").read_text()
    assert "cs-jobs" in page and "<!DOCTYPE html>" in page
    summary = json.loads((sandbox / ".walk" / f"{_index(run, 'api/status?format=json')}.out")
                         .read_text())
    assert summary["failed"] == 1 and summary["expired"] == 1 and summary["expiring"] == 1


def _index(run: list[str], text: str) -> int:
    return next(i for i, c in enumerate(run) if text in c)


def test_the_sandbox_status_page_in_chromium(sandbox: Path, tmp_path: Path) -> None:
    """The sandbox's page as an operator opens it, after the walkthrough (whose rotations
    give cs-web and cs-api a run to link to): it fits 1280 px, Azure's Failed service is
    visible and marked failed, the tiles count what the JSON counts, a run link opens the
    run's page."""
    env = read_env(sandbox / ".local" / "stack.env")
    base = env["FUNCTIONS_URL"]
    with chromium(tmp_path / "profile", env["FUNCTIONS_KEY"]) as browser:
        page = browser.new_page()
        summary = page.request.get(f"{base}/api/status").json()["summary"]
        page.goto(f"{base}/api/status?format=html")

        width = fits(page)
        jobs = page.locator('tr[data-service$="/cs-jobs"]')
        assert jobs.is_visible()
        assert "failed" in (jobs.get_attribute("data-attention") or "").split()
        assert jobs.locator(".badge.b-failed").first.inner_text() == "failed"
        tiles_match(page, summary)
        page.screenshot(path=str(SCREENSHOTS / "sandbox-status.png"), full_page=True)
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})

        web = page.locator('tr[data-service$="/cs-web"]')
        web.locator('a[href*="rotations/"]').first.click()
        page.wait_for_load_state()

        assert "/api/rotations/" in page.url
        run_id = page.url.split("/api/rotations/", 1)[1].split("?", 1)[0]
        assert run_id in page.locator("h1").inner_text()
        badge = page.locator('section[data-service$="/cs-web"] .badge').first
        assert "rotated" in badge.inner_text()
        fits(page)
        page.screenshot(path=str(SCREENSHOTS / "sandbox-run.png"), full_page=True)
    print(f"\nsandbox status page at {WIDTH}x{HEIGHT}: {width} px wide")

