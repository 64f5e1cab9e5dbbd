"""``make bench``: the product's figures on the local stack (figures, not assertions).

Theory of operation: one fresh stack in a temporary folder (as ``make demo``), measured in
an order that keeps each figure clean. The Functions host is scoped to the whole
subscription, so every rotation lists every service in it: rotations come first, before
the scale services exist.

1. Rotations. A cloud service with two roles on a vault whose certificate events go to
   ``keyvault_events``. Each new version is created with the Key Vault SDK; the event is
   real (Key Vault raises it, Event Grid delivers it, the host runs the function). Times
   come from the emulators' clocks, never from this process: *event* is the request-log
   entry of the Key Vault request that created the version (it raises the event, and
   Event Grid starts delivering in the same turn of its loop); *PUT accepted* is the
   product's accepted PUT in the request log; *Succeeded* is the ARM operation's
   ``endTime``; *done* is Event Grid's delivery record (the webhook answers when the
   function has returned). The first event the fresh host handles is its first
   invocation and is reported on its own; then ``--rotations`` with no added latency and
   as many with ``--latency-ms`` held on every ARM, Key Vault and identity request (admin
   API delay faults). Calls per rotation are the product's requests (user agent
   ``certrotate``) between two events, classified by kind, next to the minimum the work
   needs (:data:`ROTATION_MINIMUM`).
2. Cold start (medians over ``--cold-starts``). ``import function_app`` in fresh
   interpreters; freshly spawned Functions hosts: start-up, the first HTTP invocation (a
   dry-run rotation, building the engine) and the second.
3. Scale. ``--sizes`` managed services in one resource group, provisioned in threads
   through the Compute SDK (one package blob, a few certificates). For each size a fresh
   process builds the engine as the app does, scoped to that group, and runs
   ``services_using`` (cold, then warm) and ``reconcile()`` with nothing to do; it reports
   times, calls by kind against the minimum, and its own peak RSS.

Azurite's storage calls (leases, journals, run records) do not pass the emulators'
request log, so they are not counted. Memory is read from /proc: the bench runs on Linux.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.keyvault.certificates import KeyVaultCertificate

from emulators.polling import wait_for
from emulators.provision import APP_ROLES, OPERATOR_ROLES, Operator, cscfg, thumbprint
from emulators.stack import ROOT, Stack, app_settings, functions_host_command
from shared.config import Settings
from shared.domain.events import NEW_VERSION, CertificateEvent
from shared.rotation.engine import Engine

AGENT = "certrotate"  # in the User-Agent of every call the product makes
CERT = "web-tls"
ROLES = ("WebRole1", "WorkerRole1")
UPDATE_SECONDS = 0.5  # how long the emulated platform takes to apply an update
PAGE_SIZE = 100  # the emulator's default ARM page size; Azure does not document one
SCALE_CERTIFICATES = 5  # the scale services share this many certificates of one vault
PROVISION_THREADS = 8
RUNS_CONTAINER = Settings.runs_container  # where the app keeps its run records
FOREVER = 10**9  # a delay fault's count: every request until the faults are cleared
ROTATION_TIMEOUT_S = 120.0
FANOUT_TIMEOUT_S = 900.0  # hundreds of services converged one after another
FANOUT_CERT = "fan-tls"
FANOUT_UPDATE_S = 2.0  # updates of a few seconds, followed at the stack's poll pace
DELIVERY_TIMEOUT_S = 30.0  # Event Grid abandons a delivery unanswered after this long
SCALE_REPEATS = 3  # warm discoveries and reconciles per size (the median is reported)

KV_PAGE = 25  # Key Vault's default (and largest) page of a list
# What one event-driven rotation of one service needs, warm (tokens and the Key Vault
# challenge cached by the process): kind -> (calls, why). Kinds not listed need none.
ROTATION_MINIMUM: dict[str, tuple[int, str]] = {
    "arm GET list cloud services": (1, "discover who uses the certificate (one page)"),
    "arm GET cloud service": (2, "re-read under the lease; the result (the LRO's final GET)"),
    "arm PUT cloud service": (1, "the one update: cscfg + osProfile + packageUrl"),
    "arm GET operation": (1, "see the update end"),
    "arm GET instanceview": (1, "verify the role instances run the new model"),
    "kv GET certificate": (1, "the current version (ties within 1 s) and the policy"),
    "kv GET versions": (1, f"the newest valid version: every page ({KV_PAGE} versions each)"),
    "kv GET secrets": (1, "the new version's own secret: a PFX holding its key, as CSES needs"),
}


def rotation_minimum(versions: int) -> dict[str, int]:
    """:data:`ROTATION_MINIMUM` for a certificate with ``versions`` versions."""
    minimum = {kind: calls for kind, (calls, _) in ROTATION_MINIMUM.items()}
    minimum["kv GET versions"] = math.ceil(versions / KV_PAGE)
    return minimum


T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    rotations: int = 30
    latency_ms: int = 50
    sizes: tuple[int, ...] = (10, 100, 1000)
    cold_starts: int = 5
    json_path: Path | None = None
    fanout: tuple[int, ...] = (1, 100, 500)
    duplicates: int = 5
    hosts: tuple[int, ...] = (1, 2, 4)


# -- the emulators' admin API and request log -------------------------------------------


def admin(env: dict[str, str], method: str, path: str, body: Any = None) -> Any:
    resp = requests.request(method, env["EMULATOR_ADMIN_URL"] + path, json=body, timeout=60)
    resp.raise_for_status()
    return resp.json()


@dataclass
class RequestLog:
    """The emulators' request log, read from a position on (it holds the whole run)."""

    env: dict[str, str]
    position: int = 0

    @classmethod
    def from_now(cls, env: dict[str, str]) -> RequestLog:
        """A reader of what is logged from now on."""
        return cls(env, len(admin(env, "GET", "/requests")))

    def take(self) -> list[dict[str, Any]]:
        """Every request logged since the last take (or the starting position)."""
        calls: list[dict[str, Any]] = admin(self.env, "GET", f"/requests?since={self.position}")
        self.position += len(calls)
        return calls


# Azurite's blob debug log (``Stack.up(blob_requests=...)``): the bench's own stack only.
BLOB_REQUESTS = "blob-requests.log"
BLOB_WRITE = re.compile(
    r"RequestMethod=(PUT|DELETE) RequestURL=\S*/devstoreaccount1/(cert-rotation-[a-z]+)/"
)


@dataclass
class BlobWrites:
    """The product's writes to the app's own blob containers (journals and leases, run
    records, failure records), counted in Azurite's debug log: blob storage does not pass
    the emulators' request log. Absent (None) on a stack started without that log."""

    path: Path
    position: int = 0

    @classmethod
    def from_now(cls, folder: Path) -> BlobWrites:
        path = folder / BLOB_REQUESTS
        return cls(path, path.stat().st_size if path.exists() else 0)

    def take(self) -> dict[str, int] | None:
        """Writes per container since the last take; None without the log."""
        if not self.path.exists():
            return None
        found: Counter[str] = Counter()
        with self.path.open("rb") as log:  # line by line: the log grows to gigabytes
            log.seek(self.position)
            for raw in log:
                self.position += len(raw)
                line = raw.decode("utf-8", "replace")
                if AGENT in line and (match := BLOB_WRITE.search(line)):
                    found[match.group(2)] += 1
        return dict(sorted(found.items()))


def product(calls: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in calls if AGENT in c.get("agent", "")]


def call_kind(call: dict[str, Any]) -> str:
    """A request-log entry reduced to what it does, e.g. ``arm PUT cloud service``."""
    service, method, status = call["service"], call["method"], int(call["status"])
    parts = [p for p in call["path"].lower().split("/") if p]
    failed = f" -> {status}" if status >= 400 else ""
    if service == "identity":
        resource_url = parse_qs(call.get("query", "")).get("resource", ["?"])[0]
        return f"identity token for {urlsplit(resource_url).hostname or resource_url}{failed}"
    if service == "keyvault":
        if status == 401:
            return "kv 401 challenge"
        if parts[:1] == ["certificates"] and len(parts) >= 2:
            tail = parts[2:]
            what = (
                "certificate"
                if not tail
                else tail[0]
                if tail[0] in ("versions", "policy", "pending", "create")
                else "certificate version"
            )
            return f"kv {method} {what}{failed}"
        return f"kv {method} {parts[0] if parts else '/'}{failed}"
    if service == "arm":
        if "operations" in parts or "csoperations" in parts:
            return f"arm {method} operation{failed}"
        if parts[-1] == "cloudservices":
            return f"arm {method} list cloud services{failed}"
        if "cloudservices" in parts:
            tail = parts[parts.index("cloudservices") + 2 :]
            return f"arm {method} {tail[0] if tail else 'cloud service'}{failed}"
        return f"arm {method} {parts[-1] if parts else '/'}{failed}"
    return f"{service} {method}{failed}"


def kinds(calls: Iterable[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(call_kind(c) for c in product(calls)).items()))


def logged_at(entry: dict[str, Any], key: str = "time") -> float:
    """An emulator timestamp (ISO 8601, UTC) as epoch seconds."""
    return dt.datetime.fromisoformat(str(entry[key])).timestamp()


def summary(values: list[float]) -> dict[str, float]:
    """Median and p95 (nearest rank) in seconds, with the extremes."""
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "median": round(statistics.median(ordered), 3),
        "p95": round(p95, 3),
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
    }


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


# -- rotations ----------------------------------------------------------------------------


@dataclass
class RotationWorld:
    """The rotation bench's resource group, vault and one service subscribed to events."""

    op: Operator
    rg: str
    vault_id: str
    vault_url: str
    service: str
    subscription: str
    versions: int = 1

    @classmethod
    def create(cls, op: Operator, prefix: str) -> RotationWorld:
        rg = op.resource_group(f"{prefix}-rot")
        vault_id, vault_url = op.vault(
            rg, f"{prefix}rot"[:24], rbac=True, roles=(*OPERATOR_ROLES, *APP_ROLES))
        first = op.new_version(vault_url, CERT)
        package, md5 = op.package("packages", f"{prefix}-rot.cspkg", b"PK\x03\x04" + b"b" * 4096)
        config = cscfg("Contoso", {role: {"SslCert": thumbprint(first)} for role in ROLES})
        assert first.secret_id
        name = "contoso"
        op.cloud_service(rg, name, config, list(ROLES), vault_id, [first.secret_id], package, md5)
        subscription = f"{prefix}-events"
        op.subscribe(rg, vault_id, subscription)
        return cls(op, rg, vault_id, vault_url, name, subscription)

    def deliveries(self) -> list[dict[str, Any]]:
        return [
            d
            for d in admin(self.op.env, "GET", "/eventgrid/deliveries")
            if d.get("kind") == "Notification" and d.get("name") == self.subscription
        ]

    def configuration(self) -> str:
        cs = self.op.compute.cloud_services.get(self.rg.rsplit("/", 1)[-1], self.service)
        return (cs.properties.configuration if cs.properties else None) or ""

    def rotate(self, log: RequestLog) -> dict[str, Any]:
        """One new version, followed until its run ended; its timings and calls."""
        log.take()
        delivered = len(self.deliveries())
        new = self.op.new_version(self.vault_url, CERT)
        self.versions += 1
        acknowledged = wait_for(
            lambda: [d for d in self.deliveries()[delivered:] if d.get("outcome") == "Succeeded"],
            "the event's delivery to keyvault_events",
            ROTATION_TIMEOUT_S,
        )[0]
        record = run_of(self.op, acknowledged["event_ids"][0])
        calls = log.take()
        if thumbprint(new) not in self.configuration():
            version = new.properties.version if new.properties else "?"
            raise RuntimeError(f"{self.service} did not converge to {CERT} version {version}")
        created = next(
            c
            for c in calls
            if c["service"] == "keyvault"
            and c["method"] == "POST"
            and c["path"].endswith("/create")
        )
        put = next(
            c
            for c in product(calls)
            if c["method"] == "PUT"
            and c["path"].lower().endswith(f"/cloudservices/{self.service}")
            and c["status"] < 300
        )
        poll = next(c for c in product(calls) if "/csoperations/" in c["path"].lower())
        operation = self.op.arm("GET", poll["path"], api=parse_qs(poll["query"])["api-version"][0])
        event = logged_at(created)
        return {
            "event_to_ack_s": round(logged_at(acknowledged) - event, 3),
            "event_to_put_s": round(logged_at(put) - event, 3),
            "event_to_succeeded_s": round(logged_at(operation, "endTime") - event, 3),
            "event_to_done_s": round(logged_at(record, "finished") - event, 3),
            "delivery_attempts": len(self.deliveries()) - delivered,
            "calls": kinds(calls),
            "minimum": rotation_minimum(self.versions),
        }


def run_of(op: Operator, event_id: str) -> dict[str, Any]:
    """The run record of ``event_id`` once its run has ended (the hint worker wrote it)."""
    found: list[dict[str, Any]] = wait_for(
        lambda: runs_of(op, event_id), f"the run of event {event_id} to end", ROTATION_TIMEOUT_S
    )
    return found[0]


def runs_of(op: Operator, event_id: str) -> list[dict[str, Any]]:
    """The ended run records of ``event_id`` (the hint's run and its batches' runs): ended
    once no update of theirs still runs (a follow look then writes how it ended)."""
    container = op.blobs.get_container_client(RUNS_CONTAINER)
    try:
        records = [
            json.loads(container.download_blob(blob.name).readall())
            for blob in container.list_blobs()
        ]
    except ResourceNotFoundError:  # no run recorded yet: the app creates it with the first
        return []
    return [
        r for r in records
        if r["trigger"].get("eventId") == event_id and r.get("finished")
        and r.get("status") != "updating"
    ]


def rotation_phase(world: RotationWorld, log: RequestLog, count: int) -> dict[str, Any]:
    samples = [world.rotate(log) for _ in range(count)]
    every_kind = sorted({k for s in samples for k in s["calls"]} | set(ROTATION_MINIMUM))
    calls = {
        kind: {
            "median": statistics.median(s["calls"].get(kind, 0) for s in samples),
            "max": max(s["calls"].get(kind, 0) for s in samples),
            "minimum": statistics.median(s["minimum"].get(kind, 0) for s in samples),
            "why": ROTATION_MINIMUM.get(kind, (0, "not needed by the work"))[1],
        }
        for kind in every_kind
    }
    return {
        "rotations": count,
        "event_to_put_s": summary([s["event_to_put_s"] for s in samples]),
        "event_to_succeeded_s": summary([s["event_to_succeeded_s"] for s in samples]),
        "event_to_ack_s": summary([s["event_to_ack_s"] for s in samples]),
        "event_to_done_s": summary([s["event_to_done_s"] for s in samples]),
        "redeliveries": sum(s["delivery_attempts"] - 1 for s in samples),
        "calls_per_rotation": calls,
        "calls_total_median": statistics.median(sum(s["calls"].values()) for s in samples),
        "minimum_total_median": statistics.median(sum(s["minimum"].values()) for s in samples),
    }


def with_latency(env: dict[str, str], latency_ms: int, run: Callable[[], T]) -> T:
    """Run with ``latency_ms`` added to every ARM, Key Vault and identity request."""
    for service in ("arm", "keyvault", "identity"):
        fault = {"service": service, "delay_ms": latency_ms, "count": FOREVER}
        admin(env, "POST", "/faults", fault)
    try:
        return run()
    finally:
        admin(env, "DELETE", "/faults")


# -- cold start ---------------------------------------------------------------------------

IMPORT_PROBE = (
    "import resource, time\n"
    "started = time.perf_counter()\n"
    "import function_app\n"
    "print(time.perf_counter() - started, "
    "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


def import_times(repeats: int) -> dict[str, Any]:
    """``import function_app`` in fresh interpreters: the import alone and the process."""
    imports, processes, rss = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        processes.append(time.perf_counter() - started)
        imports.append(float(out[0]))
        rss.append(int(out[1]) / 1024)
    return {
        "runs": repeats,
        "import_s": round(statistics.median(imports), 3),
        "process_s": round(statistics.median(processes), 3),
        "peak_rss_mb": round(statistics.median(rss), 1),
    }


def peak_rss_mb(pid: int) -> float:
    """A running process's peak resident set (Linux ``VmHWM``; the bench needs /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
    return round(int(line.split()[1]) / 1024, 1)


def fresh_hosts(
    env: dict[str, str], folder: Path, world: RotationWorld, repeats: int
) -> dict[str, Any]:
    """Medians over ``repeats`` freshly started Functions hosts (:func:`fresh_host`)."""
    runs = [fresh_host(env, folder, world) for _ in range(repeats)]
    return {"runs": repeats} | {
        key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]
    }


def fresh_host(env: dict[str, str], folder: Path, world: RotationWorld) -> dict[str, float]:
    """Start another Functions host as the stack does; time its start-up and its first two
    HTTP invocations (a dry-run rotation of the rotation service), then stop it."""
    ready = folder / "bench-host.json"
    ready.unlink(missing_ok=True)
    started = time.perf_counter()
    with (folder / "logs" / "bench-host.log").open("ab") as out:
        host = subprocess.Popen(
            functions_host_command(ready),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, **env, **app_settings(env)},
        )
    try:
        port = wait_for(
            lambda: ready.exists() and json.loads(ready.read_text())["port"],
            "the fresh Functions host",
            60,
        )
        ready_s = time.perf_counter() - started
        body: dict[str, Any] = {"vault": world.vault_id, "certificate": CERT, "dryRun": True}
        invocations = []
        for _ in range(2):
            began = time.perf_counter()
            resp = requests.post(
                f"http://127.0.0.1:{port}/api/rotations",
                json=body,
                timeout=120,
                headers={"x-functions-key": env["FUNCTIONS_KEY"]},
            )
            if resp.status_code != 200:
                raise RuntimeError(f"dry-run rotation answered {resp.status_code}: {resp.text}")
            invocations.append(round(time.perf_counter() - began, 3))
        return {
            "host_ready_s": round(ready_s, 3),
            "first_http_s": invocations[0],
            "second_http_s": invocations[1],
            "peak_rss_mb": peak_rss_mb(host.pid),
        }
    finally:
        host.send_signal(signal.SIGTERM)
        try:
            host.wait(10)
        except subprocess.TimeoutExpired:
            host.kill()
            host.wait()


# -- fan-out: one certificate, many services --------------------------------------------


@dataclass
class FanoutWorld:
    """``size`` managed services in one resource group, all using one certificate."""

    op: Operator
    rg: str
    vault_id: str
    vault_url: str
    size: int

    @property
    def subscription(self) -> str:
        return f"{self.rg.rsplit('/', 1)[-1]}-events"

    @classmethod
    def create(cls, op: Operator, prefix: str, size: int) -> FanoutWorld:
        rg = op.resource_group(f"{prefix}-fan{size}")
        vault_id, vault_url = op.vault(
            rg, f"{prefix}f{size}"[:24], rbac=True, roles=(*OPERATOR_ROLES, *APP_ROLES))
        first = op.new_version(vault_url, FANOUT_CERT)
        assert first.secret_id
        package = op.package("packages", f"{prefix}-fan{size}.cspkg", b"PK\x03\x04" + b"f" * 4096)
        config = cscfg("Fan", {role: {"SslCert": thumbprint(first)} for role in ROLES})

        def deploy(index: int) -> None:
            assert first.secret_id
            op.cloud_service(
                rg, f"fan{index:04d}", config, list(ROLES), vault_id, [first.secret_id], *package
            )

        admin(op.env, "POST", "/cloudservices/settings", {"update_seconds": 0})
        try:
            with ThreadPoolExecutor(PROVISION_THREADS) as pool:
                list(pool.map(deploy, range(size)))
        finally:
            admin(op.env, "POST", "/cloudservices/settings", {"update_seconds": None})
        return cls(op, rg, vault_id, vault_url, size)


# The old design's in-delivery follow budget (then EVENT_WAIT_SECONDS's default).
OLD_EVENT_WAIT_S = 20


def in_delivery(env: dict[str, str], vault_id: str, version: str) -> dict[str, Any]:
    """In a fresh process: what the event invocation did before the hint queue, the whole
    rotation inside the delivery (``engine.handle_event``, following updates for
    ``EVENT_WAIT_SECONDS``). Its duration is how long Event Grid would have waited for
    the answer; then the updates it left running are finished, untimed."""
    os.environ.update(env)
    engine = Engine.from_settings(Settings.from_env(env))
    event = CertificateEvent(
        NEW_VERSION, str(uuid.uuid4()), vault_id, vault_id.rsplit("/", 1)[-1], FANOUT_CERT,
        version, None, None, None,
    )
    started = time.perf_counter()
    run = engine.handle_event(event)
    seconds = time.perf_counter() - started
    engine.finish_pending(wait_seconds=ROTATION_TIMEOUT_S)
    return {
        "ack_s": round(seconds, 3),
        "abandoned": seconds > DELIVERY_TIMEOUT_S,
        "outcomes": dict(Counter(r.outcome for r in run.results)) if run else {},
    }


def fanout_phase(
    stack: Stack, op: Operator, prefix: str, sizes: Iterable[int], hosts: Iterable[int],
    duplicates: int,
) -> list[dict[str, Any]]:
    """Per size: the old design (the rotation inside the delivery) once; then, with 1, 2
    and 4 host instances sharing the queues, the queue pipeline on a new version's event
    and ``duplicates`` re-deliveries of it (each a run of no-ops). Updates take
    ``FANOUT_UPDATE_S`` here: long enough that following them costs, as in Azure."""
    env = stack.env
    log = RequestLog.from_now(env)
    worlds = {size: FanoutWorld.create(op, prefix, size) for size in sorted(set(sizes))}
    admin(env, "POST", "/cloudservices/settings", {"update_seconds": FANOUT_UPDATE_S})
    results: list[dict[str, Any]] = []
    try:
        for size, world in worlds.items():
            progress(f"fan-out: {size} services, the rotation inside the delivery (old design)")
            results.append({"services": size, "in_delivery": in_delivery_phase(env, world)})
            op.subscribe(world.rg, world.vault_id, world.subscription)
        started = 1
        for count in sorted(set(hosts)):
            while started < count:
                stack.start_host()
                started += 1
            for row, world in zip(results, worlds.values(), strict=True):
                progress(f"fan-out: {world.size} services through the queues, {count} host(s)")
                row[f"queue_{count}_hosts"] = queue_phase(
                    env, op, world, duplicates, log, BlobWrites.from_now(stack.folder)
                )
    finally:
        admin(env, "POST", "/cloudservices/settings", {"update_seconds": None})
    return results


def in_delivery_phase(env: dict[str, str], world: FanoutWorld) -> dict[str, Any]:
    old_version = world.op.new_version(world.vault_url, FANOUT_CERT)  # nobody subscribed yet
    assert old_version.properties is not None and old_version.properties.version
    engine_env = {
        **os.environ, **app_settings(env), "ROTATION_RESOURCE_GROUPS": world.rg.rsplit("/")[-1],
        "EVENT_WAIT_SECONDS": str(OLD_EVENT_WAIT_S),  # as the old design followed its updates
        # and it had no queues: what it leaves running is finished in its own process, not
        # by follow looks the next phase's host would take (and be measured with).
        "AzureWebJobsStorage__queueServiceUri": "",
    }
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        measured: dict[str, Any] = pool.submit(
            in_delivery, engine_env, world.vault_id, old_version.properties.version
        ).result()
    return measured


def queue_phase(
    env: dict[str, str], op: Operator, world: FanoutWorld, duplicates: int, log: RequestLog,
    writes: BlobWrites,
) -> dict[str, Any]:
    """A new version's event through Event Grid, the hint and the batches, to the end of
    every run it started; then its duplicates (acknowledgement samples)."""
    seen = len(_notifications(env, world.subscription))
    log.take()
    new = op.new_version(world.vault_url, FANOUT_CERT)
    delivery = wait_for(
        lambda: [
            d for d in _notifications(env, world.subscription)[seen:]
            if d["outcome"] == "Succeeded"
        ],
        "the event's delivery",
        ROTATION_TIMEOUT_S,
    )[0]
    event_id = delivery["event_ids"][0]
    drained(op)
    records = runs_of(op, event_id)
    calls = log.take()
    written = writes.take()
    created = next(c for c in calls if c["method"] == "POST" and c["path"].endswith("/create"))
    puts = [
        c for c in product(calls)
        if c["method"] == "PUT" and c["status"] < 300 and "/cloudservices/fan" in c["path"].lower()
    ]
    event = logged_at(created)
    for _ in range(duplicates):  # the same event again: Event Grid delivers at least once
        _redeliver(env, world, new, event_id)

    def answered() -> list[dict[str, Any]]:
        found = _notifications(env, world.subscription)[seen:]
        return found if len(found) > duplicates else []

    acks = [float(d["answered_s"]) for d in wait_for(answered, "the duplicates", 60.0)]
    drained(op)
    return {
        "ack_s": summary(acks),
        # The event's rotation only (not its duplicates): blob writes per service.
        "blob_writes": written,
        "blob_writes_per_service": round(sum(written.values()) / world.size, 2)
        if written is not None else None,
        "event_to_ack_s": round(logged_at(delivery) - event, 3),
        "event_to_all_puts_s": round(max(logged_at(c) for c in puts) - event, 3)
        if puts else None,
        "event_to_runs_ended_s": round(max(logged_at(r, "finished") for r in records) - event, 3),
        "puts": len(puts),
        "runs": len(records),
        "outcomes": dict(Counter(str(e["outcome"]) for r in records for e in r["services"])),
        "deliveries": len(acks),
    }


def drained(op: Operator) -> None:
    """Until no hint, batch or follow look is owed (being worked or waiting)."""
    wait_for(
        lambda: op.owed() == 0,
        "the work queues to drain",
        FANOUT_TIMEOUT_S,
    )


def _notifications(env: dict[str, str], subscription: str) -> list[dict[str, Any]]:
    return [
        d for d in admin(env, "GET", "/eventgrid/deliveries")
        if d.get("kind") == "Notification" and d.get("name") == subscription
    ]


def _redeliver(
    env: dict[str, str], world: FanoutWorld, cert: KeyVaultCertificate, event_id: str
) -> None:
    """Raise ``event_id`` again through Event Grid's delivery path (a duplicate)."""
    props = cert.properties
    assert props is not None and props.version
    admin(env, "POST", "/eventgrid/system-events", {
        "id": event_id,
        "source": world.vault_id,
        "eventType": NEW_VERSION,
        "subject": FANOUT_CERT,
        "data": {
            "Id": f"{world.vault_url}certificates/{FANOUT_CERT}/{props.version}",
            "VaultName": world.vault_id.rsplit("/", 1)[-1],
            "ObjectType": "Certificate",
            "ObjectName": FANOUT_CERT,
            "Version": props.version,
            "NBF": int(props.not_before.timestamp()) if props.not_before else None,
            "EXP": int(props.expires_on.timestamp()) if props.expires_on else None,
        },
    })


# -- scale: discovery and reconcile ------------------------------------------------------


@dataclass
class ScaleWorld:
    """One resource group that grows to each size; its services share one package."""

    op: Operator
    rg: str
    vault_id: str
    secrets: list[tuple[str, str]]  # per certificate: (versioned secret URL, thumbprint)
    package: tuple[str, str]  # blob URL, Content-MD5
    services: int = 0

    @classmethod
    def create(cls, op: Operator, prefix: str) -> ScaleWorld:
        rg = op.resource_group(f"{prefix}-scale")
        vault_id, vault_url = op.vault(
            rg, f"{prefix}scale"[:24], rbac=True, roles=(*OPERATOR_ROLES, *APP_ROLES))
        secrets = []
        for index in range(SCALE_CERTIFICATES):
            cert = op.new_version(vault_url, f"cert{index}")
            assert cert.secret_id
            secrets.append((cert.secret_id, thumbprint(cert)))
        package = op.package("packages", f"{prefix}-scale.cspkg", b"PK\x03\x04" + b"s" * 4096)
        return cls(op, rg, vault_id, secrets, package)

    def grow(self, size: int) -> float:
        """Deploy services until there are ``size``; seconds it took."""
        started = time.perf_counter()
        self.op.blobs  # noqa: B018  (built once here, not raced by the threads)
        admin(self.op.env, "POST", "/cloudservices/settings", {"update_seconds": 0})
        try:
            with ThreadPoolExecutor(PROVISION_THREADS) as pool:
                list(pool.map(self._deploy, range(self.services, size)))
        finally:
            admin(self.op.env, "POST", "/cloudservices/settings", {"update_seconds": None})
        self.services = max(self.services, size)
        return time.perf_counter() - started

    def _deploy(self, index: int) -> None:
        secret, tp = self.secrets[index % SCALE_CERTIFICATES]
        name = f"cs{index:04d}"
        config = cscfg(name, {role: {"SslCert": tp} for role in ROLES})
        self.op.cloud_service(
            self.rg, name, config, list(ROLES), self.vault_id, [secret], *self.package
        )


def scale_minimum(services: int, page_size: int) -> dict[str, dict[str, Any]]:
    pages = max(1, math.ceil(services / page_size))
    certificates = min(services, SCALE_CERTIFICATES)
    return {
        "discovery": {"arm GET list cloud services": pages},
        "reconcile": {
            "arm GET list cloud services": pages,
            "kv GET certificate": certificates,
            "kv GET versions": certificates,
        },
    }


def probe(env: dict[str, str], vault_id: str, certificate: str, repeats: int) -> dict[str, Any]:
    """In a fresh process: the engine built as the app builds it, discovery, then reconcile
    with nothing to do (``wait_seconds=0``: there is no update to follow)."""
    os.environ.update(env)  # the credential reads the managed-identity endpoint from here
    log = RequestLog.from_now(env)
    engine = Engine.from_settings(Settings.from_env(env))

    def timed(action: Callable[[], Any]) -> tuple[float, Any, dict[str, int]]:
        log.take()
        started = time.perf_counter()
        result = action()
        return time.perf_counter() - started, result, kinds(log.take())

    cold_s, found, cold_calls = timed(lambda: engine.services_using(vault_id, certificate))
    warm = [timed(lambda: engine.services_using(vault_id, certificate)) for _ in range(repeats)]
    passes = [timed(lambda: engine.reconcile(wait_seconds=0)) for _ in range(repeats)]
    return {
        "discovery": {
            "matched": len(found),
            "cold_s": round(cold_s, 3),
            "cold_calls": cold_calls,
            "warm_s": round(statistics.median(t for t, _, _ in warm), 3),
            "calls": warm[-1][2],
        },
        "reconcile": {
            "seconds": round(statistics.median(t for t, _, _ in passes), 3),
            "outcomes": passes[-1][1]["outcomes"],
            "calls": passes[-1][2],
        },
        "engine_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def scale_phase(
    env: dict[str, str], world: ScaleWorld, sizes: Iterable[int], page_size: int, repeats: int
) -> list[dict[str, Any]]:
    results = []
    engine_env = {
        **os.environ,
        **app_settings(env),
        "ROTATION_RESOURCE_GROUPS": world.rg.rsplit("/", 1)[-1],
    }
    for size in sorted(set(sizes)):
        progress(f"scale: provisioning up to {size} cloud services")
        provision_s = world.grow(size)
        progress(f"scale: discovery and reconcile over {size} cloud services")
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            measured = pool.submit(probe, engine_env, world.vault_id, "cert0", repeats).result()
        minimum = scale_minimum(size, page_size)
        measured["discovery"]["minimum"] = minimum["discovery"]
        measured["reconcile"]["minimum"] = minimum["reconcile"]
        results.append({"services": size, "provision_s": round(provision_s, 2), **measured})
    return results


# -- the whole run ------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024**2, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def run(env: dict[str, str], folder: Path, options: Options, page_size: int) -> dict[str, Any]:
    """Every measurement on a running stack (``env``: its stack.env, ``folder``: its folder)."""
    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": machine(),
        "settings": {
            "rotations": options.rotations,
            "latency_ms": options.latency_ms,
            "sizes": list(options.sizes),
            "page_size": page_size,
            "update_seconds": admin(env, "GET", "/cloudservices")["update_seconds"],
            "arm_polling_interval_s": float(app_settings(env)["ARM_POLLING_INTERVAL"]),
            "scale_certificates": SCALE_CERTIFICATES,
            "fanout": list(options.fanout),
            "hosts": list(options.hosts),
            "fanout_update_seconds": FANOUT_UPDATE_S,
            "duplicates": options.duplicates,
        },
    }
    op = Operator(env)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    log = RequestLog.from_now(env)
    progress("rotations: deploying a cloud service subscribed to its vault's events")
    world = RotationWorld.create(op, prefix)
    progress("rotations: the Functions host's first event")
    first = world.rotate(log)
    host_pid = json.loads((folder / "functions.json").read_text())["pid"]
    phases = {"latency_0ms": rotation_phase(world, log, options.rotations)}
    progress(f"rotations: {options.rotations} with no added latency done")
    if options.latency_ms:
        phases[f"latency_{options.latency_ms}ms"] = with_latency(
            env, options.latency_ms, lambda: rotation_phase(world, log, options.rotations)
        )
        progress(f"rotations: {options.rotations} with {options.latency_ms} ms latency done")
    result["rotation"] = {"first_event": first, **phases}
    progress("cold start: import function_app and a fresh Functions host")
    result["cold_start"] = {
        "import_function_app": import_times(options.cold_starts),
        "fresh_host": fresh_hosts(env, folder, world, options.cold_starts),
    }
    # Before the scale services exist: the host lists every service of the subscription.
    result["fanout"] = fanout_phase(
        Stack(folder, env), op, prefix, options.fanout, options.hosts, options.duplicates
    )
    result["scale"] = scale_phase(
        env, ScaleWorld.create(op, prefix), options.sizes, page_size, SCALE_REPEATS
    )
    largest = result["scale"][-1] if result["scale"] else {}
    result["memory"] = {
        "engine_peak_rss_mb": largest.get("engine_peak_rss_mb"),
        "engine_services": largest.get("services"),
        "functions_host_peak_rss_mb": peak_rss_mb(host_pid),
        "functions_host_rotations": 1 + options.rotations * (2 if options.latency_ms else 1),
    }
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["total_s"] = round(time.perf_counter() - started, 1)
    return result


# -- output -------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    """The figures people read first, in a few lines."""
    m, s = result["machine"], result["settings"]
    phases = {
        name.removeprefix("latency_") + " added": phase
        for name, phase in result["rotation"].items()
        if name.startswith("latency_")
    }
    return "\n".join(
        [
            f"certrotate bench: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB, Python "
            f"{m['python']}, {m['date']}; update {s['update_seconds']} s, polls every "
            f"{s['arm_polling_interval_s']} s, page size {s['page_size']}",
            *_latency_rows(result["rotation"]["first_event"], phases),
            *_call_rows(phases),
            *_fanout_rows(result["fanout"]),
            *_scale_rows(result["scale"]),
            "",
            _cold_line(result["cold_start"]),
            f"peak memory: engine {result['memory']['engine_peak_rss_mb']} MB at "
            f"{result['memory']['engine_services']} services; Functions host "
            f"{result['memory']['functions_host_peak_rss_mb']} MB after "
            f"{result['memory']['functions_host_rotations']} rotations; "
            f"total {result['total_s']} s",
        ]
    )


def _latency_rows(first: dict[str, Any], phases: dict[str, dict[str, Any]]) -> list[str]:
    figures = ("event_to_ack_s", "event_to_put_s", "event_to_succeeded_s", "event_to_done_s")
    rows = [
        "",
        f"{'event -> (s)':<24}{'acknowledged':>18}{'PUT accepted':>18}{'Succeeded':>18}"
        f"{'run ended':>18}",
        f"{'first event, cold host':<24}" + "".join(f"{first[f]:>18.3f}" for f in figures),
    ]
    for label, phase in phases.items():
        cells = (f"{phase[f]['median']:.3f} p95 {phase[f]['p95']:.3f}" for f in figures)
        rows.append(
            f"{label + ', n=' + str(phase['rotations']):<24}" + "".join(f"{c:>18}" for c in cells)
        )
    return rows


def _call_rows(phases: dict[str, dict[str, Any]]) -> list[str]:
    rows = [
        "",
        f"{'calls per rotation: median (minimum)':<40}"
        + "".join(f"{label:>16}" for label in phases),
    ]
    kinds_seen = sorted({k for p in phases.values() for k in p["calls_per_rotation"]})
    for kind in kinds_seen:
        cells = (
            p["calls_per_rotation"].get(kind, {"median": 0, "minimum": 0}) for p in phases.values()
        )
        rows.append(
            f"  {kind:<38}"
            + "".join(f"{c['median']:g} ({c['minimum']:g})".rjust(16) for c in cells)
        )
    rows.append(
        f"  {'all':<38}"
        + "".join(
            f"{p['calls_total_median']:g} ({p['minimum_total_median']:g})".rjust(16)
            for p in phases.values()
        )
    )
    return rows


def _fanout_rows(fanout: list[dict[str, Any]]) -> list[str]:
    """Old design (the rotation inside the delivery) next to the queues, per host count."""
    if not fanout:
        return []
    counts = [k for k in fanout[0] if k.startswith("queue_")]
    rows = [
        "",
        "one certificate, N services: event -> acknowledged (s); queues: ack p50/p95, "
        "event -> all PUTs accepted / all runs ended (s), blob writes per service",
        f"{'N':>5}{'in the delivery (old)':>24}"
        + "".join(f"{k.split('_')[1] + ' host(s)':>30}" for k in counts),
    ]
    for row in fanout:
        old = row["in_delivery"]
        cells = [f"{old['ack_s']:.2f}" + (" (>30: abandoned)" if old["abandoned"] else "")]
        for key in counts:
            new = row[key]
            puts = new["event_to_all_puts_s"]
            cells.append(
                f"{new['ack_s']['median']:.3f}/{new['ack_s']['p95']:.3f} "
                + ("-" if puts is None else f"{puts:.1f}")
                + f"/{new['event_to_runs_ended_s']:.1f}"
                + ("" if new.get("blob_writes_per_service") is None
                   else f" {new['blob_writes_per_service']:.1f}w")
            )
        rows.append(
            f"{row['services']:>5}{cells[0]:>24}" + "".join(f"{c:>30}" for c in cells[1:])
        )
    return rows


def _scale_rows(scale: list[dict[str, Any]]) -> list[str]:
    rows = [
        "",
        f"{'services':>8}{'provision s':>13}{'discovery s':>13}{'calls (min)':>13}"
        f"{'reconcile s':>13}{'calls (min)':>13}{'engine RSS MB':>15}",
    ]
    for row in scale:
        d, r = row["discovery"], row["reconcile"]
        rows.append(
            f"{row['services']:>8}{row['provision_s']:>13.1f}{d['warm_s']:>13.3f}"
            + f"{sum(d['calls'].values())} ({sum(d['minimum'].values())})".rjust(13)
            + f"{r['seconds']:>13.3f}"
            + f"{sum(r['calls'].values())} ({sum(r['minimum'].values())})".rjust(13)
            + f"{row['engine_peak_rss_mb']:>15.1f}"
        )
    return rows


def _cold_line(cold: dict[str, Any]) -> str:
    imp, host = cold["import_function_app"], cold["fresh_host"]
    return (
        f"cold start: import function_app {imp['import_s']:.2f} s (process "
        f"{imp['process_s']:.2f} s, median of {imp['runs']}); fresh host (median of "
        f"{host['runs']}) ready "
        f"{host['host_ready_s']:.2f} s, first HTTP invocation {host['first_http_s']:.2f} s, "
        f"second {host['second_http_s']:.2f} s"
    )


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes must be comma-separated integers, got {text!r}"
        ) from None
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"--sizes must be integers >= 1, got {text!r}")
    return sizes


def _at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m emulators.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--rotations",
        type=_at_least(1),
        default=30,
        help="rotations per latency setting (default 30)",
    )
    parser.add_argument(
        "--latency-ms",
        type=_at_least(0),
        default=50,
        help="latency added to every ARM, Key Vault and identity request in "
        "the second rotation phase (default 50; 0 skips that phase)",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=(10, 100, 1000),
        help="cloud services in scope for discovery and reconcile (default 10,100,1000)",
    )
    parser.add_argument(
        "--cold-starts",
        type=_at_least(1),
        default=5,
        help="fresh interpreters importing function_app, and fresh Functions hosts (default 5)",
    )
    parser.add_argument(
        "--fanout",
        type=_sizes,
        default=(1, 100, 500),
        help="cloud services using one certificate, for delivery -> acknowledgement and "
        "fan-out, old design next to the queue (default 1,100,500)",
    )
    parser.add_argument(
        "--duplicates",
        type=_at_least(0),
        default=5,
        help="re-deliveries of each fan-out event, more acknowledgement samples (default 5)",
    )
    parser.add_argument(
        "--hosts",
        type=_sizes,
        default=(1, 2, 4),
        help="Functions host instances sharing the queues in the fan-out (default 1,2,4)",
    )
    parser.add_argument("--json", type=Path, dest="json_path", help="also write the JSON here")
    args = parser.parse_args(argv)
    return Options(
        args.rotations, args.latency_ms, args.sizes, args.cold_starts, args.json_path,
        args.fanout, args.duplicates, args.hosts,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="certrotate-bench-"))
    progress(f"starting the local stack in {folder}")
    # Running updates are looked at every second (FOLLOW_POLL_SECONDS' least; 30 s in Azure,
    # whose polls the stack scales down to 0.1 s): the queue design's follow pace.
    stack = Stack.up(
        folder, update_seconds=UPDATE_SECONDS, page_size=PAGE_SIZE,
        settings={"FOLLOW_POLL_SECONDS": "1"},
        blob_requests=folder / BLOB_REQUESTS,  # counted, then gone with the folder
    )
    try:
        os.environ.update(stack.env)
        result = run(stack.env, stack.folder, options, PAGE_SIZE)
    finally:
        stack.down()
        (folder / BLOB_REQUESTS).unlink(missing_ok=True)  # it holds the stack's tokens
    text = json.dumps(result, indent=1)
    print(text)
    if options.json_path:
        options.json_path.write_text(text + "\n")
    print()
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
