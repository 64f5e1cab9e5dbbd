"""Reading what the inventory needs from Azure and the run records, each thing once.

:func:`gather` does the reading and :func:`~shared.status.assessment.build` the thinking.
What it reads through is the :class:`Sources` protocol: the engine is one (the function
app and the CLI pass it), an in-memory fake another; status never imports the rotation
layer, so a status page can never start a rotation.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from shared.config import Settings
from shared.domain.backoff import Failure
from shared.domain.errors import NotFound, RotationError
from shared.domain.model import Certificate, CloudServiceSnapshot
from shared.domain.records import RunRecord
from shared.status.assessment import build
from shared.status.history import last_runs, recent_records
from shared.status.inventory import (
    RUNS_SCAN,
    CertKey,
    Inventory,
    Unreadable,
    VaultListing,
    references,
)


class ServiceReader(Protocol):
    def list_services(self) -> Iterable[CloudServiceSnapshot]: ...


class CertificateReader(Protocol):
    def certificate_names(self, vault_url: str) -> list[str]: ...

    def certificate(self, vault_id: str, vault_url: str, name: str) -> Certificate: ...


class RecordReader(Protocol):
    def failures(self) -> dict[str, list[Failure]]: ...

    def record_ids(self) -> list[str]: ...

    def load_record(self, record_id: str) -> RunRecord: ...


class Sources(Protocol):
    """What status reads through (read-only views of the adapters)."""

    @property
    def compute(self) -> ServiceReader: ...

    @property
    def keyvault(self) -> CertificateReader: ...

    @property
    def storage(self) -> RecordReader: ...

    @property
    def settings(self) -> Settings: ...

    def now(self) -> datetime: ...


def gather(sources: Sources, *, scan: int = RUNS_SCAN) -> Inventory:
    """Read everything :func:`build` needs, each certificate once; see the module docstring.

    Raises what listing the services raises (TransientError, ConfigError); failures to read
    a vault, a certificate or the run records are reported in the inventory instead.
    """
    services = sorted(sources.compute.list_services(), key=lambda s: (s.name.lower(), s.id))
    refs = sorted((r for s in services for r in references(s)), key=lambda r: r.vault_url)
    vault_urls: dict[str, tuple[str, str]] = {}
    for ref in refs:
        vault_urls.setdefault(ref.vault_id.lower(), (ref.vault_id, ref.vault_url))
    wanted: dict[CertKey, tuple[str, str, str]] = {}
    for ref in refs:
        vault_id, vault_url = vault_urls[ref.vault_id.lower()]
        wanted.setdefault(ref.key, (vault_id, vault_url, ref.certificate))
    listings: list[VaultListing] = []
    for vault_id, vault_url in vault_urls.values():
        try:
            names = tuple(sources.keyvault.certificate_names(vault_url))
        except RotationError as exc:
            listings.append(VaultListing(vault_id, error=str(exc)))
            continue
        listings.append(VaultListing(vault_id, names))
        for name in names:
            wanted.setdefault((vault_id.lower(), name.lower()), (vault_id, vault_url, name))
    certificates: dict[CertKey, Certificate | Unreadable] = {}
    for key, (vault_id, vault_url, name) in wanted.items():
        try:
            certificates[key] = sources.keyvault.certificate(vault_id, vault_url, name)
        except NotFound as exc:
            certificates[key] = Unreadable(str(exc), missing=True)
        except RotationError as exc:
            certificates[key] = Unreadable(str(exc))
    keys = {(s.id.lower(), r.key[0], r.key[1]) for s in services for r in references(s)}
    untagged_update = sources.settings.untagged == "update"
    problems: list[str] = []
    try:
        failures = sources.storage.failures()
    except RotationError as exc:
        failures = {}
        problems.append(f"failure records: {exc}")
    try:
        runs = last_runs(recent_records(sources.storage, limit=scan, scan=scan), keys)
    except RotationError as exc:  # the page is still worth having without last runs
        runs = {}
        problems.append(f"run records: {exc}")
    return build(
        services,
        certificates,
        listings,
        runs,
        sources.now(),
        problems,
        failures=failures,
        untagged_update=untagged_update,
    )
