"""TCP gates in front of Azurite, so tests can take storage away and give it back.

Theory of operation: each Azurite service (blob, queue) listens on a private loopback
port; the stack publishes the gates' ports as ``AZURITE_BLOB_URL`` and
``AZURITE_QUEUE_URL``, so every storage client (the product, the Functions host's queue
listeners, the operator, the emulators' own dead-lettering and package downloads) reaches
Azurite through them. The
gate copies bytes both ways and understands nothing (TLS is end to end: the real Azurite
answers every request). Closing the gate aborts every open connection and stops listening
while keeping the port bound, so new connections are refused at once and nobody can take
the port meanwhile: to a client it is exactly a storage endpoint that went down (a
connection error, the request never sent). Opening it listens again on the same port;
Azurite kept its state throughout, as Azure Storage does through an outage.

Configured by ``EMULATOR_STORAGE_GATE=SERVICE=PUBLIC_PORT:AZURITE_PORT[,...]`` (e.g.
``blob=20001:20002,queue=20003:20004``) in the emulator process's environment (set by
``emulators.stack``); controlled by ``POST /storage``, for one service or for all.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Mapping

ENV = "EMULATOR_STORAGE_GATE"
SERVICES = ("blob", "queue")
HOST = "127.0.0.1"
CHUNK = 64 * 1024


class StorageGate:
    def __init__(self, port: int, target_port: int) -> None:
        self.port = port
        self.target_port = target_port
        self.connections = 0  # accepted since start, for the admin API
        self._sock = _bound(port)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> dict[str, StorageGate]:
        """The gates ``ENV`` names, by service; none when it is unset."""
        gates: dict[str, StorageGate] = {}
        for entry in filter(None, env.get(ENV, "").split(",")):
            service, _, ports = entry.partition("=")
            public, _, target = ports.partition(":")
            if service not in SERVICES or service in gates or not (
                public.isdigit() and target.isdigit()
            ):
                raise ValueError(
                    f"{ENV} must be SERVICE=PUBLIC_PORT:AZURITE_PORT[,...] with SERVICE one of "
                    f"{SERVICES}, each once; not {entry!r}"
                )
            gates[service] = cls(int(public), int(target))
        return gates

    @property
    def available(self) -> bool:
        return self._server is not None

    async def open(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, sock=self._sock)

    async def close(self) -> None:
        """Refuse new connections and abort the open ones; the port stays ours."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()  # closes the listening socket
        self._sock = _bound(self.port)  # at once, so the port is never free
        for writer in list(self._open):
            writer.transport.abort()
        await server.wait_closed()

    async def shutdown(self) -> None:
        await self.close()
        self._sock.close()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            azurite_r, azurite_w = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_w.transport.abort()  # Azurite itself is down: the same to the client
            return
        pair = (client_w, azurite_w)
        self._open.update(pair)
        try:
            await asyncio.gather(_pump(client_r, azurite_w), _pump(azurite_r, client_w))
        finally:
            for writer in pair:
                self._open.discard(writer)
                writer.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either side ends, then end the other direction too."""
    with contextlib.suppress(OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


def _bound(port: int) -> socket.socket:
    """A socket bound to ``port`` but not listening: it holds the port and refuses peers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    return sock
