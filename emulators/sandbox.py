"""``make sandbox``: the local stack with sample data, left running for you to try.

``python -m emulators.sandbox up [--dir D]`` starts a stack as ``make stack-up`` does (same
folder, ``.local`` by default, same ``stack.env``; ``make stack-down`` stops it), then plays
the operator through :mod:`emulators.provision` and leaves a world with something for every
flag the status tells apart, all in resource group ``rg-sandbox``:

============  =========================================  ===================================
service       uses                                       what status says
============  =========================================  ===================================
cs-web        kv-rbac/web-tls v1 (v2 is newer)           drift: ``plan``/``rotate`` target
cs-jobs       kv-rbac/web-tls v1                         failed (Azure failed an update)
cs-batch      kv-rbac/web-tls v2, untagged               unmanaged
cs-api        kv-policy/api-tls v1 (v2 is newer)         drift: the HTTP walkthrough's target
cs-partner    kv-policy/partner-tls, 20 days left        expiring
cs-legacy     kv-policy/legacy-tls, expired 3 days ago   expired
============  =========================================  ===================================

``kv-rbac`` uses Azure RBAC (``enableRbacAuthorization``), ``kv-policy`` access policies;
the app's identity gets exactly what the deployment grants it in each. Both vaults' system
topics have an Event Grid subscription to ``keyvault_events`` on the local Functions host,
as ``infra/events.bicep`` deploys them, made before any certificate exists: the events of
the certificates' creation reach the app (an expired or expiring certificate's too), and
the services are deployed on their older versions only once those events have been worked,
so nothing rotates by itself and ``plan`` has something to show. The pipeline runs at the
pace of the test suite (``QUICK_QUEUES``: a queued rotation starts and is followed within
seconds, not Azure's 5 and 30 s).

It then prints the commands to try next: README.md's "Try it locally" walkthrough, which
``tests/e2e/test_sandbox.py`` runs against a sandbox of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import time
from pathlib import Path

import requests
from azure.core.exceptions import HttpResponseError

from emulators.polling import wait_for
from emulators.provision import APP_POLICY, APP_ROLES, OPERATOR_POLICY, OPERATOR_ROLES, Operator
from emulators.provision import combined as policies
from emulators.stack import QUICK_QUEUES, ROOT, Stack, start_reported

RG = "rg-sandbox"
RBAC_VAULT, POLICY_VAULT = "kv-rbac", "kv-policy"
ROLES = ("WebRole1", "WorkerRole1")
# Marks README.md's walkthrough (a ```sh block between the two), printed by ``up`` and run
# by tests/e2e/test_sandbox.py.
WALKTHROUGH = re.compile(
    r"<!-- walkthrough:begin -->\s*```sh\n(.*?)```\s*<!-- walkthrough:end -->", re.S
)
# What the events of the certificates' creation amount to: one NewVersionCreated per
# version (web-tls and api-tls twice, the two imports once), NearExpiry for both imports
# (legacy-tls expired: it is inside the 30 days too) and Expired for legacy-tls.
EXPECTED_DELIVERIES = 9


def walkthrough(readme: Path = ROOT / "README.md") -> str:
    """The walkthrough's commands, as README.md shows them."""
    found = WALKTHROUGH.search(readme.read_text(encoding="utf-8"))
    if found is None:
        raise ValueError(f"{readme}: no walkthrough between <!-- walkthrough:begin/end -->")
    return found.group(1)


def seed(stack: Stack) -> None:
    """The sample data (see the module's docstring), through the real SDKs."""
    op = Operator(stack.env)
    rg = op.resource_group(RG)
    rbac_id, rbac_url = op.vault(rg, RBAC_VAULT, rbac=True, roles=(*OPERATOR_ROLES, *APP_ROLES))
    policy_id, policy_url = op.vault(
        rg, POLICY_VAULT, rbac=False, policy=policies(OPERATOR_POLICY, APP_POLICY)
    )
    for vault_id in (rbac_id, policy_id):
        op.subscribe(rg, vault_id, "rotation")

    web = [op.new_version(rbac_url, "web-tls") for _ in range(2)]
    api = [op.new_version(policy_url, "api-tls") for _ in range(2)]
    partner = op.imported(policy_url, "partner-tls", 20)
    legacy = op.imported(policy_url, "legacy-tls", -3)
    _wait_events_worked(stack, op)

    op.deploy(rg, "cs-web", rbac_id, {role: {"SslCert": web[0]} for role in ROLES})
    op.deploy(rg, "cs-batch", rbac_id, {"WorkerRole1": {"SslCert": web[1]}}, tagged=False)
    op.deploy(rg, "cs-api", policy_id, {"WebRole1": {"SslCert": api[0]}})
    op.deploy(rg, "cs-partner", policy_id, {"WebRole1": {"PartnerCert": partner}})
    op.deploy(rg, "cs-legacy", policy_id, {"WebRole1": {"LegacyCert": legacy}})
    jobs = op.deploy(rg, "cs-jobs", rbac_id, {"WorkerRole1": {"SslCert": web[0]}})
    _failed_update(stack, op, jobs.name or "cs-jobs")


def _wait_events_worked(stack: Stack, op: Operator) -> None:
    """Until Event Grid delivered the certificates' events to the app and the app's queues
    are empty: the rotations those events started (on no service yet) have ended."""
    admin = stack.env["EMULATOR_ADMIN_URL"]

    def delivered() -> bool:
        log = requests.get(f"{admin}/eventgrid/deliveries", timeout=10).json()
        done = [d for d in log if d.get("kind") == "Notification"
                and d.get("outcome") == "Succeeded"]
        return len(done) >= EXPECTED_DELIVERIES

    wait_for(delivered, "Event Grid to deliver the certificates' events", timeout=60,
             interval=0.25)
    wait_for(lambda: op.owed() == 0, "the app's queues to drain", timeout=60, interval=0.25)


def _failed_update(stack: Stack, op: Operator, name: str) -> None:
    """An operator's own update of ``name`` that Azure fails (a role instance does not
    start): the service is left in provisioning state ``Failed``, holding that model."""
    requests.post(
        f"{stack.env['EMULATOR_ADMIN_URL']}/cloudservices/fail-next",
        json={"resourceGroup": RG, "name": name, "code": "RoleInstanceStartupFailed",
              "message": "Role instance WorkerRole1_IN_0 failed to start."},
        timeout=10,
    ).raise_for_status()
    service = op.compute.cloud_services.get(RG, name)
    with contextlib.suppress(HttpResponseError):  # expected: the operation ends Failed
        op.compute.cloud_services.begin_create_or_update(RG, name, service).result()
    state = op.compute.cloud_services.get(RG, name).properties
    if state is None or state.provisioning_state != "Failed":
        raise RuntimeError(f"{name} should be Failed, is {state and state.provisioning_state}")


def up(folder: Path) -> Stack:
    """Start the stack in ``folder``, seed it, and leave it running (stopped again if the
    seeding fails, so no half-made sandbox is left behind). Storage a previous stack left
    in ``folder`` (run records, journals, queues of services that no longer exist) is
    removed first: the emulators start empty, and so does the sandbox's storage."""
    started = time.monotonic()
    if not (folder / "pids").exists():  # no stack running there: start from empty storage
        for kept in ("azurite", "azurite-queue"):  # a previous stack's blobs and queues
            shutil.rmtree(folder / kept, ignore_errors=True)
    stack = start_reported(folder, QUICK_QUEUES)
    os.environ.update(stack.env)  # the operator's SDK clients sign in with the stack's identity
    try:
        seed(stack)
    except BaseException:
        stack.down()
        raise
    print(f"\nsandbox seeded and running in {time.monotonic() - started:.1f}s "
          f"(resource group {RG}; stop it with 'make stack-down'). Try:\n")
    print(walkthrough())
    return stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".local")
    args = parser.parse_args(argv)
    up(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
