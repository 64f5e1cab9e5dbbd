"""``make demo``: a zero-touch rotation on the local stack, shown as it happens.

Starts a fresh stack, plays the operator (vault, certificate, package, a cloud service
with two roles using the certificate, Event Grid subscription to ``keyvault_events``),
then creates a new certificate version and follows the product's own log and run record
until the service serves the new thumbprint. Ends with a before/after table and the run's
id. Exits non-zero if the service did not converge.

The first ``make demo`` on a fresh machine installs the pinned packages and Azurite (94 s
in all on a 2-core VM with empty pip and npm caches); the demo itself takes about 15 s.
Its temporary folder (the stack's TLS key, the vault's certificates, logs) is removed at
the end, or kept and named when the demo failed, for its logs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests
from azure.keyvault.certificates import KeyVaultCertificate
from azure.mgmt.compute.models import CloudService, CloudServiceProperties

from emulators.provision import APP_POLICY, OPERATOR_POLICY, Operator, combined, thumbprint
from emulators.stack import Stack
from shared.config import Settings
from shared.domain import cscfg as parser

TIMEOUT_S = 90
ARM_ID = re.compile(  # a resource id: /subscriptions/S/resourceGroups/G/providers/NS/TYPE/NAME
    r"/subscriptions/[^/\s]+/resourceGroups/[^/\s]+/providers/[^/\s]+/[^/\s]+/([^/\s,=)]+)"
)


def step(t0: float, text: str) -> None:
    print(f"[{time.monotonic() - t0:6.2f}s] {text}", flush=True)


def follow_log(log: Path, offset: int, t0: float) -> int:
    """Print the product's own log lines (certrotate loggers) that appeared since offset,
    with ARM ids shortened to their last segment (the service, the vault)."""
    with log.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    for line in data.decode(errors="replace").splitlines():
        if " certrotate" in line:
            text = line.split("certrotate", 1)[-1].lstrip(".:] ")
            step(t0, "  app: " + ARM_ID.sub(lambda m: m.group(1), text))
    return offset + len(data)


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="certrotate-demo-"))
    t0 = time.monotonic()
    step(t0, f"starting the local stack in {folder}")
    stack = Stack.up(folder, update_seconds=2.0)
    status = 1
    try:
        os.environ.update(stack.env)
        status = run(stack, folder, t0)
        return status
    finally:
        stack.down()
        if status == 0:
            shutil.rmtree(folder, ignore_errors=True)
            step(t0, f"local stack stopped; {folder} removed (it held keys and logs)")
        else:
            step(t0, f"local stack stopped; its logs are kept in {folder}")


def version(cert: KeyVaultCertificate) -> str:
    return cert.properties.version if cert.properties and cert.properties.version else "?"


def props(service: CloudService) -> CloudServiceProperties:
    assert service.properties is not None
    return service.properties


def run(stack: Stack, folder: Path, t0: float) -> int:
    op = Operator(stack.env)
    rg = op.resource_group("demo-rg")
    # An access-policy vault, as the deployment guide sets vaults up: the operator's and
    # the app's rights (the same identity here) are granted in its access policy.
    vault_id, vault_url = op.vault(
        rg, "demo-kv", rbac=False, policy=combined(OPERATOR_POLICY, APP_POLICY)
    )
    step(t0, f"vault {vault_id.rsplit('/', 1)[-1]} at {vault_url} (enabledForDeployment, "
         "access policy for the app: certificates get/list, secrets get)")
    v1 = op.new_version(vault_url, "web-tls")
    step(t0, f"certificate web-tls v1 {version(v1)} thumbprint {thumbprint(v1)}")
    roles = ["WebRole1", "WorkerRole1"]
    cs = op.deploy(rg, "contoso", vault_id, {r: {"SslCert": v1} for r in roles})
    config = props(cs).configuration or ""
    tags = cs.tags or {}
    step(t0, f"package {tags.get('cert-rotation-package')} "
         f"(Content-MD5 {tags.get('cert-rotation-package-md5')})")
    step(t0, f"cloud service {cs.name} deployed: roles {', '.join(roles)} on v1")
    op.subscribe(rg, vault_id, "rotation")
    step(t0, "keyvault_events subscribed to the vault's certificate events (AzureFunction)")

    log = folder / "logs" / "functions.log"
    offset = log.stat().st_size
    admin = stack.env["EMULATOR_ADMIN_URL"]
    mark = len(requests.get(f"{admin}/requests", timeout=10).json())
    step(t0, "creating certificate web-tls v2 in Key Vault ...")
    started = time.monotonic()
    v2 = op.new_version(vault_url, "web-tls")
    want = thumbprint(v2)
    step(t0, f"v2 {version(v2)} thumbprint {want}")
    deadline = started + TIMEOUT_S
    done = False
    while time.monotonic() < deadline and not done:
        offset = follow_log(log, offset, t0)
        current = op.compute.cloud_services.get("demo-rg", "contoso")
        state = props(current).provisioning_state
        done = want in (props(current).configuration or "") and state == "Succeeded"
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    time.sleep(0.3)
    follow_log(log, offset, t0)

    final = op.compute.cloud_services.get("demo-rg", "contoso")
    calls = requests.get(f"{admin}/requests?since={mark}", timeout=10).json()
    counts: dict[str, int] = {}
    for call in calls:
        if "certrotate" not in call.get("agent", ""):
            continue  # the demo's own calls
        key = f"{call['service']} {call['method']}"
        counts[key] = counts.get(key, 0) + 1
    step(t0, "product calls for this rotation: " + json.dumps(counts, sort_keys=True))
    print()
    print(before_after(config, props(final).configuration or "", {
        thumbprint(v1).upper(): version(v1), want.upper(): version(v2)
    }, secrets(cs), secrets(final)))
    run_id = run_of(op)
    if run_id:
        print(f"\nrun {run_id}; on a running stack (make sandbox) `certrotate show RUN_ID` "
              "prints a run's record (this stack is gone with the demo)")
    if done:
        print(
            f"\nRESULT: rotated contoso (2 roles) to web-tls {version(v2)} "
            f"{elapsed:.1f}s after the new version was created"
        )
        return 0
    print(f"\nRESULT: FAILED: contoso not on {want} after {TIMEOUT_S}s; see {log}")
    return 1


def secrets(service: CloudService) -> list[str]:
    """The versions of the osProfile secret URLs (…/secrets/NAME/VERSION)."""
    profile = props(service).os_profile
    groups = (profile.secrets if profile else None) or []
    return [
        (c.certificate_url or "").rstrip("/").rsplit("/", 1)[-1]
        for g in groups for c in g.vault_certificates or []
    ]


def before_after(
    before: str, after: str, versions: dict[str, str], old: list[str], new: list[str]
) -> str:
    """Per role and certificate: thumbprint (version) before -> after; then osProfile."""
    was = {(c.role, c.name): c.thumbprint for c in parser.parse(before).certificates}
    rows = [f"{'role/certificate':<22} {'before':<32} after"]
    for cert in parser.parse(after).certificates:
        old_tp = was.get((cert.role, cert.name), "?").upper()
        new_tp = cert.thumbprint.upper()
        rows.append(
            f"{cert.role + '/' + cert.name:<22} "
            f"{old_tp[:12] + '… (' + versions.get(old_tp, '?')[:12] + '…)':<32} "
            f"{new_tp[:12]}… ({versions.get(new_tp, '?')[:12]}…)"
        )
    rows.append(f"{'osProfile secret':<22} {', '.join(v[:12] + '…' for v in old):<32} "
                + ", ".join(v[:12] + "…" for v in new))
    return "\n".join(rows)


def run_of(op: Operator) -> str | None:
    """The id of the demo's run (the only run record on its fresh stack)."""
    container = op.blobs.get_container_client(Settings.runs_container)
    names = [b.name for b in container.list_blobs()] if container.exists() else []
    return names[-1].removesuffix(".json") if names else None


if __name__ == "__main__":
    sys.exit(main())
