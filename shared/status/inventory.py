"""Status and inventory: what each cloud service in scope runs, held against Key Vault.

Theory of operation
-------------------
:func:`gather` does the reading, :func:`build` the thinking. Gathering lists the cloud
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
certificates, problems, drift and unmanaged services. :func:`findings` is the
``certrotate status --check`` rule, with its thresholds as arguments.
Nothing secret is shown: no tag values (an operator may have pasted a SAS into one), only
thumbprints, versions and ids.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.domain import cscfg, planner
from shared.domain.backoff import Failure
from shared.domain.errors import InvalidInput
from shared.domain.model import (
    PACKAGE_TAG,
    Certificate,
    CertificateVersion,
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


def _days(expires: datetime | None, now: datetime) -> float | None:
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


def management(service: CloudServiceSnapshot, untagged_update: bool = False) -> tuple[bool, str]:
    """Whether rotation manages the service, and why (the engine's rule, in words)."""
    if service.opted_out:
        return False, "opted out (tag cert-rotation=off)"
    if not service.package_url and untagged_update:
        return True, "untagged: configuration-only updates (ROTATION_UNTAGGED=update)"
    if not service.package_url:
        return False, (
            f"no '{PACKAGE_TAG}' tag: tag it with the blob URL (no SAS) of its deployed "
            ".cspkg, e.g. with 'certrotate adopt'"
        )
    return True, f"tagged '{PACKAGE_TAG}'"


def build(
    services: Sequence[CloudServiceSnapshot],
    certificates: Mapping[CertKey, Certificate | Unreadable],
    vaults: Sequence[VaultListing],
    runs: Mapping[tuple[str, str, str], LastRun],
    now: datetime,
    problems: Sequence[str] = (),
    *,
    failures: Mapping[str, Sequence[Failure]] | None = None,
    untagged_update: bool = False,
) -> Inventory:
    """The status of ``services`` from what was read; see the module docstring.

    ``problems``: what else could not be read (shown as is). ``failures``: the services'
    failure records (by lower-case id), shown while they hold a version back.
    """
    listing_errors = {v.vault_id.lower(): v.error for v in vaults if v.error}
    statuses: list[ServiceStatus] = []
    orphans: list[OrphanThumbprint] = []
    used: set[CertKey] = set()
    for service in services:
        status, found, matched = _service_status(
            service, certificates, listing_errors, runs, now, untagged_update
        )
        waiting = [f for f in (failures or {}).get(service.id.lower(), ()) if now < f.until]
        if waiting:
            status = replace(status, backoff="; ".join(f.describe() for f in waiting))
        statuses.append(status)
        orphans.extend(found)
        used |= matched
    unused = [
        _unused(vault.vault_id, name, certificates.get((vault.vault_id.lower(), name.lower())), now)
        for vault in vaults
        for name in sorted(vault.names, key=str.lower)
        if (vault.vault_id.lower(), name.lower()) not in used
    ]
    return Inventory(
        generated=now,
        services=tuple(statuses),
        orphans=tuple(orphans),
        unused=tuple(unused),
        problems=(*problems, *(f"vault {v.vault_id}: {v.error}" for v in vaults if v.error)),
    )


def _service_status(
    service: CloudServiceSnapshot,
    certificates: Mapping[CertKey, Certificate | Unreadable],
    listing_errors: Mapping[str, str],
    runs: Mapping[tuple[str, str, str], LastRun],
    now: datetime,
    untagged_update: bool = False,
) -> tuple[ServiceStatus, list[OrphanThumbprint], set[CertKey]]:
    refs = references(service)
    referenced = list(dict.fromkeys(r.key for r in refs))
    vault_ids = {key[0] for key in referenced}
    # The service's own certificates first, then the rest of its vaults.
    candidates = referenced + sorted(k for k in certificates if k[0] in vault_ids)
    candidates = list(dict.fromkeys(candidates))
    unreadable = [
        c.reason
        for k in candidates
        if isinstance(c := certificates.get(k, Unreadable(f"'{k[1]}' was not read")), Unreadable)
        and not c.missing
    ] + [listing_errors[v] for v in sorted(vault_ids) if v in listing_errors]
    problem = None
    try:
        entries = cscfg.parse(service.configuration).certificates
    except InvalidInput as exc:
        entries, problem = (), f"the cscfg cannot be read: {exc}"
    uses: list[CertificateUse] = []
    orphans: list[OrphanThumbprint] = []
    matched: set[CertKey] = set()
    for entry in entries:
        hit = _find(entry.thumbprint, candidates, certificates)
        if hit is not None:
            key, cert, version = hit
            matched.add(key)
            uses.append(_use(service, cert, version, entry.role, entry.name, runs, now))
        elif unreadable:
            uses.append(
                _unknown(entry.role, entry.name, entry.thumbprint.upper(), "; ".join(unreadable))
            )
        else:
            orphans.append(
                OrphanThumbprint(service.id, entry.role, entry.name, entry.thumbprint.upper())
            )
    for key in referenced:
        if key in matched:
            continue
        matched.add(key)
        ref = next(r for r in refs if r.key == key)
        uses.append(_secret_only(service, ref, certificates.get(key), runs, now))
    managed, reason = management(service, untagged_update)
    status = ServiceStatus(
        id=service.id,
        name=service.name,
        provisioning_state=service.provisioning_state,
        managed=managed,
        reason=reason,
        certificates=tuple(uses),
        problem=problem,
        opted_out=service.opted_out,
    )
    return status, orphans, matched


def _find(
    thumbprint: str,
    candidates: Iterable[CertKey],
    certificates: Mapping[CertKey, Certificate | Unreadable],
) -> tuple[CertKey, Certificate, CertificateVersion] | None:
    for key in candidates:
        cert = certificates.get(key)
        if isinstance(cert, Certificate):
            version = cert.version_by_thumbprint(thumbprint)
            if version is not None:
                return key, cert, version
    return None


def _use(
    service: CloudServiceSnapshot,
    cert: Certificate,
    version: CertificateVersion,
    role: str | None,
    cscfg_name: str | None,
    runs: Mapping[tuple[str, str, str], LastRun],
    now: datetime,
) -> CertificateUse:
    desired = planner.desired_version(cert, now)
    return CertificateUse(
        vault_id=cert.vault_id,
        certificate=cert.name,
        role=role,
        cscfg_name=cscfg_name,
        thumbprint=version.thumbprint,
        version=version.version,
        expires=version.expires,
        days_left=_days(version.expires, now),
        expiry=expiry_state(version.expires, now),
        desired_version=desired.version if desired else None,
        desired_thumbprint=desired.thumbprint if desired else None,
        drift=None if desired is None else desired.version != version.version,
        last_run=runs.get((service.id.lower(), cert.vault_id.lower(), cert.name.lower())),
        problem=None if desired else f"no enabled version of '{cert.name}' is valid now",
    )


def _unknown(role: str, cscfg_name: str, thumbprint: str, why: str) -> CertificateUse:
    return CertificateUse(
        vault_id=None,
        certificate=None,
        role=role,
        cscfg_name=cscfg_name,
        thumbprint=thumbprint,
        version=None,
        expires=None,
        days_left=None,
        expiry="unknown",
        desired_version=None,
        desired_thumbprint=None,
        drift=None,
        last_run=None,
        problem=f"cannot tell which certificate this is: {why}",
    )


def _secret_only(
    service: CloudServiceSnapshot,
    ref: Reference,
    cert: Certificate | Unreadable | None,
    runs: Mapping[tuple[str, str, str], LastRun],
    now: datetime,
) -> CertificateUse:
    """A referenced certificate no cscfg entry names: described by its secret URL."""
    parsed = SecretUrl.parse(ref.secret_url)
    wanted = (parsed.version or "").lower() if parsed else ""
    if isinstance(cert, Certificate):
        version = next((v for v in cert.versions if v.version.lower() == wanted), None)
        if version is not None:
            return _use(service, cert, version, None, None, runs, now)
        why = f"version '{wanted}' of '{cert.name}' is not in the vault"
    else:
        why = cert.reason if cert else "not read"
    last = runs.get((service.id.lower(), ref.key[0], ref.key[1]))
    return CertificateUse(
        vault_id=ref.vault_id,
        certificate=ref.certificate,
        role=None,
        cscfg_name=None,
        thumbprint=None,
        version=wanted or None,
        expires=None,
        days_left=None,
        expiry="unknown",
        desired_version=None,
        desired_thumbprint=None,
        drift=None,
        last_run=last,
        problem=why,
    )


def _unused(
    vault_id: str, name: str, cert: Certificate | Unreadable | None, now: datetime
) -> UnusedCertificate:
    current = None
    if isinstance(cert, Certificate):
        current = next((v for v in cert.versions if v.version == cert.current_version), None)
    expires = current.expires if current else None
    return UnusedCertificate(
        vault_id=vault_id,
        certificate=name,
        version=current.version if current else None,
        thumbprint=current.thumbprint if current else None,
        expires=expires,
        days_left=_days(expires, now),
        expiry=expiry_state(expires, now),
        problem=cert.reason if isinstance(cert, Unreadable) else None,
    )


def findings(
    inventory: Inventory,
    *,
    expiring_days: float = EXPIRY_WARNING.days,
    ignore: Collection[Flag] = (),
) -> list[str]:
    """What ``certrotate status --check`` reports, one line per service (most urgent
    first) and per unreadable thing; empty when nothing needs attention."""
    lines = []
    for service in inventory.by_urgency():
        flags = [f for f in service.flags(expiring_days) if f not in ignore]
        if flags:
            lines.append(f"{service.resource_group}/{service.name}: {', '.join(flags)}")
    if Flag.PROBLEM not in ignore:
        lines.extend(f"could not read {p}" for p in inventory.problems)
    return lines
