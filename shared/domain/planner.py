"""Decide what one cloud service must change so it serves the desired certificate version.

Theory of operation
-------------------
Rotation is level-triggered: an event only says *which* certificate to look at; this
module compares the truth observed in Azure (the service's cscfg and ``osProfile``, the
certificate's versions in Key Vault, the thumbprints behind every secret the service
references) with the *desired* state, and returns the exact difference. It does no I/O and
takes ``now`` as an argument, so the same inputs always give the same plan, a duplicate or
late event yields a no-op plan, and every rule here is tested with plain values.

1. Desired version: the newest version that is enabled, issued and valid at ``now``
   (``created``; within one second, Key Vault's current version, then ``nbf``).
2. cscfg: every ``Certificate`` whose thumbprint is one of *this* certificate's versions
   (any role, any case) gets the desired thumbprint; nothing else in the file moves
   (:func:`shared.domain.cscfg.rewrite` preserves it byte for byte).
3. ``osProfile.secrets``: this certificate's secret URLs whose thumbprint is no longer
   named by the cscfg are removed, the desired secret id is added once; other
   certificates and vaults are untouched.
4. Pre-flight: the checks the platform runs on PUT are run on the result (versioned
   secret URLs, every cscfg thumbprint backed by a secret, the desired version's own
   secret a PFX holding its private key), and
   a plan Azure would reject raises :class:`PlanRefused` naming what is wrong, so a
   broken update is never sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from shared.domain import cscfg
from shared.domain.errors import PlanRefused
from shared.domain.model import (
    Certificate,
    CertificateVersion,
    CloudServiceSnapshot,
    Plan,
    SecretFacts,
    SecretGroup,
    SecretUrl,
    ThumbprintChange,
    secret_key,
)

PFX = "application/x-pkcs12"


def desired_version(certificate: Certificate, now: datetime) -> CertificateVersion | None:
    """The newest enabled, issued version valid at ``now``.

    Ordered by ``created``, then (for versions created in the same second, which Key Vault
    cannot order by timestamp) whether it is the vault's current version, then ``nbf``.
    """
    valid = [v for v in certificate.versions if v.valid_at(now)]
    if not valid:
        return None
    return max(
        valid,
        key=lambda v: (
            v.created or v.not_before or now,
            v.version == certificate.current_version,
            v.not_before or now,
        ),
    )


def plan_rotation(
    service: CloudServiceSnapshot,
    certificate: Certificate,
    thumbprints: Mapping[str, str],
    now: datetime,
    *,
    rewrite_settings: bool = False,
    secret: SecretFacts | None = None,
) -> Plan:
    """Plan the change for ``service``.

    ``thumbprints`` maps every secret URL the service references (any vault) to the
    uppercase thumbprint of the certificate behind it; URLs absent from it are unknown
    (deleted versions, unreadable vaults) and fail the pre-flight if the cscfg needs them.
    ``secret``: what the desired version's own secret holds; without it the certificate's
    current policy stands in (which may have changed since that version was issued).

    Raises:
        PlanRefused: no valid version exists, the certificate cannot be installed by
            CSES, or the result would fail the platform's own checks.
        InvalidInput: the service's cscfg is malformed.
    """
    label = f"certificate '{certificate.name}' in vault '{_vault_name(certificate.vault_id)}'"
    desired = desired_version(certificate, now)
    if desired is None or desired.thumbprint is None:
        raise PlanRefused(f"{label} has no enabled version valid at {now.isoformat()}")

    before = cscfg.parse(service.configuration)
    mapping = {
        entry.thumbprint.upper(): desired.thumbprint
        for entry in before.certificates
        if entry.thumbprint.upper() != desired.thumbprint
        and certificate.version_by_thumbprint(entry.thumbprint) is not None
    }
    changes = tuple(
        ThumbprintChange(entry.role, entry.name, entry.thumbprint.upper(), desired.thumbprint)
        for entry in before.certificates
        if entry.thumbprint.upper() in mapping
    )
    configuration = cscfg.rewrite(service.configuration, mapping, rewrite_settings=rewrite_settings)
    mentioning = cscfg.settings_mentioning(service.configuration, mapping)
    after = cscfg.parse(configuration)
    named = {entry.thumbprint.upper() for entry in after.certificates}

    known = {secret_key(url): tp.upper() for url, tp in thumbprints.items()}
    known[secret_key(desired.secret_id)] = desired.thumbprint
    for version in certificate.versions:
        if version.thumbprint:
            known.setdefault(secret_key(version.secret_id), version.thumbprint)
    secrets = _rotate_secrets(service, certificate, desired, named, known)
    if not references(service, desired.secret_id):
        # The desired version's secret is new to the service: CSES will install it.
        check_installable(label, desired, certificate, secret)

    plan = Plan(
        service_id=service.id,
        vault_id=certificate.vault_id,
        certificate=certificate.name,
        desired=desired,
        changes=changes,
        configuration_before=service.configuration,
        configuration_after=configuration,
        secrets_before=service.secrets,
        secrets_after=secrets,
        settings_mentioning_old=tuple(f"{s.role}/{s.name}" for s in mentioning),
        warnings=tuple(
            f"setting {s.role}/{s.name} holds an old thumbprint"
            + (
                " (rewritten)"
                if rewrite_settings
                else "; set ROTATION_REWRITE_SETTINGS=true to rewrite it, or update it yourself"
            )
            for s in mentioning
        ),
    )
    if not plan.is_noop:
        preflight(configuration, secrets, known)
    return plan


def references(service: CloudServiceSnapshot, secret_id: str) -> bool:
    """Whether ``service``'s osProfile already takes the secret (so CSES installed it)."""
    wanted = secret_key(secret_id)
    return any(secret_key(u) == wanted for g in service.secrets for u in g.certificate_urls)


def check_installable(
    label: str,
    desired: CertificateVersion,
    certificate: Certificate,
    secret: SecretFacts | None,
) -> None:
    """Refuse a version CSES cannot install: its secret must be a PFX holding the key.

    ``secret`` is the version's own secret; without it the current policy stands in.
    """
    content_type = secret.content_type if secret is not None else certificate.content_type
    if content_type not in (None, PFX):
        raise PlanRefused(
            f"{label} version {desired.version} stores its secret as '{content_type}'; cloud "
            f"services can install only PFX ({PFX}): set the policy's content type to PFX "
            "and renew"
        )
    if (secret is not None and not secret.private_key) or (
        secret is None and certificate.exportable is False
    ):
        raise PlanRefused(
            f"{label} version {desired.version} has a non-exportable key; cloud services need "
            "the private key in the secret: create a version with an exportable key"
        )


def preflight(
    configuration: str, secrets: tuple[SecretGroup, ...], known: Mapping[tuple[str, str, str], str]
) -> None:
    """Run the platform's PUT checks on a planned model; raise PlanRefused on failure."""
    urls = [url for group in secrets for url in group.certificate_urls]
    unversioned = [u for u in urls if (p := SecretUrl.parse(u)) is None or not p.version]
    if unversioned:
        raise PlanRefused(
            "osProfile.secrets must hold versioned secret URLs "
            f"(https://<vault>/secrets/<name>/<version>); not versioned: {', '.join(unversioned)}"
        )
    available = {known[secret_key(u)] for u in urls if secret_key(u) in known}
    missing = [
        f"{entry.role}|{entry.thumbprint.upper()}"
        for entry in cscfg.parse(configuration).certificates
        if entry.thumbprint.upper() not in available
    ]
    if missing:
        raise PlanRefused(
            "The thumbprints specified in the CSCFG do not have corresponding certificates in "
            f"osProfile.secrets. Missing thumbprints: {', '.join(missing)}"
        )


def _rotate_secrets(
    service: CloudServiceSnapshot,
    certificate: Certificate,
    desired: CertificateVersion,
    named: set[str],
    known: Mapping[tuple[str, str, str], str],
) -> tuple[SecretGroup, ...]:
    """Swap this certificate's URLs in its vault's group for the desired one."""
    desired_key = secret_key(desired.secret_id)
    groups: list[SecretGroup] = []
    for group in service.secrets:
        if group.source_vault_id.lower() != certificate.vault_id.lower():
            groups.append(group)
            continue
        kept: list[str] = []
        seen: set[tuple[str, str, str]] = set()
        has_desired = False
        for url in group.certificate_urls:
            key = secret_key(url)
            mine = key[1] == certificate.name.lower()
            if mine and known.get(key) not in named and key != desired_key:
                continue  # an old version nobody names any more
            if key in seen:
                continue
            seen.add(key)
            # The same certificate re-imported as a newer version is already served.
            has_desired = has_desired or key == desired_key or known.get(key) == desired.thumbprint
            kept.append(url)
        if not has_desired:
            kept.append(desired.secret_id)
        groups.append(SecretGroup(group.source_vault_id, tuple(kept)))
    return tuple(groups)


def _vault_name(vault_id: str) -> str:
    return vault_id.rstrip("/").rsplit("/", 1)[-1]
