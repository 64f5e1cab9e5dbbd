"""The azd hooks: valid bash, and the preprovision checks stop bad input with a clear message.

`az` and `azd` are replaced by small scripts on PATH that answer from environment variables
and log their arguments, so the checks run here without Azure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, ROOT

HOOKS = sorted((INFRA / "hooks").glob("*.sh"))
VAULT = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-kv"
    "/providers/Microsoft.KeyVault/vaults/kv-one"
)
FAKE_AZ = """#!/usr/bin/env bash
echo "az $*" >> "$CALLS"
case "$1 $2" in
  "keyvault show") printf '%s\\n%s\\n' "${FAKE_ENABLED:-True}" "${FAKE_RBAC-True}" ;;
  "eventgrid system-topic") [[ -z ${FAKE_TOPIC:-} ]] || printf '%s\\n' "$FAKE_TOPIC" ;;
  "deployment sub")
    case "$*" in
      *accessPolicies.value*) [[ -z ${FAKE_POLICIES:-} ]] || printf '%s\\n' "$FAKE_POLICIES" ;;
      *outputResources*) [[ -z ${FAKE_CREATED:-} ]] || printf '%s\\n' "$FAKE_CREATED" ;;
    esac ;;
esac
"""
FAKE_AZD = '#!/usr/bin/env bash\necho "azd $*" >> "$CALLS"\n'


@pytest.mark.parametrize("hook", HOOKS, ids=lambda p: p.name)
def test_hook_is_valid_strict_bash(hook: Path) -> None:
    subprocess.run(["bash", "-n", str(hook)], check=True)
    if hook.name != "lib.sh":
        assert "set -euo pipefail" in hook.read_text()
        assert os.access(hook, os.X_OK)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_hooks_pass_shellcheck() -> None:
    subprocess.run(["shellcheck", "-x", "-P", "SCRIPTDIR/../..", *map(str, HOOKS)],
                   check=True, cwd=INFRA / "hooks")


def run_hook(hook: str, tmp_path: Path, **env: str) -> tuple[int, str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in (("az", FAKE_AZ), ("azd", FAKE_AZD)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    run = subprocess.run(
        ["bash", str(INFRA / "hooks" / hook)],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), **env},
        capture_output=True, text=True, cwd=ROOT, timeout=30,
    )
    return run.returncode, run.stderr, calls.read_text()


def preprovision(tmp_path: Path, **env: str) -> tuple[int, str, str]:
    return run_hook("preprovision.sh", tmp_path, **env)


@pytest.mark.parametrize(("env", "says"), [
    ({}, "CERTROTATE_KEYVAULT_IDS is not set"),
    ({"CERTROTATE_KEYVAULT_IDS": f"{VAULT},/subscriptions/x/vaults/y"},
     "CERTROTATE_KEYVAULT_IDS holds '/subscriptions/x/vaults/y', which is not a Key Vault id"),
    ({"CERTROTATE_KEYVAULT_IDS": VAULT, "CERTROTATE_PACKAGE_CONTAINER_IDS": VAULT},
     "CERTROTATE_PACKAGE_CONTAINER_IDS holds"),
    ({"CERTROTATE_KEYVAULT_IDS": VAULT, "CERTROTATE_VAULT_DEPLOYMENT_ACCESS": "maybe"},
     "CERTROTATE_VAULT_DEPLOYMENT_ACCESS is 'maybe': use check"),
    ({"CERTROTATE_KEYVAULT_IDS": VAULT, "CERTROTATE_NETWORK_RESOURCE_GROUP_IDS": VAULT},
     "CERTROTATE_NETWORK_RESOURCE_GROUP_IDS holds"),
    ({"CERTROTATE_KEYVAULT_IDS": VAULT, "FAKE_ENABLED": "False"},
     "vault kv-one has enabledForDeployment off"),
    ({"CERTROTATE_KEYVAULT_IDS": VAULT, "FAKE_TOPIC": f"{VAULT}\told-topic\trg-other"},
     "vault kv-one already has the system topic old-topic in resource group rg-other"),
])
def test_preprovision_refuses_bad_input_before_changing_anything(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    code, stderr, calls = preprovision(tmp_path, **env)
    assert code == 1
    assert says in stderr
    assert "update" not in calls and "azd" not in calls


def test_preprovision_turns_on_deployment_access_and_adopts_the_vault_topic(
    tmp_path: Path,
) -> None:
    code, stderr, calls = preprovision(
        tmp_path, CERTROTATE_KEYVAULT_IDS=f" {VAULT.upper()} ,",
        CERTROTATE_VAULT_DEPLOYMENT_ACCESS="set", FAKE_ENABLED="False",
        FAKE_TOPIC=f"{VAULT}\tevgt-kv-one-old\tRG-KV",
    )
    assert code == 0, stderr
    assert "--enabled-for-deployment true" in calls
    assert calls.splitlines()[-1] == "azd env set CERTROTATE_SYSTEM_TOPIC_NAMES evgt-kv-one-old"


@pytest.mark.parametrize(("rbac", "mode"), [("True", "rbac"), ("False", "policy"), ("", "policy")])
def test_preprovision_reads_each_vault_permission_model(
    tmp_path: Path, rbac: str, mode: str
) -> None:
    """enableRbacAuthorization true: RBAC; false or absent (Azure's default): access policies."""
    other = VAULT.replace("kv-one", "kv-two")
    code, stderr, calls = preprovision(
        tmp_path, CERTROTATE_KEYVAULT_IDS=f"{VAULT},{other}", FAKE_RBAC=rbac,
        CERTROTATE_NETWORK_RESOURCE_GROUP_IDS=VAULT.split("/providers/")[0],
    )
    assert code == 0, stderr
    assert f"azd env set CERTROTATE_VAULT_MODES {mode},{mode}" in calls.splitlines()
    assert ("uses access policies" in stderr) == (mode == "policy")


def test_predown_removes_exactly_the_added_access_policy(tmp_path: Path) -> None:
    entry = ('{"objectId":"11111111-1111-1111-1111-111111111111","permissions":'
             '{"certificates":["get","list"],"secrets":["get"]},"tenantId":"t"}')
    assignment = f"{VAULT}/providers/Microsoft.Authorization/roleAssignments/a1"
    code, stderr, calls = run_hook(
        "predown.sh", tmp_path, AZURE_ENV_NAME="env", AZURE_SUBSCRIPTION_ID="s",
        FAKE_POLICIES=f"{VAULT}\t{entry}", FAKE_CREATED=assignment,
    )
    assert code == 0, stderr
    rest = [c for c in calls.splitlines() if c.startswith("az rest")]
    assert rest == [
        "az rest --only-show-errors --method put -o none --url "
        f"https://management.azure.com{VAULT}/accessPolicies/remove?api-version=2023-07-01 "
        f'--body {{"properties": {{"accessPolicies": [{entry}]}}}}'
    ]
    lines = calls.splitlines()
    # role assignments go first, then the policy; the vault itself is never touched
    assert lines.index(rest[0]) > max(i for i, c in enumerate(lines) if "resource delete" in c)
    assert not any("keyvault" in c for c in lines)
