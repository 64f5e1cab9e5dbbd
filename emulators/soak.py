"""``make soak``: bounded chaos on the local stack, then proof that nothing was lost.

THEORY OF OPERATION

A fresh stack hosts N cloud services spread over several vaults and certificates (each
service uses one or two certificates of one vault). Every vault but one is subscribed to
``keyvault_events``; the unsubscribed vault stands for dropped events. A seeded random
stream then, step by step: creates a new certificate version (a real Key Vault event),
re-raises an event already delivered (a duplicate, same id) or one for an older version
(late, out of order), injects a fault (ARM 429 with Retry-After, 500, 503, 409 on a PUT,
Key Vault 429/503, slow responses), or runs a timer (``reconcile`` or ``follow_updates``).
An event is acknowledged once its hint is queued; the hint worker follows its updates for
less time than an update takes (``EVENT_WAIT_SECONDS`` below ``update_seconds``), so most
updates outlive the invocation that sent them and are finished by a later one, as long CSES
updates are in Azure; a failed attempt at a hint is retried by the queue (2 s
``visibilityTimeout`` here). When the stream ends the faults are cleared and both timers
run until everything settles and no hint or batch is left in the queues.

The checks, per service: the cscfg and ``osProfile`` name the newest version of every
certificate it uses; it is ``Succeeded`` with no journaled write left; the successful PUTs
the product sent equal the ``rotated`` results in the run records; no two of those wrote
the same version (no doubled update); and every version that was newest while the service
was behind is either deployed or superseded (no lost update: the final state shows it).
Figures are printed as JSON; any violation makes the exit status 1.

``--azure`` runs the same stream with Azure's timings, scaled (``Config.azure_timings``): no
``Retry-After`` on operations, so the app polls at its client's own pace
(``ARM_POLLING_INTERVAL``, a tenth of an update as 30 s polls are to updates of minutes),
updates that last many polls, event invocations that follow for a fraction of one, and the
faults real Azure has: updates the platform fails (``ROTATION_ROLLBACK`` puts the previous
model back), PUTs that land and then answer 500 or lose their answer, instances that stay
Busy/Starting for a while, powered-off services, a vault answering 403 to the app for a
few requests. Its figures: converged %, PUTs
per version written, **loops** (a version PUT more than once without a new reason) and
**untracked operations** (accepted PUTs the run records do not account for, plus journaled
writes left pending), both of which must be 0. A service behind because its newest version
failed and now backs off (``shared.domain.backoff``) is not a violation: it says why, and waits.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests
from azure.core.exceptions import ResourceExistsError
from azure.keyvault.certificates import KeyVaultCertificate

from emulators.provision import APP_ROLES, OPERATOR_ROLES, Operator, cscfg, thumbprint
from emulators.stack import QUICK_QUEUES, Stack
from shared.domain import cscfg as parser

RUNS_CONTAINER = "cert-rotation-runs"
LOCKS_CONTAINER = "cert-rotation-locks"
FAILURES_CONTAINER = "cert-rotation-failures"
NEW_VERSION = "Microsoft.KeyVault.CertificateNewVersionCreated"
SETTLE_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Config:
    services: int = 12
    vaults: int = 3
    certificates_per_vault: int = 2
    steps: int = 60
    fault_rate: float = 0.3
    seed: int = 7
    update_seconds: float = 0.4
    event_wait_seconds: float = 0.2
    azure: bool = False  # Azure's timings and faults (see the module docstring)
    polling_seconds: float = 0.1  # ARM_POLLING_INTERVAL: the client's pace, no Retry-After

    @classmethod
    def small(cls) -> Config:
        return cls(services=4, vaults=2, certificates_per_vault=1, steps=14, seed=3)

    @classmethod
    def azure_timings(cls, small: bool = False) -> Config:
        """30 s polls against updates of minutes, scaled: an update lasts 10 polls."""
        base = cls.small() if small else cls(services=8, steps=40)
        return cls(
            **{
                **asdict(base),
                "azure": True,
                "update_seconds": 2.0,
                "polling_seconds": 0.2,
                "event_wait_seconds": 0.5,
                "fault_rate": 0.35,
            }
        )


@dataclass
class Cert:
    vault: int
    name: str
    versions: list[KeyVaultCertificate] = field(default_factory=list)

    @property
    def newest(self) -> KeyVaultCertificate:
        return self.versions[-1]


@dataclass
class World:
    op: Operator
    rg: str
    vault_ids: list[str]
    vault_urls: list[str]
    certs: list[Cert]
    services: dict[str, list[Cert]]  # service name -> certificates it uses
    events: list[dict[str, Any]] = field(default_factory=list)  # raised, for replays


def admin(stack: Stack, method: str, path: str, body: Any = None) -> Any:
    resp = requests.request(method, stack.env["EMULATOR_ADMIN_URL"] + path, json=body, timeout=60)
    resp.raise_for_status()
    return resp.json()


def build(stack: Stack, config: Config, rng: random.Random) -> World:
    op = Operator(stack.env)
    rg = op.resource_group("soak-rg")
    vault_ids, vault_urls, certs = [], [], []
    for v in range(config.vaults):
        vault_id, vault_url = op.vault(
            rg, f"soak-kv{v}", rbac=True, roles=(*OPERATOR_ROLES, *APP_ROLES))
        vault_ids.append(vault_id)
        vault_urls.append(vault_url)
        for c in range(config.certificates_per_vault):
            cert = Cert(v, f"tls-{c}")
            cert.versions.append(op.new_version(vault_url, cert.name))
            certs.append(cert)
    package, md5 = op.package("packages", "soak.cspkg", b"PK\x03\x04" + b"soak" * 2048)
    services: dict[str, list[Cert]] = {}
    for s in range(config.services):
        vault = s % config.vaults
        mine = [c for c in certs if c.vault == vault]
        used = mine if len(mine) == 1 or rng.random() < 0.5 else [rng.choice(mine)]
        name = f"soak-cs{s:03d}"
        config_xml = cscfg(name, {"WebRole1": {c.name: thumbprint(c.newest) for c in used}})
        secrets = [str(c.newest.secret_id) for c in used]
        op.cloud_service(
            rg, name, config_xml, ["WebRole1"], vault_ids[vault], secrets, package, md5
        )
        services[name] = used
    for v in range(1, config.vaults):  # vault 0's events are dropped: nobody subscribes
        op.subscribe(rg, vault_ids[v], f"soak-sub{v}")
    return World(op, rg, vault_ids, vault_urls, certs, services)


FAULTS: list[dict[str, Any]] = [
    {"service": "arm", "method": "GET", "status": 429, "retry_after": 1, "count": 2},
    {"service": "arm", "method": "GET", "status": 503, "count": 1},
    {"service": "arm", "method": "PUT", "status": 500, "count": 1},
    {"service": "arm", "method": "PUT", "status": 409, "count": 1},
    {"service": "arm", "method": "GET", "delay_ms": 400, "count": 4},
    {"service": "keyvault", "method": "GET", "status": 429, "retry_after": 1, "count": 1},
    {"service": "keyvault", "method": "GET", "status": 503, "count": 1},
]


# Key Vault's own 403 for a caller without the right (access-policy wording), to the app only.
VAULT_FORBIDDEN = {
    "service": "keyvault",
    "method": "GET",
    "status": 403,
    "code": "Forbidden",
    "message": "The user, group or application does not have certificates get permission on "
    "key vault; see https://go.microsoft.com/fwlink/?linkid=2125287",
    "count": 3,
}


# A PUT Azure takes and then answers as recorded (500 "The operation has timed out." after
# a delay; azure-cli-extensions recording), or whose answer is lost (connection closed).
PUT_LANDS_THEN_500 = {
    "service": "arm", "method": "PUT", "status": 500, "code": "InternalOperationError",
    "message": "The operation has timed out.", "apply": True, "delay_ms": 300, "count": 1,
}
PUT_LANDS_ANSWER_LOST = {"service": "arm", "method": "PUT", "apply": True, "drop": True,
                         "count": 1}


def azure_fault(stack: Stack, world: World, rng: random.Random, tally: Counter[str]) -> None:
    """A fault real Azure has: a failed update, an ambiguous PUT, instances slow to start,
    a powered-off service, or a vault refusing the app for a few requests."""
    kind = rng.choice(
        ("platform_failures", "put_500_after_landing", "put_answer_lost", "slow_instances",
         "stopped_service", "vault_403")
    )
    tally[kind] += 1
    name = rng.choice(sorted(world.services))
    if kind == "platform_failures":
        admin(
            stack,
            "POST",
            "/cloudservices/fail-next",
            {"resourceGroup": world.rg.rsplit("/", 1)[-1], "name": name,
             "code": "RoleInstanceStartupFailed",
             "message": "Role instance WebRole1_IN_0 failed to start."},
        )
    elif kind in ("put_500_after_landing", "put_answer_lost"):
        fault = PUT_LANDS_THEN_500 if kind == "put_500_after_landing" else PUT_LANDS_ANSWER_LOST
        path = f"(?i)/cloudservices/{name}$"
        admin(stack, "POST", "/faults", {**fault, "path": path, "agent": "certrotate"})
    elif kind == "slow_instances":  # Busy, then Starting, for a while after each update
        admin(stack, "POST", "/cloudservices/settings", {"settle_seconds": rng.choice((0, 1.0))})
    elif kind == "stopped_service":
        try:
            world.op.compute.cloud_services.begin_power_off(
                world.rg.rsplit("/", 1)[-1], name
            ).result()
        except ResourceExistsError:  # 409: an update runs on it; Azure refuses, so do we
            tally["stopped_service_conflicts"] += 1
    else:
        admin(stack, "POST", "/faults", {**VAULT_FORBIDDEN, "path": "(?i).", "agent": "certrotate"})


def step(
    stack: Stack, world: World, config: Config, rng: random.Random, tally: Counter[str]
) -> None:
    roll = rng.random()
    if roll < config.fault_rate:
        if config.azure and rng.random() < 0.5:
            azure_fault(stack, world, rng, tally)
            return
        fault = dict(rng.choice(FAULTS))
        admin(stack, "POST", "/faults", {**fault, "path": "(?i).", "agent": "certrotate"})
        tally["faults"] += 1
        return
    roll = rng.random()
    if roll < 0.55:
        cert = rng.choice(world.certs)
        cert.versions.append(world.op.new_version(world.vault_urls[cert.vault], cert.name))
        tally["versions"] += 1
        if cert.vault == 0:
            tally["dropped"] += 1
    elif roll < 0.7 and world.events:
        admin(stack, "POST", "/eventgrid/system-events", rng.choice(world.events))
        tally["duplicates"] += 1
    elif roll < 0.85:
        cert = rng.choice([c for c in world.certs if c.vault != 0])
        old = rng.choice(cert.versions)
        event = raise_event(stack, world, cert, old)
        world.events.append(event)
        tally["late"] += 1
    elif roll < 0.93:
        run_timer(stack, "reconcile")
        tally["reconciles"] += 1
    else:
        run_timer(stack, "follow_updates")
        tally["follows"] += 1


def raise_event(
    stack: Stack, world: World, cert: Cert, version: KeyVaultCertificate
) -> dict[str, Any]:
    props = version.properties
    assert props is not None and props.version
    body = {
        "id": str(uuid.uuid4()),
        "source": world.vault_ids[cert.vault],
        "eventType": NEW_VERSION,
        "subject": cert.name,
        "data": {
            "Id": f"{world.vault_urls[cert.vault]}certificates/{cert.name}/{props.version}",
            "VaultName": world.vault_ids[cert.vault].rsplit("/", 1)[-1],
            "ObjectType": "Certificate",
            "ObjectName": cert.name,
            "Version": props.version,
            "NBF": int(props.not_before.timestamp()) if props.not_before else None,
            "EXP": int(props.expires_on.timestamp()) if props.expires_on else None,
        },
    }
    admin(stack, "POST", "/eventgrid/system-events", body)
    return body


def run_timer(stack: Stack, name: str) -> int:
    resp = requests.post(
        f"{stack.env['FUNCTIONS_URL']}/admin/functions/{name}",
        json={"input": ""},
        headers={"x-functions-key": stack.env["FUNCTIONS_MASTER_KEY"]},
        timeout=300,
    )
    return resp.status_code


def undelivered(stack: Stack) -> set[str]:
    """Events Event Grid still owes a delivery (retries and probation delays outlive the
    stream): ids with attempts logged but no success, dead letter or drop yet."""
    seen: set[str] = set()
    done: set[str] = set()
    for entry in admin(stack, "GET", "/eventgrid/deliveries"):
        ids = set(entry.get("event_ids") or ())
        seen |= ids
        if entry.get("kind") in ("DeadLettered", "Dropped") or (
            entry.get("kind") == "Notification" and entry.get("outcome") == "Succeeded"
        ):
            done |= ids
    return seen - done


def pending_journals(world: World) -> int:
    container = world.op.blobs.get_container_client(LOCKS_CONTAINER)
    if not container.exists():
        return 0
    return sum(
        1
        for b in container.list_blobs(include=["metadata"])
        if (b.metadata or {}).get("pending") == "true"
    )


def backing_off(world: World) -> dict[str, set[str]]:
    """Services whose last update of a version failed, by name -> those versions."""
    container = world.op.blobs.get_container_client(FAILURES_CONTAINER)
    if not container.exists():
        return {}
    found: dict[str, set[str]] = {}
    for blob in container.list_blobs():
        data = json.loads(container.download_blob(blob.name).readall())
        found[str(data["serviceId"]).rsplit("/", 1)[-1]] = {
            str(f["version"]) for f in (data.get("failures") or {}).values()
        }
    return found


def violations(world: World) -> list[str]:
    """Every service on the newest version of each certificate it uses (or backing off on
    it, which says why: shared.domain.backoff), settled, and not written once too often."""
    found: list[str] = []
    waiting = backing_off(world)
    for name, used in world.services.items():
        failed = waiting.get(name, set())
        current = [
            c for c in used if c.newest.properties and c.newest.properties.version not in failed
        ]
        cs = world.op.compute.cloud_services.get("soak-rg", name)
        props = cs.properties
        assert props is not None
        deployed = {
            c.name: c.thumbprint.upper()
            for c in parser.parse(props.configuration or "").certificates
        }
        for cert in current:
            if deployed.get(cert.name) != thumbprint(cert.newest):
                found.append(
                    f"{name}: {cert.name} is {deployed.get(cert.name)}, "
                    f"want {thumbprint(cert.newest)}"
                )
        names = {c.name for c in current}
        urls = {
            str(c.certificate_url)
            for g in (props.os_profile.secrets if props.os_profile else None) or []
            for c in g.vault_certificates or []
            if str(c.certificate_url).split("/secrets/", 1)[-1].split("/", 1)[0] in names
        }
        want = {str(c.newest.secret_id) for c in current}
        if urls != want:
            found.append(f"{name}: osProfile {sorted(urls)}, want {sorted(want)}")
        if props.provisioning_state != "Succeeded" and len(current) == len(used):
            found.append(f"{name}: left {props.provisioning_state}")
    return found


def records(world: World) -> list[dict[str, Any]]:
    container = world.op.blobs.get_container_client(RUNS_CONTAINER)
    return [json.loads(container.download_blob(b.name).readall()) for b in container.list_blobs()]


def write_checks(stack: Stack, world: World) -> tuple[list[str], Counter[str]]:
    """Successful PUTs per service against the rotated results recorded for it."""
    calls = admin(stack, "GET", "/requests")
    product = [c for c in calls if "certrotate" in c.get("agent", "")]
    puts: Counter[str] = Counter(
        c["path"].rsplit("/", 1)[-1]
        for c in product
        if c["service"] == "arm"
        and c["method"] == "PUT"
        and "/cloudservices/" in c["path"].lower()
        and "/updatedomains/" not in c["path"].lower()
        and (c["status"] < 300 or c.get("applied", 999) < 300)  # applied: taken, answer lost
    )
    rotated: dict[str, list[str]] = {}
    expected: Counter[str] = Counter()  # accepted PUTs the records account for
    attempts: Counter[tuple[str, str]] = Counter()  # (service, cert/version) update PUTs
    how: dict[tuple[str, str], list[str]] = {}  # what each attempt was, for a violation
    seen: dict[str, list[str]] = {}  # every recorded result per service, for a violation
    outcomes: Counter[str] = Counter()
    for record in records(world):
        for result in record["services"]:
            outcomes[result["outcome"]] += 1
            service = result["cloudService"].rsplit("/", 1)[-1]
            version = f"{record['certificate']}/{(result.get('plan') or {}).get('desiredVersion')}"
            if result["outcome"] == "rotated":
                rotated.setdefault(service, []).append(version)
            puts_made = _puts_of(result)
            seen.setdefault(service, []).append(
                f"{record['trigger']['kind']}:{result['outcome']}"
                f"{'+op' if result.get('operationId') else ''}"
            )
            expected[service] += puts_made
            if puts_made:
                attempts[(service, version)] += 1
                how.setdefault((service, version), []).append(
                    f"run {record['id']} ({record['trigger']['kind']}): {result['outcome']}: "
                    f"{str(result.get('message', ''))[:160]}"
                )
    found = []
    for name in world.services:
        writes, recorded = puts.get(name, 0), rotated.get(name, [])
        if writes != expected.get(name, 0):
            found.append(
                f"{name}: {writes} successful PUT(s) but the records account for "
                f"{expected.get(name, 0)} ({len(recorded)} rotated): {seen.get(name)}"
            )
        doubled = [v for v, n in Counter(recorded).items() if n > 1]
        if doubled:
            found.append(f"{name}: the same version written more than once: {doubled}")
    loops = {key: n for key, n in attempts.items() if n > 1}
    found += [
        f"{s}: {v} was PUT {n} times without a new reason: {how[(s, v)]}"
        for (s, v), n in loops.items()
    ]
    figures: Counter[str] = Counter(
        # accepted update PUTs that no record accounts for
        untracked=sum(max(0, puts.get(n, 0) - expected.get(n, 0)) for n in world.services),
        loops=len(loops),
        versions_written=len(attempts),
        writes=sum(puts.values()),
        product_calls=len(product),
        answered_errors=sum(1 for c in product if c["status"] in (409, 429, 500, 503)),
        injected=sum(1 for c in calls if c.get("injected")),
    )
    figures.update({f"outcome:{k}": v for k, v in outcomes.items()})
    return found, figures


def _puts_of(result: dict[str, Any]) -> int:
    """How many accepted PUTs a recorded result stands for: the update, and a rollback."""
    outcome, message = result["outcome"], str(result.get("message", ""))
    if outcome == "rotated":
        return 1
    if outcome == "rolled-back":
        return 2
    if outcome == "failed" and result.get("operationId"):
        rolled = "rollback" in message and not any(
            why in message for why in ("did not land", "could not be sent")
        )
        return 2 if rolled else 1
    return 0


def run(config: Config, folder: Path, out: Any = sys.stdout) -> int:
    rng = random.Random(config.seed)
    started = time.monotonic()
    settings = {
        "EVENT_WAIT_SECONDS": str(config.event_wait_seconds),
        "ARM_POLLING_INTERVAL": str(config.polling_seconds),
        **QUICK_QUEUES,
    }
    if config.azure:
        settings["ROTATION_ROLLBACK"] = "true"
    stack = Stack.up(folder, update_seconds=config.update_seconds, settings=settings)
    saved = dict(os.environ)
    os.environ.update(stack.env)
    try:
        world = build(stack, config, rng)
        print(
            f"soak: {config.services} services, {len(world.certs)} certificates in "
            f"{config.vaults} vaults; {config.steps} steps",
            file=out,
            flush=True,
        )
        tally: Counter[str] = Counter()
        stream_started = time.monotonic()
        for index in range(config.steps):
            step(stack, world, config, rng, tally)
            if (index + 1) % 10 == 0:
                print(f"soak: step {index + 1}/{config.steps} {dict(tally)}", file=out, flush=True)
            time.sleep(rng.uniform(0.1, 0.4))
        stream_seconds = time.monotonic() - stream_started
        admin(stack, "DELETE", "/faults")
        settle_started = time.monotonic()
        problems = violations(world)
        while (
            problems
            or pending_journals(world)
            or undelivered(stack)
            or world.op.owed()
        ) and time.monotonic() - settle_started < SETTLE_TIMEOUT_S:
            run_timer(stack, "follow_updates")
            run_timer(stack, "reconcile")
            tally["reconciles"] += 1
            time.sleep(0.5)
            problems = violations(world)
        settle_seconds = time.monotonic() - settle_started
        write_problems, figures = write_checks(stack, world)
        problems += write_problems
        if problems:  # everything needed to explain them, next to the stack's logs
            (folder / "records.json").write_text(json.dumps(records(world), indent=1))
            (folder / "requests.json").write_text(json.dumps(admin(stack, "GET", "/requests")))
            print(f"soak: records and request log kept in {folder}", file=out, flush=True)
        left = pending_journals(world)
        if left:
            problems.append(f"{left} journaled write(s) left pending")
        figures["untracked_operations"] = figures.pop("untracked", 0) + left
        behind = {p.split(":", 1)[0] for p in violations(world)} | set(backing_off(world))
        on_newest = len(world.services) - len(behind & set(world.services))
        figures["backing_off"] = len(backing_off(world))
        deliveries = [
            d
            for d in admin(stack, "GET", "/eventgrid/deliveries")
            if d.get("kind") == "Notification"
        ]
        report = {
            "config": asdict(config),
            "services": config.services,
            "certificates": len(world.certs),
            "stream": dict(tally),
            "deliveries": len(deliveries),
            "deliveries_failed": sum(1 for d in deliveries if d.get("outcome") != "Succeeded"),
            **dict(figures),
            "converged_percent": round(100 * on_newest / max(1, len(world.services)), 1),
            "puts_per_version_written": round(
                figures["writes"] / max(1, figures["versions_written"]), 2
            ),
            "stream_seconds": round(stream_seconds, 1),
            "converge_seconds_after_stream": round(settle_seconds, 1),
            "total_seconds": round(time.monotonic() - started, 1),
            "violations": problems,
        }
        print(json.dumps(report, indent=1, sort_keys=True), file=out, flush=True)
        print(
            f"soak: {'FAILED with ' + str(len(problems)) + ' violation(s)' if problems else 'OK'}",
            file=out,
            flush=True,
        )
        return 1 if problems else 0
    finally:
        stack.down()
        os.environ.clear()
        os.environ.update(saved)


def main(argv: list[str] | None = None) -> int:
    parser_ = argparse.ArgumentParser(
        prog="python -m emulators.soak", description=__doc__.split("\n")[0]
    )
    parser_.add_argument("--small", action="store_true", help="the quick version run by make test")
    parser_.add_argument(
        "--azure", action="store_true", help="Azure's timings and faults, scaled (see above)"
    )
    parser_.add_argument("--services", type=int)
    parser_.add_argument("--steps", type=int)
    parser_.add_argument("--seed", type=int)
    args = parser_.parse_args(argv)
    config = (
        Config.azure_timings(args.small)
        if args.azure
        else Config.small()
        if args.small
        else Config()
    )
    overrides = {
        k: v
        for k, v in (("services", args.services), ("steps", args.steps), ("seed", args.seed))
        if v is not None
    }
    config = Config(**{**asdict(config), **overrides})
    return run(config, Path(tempfile.mkdtemp(prefix="certrotate-soak-")))


if __name__ == "__main__":
    sys.exit(main())
