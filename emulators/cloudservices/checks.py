"""The platform's checks of a PUT body, in Azure's order (see the package docstring):
package URL form, configuration (inline or downloaded), the .cscfg against ``roleProfile``,
every ``osProfile`` secret (asked of Key Vault), thumbprints, then the package download with
the client's SAS. A body that passes becomes a :class:`Draft`; a refusal is an ArmError.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_xml

from emulators.cloudservices.model import (
    CSCFG_NAMESPACE,
    INVALID_PACKAGE_URL,
    MAX_CSCFG_CHARS,
    READ_ONLY,
    THUMBPRINT_MESSAGE,
    WRITE_ONLY,
    ArmError,
    CscfgRole,
    Draft,
    PackageFetch,
    RoleSpec,
    Service,
    invalid,
    missing_property,
    sas_url,
    strip_query,
    versioned_secret_url,
    with_defaults,
)
from emulators.cloudservices.state import State


def parse_cscfg(text: str) -> tuple[CscfgRole, ...]:
    """The roles of a .cscfg, parsed safely (no DTDs, entities or external references)."""
    if len(text) > MAX_CSCFG_CHARS:
        raise invalid(f"The service configuration exceeds {MAX_CSCFG_CHARS} characters.",
                      "configuration")
    try:
        root: Element = parse_xml(text.lstrip("\ufeff"), forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise invalid(f"The service configuration is not well-formed XML: {exc}.",
                      "configuration") from exc
    if root.tag != f"{{{CSCFG_NAMESPACE}}}ServiceConfiguration":
        raise invalid(
            "The root element of the service configuration must be ServiceConfiguration in "
            f"namespace '{CSCFG_NAMESPACE}'; found '{root.tag}'.", "configuration")
    ns = {"sc": CSCFG_NAMESPACE}
    roles: list[CscfgRole] = []
    for role in root.findall("sc:Role", ns):
        name = role.get("name")
        if not name:
            raise invalid("A Role element of the service configuration has no name.",
                          "configuration")
        if any(r.name == name for r in roles):
            raise invalid(f"The service configuration defines role '{name}' twice.",
                          "configuration")
        instances = role.find("sc:Instances", ns)
        count_text = instances.get("count", "") if instances is not None else ""
        thumbprints = tuple(
            cert.get("thumbprint", "").strip().upper()
            for cert in role.findall("sc:Certificates/sc:Certificate", ns)
            if cert.get("thumbprint", "").strip()
        )
        count = int(count_text) if count_text.isdigit() else None
        roles.append(CscfgRole(name, count, thumbprints))
    return tuple(roles)


def role_specs(properties: dict[str, Any], cscfg: tuple[CscfgRole, ...]) -> tuple[RoleSpec, ...]:
    """``roleProfile.roles`` checked against the cscfg, with each role's instance count."""
    profile = properties.get("roleProfile")
    roles = profile.get("roles") if isinstance(profile, dict) else None
    if not isinstance(roles, list) or not roles:
        raise missing_property("roleProfile")
    specs: list[RoleSpec] = []
    counts = {r.name: r.instance_count for r in cscfg}
    for role in roles:
        name = role.get("name") if isinstance(role, dict) else None
        if not isinstance(name, str) or not name:
            raise missing_property("roleProfile.roles.name")
        sku = role.get("sku") if isinstance(role.get("sku"), dict) else {}
        capacity = sku.get("capacity")
        if capacity is not None and (not isinstance(capacity, int) or capacity < 0):
            raise invalid(f"The capacity of role '{name}' must be a non-negative integer.",
                          "roleProfile.roles.sku.capacity")
        count = capacity if capacity is not None else counts.get(name) or 1
        specs.append(RoleSpec(name, sku, count))
    in_profile = [s.name for s in specs]
    in_cscfg = [r.name for r in cscfg]
    only_cscfg = [n for n in in_cscfg if n not in in_profile]
    only_profile = [n for n in in_profile if n not in in_cscfg]
    if only_cscfg or only_profile or len(set(in_profile)) != len(in_profile):
        raise invalid(
            "The roles in the service configuration (.cscfg) must match roleProfile.roles. "
            f"Roles only in the .cscfg: [{', '.join(only_cscfg)}]. "
            f"Roles only in roleProfile: [{', '.join(only_profile)}].", "roleProfile")
    return tuple(specs)



class PutChecks:
    """Runs the checks on a PUT body; holds no state of its own beyond the wiring."""

    def __init__(self, state: State) -> None:
        self.state = state

    async def check(self, body: dict[str, Any], existing: Service | None) -> Draft:
        """Every platform check of a PUT body, in Azure's order; raise ArmError on refusal.

        ``packageUrl`` may be left out of an update (``existing``): the deployed package
        stays. Its form is checked before the configuration is looked at."""
        location = str(body["location"]).replace(" ", "").lower()
        properties = body.get("properties")
        if not isinstance(properties, dict):
            raise missing_property("properties")
        package_url = properties.get("packageUrl")
        if package_url is None or package_url == "":
            if existing is None:
                raise missing_property("packageUrl")
            package_url = None
        elif not sas_url(package_url):
            raise ArmError(400, "InvalidParameter", INVALID_PACKAGE_URL)
        configuration = properties.get("configuration")
        configuration_url = properties.get("configurationUrl")
        if not (isinstance(configuration, str) and configuration) and not (
                isinstance(configuration_url, str) and configuration_url):
            raise invalid("Required parameter 'configuration' or 'configurationUrl' is missing "
                          "(null).", "configuration")
        if not (isinstance(configuration, str) and configuration):
            configuration = (await self._download(str(configuration_url), "configurationUrl"))[
                0].decode("utf-8-sig", errors="replace")
        cscfg = parse_cscfg(configuration)
        roles = role_specs(properties, cscfg)
        thumbprints = self._check_secrets(properties)
        missing = [f"{role.name}|{thumb}" for role in cscfg for thumb in role.thumbprints
                   if thumb not in thumbprints]
        if missing:
            raise invalid(THUMBPRINT_MESSAGE.format(missing=", ".join(dict.fromkeys(missing))))
        package: PackageFetch | None = None
        if package_url is not None:
            data, fetched = await self._download(str(package_url), "packageUrl")
            if not data:
                raise invalid(f"The package at {fetched} is empty.", "packageUrl")
            package = PackageFetch(fetched, len(data), hashlib.sha256(data).hexdigest())
        kept = with_defaults(
            {k: v for k, v in properties.items() if k not in WRITE_ONLY + READ_ONLY})
        kept["configuration"] = configuration
        tags = body.get("tags")
        zones = body.get("zones")
        return Draft(
            location=location,
            tags=tags if isinstance(tags, dict) else {},
            zones=zones if isinstance(zones, list) else None,
            properties=kept,
            roles=roles,
            package=package,
        )

    def _check_secrets(self, properties: dict[str, Any]) -> dict[str, str]:
        """Thumbprint -> certificateUrl of every osProfile secret, each one checked."""
        profile = properties.get("osProfile")
        groups = profile.get("secrets") if isinstance(profile, dict) else None
        found: dict[str, str] = {}
        for group in groups if isinstance(groups, list) else []:
            source = group.get("sourceVault") if isinstance(group, dict) else None
            vault_id = source.get("id") if isinstance(source, dict) else None
            if not isinstance(vault_id, str) or not vault_id:
                raise missing_property("osProfile.secrets.sourceVault.id")
            certificates = group.get("vaultCertificates")
            for certificate in certificates if isinstance(certificates, list) else []:
                url = certificate.get("certificateUrl") if isinstance(certificate, dict) else None
                if not versioned_secret_url(url):
                    raise invalid(
                        f"{url} is not a valid versioned Key Vault Secret URL. It should be in "
                        "the format https://<vaultEndpoint>/secrets/<secretName>/<secretVersion>.",
                        "certificateUrl")
                facts = self.state.wiring.vaults.find_secret(str(url))
                if facts is None:
                    raise ArmError(400, "KeyVaultSecretDoesNotExist",
                                   f"The Key Vault secret referenced with the URL {url} does not "
                                   "exist.", "certificateUrl")
                if (not facts.vault_enabled_for_deployment
                        or facts.vault_arm_id.lower() != vault_id.lower()):
                    raise ArmError(
                        400, "KeyVaultAccessForbidden",
                        f"Key Vault {url} either has not been enabled for deployment or the vault "
                        f"id provided, {vault_id}, does not match the Key Vault's true resource "
                        "id.")
                if not facts.enabled:
                    raise ArmError(400, "KeyVaultSecretDisabled",
                                   f"The Key Vault secret referenced with the URL {url} is "
                                   "disabled.", "certificateUrl")
                found[facts.thumbprint.upper()] = str(url)
        return found

    async def _download(self, url: str, target: str) -> tuple[bytes, str]:
        """GET ``url`` as the platform does (only its own SAS); the body and the bare URL."""
        bare = strip_query(url)
        if urlsplit(url).scheme.lower() != "https" or not urlsplit(url).netloc:
            raise invalid(f"The {target} '{bare}' must be an absolute https URL.", target)
        result = await self.state.wiring.blobs.fetch(url)
        if result.status != 200:
            kind = "package" if target == "packageUrl" else "configuration"
            code = "PackageUriForbidden" if target == "packageUrl" else "ConfigurationUriForbidden"
            # Azurite answers a forged or expired SAS with AuthorizationFailure where Azure
            # Storage says AuthenticationFailed; report what Azure would have seen.
            storage_code = result.error_code or "AuthenticationFailed"
            if storage_code == "AuthorizationFailure":
                storage_code = "AuthenticationFailed"
            raise ArmError(
                400, code,
                f"The client does not have the permission to access the {kind} url {bare}. "
                f"Error:{storage_code}", target)
        return result.body, bare
