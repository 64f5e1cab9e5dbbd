"""Where the app's bearer tokens may go: the one place that decides it.

Theory of operation
-------------------
Every Azure SDK client the app builds (ARM, Key Vault, Storage) gets :meth:`Destinations.hook`
as its ``raw_request_hook``, which azure-core runs on every request (each retry included)
before the transport sends it. A request to any origin this module does not allow raises
:class:`UntrustedDestination` there, so no byte (not even Key Vault's token-less challenge
request) leaves for that host, whatever URL a tag, an event, a secret reference or an SDK
bug produced. Callers validate their inputs too; this is the backstop that holds even where
they do not.

Allowed, for the configured cloud (sovereign clouds set the suffixes):

* the ARM endpoint (``ARM_ENDPOINT``), exactly;
* the app's own storage (``ROTATION_STORAGE_URL``) and every ``PACKAGE_CONTAINERS``
  account, exactly (origin with port);
* any host under the Key Vault suffix (``KEYVAULT_DNS_SUFFIX``, default ``vault.azure.net``)
  or the blob suffix (``blob.`` + ``STORAGE_DNS_SUFFIX``, default ``core.windows.net``),
  https on the default port only;
* the local stack only: ``127.0.0.1`` on the ports of ``LOCAL_VAULT_PORTS`` (its vaults
  listen there, one port each, as real vaults have one DNS name each).

Everything but :meth:`hook` is pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.domain.errors import PreconditionFailed


class UntrustedDestination(PreconditionFailed):
    """A request would have gone to a host that is not one of the cloud's endpoints."""


def origin_of(url: str) -> str | None:
    """``host[:port]`` of an https URL, lowercase, without a default ``:443``; else None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() != "https" or not parts.hostname or parts.username is not None:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return host if port in (None, 443) else f"{host}:{port}"


@dataclass(frozen=True)
class Destinations:
    exact: frozenset[str]  # origins (host[:port], lowercase)
    suffixes: tuple[str, ...]  # ".vault.azure.net", ".blob.core.windows.net"
    local_ports: tuple[int, int] | None = None  # inclusive range on 127.0.0.1

    @classmethod
    def of(
        cls,
        exact_urls: Iterable[str],
        keyvault_suffix: str,
        storage_suffix: str,
        local_ports: tuple[int, int] | None = None,
    ) -> Destinations:
        origins = frozenset(o for o in map(origin_of, exact_urls) if o is not None)
        suffixes = (
            "." + keyvault_suffix.strip(".").lower(),
            ".blob." + storage_suffix.strip(".").lower(),
        )
        return cls(origins, suffixes, local_ports)

    def allows(self, url: str) -> bool:
        origin = origin_of(url)
        if origin is None:
            return False
        if origin in self.exact:
            return True
        if ":" not in origin.rsplit("]", 1)[-1]:  # default port
            return any(origin.endswith(s) and len(origin) > len(s) for s in self.suffixes)
        if self.local_ports is not None and origin.startswith("127.0.0.1:"):
            port = int(origin.rsplit(":", 1)[1])
            return self.local_ports[0] <= port <= self.local_ports[1]
        return False

    def check(self, url: str) -> None:
        """Raise UntrustedDestination unless a token may be sent to ``url``'s host."""
        if not self.allows(url):
            origin = origin_of(url) or "a non-https or malformed URL"
            raise UntrustedDestination(
                f"refused to send a request to {origin}: not an endpoint of the configured "
                "cloud (ARM_ENDPOINT, KEYVAULT_DNS_SUFFIX, STORAGE_DNS_SUFFIX, "
                "PACKAGE_CONTAINERS)"
            )

    def hook(self, request: Any) -> None:
        """azure-core ``raw_request_hook``: runs on the PipelineRequest before it is sent."""
        self.check(str(request.http_request.url))
