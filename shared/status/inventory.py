"""Status and inventory: what each cloud service in scope runs, held against Key Vault.

Theory of operation
-------------------
:func:`~shared.status.gather.gather` does the reading, :func:`~shared.status.assessment.build`
the thinking. Gathering lists the cloud
services in scope, takes the vaults they reference from their ``osProfile.secrets`` (the
same trust rule as rotation: vault URLs only ever come from the services themselves),
lists each vault's certificates and reads every certificate it finds once (all versions),
and looks up the newest run of each (service, certificate) in the run records. Whatever
cannot be read becomes an :class:`Unreadable` with the reason, so one bad vault never
hides the rest of the page.

:func:`build` is pure (``now`` is an argument) and turns that into rows:

* every cscfg ``Certificate`` is matched by thumbprint against every version of the
  certificates in the service's referenced vaults (the ones ``osProfile`` names first);
  a match gives the deployed version, its expiry, the desired version (the planner's own
  rule) and drift (deployed is not desired);
* a referenced certificate that no cscfg entry names still gets a row (``role`` null),
  from the version in its secret URL;
* a thumbprint that matches no version of any certificate in the referenced vaults is an
  orphan, unless something there could not be read (a deleted certificate does not count:
  it is known not to match), in which case the row says so rather than guess;
* certificates in the referenced vaults that no service references or names are unused.

Expiry is ``expired``, ``soon`` (within 30 days, when Key Vault raises NearExpiry) or ``ok``.

What needs an operator is a :class:`Flag` on the row it concerns (a certificate use or the
service) and a count in :meth:`Inventory.summary`, the same in JSON, CLI and HTML: a
service Azure left ``Failed``, a failed last run, a backoff, expired and expiring
certificates, problems, drift and unmanaged services.
:func:`~shared.status.assessment.findings` is the
``certrotate status --check`` rule, with its thresholds as arguments.
Nothing secret is shown: no tag values (an operator may have pasted a SAS into one), only
thumbprints, versions and ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.domain.model import (
    CloudServiceSnapshot,
    SecretUrl,
)
from shared.status.history import LastRun

EXPIRY_WARNING = timedelta(days=30)  # Key Vault raises NearExpiry this long before expiry
RUNS_SCAN = 200  # run records read at most per status (newest first; each is a download)

CertKey = tuple[str, str]  # (vault ARM id, certificate name), lower case
# Last-run outcomes that mean the service did not get what the run meant to give it.


class Flag(StrEnum):
    """Something about a row an operator should look at; declared most urgent first."""

    FAILED = "failed"  # Azure left the service in provisioningState Failed
    RUN_FAILED = "run-failed"  # the last run did not do what it meant to (see its record)
    BACKOFF = "backoff"  # a version that failed to deploy is held back for a while
    EXPIRED = "expired"
    EXPIRING = "expiring"  # within EXPIRY_WARNING (30 days)
    PROBLEM = "problem"  # something could not be read or makes no sense
    DRIFT = "drift"  # deployed is not the desired version
    UNMANAGED = "unmanaged"  # not tagged for rotation (an opt-out is not flagged)

    @property
    def rank(self) -> int:
        return list(Flag).index(self)

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Flag.FAILED: "failed",
    Flag.RUN_FAILED: "last run failed",
    Flag.BACKOFF: "backing off",
    Flag.EXPIRED: "expired",
    Flag.EXPIRING: "expiring",
    Flag.PROBLEM: "problem",
    Flag.DRIFT: "drift",
    Flag.UNMANAGED: "unmanaged",
}


def _ordered(flags: Iterable[Flag]) -> tuple[Flag, ...]:
    return tuple(sorted(set(flags), key=lambda f: f.rank))


@dataclass(frozen=True)
class Unreadable:
    """A certificate that could not be read, and why (the adapter's message).

    ``missing``: Key Vault said it does not exist (deleted), so it cannot be what an
    unmatched thumbprint is; any other failure leaves that open.
    """

    reason: str
    missing: bool = False


@dataclass(frozen=True)
class VaultListing:
    """The certificate names of one referenced vault, or why they could not be listed."""

    vault_id: str
    names: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Reference:
    """One ``osProfile.secrets`` certificate URL of a service."""

    vault_id: str
    vault_url: str
    certificate: str
    secret_url: str

    @property
    def key(self) -> CertKey:
        return (self.vault_id.lower(), self.certificate.lower())


def references(service: CloudServiceSnapshot) -> list[Reference]:
    return [
        Reference(group.source_vault_id, parsed.vault_url, parsed.name, url)
        for group in service.secrets
        for url in group.certificate_urls
        if (parsed := SecretUrl.parse(url)) is not None
    ]


def expiry_state(expires: datetime | None, now: datetime) -> str:
    if expires is None:
        return "unknown"
    if expires <= now:
        return "expired"
    return "soon" if expires - now < EXPIRY_WARNING else "ok"


def days_left(expires: datetime | None, now: datetime) -> float | None:
    return None if expires is None else round((expires - now).total_seconds() / 86400, 1)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@dataclass(frozen=True)
class CertificateUse:
    """One certificate one service uses: a cscfg entry, or an ``osProfile``-only secret."""

    vault_id: str | None
    certificate: str | None
    role: str | None  # None: in osProfile.secrets but named by no cscfg Certificate
    cscfg_name: str | None
    thumbprint: str | None
    version: str | None
    expires: datetime | None
    days_left: float | None
    expiry: str  # ok | soon | expired | unknown
    desired_version: str | None
    desired_thumbprint: str | None
    drift: bool | None  # None: cannot tell (unreadable, or no valid version exists)
    last_run: LastRun | None
    problem: str | None

    def flags(self, expiring_days: float = EXPIRY_WARNING.days) -> tuple[Flag, ...]:
        """This use's flags; ``expiring_days`` moves the expiring threshold (``--check``)."""
        found: list[Flag] = []
        if self.expiry == "expired":
            found.append(Flag.EXPIRED)
        elif self.days_left is not None and self.days_left < expiring_days:
            found.append(Flag.EXPIRING)
        if self.drift:
            found.append(Flag.DRIFT)
        if self.problem:
            found.append(Flag.PROBLEM)
        if self.last_run is not None and self.last_run.outcome.unsuccessful:
            found.append(Flag.RUN_FAILED)
        return _ordered(found)

    def to_json(self) -> dict[str, Any]:
        return {
            "attention": list(self.flags()),
            "vault": self.vault_id,
            "certificate": self.certificate,
            "role": self.role,
            "cscfgName": self.cscfg_name,
            "thumbprint": self.thumbprint,
            "version": self.version,
            "expires": _iso(self.expires),
            "expiresInDays": self.days_left,
            "expiry": self.expiry,
            "desiredVersion": self.desired_version,
            "desiredThumbprint": self.desired_thumbprint,
            "drift": self.drift,
            "lastRun": self.last_run.to_json() if self.last_run else None,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class ServiceStatus:
    id: str
    name: str
    provisioning_state: str | None
    managed: bool
    reason: str
    certificates: tuple[CertificateUse, ...]
    problem: str | None
    backoff: str | None = None  # "backing off until T after N failures: last error"
    opted_out: bool = False  # unmanaged by the operator's choice: not flagged

    @property
    def resource_group(self) -> str:
        parts = self.id.split("/")
        lower = [p.lower() for p in parts]
        return parts[lower.index("resourcegroups") + 1] if "resourcegroups" in lower[:-1] else ""

    def flags(self, expiring_days: float = EXPIRY_WARNING.days) -> tuple[Flag, ...]:
        """The service's own flags and those of every certificate it uses."""
        found = [f for use in self.certificates for f in use.flags(expiring_days)]
        if (self.provisioning_state or "").lower() == "failed":
            found.append(Flag.FAILED)
        if self.backoff:
            found.append(Flag.BACKOFF)
        if self.problem:
            found.append(Flag.PROBLEM)
        if not self.managed and not self.opted_out:
            found.append(Flag.UNMANAGED)
        return _ordered(found)

    def urgency(self) -> tuple[int, str, str]:
        """Sort key: the most urgent flag first, then by name; unflagged services last."""
        flags = self.flags()
        return (flags[0].rank if flags else len(Flag), self.name.lower(), self.id.lower())

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "resourceGroup": self.resource_group,
            "attention": list(self.flags()),
            "provisioningState": self.provisioning_state,
            "managed": self.managed,
            "reason": self.reason,
            "certificates": [c.to_json() for c in self.certificates],
            "problem": self.problem,
            "backoff": self.backoff,
        }


@dataclass(frozen=True)
class OrphanThumbprint:
    """A cscfg thumbprint that is no version of any certificate in the referenced vaults."""

    service_id: str
    role: str
    cscfg_name: str
    thumbprint: str

    def to_json(self) -> dict[str, str]:
        return {
            "cloudService": self.service_id,
            "role": self.role,
            "cscfgName": self.cscfg_name,
            "thumbprint": self.thumbprint,
        }


@dataclass(frozen=True)
class UnusedCertificate:
    vault_id: str
    certificate: str
    version: str | None  # the vault's current version
    thumbprint: str | None
    expires: datetime | None
    days_left: float | None
    expiry: str
    problem: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "vault": self.vault_id,
            "certificate": self.certificate,
            "version": self.version,
            "thumbprint": self.thumbprint,
            "expires": _iso(self.expires),
            "expiresInDays": self.days_left,
            "expiry": self.expiry,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class Inventory:
    generated: datetime
    services: tuple[ServiceStatus, ...]
    orphans: tuple[OrphanThumbprint, ...]
    unused: tuple[UnusedCertificate, ...]
    problems: tuple[str, ...]

    def summary(self) -> dict[str, int]:
        """How many services carry each flag (and in all), plus what could not be read."""
        counts = {"services": len(self.services)}
        counts["attention"] = sum(bool(s.flags()) for s in self.services)
        for flag in Flag:
            counts[flag.value] = sum(flag in s.flags() for s in self.services)
        counts["unreadable"] = len(self.problems)
        return counts

    def by_urgency(self) -> list[ServiceStatus]:
        return sorted(self.services, key=ServiceStatus.urgency)

    def to_json(self) -> dict[str, Any]:
        return {
            "generated": self.generated.isoformat(),
            "summary": self.summary(),
            "services": [s.to_json() for s in self.services],
            "orphanThumbprints": [o.to_json() for o in self.orphans],
            "unusedCertificates": [u.to_json() for u in self.unused],
            "problems": list(self.problems),
        }
