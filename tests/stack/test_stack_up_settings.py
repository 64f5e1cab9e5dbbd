"""``make stack-up`` passes app settings from the developer's environment to the Functions
host, over the stack's defaults, and never the names the stack wires to itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from emulators.stack import STACK_WIRED, app_settings, read_env, settings_from
from tests.infra.bicep import ROOT


def test_only_names_the_app_reads_and_the_stack_does_not_wire_count() -> None:
    given = settings_from({
        "ROTATION_ROLLBACK": "true", "OPERATION_WAIT_SECONDS": "7",
        "AZURE_SUBSCRIPTION_ID": "meant-for-real-azure", "HOME": "/root", "PATH": "/bin",
    })
    assert given == {"ROTATION_ROLLBACK": "true", "OPERATION_WAIT_SECONDS": "7"}
    # every stack default the developer may override is a setting the app reads
    assert set(app_settings({k: "x" for k in (
        "AZURE_SUBSCRIPTION_ID", "AZURITE_BLOB_URL", "AZURITE_QUEUE_URL", "ARM_ENDPOINT",
        "STACK_CA_BUNDLE", "AZURE_CLIENT_ID", "LOCAL_VAULT_PORTS")})) - STACK_WIRED == {
        "KEYVAULT_VERIFY_CHALLENGE_RESOURCE", "OPERATION_WAIT_SECONDS", "ARM_POLLING_INTERVAL",
        "RECONCILE_SCHEDULE", "FOLLOW_SCHEDULE"}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_stack_up_hands_environment_settings_to_the_host(tmp_path: Path) -> None:
    env = {**os.environ, "ROTATION_ROLLBACK": "true", "OPERATION_WAIT_SECONDS": "7",
           "AZURE_SUBSCRIPTION_ID": "meant-for-real-azure"}
    folder = tmp_path / "dev"
    command = [sys.executable, "-m", "emulators.stack"]
    up = subprocess.run([*command, "up", "--dir", str(folder)], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        (taken,) = [line for line in up.stdout.splitlines()
                    if line.startswith("app settings from the environment")]
        assert "OPERATION_WAIT_SECONDS=7" in taken and "ROTATION_ROLLBACK=true" in taken
        assert "AZURE_SUBSCRIPTION_ID" not in taken
        written = read_env(folder / "stack.env")
        host = _environ(int((folder / "pids").read_text().split()[-1]))  # the host: last
        for seen in (written, host):
            assert seen["ROTATION_ROLLBACK"] == "true"
            assert seen["OPERATION_WAIT_SECONDS"] == "7"  # over the stack's 120
            assert seen["AZURE_SUBSCRIPTION_ID"] != "meant-for-real-azure"
            assert seen["ROTATION_SUBSCRIPTIONS"] == seen["AZURE_SUBSCRIPTION_ID"]
    finally:
        subprocess.run([*command, "down", "--dir", str(folder)], cwd=ROOT, timeout=60,
                       check=True, capture_output=True)
