"""Start and stop the local Azure stack: Azurite plus the emulator process.

``python -m emulators.stack up [--dir D]`` starts both in the background on free loopback
ports, waits until each answers, and writes ``D/stack.env`` (``KEY=VALUE`` lines a shell
can source). ``down`` stops exactly the processes that ``up`` recorded in ``D/pids``.
Every stack lives in its own folder with its own ports, CA, subscription and identity,
so the test suite's stack and a developer's ``make stack-up`` never collide.

Azurite's blob and queue services listen on private ports; ``AZURITE_BLOB_URL`` and
``AZURITE_QUEUE_URL`` name the ports of the storage gates the emulator process keeps in
front of them (:mod:`emulators.storagegate`), so the admin API's ``POST /storage`` can make
storage (or one of its services) unavailable and available again.

Functions hosts: ``Stack.up(hosts=N)`` starts N host instances serving this checkout's
app, as Functions does when it scales out: each has its own port and log
(``logs/functions.log``, ``logs/functions-2.log``, ...) and they share the stack's storage,
so queue-triggered functions split the queues' messages between them. ``FUNCTIONS_URL`` is
the first instance (the one Event Grid's ``AzureFunction`` destinations reach) and
``FUNCTIONS_URLS`` lists them all. :meth:`Stack.start_host` adds an instance to a running
stack (optionally serving another app folder); :meth:`HostInstance.kill` stops one, so a
test can take an instance away mid-work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from emulators.appsettings import settings_read_by_the_app
from emulators.queue_trigger import POISON_SUFFIX
from emulators.storagegate import ENV as STORAGE_GATE_ENV
from emulators.tls import ensure_tls
from shared.domain.messages import WORK_QUEUES

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "emulators" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_QUEUE_BIN = AZURITE_BIN.with_name("azurite-queue")
START_TIMEOUT_S = 30.0
PACKAGE_CONTAINER = "packages"  # the container the stack's PACKAGE_CONTAINERS allows
# The function app the local host stands in for (what FUNCTION_APP_ID names).
FUNCTION_APP_RG = "rg-certrotate-local"
FUNCTION_APP_NAME = "func-certrotate-local"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free now."""
    ports: list[int] = []
    while len(ports) < count:
        port = _free_port()
        if port not in ports:
            ports.append(port)
    return ports


# A queue message whose attempt failed is visible again after host.json's
# visibilityTimeout (30 s). Stacks that exercise retries (the suite, the soak) shorten it
# with this app setting, as an override of host.json would in Azure.
QUEUE_RETRY_SETTING = "AzureFunctionsJobHost__extensions__queues__visibilityTimeout"
# Likewise an idle queue is polled at most every maxPollingInterval (5 s): such a retry is
# seen up to that much later. The same stacks poll at most every second.
QUEUE_POLL_SETTING = "AzureFunctionsJobHost__extensions__queues__maxPollingInterval"
# The pipeline at the pace of a test rather than of Azure: a failed hint or batch retried
# in 2 s (not 30), an idle queue polled every second (not 5), a waiting batch back from 1 s
# on and a running update looked at every second (not 30).
QUICK_QUEUES = {
    QUEUE_RETRY_SETTING: "00:00:02",
    QUEUE_POLL_SETTING: "00:00:01",
    "QUEUE_WAIT_SECONDS": "1",
    "FOLLOW_POLL_SECONDS": "1",
}
VAULT_PORTS = 1024  # vaults a stack can hold at once (one listener each)
# Below Linux's ephemeral range (32768-60999), so no port-0 listener (a test's hostile
# server, Azurite, another emulator) can ever land inside the vaults' range.
VAULT_PORT_FLOOR, VAULT_PORT_CEILING = 20000, 32767


def _free_block(size: int) -> tuple[int, int]:
    """A run of ``size`` ports that are free now, for the vault listeners."""
    rng = random.Random()
    for _ in range(50):
        low = rng.randrange(VAULT_PORT_FLOOR, VAULT_PORT_CEILING - size)
        try:
            for port in range(low, low + size):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return low, low + size - 1
    raise RuntimeError(f"no block of {size} free ports between {VAULT_PORT_FLOOR} and "
                       f"{VAULT_PORT_CEILING} for the stack's vaults")


def _wait_port(port: int, deadline: float, proc: subprocess.Popen[bytes], name: str) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not answer on port {port} within {START_TIMEOUT_S:.0f}s")


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=ROOT,
            env=env,
        )


def functions_host_command(ready: Path, app_dir: Path = ROOT) -> list[str]:
    """The local Functions host serving ``app_dir`` (this checkout's app unless told) on a
    free port; it writes its address to ``ready`` once it answers."""
    return [
        sys.executable, "-m", "emulators.functions_host",
        "--app-dir", str(app_dir), "--port", "0", "--ready", str(ready),
    ]  # fmt: skip


def app_settings(env: dict[str, str]) -> dict[str, str]:
    """The function app's settings on the local stack, as App Service would set them.

    The two relaxations (private CA, Key Vault challenge-resource check, because the
    vaults live at 127.0.0.1) are explicit here; in Azure neither is set. Cloud services'
    operations answer without ``Retry-After``, as Azure's do, so azure-core polls at the
    client's polling interval (30 s by default); the local stack sets a short one, so an
    update of ``update_seconds`` is followed in about that long.

    Host storage is reached with the identity, as infra sets it
    (``AzureWebJobsStorage__*``, functions-reference.md "Connecting to host storage with an
    identity"): the host's queue triggers and queue output bindings use these.
    """
    return {
        "AzureWebJobsStorage__blobServiceUri": env["AZURITE_BLOB_URL"],
        "AzureWebJobsStorage__queueServiceUri": env["AZURITE_QUEUE_URL"],
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": env["AZURE_CLIENT_ID"],
        "ROTATION_SUBSCRIPTIONS": env["AZURE_SUBSCRIPTION_ID"],
        "ROTATION_STORAGE_URL": env["AZURITE_BLOB_URL"],
        "ARM_ENDPOINT": env["ARM_ENDPOINT"],
        "ROTATION_CA_BUNDLE": env["STACK_CA_BUNDLE"],
        "KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "false",
        "OPERATION_WAIT_SECONDS": "120",
        "ARM_POLLING_INTERVAL": "0.1",
        # Where packages may come from, and the vault ports tokens may go to (the stack's
        # stand-ins for PACKAGE_CONTAINERS from infra and for *.vault.azure.net).
        "PACKAGE_CONTAINERS": f"{env['AZURITE_BLOB_URL']}/{PACKAGE_CONTAINER}",
        "LOCAL_VAULT_PORTS": env["LOCAL_VAULT_PORTS"],
        # The timers' schedules, infra's defaults: the host resolves the %SETTING% in each
        # and, as in Azure, leaves a timer whose setting is missing unindexed.
        "RECONCILE_SCHEDULE": "0 0 * * * *",
        "FOLLOW_SCHEDULE": "0 */5 * * * *",
    }


# App settings the stack itself wires to its own endpoints, identity and ports (or that the
# platform sets): one taken from a developer's shell (say an AZURE_SUBSCRIPTION_ID meant for
# real Azure) would point the app away from the stack, so ``make stack-up`` never passes them.
STACK_WIRED = frozenset({
    "ROTATION_SUBSCRIPTIONS", "ROTATION_STORAGE_URL", "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri", "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "ARM_ENDPOINT", "ROTATION_CA_BUNDLE", "LOCAL_VAULT_PORTS", "PACKAGE_CONTAINERS",
    "AZURE_SUBSCRIPTION_ID", "AZURE_CLIENT_ID", "WEBSITE_OWNER_NAME", "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT",
})


def settings_from(environ: dict[str, str]) -> dict[str, str]:
    """The app settings given in ``environ`` (names the app reads, minus :data:`STACK_WIRED`),
    for ``make stack-up``: e.g. ``ROTATION_ROLLBACK=true make stack-up``."""
    names = settings_read_by_the_app() - STACK_WIRED
    return {name: value for name, value in environ.items() if name in names}


@dataclass(frozen=True)
class HostInstance:
    """One running Functions host instance of a stack."""

    url: str
    pid: int
    log: Path

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop this instance (SIGKILL by default: a crash, nothing drained) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:  # not our child (another process started it)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, 0)
                    time.sleep(0.05)
                    continue
                return
            time.sleep(0.05)


def _start_host(
    folder: Path, env: dict[str, str], deadline: float, app_dir: Path = ROOT
) -> HostInstance:
    """Start one more host instance with ``env`` (the stack's settings and keys) and wait
    until it answers; its pid joins ``folder/pids`` so ``down`` stops it too."""
    logs = folder / "logs"
    index = len(list(folder.glob("functions*.json"))) + 1
    suffix = "" if index == 1 else f"-{index}"
    ready, log = folder / f"functions{suffix}.json", logs / f"functions{suffix}.log"
    # The stack's defaults first, then what ``env`` sets (settings given to the stack or to
    # this instance replace a default, as in stack.env).
    host = _spawn(functions_host_command(ready, app_dir), log,
                  env={**os.environ, **app_settings(env), **env})
    pid_file = folder / "pids"
    recorded = pid_file.read_text().split() if pid_file.exists() else []
    _write_pids(folder, [*map(int, recorded), host.pid])
    while not ready.exists():
        if host.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"functions host did not start; see {log}")
        time.sleep(0.05)
    return HostInstance(f"http://127.0.0.1:{json.loads(ready.read_text())['port']}", host.pid, log)


@dataclass(frozen=True)
class Stack:
    folder: Path
    env: dict[str, str]

    def start_host(
        self, app_dir: Path = ROOT, settings: dict[str, str] | None = None
    ) -> HostInstance:
        """Another Functions host instance on this running stack, sharing its storage (a
        scale-out); ``settings`` are extra app settings for it alone."""
        return _start_host(self.folder, {**self.env, **(settings or {})},
                           time.monotonic() + START_TIMEOUT_S, app_dir)

    def instances(self) -> list[HostInstance]:
        """The running stack's host instances, in the order they started (from the ready
        files each one wrote: ``functions.json``, ``functions-2.json``, ...)."""
        found = []
        for index in range(1, len(list(self.folder.glob("functions*.json"))) + 1):
            suffix = "" if index == 1 else f"-{index}"
            ready = json.loads((self.folder / f"functions{suffix}.json").read_text())
            found.append(HostInstance(
                f"http://127.0.0.1:{ready['port']}", int(ready["pid"]),
                self.folder / "logs" / f"functions{suffix}.log",
            ))
        return found

    @classmethod
    def up(
        cls,
        folder: Path,
        *,
        update_seconds: float = 0.5,
        page_size: int = 100,
        retry_scale: float = 0.01,
        settings: dict[str, str] | None = None,
        hosts: int = 1,
        blob_requests: Path | None = None,
    ) -> Stack:
        """Start a stack in ``folder``; on any failure, stop what was started and raise.

        ``settings``: app settings to set over :func:`app_settings` (e.g. a short
        ``EVENT_WAIT_SECONDS`` for the soak, or ``OPERATION_WAIT_SECONDS``, which replaces
        the stack's default); they are kept in the stack's ``env`` and ``stack.env``.
        ``hosts``: how many Functions host instances serve the app (at least 1).
        ``blob_requests``: a file where Azurite's blob service logs every request (its
        debug log: method, URL and headers, tokens included, so the bench counts and
        deletes it; never under ``logs/``, which the suite scans for secrets).
        """
        if hosts < 1:
            raise ValueError(f"hosts must be at least 1, not {hosts}")
        settings = dict(settings or {})
        folder = folder.resolve()
        if (folder / "pids").exists():
            raise RuntimeError(f"a stack is already running in {folder} (run 'down' first)")
        logs = folder / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        tls = ensure_tls(folder / "tls")
        if not (AZURITE_BIN.exists() and AZURITE_QUEUE_BIN.exists()):
            raise RuntimeError(
                f"{AZURITE_BIN} is missing: run 'make install' (npm ci in emulators/)"
            )
        pids: list[int] = []
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            blob_port, azurite_port, queue_port, azurite_queue_port = _free_ports(4)
            (folder / "azurite").mkdir(exist_ok=True)
            azurite = _spawn(
                [
                    str(AZURITE_BIN),
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    str(azurite_port),
                    "--cert",
                    str(tls.cert),
                    "--key",
                    str(tls.key),
                    "--oauth",
                    "basic",
                    "--location",
                    str(folder / "azurite"),
                    "--disableTelemetry",
                    "--silent",
                    "--skipApiVersionCheck",
                    *(["--debug", str(blob_requests)] if blob_requests else []),
                ],
                logs / "azurite.log",
            )
            pids.append(azurite.pid)
            _write_pids(folder, pids)
            (folder / "azurite-queue").mkdir(exist_ok=True)
            azurite_queue = _spawn(
                [
                    str(AZURITE_QUEUE_BIN),
                    "--queueHost", "127.0.0.1", "--queuePort", str(azurite_queue_port),
                    "--cert", str(tls.cert), "--key", str(tls.key), "--oauth", "basic",
                    "--location", str(folder / "azurite-queue"),
                    "--disableTelemetry", "--silent", "--skipApiVersionCheck",
                ],
                logs / "azurite-queue.log",
            )
            pids.append(azurite_queue.pid)
            _write_pids(folder, pids)
            blob_url = f"https://127.0.0.1:{blob_port}/devstoreaccount1"
            vault_low, vault_high = _free_block(VAULT_PORTS)
            config = {
                "vault_ports": f"{vault_low}-{vault_high}",
                "ca_cert": str(tls.ca_cert),
                "cert": str(tls.cert),
                "key": str(tls.key),
                "token_secret": secrets.token_hex(32),
                "tenant_id": str(uuid.uuid4()),
                "subscription_id": str(uuid.uuid4()),
                "principal_object_id": str(uuid.uuid4()),
                "principal_client_id": str(uuid.uuid4()),
                "identity_header": secrets.token_hex(16),
                "azurite_blob_url": blob_url,
                "update_seconds": update_seconds,
                "page_size": page_size,
                "retry_scale": retry_scale,
            }
            config_file = folder / "emulators.json"
            config_file.touch(mode=0o600)
            config_file.write_text(json.dumps(config))
            ready = folder / "ports.json"
            ready.unlink(missing_ok=True)
            server = _spawn(
                [
                    sys.executable,
                    "-m",
                    "emulators.server",
                    "--config",
                    str(config_file),
                    "--ready",
                    str(ready),
                ],
                logs / "emulators.log",
                env={**os.environ, STORAGE_GATE_ENV: f"blob={blob_port}:{azurite_port},"
                                                     f"queue={queue_port}:{azurite_queue_port}"},
            )
            pids.append(server.pid)
            _write_pids(folder, pids)
            while not ready.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"emulators did not start; see {logs / 'emulators.log'}")
                time.sleep(0.05)
            ports = json.loads(ready.read_text())["ports"]
            _wait_port(azurite_port, deadline, azurite, "Azurite")
            _wait_port(blob_port, deadline, server, "the storage gate")
            _wait_port(azurite_queue_port, deadline, azurite_queue, "Azurite's queue service")
            _wait_port(queue_port, deadline, server, "the queue storage gate")
            keys = {
                name: secrets.token_urlsafe(24)
                for name in ("FUNCTIONS_KEY", "FUNCTIONS_MASTER_KEY", "EVENTGRID_WEBHOOK_KEY")
            }
            env = {
                "AZURE_SUBSCRIPTION_ID": str(config["subscription_id"]),
                "AZURE_TENANT_ID": str(config["tenant_id"]),
                "AZURE_CLIENT_ID": str(config["principal_client_id"]),
                "MANAGED_IDENTITY_OBJECT_ID": str(config["principal_object_id"]),
                # The app's principal (the ``oid`` of its tokens), for role assignments and
                # access policies.
                "APP_PRINCIPAL_ID": str(config["principal_object_id"]),
                "ARM_ENDPOINT": f"https://127.0.0.1:{ports['arm']}",
                "STACK_CA_BUNDLE": str(tls.ca_cert),
                "IDENTITY_ENDPOINT": f"http://127.0.0.1:{ports['identity']}/msi/token",
                "IDENTITY_HEADER": str(config["identity_header"]),
                "AZURITE_BLOB_URL": blob_url,
                "AZURITE_QUEUE_URL": f"https://127.0.0.1:{queue_port}/devstoreaccount1",
                "EVENTGRID_TOPIC_URL": f"https://127.0.0.1:{ports['eventgrid']}",
                "EMULATOR_ADMIN_URL": f"http://127.0.0.1:{ports['admin']}",
                "LOCAL_VAULT_PORTS": f"{vault_low}-{vault_high}",
                **settings,
            }
            _create_queues(env)
            for stale in folder.glob("functions*.json"):  # instance numbers start at 1 again
                stale.unlink()
            instances = [_start_host(folder, {**env, **keys}, deadline) for _ in range(hosts)]
            pids.extend(instance.pid for instance in instances)
            env["FUNCTIONS_URL"] = instances[0].url
            env["FUNCTIONS_URLS"] = ",".join(instance.url for instance in instances)
            env["FUNCTION_APP_ID"] = (
                f"/subscriptions/{config['subscription_id']}/resourceGroups/{FUNCTION_APP_RG}"
                f"/providers/Microsoft.Web/sites/{FUNCTION_APP_NAME}"
            )
            _register_function_app(env, keys["EVENTGRID_WEBHOOK_KEY"])
            env.update(keys)
        except BaseException:
            _stop(pids)
            (folder / "pids").unlink(missing_ok=True)
            raise
        env_file = folder / "stack.env"  # holds keys: readable by its owner only
        env_file.touch(mode=0o600)
        # With the app's settings too, so the CLI (certrotate --env-file) runs as the app does.
        env_file.write_text("".join(
            f"{k}={shlex.quote(v)}\n"  # a shell sources it: '0 0 * * * *' stays one value
            for k, v in {**env, **app_settings(env), **settings}.items()))
        return cls(folder, env)

    def down(self) -> None:
        stop(self.folder)


def _create_queues(env: dict[str, str]) -> None:
    """Create the pipeline's work queues and their poison companions, as infra does
    (``infra/app/app.bicep``): neither the host nor the app creates them in Azure, and the
    app's identity holds no right to. Created through the queue endpoint with a token of
    the stack's identity (Azurite checks the token's form, the gate passes it through)."""
    query = urllib.parse.urlencode(
        {"api-version": "2019-08-01", "resource": "https://storage.azure.com/"}
    )
    token_request = urllib.request.Request(
        f"{env['IDENTITY_ENDPOINT']}?{query}",
        headers={"X-IDENTITY-HEADER": env["IDENTITY_HEADER"]},
    )
    with urllib.request.urlopen(token_request, timeout=30) as resp:
        token = json.loads(resp.read())["access_token"]
    tls = ssl.create_default_context(cafile=env["STACK_CA_BUNDLE"])
    for name in WORK_QUEUES + tuple(q + POISON_SUFFIX for q in WORK_QUEUES):
        create = urllib.request.Request(
            f"{env['AZURITE_QUEUE_URL']}/{name}", method="PUT",
            headers={"Authorization": f"Bearer {token}", "x-ms-version": "2021-12-02"},
        )
        with urllib.request.urlopen(create, timeout=30, context=tls) as resp:
            resp.read()


def _register_function_app(env: dict[str, str], eventgrid_key: str) -> None:
    """Tell Event Grid where the app's host is, so ``AzureFunction`` destinations naming
    ``{FUNCTION_APP_ID}/functions/{name}`` reach it (Azure finds the host and its
    ``eventgrid_extension`` key itself)."""
    body = {"resourceId": env["FUNCTION_APP_ID"], "url": env["FUNCTIONS_URL"],
            "eventGridKey": eventgrid_key}
    request = urllib.request.Request(
        env["EMULATOR_ADMIN_URL"] + "/eventgrid/function-apps", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        resp.read()


def _write_pids(folder: Path, pids: list[int]) -> None:
    (folder / "pids").write_text("\n".join(str(p) for p in pids) + "\n")


def _stop(pids: list[int]) -> None:
    """SIGTERM each process group, then SIGKILL what is still there after 5 s."""
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 5
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def read_env(path: Path) -> dict[str, str]:
    """A ``stack.env`` as a dict: the ``KEY=VALUE`` lines :meth:`Stack.up` writes, values
    shell-quoted where they need it (what ``set -a; . stack.env`` reads the same way)."""
    env = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key] = "".join(shlex.split(value))
    return env


def stop(folder: Path) -> bool:
    """Stop the stack recorded in ``folder``; False if none was running."""
    pid_file = folder.resolve() / "pids"
    if not pid_file.exists():
        return False
    _stop([int(line) for line in pid_file.read_text().split()])
    pid_file.unlink()
    (folder / "stack.env").unlink(missing_ok=True)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".local")
    args = parser.parse_args()
    if args.command == "up":
        start_reported(args.dir)
    else:
        print("stack stopped" if stop(args.dir) else f"no stack running in {args.dir}")


def start_reported(folder: Path, defaults: dict[str, str] | None = None) -> Stack:
    """``make stack-up`` (and ``make sandbox``): a stack in ``folder`` whose app settings are
    ``defaults`` overridden by those given in the environment; prints its settings (keys
    hidden) and how long it took to start."""
    started = time.monotonic()
    given = settings_from(dict(os.environ))
    stack = Stack.up(folder, settings={**(defaults or {}), **given})
    print(
        f"local stack up in {time.monotonic() - started:.1f}s; settings in "
        f"{stack.folder / 'stack.env'}:"
    )
    for key, value in stack.env.items():
        hidden = key == "IDENTITY_HEADER" or key.endswith("_KEY")
        print(f"  {key}={'<hidden>' if hidden else value}")
    if given:
        print("app settings from the environment, over the stack's defaults: "
              + ", ".join(f"{k}={v}" for k, v in sorted(given.items())))
    return stack


if __name__ == "__main__":
    main()
