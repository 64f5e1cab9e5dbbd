"""Past runs, read back from the run records the engine stores.

The records are the only history there is (no database): one JSON blob per run, named by
its id, and ids start with the UTC start time, so listing them newest first costs one
listing and reading stops as soon as enough matching runs were found. Reading is bounded
(``scan``) because each record is one blob download; the status page and ``certrotate
history`` both read through here, so they agree on what "the last run" is.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.domain.outcomes import Outcome, RunStatus
from shared.domain.records import RunRecord

# At most this many records are read per call (newest first): each one is a download.
MAX_SCAN = 500


class RecordStore(Protocol):
    def record_ids(self) -> list[str]: ...

    def load_record(self, record_id: str) -> RunRecord: ...


@dataclass(frozen=True)
class LastRun:
    """One service's result in one run, as the status page shows it."""

    run_id: str
    started: str
    status: RunStatus
    outcome: Outcome
    message: str
    package: Mapping[str, Any] | None = None  # the blob an update deployed (url, md5, etag)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "started": self.started,
            "status": self.status,
            "outcome": self.outcome,
            "message": self.message,
            "package": dict(self.package) if self.package else None,
        }


def recent_records(
    store: RecordStore,
    *,
    limit: int,
    service_id: str | None = None,
    scan: int = MAX_SCAN,
    before: str | None = None,
) -> Iterator[RunRecord]:
    """Up to ``limit`` run records, newest first, only those touching ``service_id`` if given.

    ``before``: only runs older than this run id (ids sort by start time), to page on.
    Reads at most ``scan`` records, so an id that matches nothing costs a bounded time.
    """
    found = 0
    ids = store.record_ids()
    if before is not None:
        ids = [i for i in ids if i < before]
    for record_id in ids[:scan]:
        if found >= limit:
            return
        record = store.load_record(record_id)
        if service_id is None or record.names(service_id):
            found += 1
            yield record


def last_runs(
    records: Iterable[RunRecord], wanted: Collection[tuple[str, str, str]] = ()
) -> dict[tuple[str, str, str], LastRun]:
    """The newest result per (service id, vault id, certificate), all keys lower case.

    ``records`` must come newest first; a result already found is never replaced. With
    ``wanted``, reading stops as soon as each of those keys has its result (records are
    read lazily, so the older ones are never downloaded).
    """
    found: dict[tuple[str, str, str], LastRun] = {}
    remaining = set(wanted)
    for record in records:
        vault, certificate = record.vault.lower(), record.certificate.lower()
        for result in record.services:
            key = (result.cloud_service.lower(), vault, certificate)
            if key not in found:
                found[key] = LastRun(
                    run_id=record.id,
                    started=record.started,
                    status=record.status,
                    outcome=result.outcome,
                    message=result.message,
                    package=result.write.package if result.write else None,
                )
                remaining.discard(key)
        if wanted and not remaining:
            break
    return found
