"""Key Vault's data plane for certificates as they are: list, get and update them and
their policy, and soft delete (delete, list and get deleted, purge, recover). Issuing new
versions is :mod:`emulators.keyvault.issuance`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiohttp import web

from emulators import kvcerts
from emulators.core import json_response
from emulators.keyvault.model import (
    Certificate,
    DeletedCertificate,
    KvError,
    Vault,
    bad,
    merge_policy,
    not_found,
    section,
)
from emulators.keyvault.state import State
from emulators.keyvault.views import (
    bundle,
    certificate_item,
    deleted_json,
    deleted_of,
    find_cert,
    find_version,
    page,
    policy_json,
    read_body,
)
from emulators.kvcerts import CertError


class Certificates:
    """Handlers for reading, updating, deleting and recovering certificates."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.platform = state.wiring.platform

    async def list_certificates(self, vault: Vault, request: web.Request,
                                params: dict[str, str]) -> web.Response:
        pending = request.query.get("includePending", "").lower() == "true"
        items = []
        for cert in sorted(vault.certificates.values(), key=lambda c: c.name.lower()):
            if cert.versions:
                items.append(certificate_item(vault, cert, cert.versions[-1], versioned=False))
            elif pending and cert.pending is not None:
                items.append(certificate_item(vault, cert, None, versioned=False))
        return page(vault, request, items)

    async def list_versions(self, vault: Vault, request: web.Request,
                            params: dict[str, str]) -> web.Response:
        cert = find_cert(vault, params["name"])
        items = [certificate_item(vault, cert, v, versioned=True) for v in cert.versions]
        if cert.pending is not None and cert.pending.status == "inProgress":
            items.append(certificate_item(vault, cert, None, versioned=True))
        # Key Vault lists versions by version id, not by creation (recorded).
        items.sort(key=lambda item: str(item["id"]).lower())
        return page(vault, request, items)

    async def get_certificate(self, vault: Vault, request: web.Request,
                              params: dict[str, str]) -> web.Response:
        cert = find_cert(vault, params["name"])
        version = params.get("version")
        if version and cert.pending is not None and version.lower() == cert.pending.version \
                and cert.pending.status == "inProgress":
            return json_response(bundle(vault, cert, None))
        return json_response(bundle(vault, cert, find_version(cert, version)))

    async def update_certificate(self, vault: Vault, request: web.Request,
                                 params: dict[str, str]) -> web.Response:
        cert = find_cert(vault, params["name"])
        current = find_version(cert, params.get("version"))
        body = await read_body(request)
        if current is None:
            raise not_found("certificate", cert.name)
        if body.get("policy") is not None:
            self._apply_policy(cert, merge_policy(cert.policy, body["policy"]))
        attributes = section(body, "attributes")
        updated = replace(
            current,
            enabled=bool(attributes["enabled"]) if attributes.get("enabled") is not None
            else current.enabled,
            tags=dict(body["tags"]) if isinstance(body.get("tags"), dict) else current.tags,
            updated=self.state.now())
        cert.versions[cert.versions.index(current)] = updated
        return json_response(bundle(vault, cert, updated))

    async def get_policy(self, vault: Vault, request: web.Request,
                         params: dict[str, str]) -> web.Response:
        cert = find_cert(vault, params["name"])
        return json_response(policy_json(vault, cert))

    async def update_policy(self, vault: Vault, request: web.Request,
                            params: dict[str, str]) -> web.Response:
        cert = find_cert(vault, params["name"])
        self._apply_policy(cert, merge_policy(cert.policy, await read_body(request)))
        return json_response(policy_json(vault, cert))

    def _apply_policy(self, cert: Certificate, raw: dict[str, Any]) -> None:
        created = int(cert.policy["attributes"]["created"])
        try:
            policy = kvcerts.normalize_policy(raw, created, self.state.now())
            kvcerts.x509_spec(policy)
        except CertError as exc:
            raise bad(str(exc)) from exc
        cert.policy = policy

    async def delete_certificate(self, vault: Vault, request: web.Request,
                                 params: dict[str, str]) -> web.Response:
        cert = find_cert(vault, params["name"])
        del vault.certificates[cert.name.lower()]
        now = self.state.now()
        days = int(vault.properties.get("softDeleteRetentionInDays", 90))
        item = DeletedCertificate(cert, now, now + days * 86400)
        if not vault.properties.get("enableSoftDelete", True):
            current = cert.versions[-1] if cert.versions else None
            return json_response(bundle(vault, cert, current))
        vault.deleted[cert.name.lower()] = item
        return json_response(deleted_json(vault, item, full=True))

    async def list_deleted(self, vault: Vault, request: web.Request,
                           params: dict[str, str]) -> web.Response:
        items = [deleted_json(vault, d, full=False)
                 for d in sorted(vault.deleted.values(), key=lambda d: d.cert.name.lower())]
        return page(vault, request, items)

    async def get_deleted(self, vault: Vault, request: web.Request,
                          params: dict[str, str]) -> web.Response:
        return json_response(deleted_json(vault, deleted_of(vault, params["name"]),
                                           full=True))

    async def purge_deleted(self, vault: Vault, request: web.Request,
                            params: dict[str, str]) -> web.Response:
        item = deleted_of(vault, params["name"])
        if vault.properties.get("enablePurgeProtection"):
            raise KvError(403, "Forbidden", 'Operation "purge" is not enabled for this vault.')
        del vault.deleted[item.cert.name.lower()]
        return web.Response(status=204)

    async def recover_deleted(self, vault: Vault, request: web.Request,
                              params: dict[str, str]) -> web.Response:
        item = deleted_of(vault, params["name"])
        cert = item.cert
        del vault.deleted[cert.name.lower()]
        vault.certificates[cert.name.lower()] = cert
        current = cert.versions[-1] if cert.versions else None
        return json_response(bundle(vault, cert, current))
