"""The platform's own access to Azurite: what Azure's back end does with storage.

Two uses: the cloud-services emulator downloads a package from the ``packageUrl`` the
client sent, with no credential but the SAS in it (so an expired, write-only or forged SAS
fails as it does when Azure fetches the .cspkg), and Event Grid writes dead-lettered
events into a container named by its ARM id. Storage account ``{name}`` maps to
``{AZURITE_BLOB_URL without account}/{name}``; Azurite only knows ``devstoreaccount1``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiohttp
from azure.storage.blob.aio import BlobServiceClient

# Azurite's published, well-known development key (not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class BlobResult:
    status: int
    body: bytes
    error_code: str | None


@dataclass
class Blobs:
    blob_url: str  # https://127.0.0.1:PORT/devstoreaccount1
    tls: ssl.SSLContext
    ca_file: str

    async def fetch(self, url: str) -> BlobResult:
        """GET ``url`` exactly as given (a SAS URL), as the platform would."""
        try:
            async with aiohttp.ClientSession() as session, session.get(url, ssl=self.tls) as resp:
                body = await resp.read()
                return BlobResult(resp.status, body, resp.headers.get("x-ms-error-code"))
        except aiohttp.ClientError as exc:
            return BlobResult(0, b"", f"ConnectionError:{type(exc).__name__}")

    async def write(self, account: str, container: str, name: str, data: bytes) -> None:
        """Write a block blob with the account key (the platform's own access)."""
        if account != AZURITE_ACCOUNT:
            raise ValueError(f"storage account '{account}' does not exist in the local stack")
        client = BlobServiceClient(
            self.blob_url,
            credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
            connection_verify=self.ca_file,
        )
        async with client:
            await client.get_blob_client(container, name).upload_blob(data, overwrite=True)
