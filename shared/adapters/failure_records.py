"""The failure backoff's memory: one blob per cloud service with a failed version.

:mod:`shared.domain.backoff` decides; this keeps what it needs between invocations, in
the app's own storage account (``FAILURES_CONTAINER``), named by a hash of the service id.
Read-modify-write without a condition: two writers of one service's failures at the same
moment are rare, and a lost record only means one attempt sooner.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import suppress

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

from shared.adapters.arm_errors import translate
from shared.adapters.clients import create_container
from shared.domain.backoff import Failure


class FailureRecords:
    """The last failed write per (service, certificate), in one container."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def _blob(self, service_id: str) -> BlobClient:
        name = hashlib.sha256(service_id.lower().encode()).hexdigest() + ".json"
        return self._container.get_blob_client(name)

    def _map(self, service_id: str) -> dict[str, Failure]:
        try:
            data = json.loads(self._blob(service_id).download_blob().readall())
        except ResourceNotFoundError:
            return {}
        except AzureError as exc:
            raise translate(exc, "reading the service's failure record") from exc
        return {k: Failure.from_json(v) for k, v in (data.get("failures") or {}).items()}

    def failure(self, service_id: str, certificate: str) -> Failure | None:
        """The last failed write of ``certificate`` on the service, if one is remembered."""
        return self._map(service_id).get(certificate.lower())

    def record(self, service_id: str, failure: Failure) -> None:
        """Remember ``failure`` (replacing that certificate's earlier one).

        Read-modify-write without a condition: two writers of one service's failures at the
        same moment are rare, and a lost record only means one attempt sooner.
        """
        failures = self._map(service_id)
        failures[failure.certificate.lower()] = failure
        self._write(service_id, failures)

    def clear(self, service_id: str, certificate: str) -> None:
        failures = self._map(service_id)
        if failures.pop(certificate.lower(), None) is not None:
            self._write(service_id, failures)

    def _write(self, service_id: str, failures: dict[str, Failure]) -> None:
        blob = self._blob(service_id)
        try:
            if not failures:
                with suppress(ResourceNotFoundError):
                    blob.delete_blob()
                return
            body = json.dumps(
                {"serviceId": service_id, "failures": {k: f.to_json() for k, f in failures.items()}}
            ).encode()
            try:
                blob.upload_blob(body, overwrite=True)
            except ResourceNotFoundError:
                create_container(self._container)
                blob.upload_blob(body, overwrite=True)
        except AzureError as exc:
            raise translate(exc, "writing the service's failure record") from exc

    def every(self) -> dict[str, list[Failure]]:
        """Every remembered failure by service id (lower case): one listing, then one read
        per failing service (few: a success clears its record)."""
        container = self._container
        found: dict[str, list[Failure]] = {}
        try:
            for blob in container.list_blobs():
                data = json.loads(container.download_blob(blob.name).readall())
                found[str(data["serviceId"]).lower()] = [
                    Failure.from_json(v) for v in (data.get("failures") or {}).values()
                ]
        except ResourceNotFoundError:
            return {}
        except AzureError as exc:
            raise translate(exc, "listing failure records") from exc
        return found
