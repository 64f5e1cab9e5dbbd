"""Building the inventory: what each service runs, held against Key Vault (pure).

:func:`build` turns what :func:`~shared.status.gather.gather` read into the rows of
:class:`~shared.status.inventory.Inventory` (``now`` is an argument, so it is
table-tested without I/O); :func:`findings` is the ``certrotate status --check`` rule.
The matching rules are in :mod:`shared.status.inventory`'s theory of operation.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

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
from shared.status.inventory import (
    EXPIRY_WARNING,
    CertificateUse,
    CertKey,
    Flag,
    Inventory,
    OrphanThumbprint,
    Reference,
    ServiceStatus,
    Unreadable,
    UnusedCertificate,
    VaultListing,
    days_left,
    expiry_state,
    references,
)


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
        days_left=days_left(version.expires, now),
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
        days_left=days_left(expires, now),
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
