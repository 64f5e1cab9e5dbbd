"""``make demo``: a zero-touch rotation on the local stack, shown as it happens.

Starts a fresh stack, plays the operator (vault, certificate, package, a cloud service
with two roles using the certificate, Event Grid subscription to ``keyvault_events``),
then creates a new certificate version and follows the product's own log and run record
until the service serves the new thumbprint. Exits non-zero if it does not.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import requests
from azure.keyvault.certificates import KeyVaultCertificate
from azure.mgmt.compute.models import CloudService, CloudServiceProperties

from emulators.provision import APP_POLICY, OPERATOR_POLICY, Operator, combined, cscfg, thumbprint
from emulators.stack import Stack
from shared import cscfg as parser

TIMEOUT_S = 90


def step(t0: float, text: str) -> None:
    print(f"[{time.monotonic() - t0:6.2f}s] {text}", flush=True)


def follow_log(log: Path, offset: int, t0: float) -> int:
    """Print the product's own log lines (certrotate loggers) that appeared since offset."""
    with log.open("rb") as handle:
        handle.seek(offset)
        data = handle.read()
    for line in data.decode(errors="replace").splitlines():
        if " certrotate" in line or "Functions.keyvault_events" in line:
            step(t0, "  app: " + line.split("certrotate", 1)[-1].lstrip(".:] "))
    return offset + len(data)


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="certrotate-demo-"))
    t0 = time.monotonic()
    step(t0, f"starting the local stack in {folder}")
    stack = Stack.up(folder, update_seconds=2.0)
    try:
        os.environ.update(stack.env)
        return run(stack, folder, t0)
    finally:
        stack.down()
        step(t0, "local stack stopped")


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
    package, md5 = op.package("packages", "contoso.cspkg", b"PK\x03\x04" + b"demo" * 4096)
    step(t0, f"package {package} (Content-MD5 {md5})")
    roles = ["WebRole1", "WorkerRole1"]
    config = cscfg("Contoso", {r: {"SslCert": thumbprint(v1)} for r in roles})
    assert v1.secret_id
    cs = op.cloud_service(rg, "contoso", config, roles, vault_id, [v1.secret_id], package, md5)
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
    for cert in parser.parse(props(final).configuration or "").certificates:
        step(t0, f"final {cert.role}/{cert.name} = {cert.thumbprint}")
    profile = props(final).os_profile
    groups = (profile.secrets if profile else None) or []
    urls = [c.certificate_url for g in groups for c in g.vault_certificates or []]
    step(t0, f"final osProfile secrets: {urls}")
    calls = requests.get(f"{admin}/requests?since={mark}", timeout=10).json()
    counts: dict[str, int] = {}
    for call in calls:
        if "certrotate" not in call.get("agent", ""):
            continue  # the demo's own calls
        key = f"{call['service']} {call['method']}"
        counts[key] = counts.get(key, 0) + 1
    step(t0, "product calls for this rotation: " + json.dumps(counts, sort_keys=True))
    if done:
        print(
            f"RESULT: rotated contoso (2 roles) to web-tls {version(v2)} "
            f"{elapsed:.1f}s after the new version was created"
        )
        return 0
    print(f"RESULT: FAILED: contoso not on {want} after {TIMEOUT_S}s; see {log}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
