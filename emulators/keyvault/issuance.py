"""New certificate versions: ``create`` (``Self`` issuance signs at once, ``Unknown``
waits for ``pending/merge``), ``import``, the pending operation, and the renewal an
``AutoRenew`` lifetime action asks for. Every version that becomes available is announced
to Event Grid as ``CertificateNewVersionCreated``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import web
from cryptography import x509

from emulators import kvcerts
from emulators.core import json_response
from emulators.keyvault.model import (
    EVENT_NEW,
    SELF_PENDING,
    UNKNOWN_PENDING,
    Certificate,
    CertVersion,
    KvError,
    PendingOp,
    Vault,
    bad,
    secret_value,
    section,
)
from emulators.keyvault.state import State
from emulators.keyvault.views import (
    bundle,
    find_cert,
    operation,
    pending_of,
    read_body,
    refuse_deleted,
    refuse_pending,
)
from emulators.kvcerts import CertError, PrivateKey


class Issuance:
    """Handlers and steps that bring new certificate versions into being."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.platform = state.wiring.platform

    async def create(self, vault: Vault, request: web.Request,
                     params: dict[str, str]) -> web.Response:
        name = params["name"]
        body = await read_body(request)
        refuse_deleted(vault, name)
        cert = vault.certificates.get(name.lower())
        raw = body.get("policy")
        if raw is None and cert is None:
            raise bad("The policy is required to create the first version of a certificate.")
        now = self.state.now()
        try:
            policy = cert.policy if raw is None and cert is not None else \
                kvcerts.normalize_policy(raw, int(cert.policy["attributes"]["created"])
                                         if cert else now, now)
            spec = kvcerts.x509_spec(policy)
        except CertError as exc:
            raise bad(str(exc)) from exc
        issuer = policy["issuer"]["name"]
        if issuer not in ("Self", "Unknown"):
            raise bad(f"The issuer '{issuer}' is not configured in this vault (only 'Self' and "
                      "'Unknown' are available in the local Key Vault emulator).")
        refuse_pending(cert)
        key = await self.key_for(cert, policy)
        cert = vault.certificates.get(name.lower())
        refuse_pending(cert)
        if cert is None:
            cert = Certificate(name=name, policy=policy)
            vault.certificates[name.lower()] = cert
        cert.policy = policy
        op = PendingOp(version=uuid.uuid4().hex, issuer=issuer, key=key,
                       csr=kvcerts.build_csr(key, spec),
                       enabled=section(body, "attributes").get("enabled") is not False,
                       tags=section(body, "tags"),
                       created=self.state.now(),
                       status_details=SELF_PENDING if issuer == "Self" else UNKNOWN_PENDING)
        cert.pending = op
        answer = operation(vault, cert, op)
        if issuer == "Self":
            leaf = kvcerts.self_sign(key, spec, self.platform.now())
            self.complete(vault, cert, op, leaf, ())
        location = (f"{vault.uri}certificates/{cert.name}/pending?api-version="
                    f"{request.query['api-version']}&request_id={op.request_id}")
        return json_response(answer, 202, {"Location": location, "Retry-After": "10"})

    async def key_for(self, cert: Certificate | None, policy: dict[str, Any]) -> PrivateKey:
        """The key of the new version: the current one if ``reuse_key``, else a fresh one."""
        props = policy["key_props"]
        if props["reuse_key"] and cert is not None and cert.versions:
            current = cert.versions[-1].key
            if kvcerts.describe_key(current)[:2] == (props["kty"].split("-")[0].upper(),
                                                     props["key_size"]):
                return current
        return await asyncio.to_thread(kvcerts.generate_key, props["kty"], props["key_size"],
                                       props.get("crv"))

    def complete(self, vault: Vault, cert: Certificate, op: PendingOp,
                 leaf: x509.Certificate, chain: tuple[x509.Certificate, ...]) -> CertVersion:
        """Turn the pending version into an available one and announce it."""
        now = self.state.now()
        content_type = cert.policy["secret_props"]["contentType"]
        version = CertVersion(
            version=op.version, cert=leaf, chain=chain, key=op.key, content_type=content_type,
            secret_value=secret_value(op.key if cert.policy["key_props"]["exportable"] else None,
                                      leaf, chain, content_type),
            enabled=op.enabled, tags=op.tags, created=now, updated=now)
        cert.versions.append(version)
        op.status, op.status_details = "completed", None
        op.target = f"{vault.uri}certificates/{cert.name}"
        self.state.publish(vault, cert, version, EVENT_NEW)
        return version

    async def import_certificate(self, vault: Vault, request: web.Request,
                                 params: dict[str, str]) -> web.Response:
        name = params["name"]
        body = await read_body(request)
        refuse_deleted(vault, name)
        value = body.get("value")
        if not isinstance(value, str) or not value.strip():
            raise bad("The property 'value' (the certificate to import) is required.")
        cert = vault.certificates.get(name.lower())
        raw = section(body, "policy")
        base: dict[str, Any] = raw or (cert.policy if cert else {})
        content_type = section(base, "secret_props").get("contentType") or kvcerts.PFX
        pwd = body.get("pwd")
        try:
            material = kvcerts.load_import(value, pwd if isinstance(pwd, str) else None,
                                           content_type)
            kty, size, crv = kvcerts.describe_key(material.key)
            key_in = section(base, "key_props")
            now = self.state.now()
            policy = kvcerts.normalize_policy(
                {**base,
                 "key_props": {"exportable": key_in.get("exportable", True), "kty": kty,
                               "key_size": size, "crv": crv,
                               "reuse_key": key_in.get("reuse_key", False)},
                 "secret_props": {"contentType": content_type},
                 "x509_props": kvcerts.describe(material.cert)},
                int(cert.policy["attributes"]["created"]) if cert else now, now)
        except CertError as exc:
            raise bad(str(exc)) from exc
        if cert is None:
            cert = Certificate(name=name, policy=policy)
            vault.certificates[name.lower()] = cert
        cert.policy = policy
        op = PendingOp(version=uuid.uuid4().hex, issuer=policy["issuer"]["name"],
                       key=material.key, csr=b"",
                       enabled=section(body, "attributes").get("enabled") is not False,
                       tags=section(body, "tags"), created=now)
        version = self.complete(vault, cert, op, material.cert, material.chain)
        return json_response(bundle(vault, cert, version))

    async def merge(self, vault: Vault, request: web.Request,
                    params: dict[str, str]) -> web.Response:
        cert = find_cert(vault, params["name"])
        body = await read_body(request)
        op = cert.pending
        if op is None or op.status != "inProgress":
            raise KvError(404, "PendingCertificateNotFound",
                          f"Pending certificate not found: {cert.name}")
        try:
            certs = kvcerts.load_x5c(body.get("x5c") or [])
        except CertError as exc:
            raise bad(str(exc)) from exc
        if not kvcerts.same_public_key(op.key, certs[0]):
            raise bad("Public key from x509 certificate and key of this instance doesn't "
                      "match")
        attributes = section(body, "attributes")
        if attributes.get("enabled") is not None:
            op.enabled = bool(attributes["enabled"])
        if isinstance(body.get("tags"), dict):
            op.tags = dict(body["tags"])
        version = self.complete(vault, cert, op, certs[0], tuple(certs[1:]))
        return json_response(bundle(vault, cert, version), 201)

    async def get_pending(self, vault: Vault, request: web.Request,
                          params: dict[str, str]) -> web.Response:
        cert, op = pending_of(vault, params["name"])
        headers = {"Retry-After": "10"} if op.status == "inProgress" else None
        return json_response(operation(vault, cert, op), headers=headers)

    async def cancel_pending(self, vault: Vault, request: web.Request,
                             params: dict[str, str]) -> web.Response:
        cert, op = pending_of(vault, params["name"])
        body = await read_body(request)
        if body.get("cancellation_requested") is not True:
            raise bad("The property 'cancellation_requested' must be true.")
        if op.status == "inProgress":
            op.cancellation_requested = True
            op.status, op.status_details = "cancelled", "Cancelled by user."
        return json_response(operation(vault, cert, op))

    async def delete_pending(self, vault: Vault, request: web.Request,
                             params: dict[str, str]) -> web.Response:
        cert, op = pending_of(vault, params["name"])
        answer = operation(vault, cert, op)
        cert.pending = None
        if not cert.versions:
            del vault.certificates[cert.name.lower()]
        return json_response(answer)

    async def renew(self, vault: Vault, cert: Certificate) -> None:
        """What Key Vault does for an AutoRenew action: a new version from the policy."""
        spec = kvcerts.x509_spec(cert.policy)
        key = await self.key_for(cert, cert.policy)
        if vault.certificates.get(cert.name.lower()) is not cert:
            return
        op = PendingOp(version=uuid.uuid4().hex, issuer="Self", key=key,
                       csr=kvcerts.build_csr(key, spec), enabled=True, tags={},
                       created=self.state.now())
        cert.pending = op
        self.complete(vault, cert, op, kvcerts.self_sign(key, spec, self.platform.now()), ())
