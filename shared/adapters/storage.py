"""Blob storage through azure-storage-blob: package SAS, package checks, locks, records.

* Package SAS: user-delegation (signed by a key the managed identity obtains; no account
  key anywhere), read-only, HTTPS-only, start backdated 15 minutes for clock skew, short
  lived. The SAS is returned to the caller and never logged or stored. Packages are only
  ever :class:`~shared.domain.packages.PackageRef` values: blobs of allow-listed containers.
* Locks: one blob per cloud service in the app's own storage, held with a 15 s lease that
  the executor renews while it follows an update, so two invocations never interleave
  writes to one service; a crashed holder's lease simply expires.
* Run records: one JSON blob per run in the app's storage.
* Failure records (:mod:`shared.domain.backoff`): one JSON blob per service with, per certificate,
  the last version whose write failed, so it is not retried in a loop; success removes it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import (
    BlobClient,
    BlobLeaseClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    UserDelegationKey,
    generate_blob_sas,
)

from shared.adapters.arm_errors import translate
from shared.adapters.clients import Clients, create_container
from shared.adapters.failure_records import FailureRecords
from shared.domain.backoff import Failure
from shared.domain.errors import Busy, NotFound, PreconditionFailed, TransientError
from shared.domain.journal import Pending
from shared.domain.model import PackageFacts
from shared.domain.packages import PackageRef
from shared.domain.records import RunRecord

SAS_CLOCK_SKEW = timedelta(minutes=15)
LEASE_SECONDS = 15  # the shortest Azure allows: a dead holder blocks the service briefly
RECORD_ATTEMPTS = 5  # read-modify-write rounds of a run record before giving up


class Lease:
    """A held per-service lock and the service's journal (:mod:`shared.domain.journal`).

    ``renew`` keeps the lock while a long update runs; ``write`` replaces the journal entry
    (None clears it). The entry is the blob's content, written under the lease so only the
    holder can change it; the blob's ``pending`` metadata lets one listing find every
    service with work in flight.
    """

    def __init__(
        self, client: BlobLeaseClient, blob: BlobClient, service_id: str, pending: Pending | None
    ) -> None:
        self._client = client
        self._blob = blob
        self._service_id = service_id
        self.pending = pending

    def renew(self) -> None:
        try:
            self._client.renew()
        except AzureError as exc:
            raise TransientError("lost the lock on the cloud service while updating") from exc

    def write(self, pending: Pending | None) -> None:
        body = {"serviceId": self._service_id, "pending": pending.to_json() if pending else None}
        self.renew()  # every journal step also proves the lease is still ours
        try:
            self._blob.upload_blob(
                json.dumps(body).encode(),
                overwrite=True,
                lease=self._client,
                metadata=_journal_metadata(self._service_id, pending is not None),
            )
        except AzureError as exc:
            raise translate(exc, "writing the service journal") from exc
        self.pending = pending


class Storage:
    def __init__(self, clients: Clients) -> None:
        self._clients = clients
        self._services: dict[str, BlobServiceClient] = {}
        self._keys: dict[str, UserDelegationKey] = {}
        self._own = self._service(clients.settings.storage_url)
        self._failures = FailureRecords(
            self._own.get_container_client(clients.settings.failures_container)
        )

    def _service(self, account_url: str) -> BlobServiceClient:
        key = account_url.lower()
        if key not in self._services:
            self._services[key] = BlobServiceClient(
                account_url, credential=self._clients.credential, **self._clients.options()
            )
        return self._services[key]

    def package_sas(self, package: PackageRef, hours: float, now: datetime) -> tuple[str, datetime]:
        """A fresh read-only user-delegation SAS URL for the package and its expiry.

        Only a :class:`PackageRef` is accepted: a blob in an allow-listed container.
        """
        account_url = package.container.account_url
        start, expiry = now - SAS_CLOCK_SKEW, now + timedelta(hours=hours)
        key = self._keys.get(account_url.lower())
        if key is None or _as_dt(key.signed_expiry) < expiry:
            try:
                key = self._service(account_url).get_user_delegation_key(
                    start, min(now + timedelta(days=7), expiry + timedelta(hours=hours))
                )
            except AzureError as exc:
                raise translate(exc, f"getting a user delegation key for {account_url}") from exc
            self._keys[account_url.lower()] = key
        sas = generate_blob_sas(
            account_name=package.container.account,
            container_name=package.container.container,
            blob_name=package.blob_name,
            user_delegation_key=key,
            permission=BlobSasPermissions(read=True),
            start=start,
            expiry=expiry,
            protocol="https",
        )
        return f"{package.url}?{sas}", expiry

    def package_facts(self, package: PackageRef) -> PackageFacts:
        """The package blob's Content-MD5 and ETag as Storage reports them now.

        Raises PreconditionFailed when the blob does not exist (the message names the
        blob, never its properties).
        """
        blob = self._service(package.container.account_url).get_blob_client(
            package.container.container, package.blob_name
        )
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError as exc:
            raise PreconditionFailed(f"the package blob {package.url} does not exist") from exc
        except AzureError as exc:
            raise translate(exc, f"reading the package blob {package.url}") from exc
        md5 = props.content_settings.content_md5
        return PackageFacts(
            package.url,
            base64.b64encode(bytes(md5)).decode() if md5 else None,
            str(props.etag) if props.etag else None,
        )

    # -- failure backoff (shared.domain.backoff): kept by FailureRecords --------------------

    def failure(self, service_id: str, certificate: str) -> Failure | None:
        return self._failures.failure(service_id, certificate)

    def record_failure(self, service_id: str, failure: Failure) -> None:
        self._failures.record(service_id, failure)

    def clear_failure(self, service_id: str, certificate: str) -> None:
        self._failures.clear(service_id, certificate)

    def failures(self) -> dict[str, list[Failure]]:
        return self._failures.every()

    def _lock_blob(self, service_id: str) -> BlobClient:
        name = hashlib.sha256(service_id.lower().encode()).hexdigest() + ".lock"
        container = self._own.get_container_client(self._clients.settings.locks_container)
        return container.get_blob_client(name)

    @contextmanager
    def lock(self, service_id: str) -> Iterator[Lease]:
        """Hold the service's lease or raise Busy (someone else holds it).

        The lease is taken before anything else: without it (storage unreachable, lease
        held elsewhere) nothing is written anywhere.
        """
        blob = self._lock_blob(service_id)
        initial = json.dumps({"serviceId": service_id, "pending": None}).encode()
        metadata = _journal_metadata(service_id, False)
        try:
            try:
                blob.upload_blob(initial, overwrite=False, metadata=metadata)
            except ResourceNotFoundError:
                create_container(self._own.get_container_client(self._clients.settings.locks_container))
                blob.upload_blob(initial, overwrite=False, metadata=metadata)
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise translate(exc, "creating the lock blob") from exc
        lease = BlobLeaseClient(blob)
        try:
            lease.acquire(lease_duration=LEASE_SECONDS)
        except ResourceExistsError as exc:
            raise Busy("another invocation is updating this cloud service") from exc
        except AzureError as exc:
            if getattr(exc, "status_code", None) == 409:
                raise Busy("another invocation is updating this cloud service") from exc
            raise translate(exc, "locking the cloud service") from exc
        try:
            yield Lease(lease, blob, service_id, self._read_pending(blob))
        finally:
            # Else it expires by itself in LEASE_SECONDS. Any storage error here (storage
            # lost mid-update included) must not hide the outcome the work itself raised.
            with suppress(AzureError):
                lease.release()

    def _read_pending(self, blob: BlobClient) -> Pending | None:
        try:
            data = json.loads(blob.download_blob().readall() or b"{}")
        except AzureError as exc:
            raise translate(exc, "reading the service journal") from exc
        except ValueError:
            return None  # a lock blob from before the journal existed: nothing pending
        entry = data.get("pending") if isinstance(data, dict) else None
        return Pending.from_json(entry) if entry else None

    def pending_services(self) -> set[str]:
        """Ids (lower case) of the services whose journal holds work in flight: one listing."""
        container = self._own.get_container_client(self._clients.settings.locks_container)
        try:
            blobs = list(container.list_blobs(include=["metadata"]))
        except ResourceNotFoundError:
            return set()
        except AzureError as exc:
            raise translate(exc, "listing service journals") from exc
        return {
            b.metadata["service"].lower()
            for b in blobs
            if (b.metadata or {}).get("pending") == "true" and "service" in b.metadata
        }

    def save_record(self, record: RunRecord) -> None:
        """Write a record nobody else writes yet (see :meth:`update_record`)."""
        try:
            _upload_record(self._runs(), record, overwrite=True)
        except AzureError as exc:
            raise translate(exc, "writing the run record") from exc

    def update_record(
        self,
        record_id: str,
        change: Callable[[RunRecord | None], RunRecord | None],
    ) -> RunRecord | None:
        """Write ``change(stored)`` (``stored`` is None while there is no record) unless the
        record changed since it was read (ETag), in which case ``change`` is applied again
        to the newer one; ``change`` returning None writes nothing. Returns what was written.

        A run's record has two kinds of writer once one of its updates is left running: the
        run itself, and whichever invocation finishes that update (``follow_updates``,
        reconcile, an event, ``GET /api/rotations/{id}``). They can write at the same moment,
        and a blind write would undo the other's (a finished update shown as ``updating``).
        """
        container = self._runs()
        blob = container.get_blob_client(f"{record_id}.json")
        try:
            for _ in range(RECORD_ATTEMPTS):
                try:
                    downloader = blob.download_blob()
                    stored: RunRecord | None = parse_record(record_id, downloader.readall())
                    etag = downloader.properties.etag
                except ResourceNotFoundError:
                    stored, etag = None, None
                record = change(stored)
                if record is None:
                    return None
                try:
                    if etag is None:
                        _upload_record(container, record, overwrite=False)
                    else:
                        _upload_record(
                            container,
                            record,
                            overwrite=True,
                            etag=etag,
                            match_condition=MatchConditions.IfNotModified,
                        )
                except (ResourceExistsError, ResourceModifiedError):
                    continue  # another writer came in between: apply the change to theirs
                return record
        except AzureError as exc:
            raise translate(exc, "writing the run record") from exc
        raise TransientError(
            f"run record {record_id} kept changing while it was being written; try again"
        )

    def _runs(self) -> ContainerClient:
        return self._own.get_container_client(self._clients.settings.runs_container)

    def load_record(self, record_id: str) -> RunRecord:
        container = self._runs()
        try:
            data = container.download_blob(f"{record_id}.json").readall()
        except ResourceNotFoundError as exc:
            raise NotFound(f"no rotation run '{record_id}'") from exc
        except AzureError as exc:
            raise translate(exc, "reading the run record") from exc
        return parse_record(record_id, data)

    def record_ids(self) -> list[str]:
        """Every stored run id, newest first (ids start with their UTC start time)."""
        container = self._runs()
        try:
            names = [b.name for b in container.list_blobs() if b.name.endswith(".json")]
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise translate(exc, "listing run records") from exc
        return sorted((n.removesuffix(".json") for n in names), reverse=True)


def _journal_metadata(service_id: str, pending: bool) -> dict[str, str]:
    return {"service": service_id, "pending": "true" if pending else "false"}


def parse_record(record_id: str, data: bytes) -> RunRecord:
    """A stored run record, or PreconditionFailed naming it when it cannot be read (not
    JSON, an outcome or status this version does not know): one unreadable record is
    reported where it is asked for, never a bare 500."""
    try:
        return RunRecord.from_json(json.loads(data))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PreconditionFailed(
            f"run record {record_id} cannot be read ({type(exc).__name__}: {exc})"
        ) from None


def _upload_record(container: ContainerClient, record: RunRecord, **conditions: Any) -> None:
    """Upload a run record, creating the container on first use."""
    data = json.dumps(record.to_json(), indent=1, sort_keys=True).encode()
    try:
        container.upload_blob(f"{record.id}.json", data, **conditions)
    except ResourceNotFoundError:
        create_container(container)
        container.upload_blob(f"{record.id}.json", data, **conditions)


def _as_dt(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
