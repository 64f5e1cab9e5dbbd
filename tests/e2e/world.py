"""The end-to-end harness: one isolated "world" per test on the session stack.

A World owns a resource group, a vault with an Event Grid subscription to the function
app, and helpers to create certificate versions, deploy cloud services, deliver events
and read back what the product did (services via the SDK, run records via the HTTP API,
calls via the stack's request log). Shared by every e2e test module.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.certificates import (
    CertificatePolicy,
    KeyVaultCertificate,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import pkcs12

from emulators.polling import wait_for
from emulators.provision import APP_ROLES, NS, OPERATOR_ROLES, Operator, cscfg, thumbprint
from emulators.stack import app_settings
from shared.config import Settings
from shared.domain.outcomes import RunStatus
from shared.rotation.engine import Engine
from tests.conftest import LocalStack
from tests.infra.bicep import variable

CERT = "web-tls"
ROLES = ("WebRole1", "WorkerRole1")
NEW_VERSION = "Microsoft.KeyVault.CertificateNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"
RUNS_CONTAINER = "cert-rotation-runs"
AGENT = "certrotate"  # in the User-Agent of every call the product makes
# The app's custom roles as infra/app/roles.bicep defines them (the actions are read from the
# Bicep), and where infra assigns them when ROTATION_RESOURCE_GROUPS names the group: role ->
# (its actions variable, assigned on the subscription rather than the group). The vault
# deployer goes on the group, covering every vault a test makes in it (infra: each vault).
BICEP_ROLES = {
    "certrotate cloud service operator": ("cloudServiceActions", False),
    "certrotate network joiner": ("networkJoinActions", False),
    "certrotate vault deployer": ("vaultDeployActions", False),
    "certrotate operation reader": ("operationReadActions", True),
}


def grant_bicep_roles(op: Operator, rg: str) -> dict[str, str]:
    """Give the app exactly the Bicep's custom roles for resource group ``rg`` (which makes
    the stack's ARM check every cloud-service write there, and its polls); role -> the
    assignment's id."""
    granted = {}
    for role, (actions, on_subscription) in BICEP_ROLES.items():
        definition = op.define_role(role, variable("app/roles.bicep", actions))
        granted[role] = op.assign(f"/subscriptions/{op.sub}" if on_subscription else rg,
                                  definition)
    return granted


def unique(prefix: str) -> str:
    """A fresh resource name (letter first, so it is a valid vault name too)."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def next_second() -> None:
    """Wait for the clock's next second: Key Vault's ``created`` has 1 s resolution, and two
    versions created in the same second can be ordered only by which one is current."""
    start = int(time.time())
    wait_for(lambda: int(time.time()) > start, "the next second", timeout=2)


def version_of(cert: KeyVaultCertificate) -> str:
    assert cert.properties is not None and cert.properties.version
    return cert.properties.version


def secret_of(cert: KeyVaultCertificate) -> str:
    assert cert.secret_id
    return cert.secret_id


def unix(moment: dt.datetime | None) -> int:
    assert moment is not None
    return int(moment.timestamp())


def pfx_thumbprint(data: bytes) -> str:
    _, cert, _ = pkcs12.load_key_and_certificates(data, None)
    assert cert is not None
    return cert.fingerprint(hashes.SHA1()).hex().upper()


@dataclass(frozen=True)
class Service:
    rg: str  # resource group name
    name: str
    id: str


@dataclass(frozen=True)
class Deployed:
    """A cloud service as ComputeManagementClient reads it."""

    thumbprints: dict[str, list[str]]  # role -> cscfg Certificate thumbprints
    secrets: list[str]  # osProfile certificate URLs
    state: str | None


class World:
    """One test's own resource group and vault, and the ways to look at the outcome."""

    def __init__(
        self,
        stack: LocalStack,
        op: Operator,
        *,
        rbac: bool = True,
        roles: Sequence[str] = (*OPERATOR_ROLES, *APP_ROLES),
        policy: dict[str, list[str]] | None = None,
    ) -> None:
        self.stack, self.op = stack, op
        self.rg_name = unique("rg")
        self.rg = op.resource_group(self.rg_name)
        # ARM rights: the Bicep's least-privilege roles, never an all-powerful token.
        self.arm_roles = grant_bicep_roles(op, self.rg)
        self.vault_name = unique("kv")
        # By default an RBAC vault in which the operator's steps and the app (one identity
        # on the stack) get their roles explicitly; access-policy tests pass ``rbac=False``
        # and the ``policy`` they need.
        self.vault_id, self.vault_url = op.vault(
            self.rg, self.vault_name, rbac=rbac, roles=roles if rbac else (), policy=policy
        )
        self.kv = op.certificates(self.vault_url)
        self.subscription = ""
        self.mark = stack.request_mark()

    # -- operator actions ------------------------------------------------------------------

    def new_version(self, policy: CertificatePolicy | None = None) -> KeyVaultCertificate:
        return self.op.new_version(self.vault_url, CERT, policy)

    def deploy(
        self,
        cert: KeyVaultCertificate,
        *,
        rg: str | None = None,
        roles: tuple[str, ...] = ROLES,
        tagged: bool = True,
        upgrade_mode: str = "Auto",
    ) -> Service:
        """A cloud service whose roles all use ``cert`` (tagged for rotation if asked)."""
        rg = rg or self.rg
        name = unique("cs")
        package, md5 = self.op.package("packages", f"{name}.cspkg", b"PK\x03\x04" + b"x" * 4096)
        config = cscfg(name, {role: {"SslCert": thumbprint(cert)} for role in roles})
        self.op.cloud_service(
            rg,
            name,
            config,
            list(roles),
            self.vault_id,
            [secret_of(cert)],
            package if tagged else None,
            md5 if tagged else None,
            upgrade_mode,
        )
        return Service(
            rg.rsplit("/", 1)[-1], name, f"{rg}/providers/Microsoft.Compute/cloudServices/{name}"
        )

    def subscribe(self) -> None:
        """The vault's certificate events to ``keyvault_events``, as infra deploys them."""
        self.subscription = unique("sub")
        self.op.subscribe(self.rg, self.vault_id, self.subscription)

    def raise_event(
        self,
        kind: str,
        version: str,
        *,
        event_id: str | None = None,
        event_time: str | None = None,
        nbf: int | None = None,
        exp: int | None = None,
        data_id: str | None = None,
    ) -> str:
        """A Key Vault certificate event, through Event Grid's delivery path; its id."""
        body: dict[str, Any] = {
            "source": self.vault_id,
            "eventType": kind,
            "subject": CERT,
            "data": {
                "Id": data_id or f"{self.vault_url}certificates/{CERT}/{version}",
                "VaultName": self.vault_name,
                "ObjectType": "Certificate",
                "ObjectName": CERT,
                "Version": version,
                "NBF": nbf if nbf is not None else int(time.time()),
                "EXP": exp if exp is not None else int(time.time()) + 86400 * 365,
            },
        }
        if event_id:
            body["id"] = event_id
        if event_time:
            body["eventTime"] = event_time
        raised = self.stack.admin("POST", "/eventgrid/system-events", body)
        assert raised["subscriptions"] == 1, raised
        return str(raised["id"])

    # -- observations ----------------------------------------------------------------------

    def read(self, svc: Service) -> Deployed:
        cs = self.op.compute.cloud_services.get(svc.rg, svc.name)
        props = cs.properties
        assert props is not None and props.configuration
        root = ElementTree.fromstring(props.configuration)
        ns = {"sc": NS}
        thumbprints = {
            str(role.get("name")): [
                str(c.get("thumbprint")).upper()
                for c in role.findall("sc:Certificates/sc:Certificate", ns)
            ]
            for role in root.findall("sc:Role", ns)
        }
        groups = (props.os_profile.secrets if props.os_profile else None) or []
        urls = [str(c.certificate_url) for g in groups for c in g.vault_certificates or []]
        return Deployed(thumbprints, urls, props.provisioning_state)

    def read_tags(self, svc: Service) -> dict[str, str]:
        return dict(self.op.compute.cloud_services.get(svc.rg, svc.name).tags or {})

    def assert_on(
        self, svc: Service, cert: KeyVaultCertificate, roles: tuple[str, ...] = ROLES
    ) -> None:
        """``svc`` serves ``cert`` in every role and references only its secret."""
        got = self.read(svc)
        assert got.thumbprints == {role: [thumbprint(cert)] for role in roles}
        assert got.secrets == [secret_of(cert)]
        assert got.state == "Succeeded"

    def product_calls(self, since: int | None = None) -> list[dict[str, Any]]:
        calls = self.stack.requests_since(self.mark if since is None else since)
        return [c for c in calls if AGENT in c.get("agent", "")]

    def puts(self, svc: Service, *, succeeded: bool = True) -> list[dict[str, Any]]:
        """The product's PUTs on the service (only accepted ones unless told otherwise)."""
        suffix = f"/cloudservices/{svc.name}".lower()
        return [
            c
            for c in self.product_calls()
            if c["service"] == "arm"
            and c["method"] == "PUT"
            and c["path"].lower().rstrip("/").endswith(suffix)
            and (not succeeded or c["status"] < 300)
        ]

    def deliveries(self) -> list[dict[str, Any]]:
        """Event Grid's log of notification attempts to this test's subscription."""
        return [
            d
            for d in self.stack.admin("GET", "/eventgrid/deliveries")
            if d.get("kind") == "Notification"
            and str(d.get("name", "")).lower() == self.subscription.lower()
        ]

    def delivered(self, event_id: str | None = None) -> list[dict[str, Any]]:
        return [
            d
            for d in self.deliveries()
            if d.get("outcome") == "Succeeded" and (event_id is None or event_id in d["event_ids"])
        ]

    def wait_delivered(self, count: int = 1, event_id: str | None = None) -> list[dict[str, Any]]:
        """Until ``count`` deliveries (of ``event_id``) succeeded and the hints they queued
        have been worked: the rotations they started have run."""
        found: list[dict[str, Any]] = wait_for(
            lambda: (found := self.delivered(event_id)) and len(found) >= count and found,
            f"{count} successful deliveries to {self.subscription}",
        )
        self.wait_hints_worked()
        return found

    def wait_hints_worked(self, timeout: float = 60) -> None:
        """Until the work queues (hints, service batches, follow looks) are empty: a
        message leaves its queue only once its worker returned (or, after its last attempt,
        into the poison queue). Invisible messages (being worked, or waiting out a failed
        attempt or a look's delay) count, as they do in Azure."""
        wait_for(
            lambda: self.op.owed() == 0,
            "the work queues to drain",
            timeout,
            interval=0.25,  # two queue requests a look: spare the stack's storage
        )

    def records(self) -> list[dict[str, Any]]:
        """This vault's run records, found in the app's storage and read over HTTP."""
        container = self.op.blobs.get_container_client(RUNS_CONTAINER)
        try:
            names = [b.name for b in container.list_blobs()]
        except ResourceNotFoundError:
            return []
        found = []
        for name in names:
            stored = json.loads(container.download_blob(name).readall())
            if str(stored.get("vault", "")).lower() == self.vault_id.lower():
                resp = api(self.stack, "GET", f"/api/rotations/{stored['id']}")
                assert resp.status_code == 200, resp.text
                found.append(resp.json())
        return sorted(found, key=lambda r: r["started"])

    def record_for(self, event_id: str) -> dict[str, Any]:
        def finished() -> dict[str, Any] | None:
            return next(
                (
                    r
                    for r in self.records()
                    if r["trigger"]["eventId"] == event_id and r["status"] != "running"
                ),
                None,
            )

        return wait_for(finished, f"the run record of event {event_id}")


def event_item(world: World, version: str) -> dict[str, Any]:
    """A NewVersionCreated delivery item for the world's certificate, to hand to the
    engine directly (as the handler would after parsing it)."""
    return {
        "id": str(uuid.uuid4()),
        "topic": world.vault_id,
        "subject": CERT,
        "eventType": NEW_VERSION,
        "eventTime": dt.datetime.now(dt.UTC).isoformat(),
        "data": {
            "VaultName": world.vault_name,
            "ObjectType": "Certificate",
            "ObjectName": CERT,
            "Version": version,
        },
        "dataVersion": "1",
    }


def call_kind(path: str) -> str:
    """A request-log path reduced to what it addresses (for printing call counts)."""
    parts = path.strip("/").split("/")
    lower = [p.lower() for p in parts]
    if "operations" in lower or "csoperations" in lower:
        return "operation"
    if lower[-1] == "cloudservices":
        return "list"
    if "cloudservices" in lower:
        return "service"
    if lower[0] in ("certificates", "secrets") and len(parts) == 2:
        return f"{lower[0]}/latest"
    if lower[0] in ("certificates", "secrets") and len(parts) == 3:
        return f"{lower[0]}/{lower[2] if lower[2] in ('versions', 'policy') else 'version'}"
    return parts[-1]


_KEY = object()


def api(
    stack: LocalStack,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    key: Any = _KEY,
) -> requests.Response:
    """Call the function app's HTTP API (with the function key unless told otherwise)."""
    headers = {"Content-Type": "application/json"}
    if key is _KEY:
        key = stack.env["FUNCTIONS_KEY"]
    if key is not None:
        headers["x-functions-key"] = key
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    return requests.request(
        method, stack.env["FUNCTIONS_URL"] + path, data=data, headers=headers, timeout=120
    )


def rotate_over_http(world: World, service: Service) -> str:
    """``POST /api/rotations`` for ``service`` alone, waited on until the run is done: its id."""
    resp = api(
        world.stack,
        "POST",
        "/api/rotations",
        {"vault": world.vault_id, "certificate": CERT, "cloudServices": [service.id]},
    )
    record = ended_run(world, resp)
    assert record["status"] == "done", record
    return str(record["id"])


def ended_run(world: World, resp: requests.Response) -> dict[str, Any]:
    """The record of the manual rotation ``resp`` (a POST's 202: queued) answered, once it
    has ended: no longer queued for a worker, running, retrying or updating."""
    assert resp.status_code == 202, resp.text
    answer = resp.json()
    assert answer["status"] == "queued" and resp.headers["Location"].endswith(answer["id"])

    def ended() -> dict[str, Any] | None:
        record: dict[str, Any] = api(world.stack, "GET", resp.headers["Location"]).json()
        return record if RunStatus(record["status"]).ended else None

    return wait_for(ended, f"manual run {answer['id']} to end", timeout=120)


def engine_for(world: World, **settings: str) -> Engine:
    """A fresh engine as a new worker builds it, scoped to the world's resource group.

    It follows its updates for up to 20 s (``EVENT_WAIT_SECONDS``; the app's workers do not
    wait, follow looks do), so a test calling it in-process sees the whole rotation in that
    one call; a test of following by message goes through the host."""
    env = {
        **os.environ,
        **app_settings(world.stack.env),
        "ROTATION_RESOURCE_GROUPS": world.rg_name,
        "EVENT_WAIT_SECONDS": "20",
        **settings,
    }
    return Engine.from_settings(Settings.from_env(env))
