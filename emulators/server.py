"""The emulator process: one asyncio loop hosting every emulator of the local stack.

Run by ``emulators.stack`` (``make stack-up``), not by hand. It reads its settings from a
JSON file (``--config``), binds each emulator on a free loopback port, and writes the
chosen ports to ``--ready`` once every listener accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path

from emulators import admin, identity
from emulators.arm import Arm
from emulators.authorization import Authorization
from emulators.blobs import Blobs
from emulators.cloudservices import CloudServices
from emulators.core import Platform
from emulators.eventgrid import EventGrid
from emulators.keyvault import KeyVault
from emulators.tls import TlsFiles
from emulators.tokens import Principal, TokenAuthority


async def run(config: dict[str, object], ready: Path) -> None:
    tls = TlsFiles(
        Path(str(config["ca_cert"])), Path(str(config["cert"])), Path(str(config["key"]))
    )
    platform = Platform(
        tokens=TokenAuthority(str(config["token_secret"]).encode(), str(config["tenant_id"])),
        subscription_id=str(config["subscription_id"]),
        tls=tls.server_context(),
    )
    blobs = Blobs(str(config["azurite_blob_url"]), tls.client_context(), str(tls.ca_cert))
    arm = Arm(platform, page_size=int(str(config.get("page_size", 100))))
    events = EventGrid(
        platform, arm, blobs, retry_scale=float(str(config.get("retry_scale", 0.01)))
    )
    low, high = (int(p) for p in str(config.get("vault_ports", "0-0")).split("-"))
    vaults = KeyVault(
        platform, arm, events, Authorization(platform, arm), range(low, high + 1) if low else None
    )
    services = CloudServices(
        platform, arm, vaults, blobs, update_seconds=float(str(config.get("update_seconds", 0.5)))
    )

    principal = Principal(
        object_id=str(config["principal_object_id"]),
        client_id=str(config["principal_client_id"]),
        tenant_id=str(config["tenant_id"]),
    )
    ports = {
        "admin": await platform.serve(
            admin.build(platform, events.admin_routes() + services.admin_routes()), tls=False
        ),
        "identity": await platform.serve(
            identity.build(platform, str(config["identity_header"]), principal), tls=False
        ),
        "arm": await platform.serve(arm.build(), tls=True),
        "eventgrid": await platform.serve(events.build_topic_app(), tls=True),
    }
    arm.base_url = f"https://127.0.0.1:{ports['arm']}"
    events.topic_base_url = f"https://127.0.0.1:{ports['eventgrid']}"
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "ports": ports}))
    tmp.rename(ready)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await events.close()
    await platform.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(run(json.loads(args.config.read_text()), args.ready))


if __name__ == "__main__":
    main()
