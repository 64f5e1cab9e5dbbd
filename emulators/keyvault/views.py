"""How Key Vault writes what it stores: certificate bundles and list items, pending
operations, secrets, deleted certificates and pages, plus the lookups every handler starts
with (404 in Key Vault's words when nothing is there). Pure functions of the stored objects.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from emulators import kvcerts
from emulators.core import json_response
from emulators.keyvault.model import (
    MAX_RESULTS,
    Certificate,
    CertVersion,
    DeletedCertificate,
    KvError,
    PendingOp,
    Vault,
    bad,
    decode_skip,
    not_found,
)


def version_attributes(vault: Vault, v: CertVersion) -> dict[str, Any]:
    return {"enabled": v.enabled, "nbf": kvcerts.unix(v.nbf), "exp": kvcerts.unix(v.exp),
            "created": v.created, "updated": v.updated, **vault.recovery()}


def pending_attributes(vault: Vault, op: PendingOp) -> dict[str, Any]:
    return {"enabled": False, "created": op.created, "updated": op.created,
            **vault.recovery()}


def ids(vault: Vault, name: str, version: str) -> dict[str, str]:
    return {"id": f"{vault.uri}certificates/{name}/{version}",
            "kid": f"{vault.uri}keys/{name}/{version}",
            "sid": f"{vault.uri}secrets/{name}/{version}"}


def policy_json(vault: Vault, cert: Certificate) -> dict[str, Any]:
    return {"id": f"{vault.uri}certificates/{cert.name}/policy", **cert.policy}


def bundle(vault: Vault, cert: Certificate, v: CertVersion | None) -> dict[str, Any]:
    """A CertificateBundle; ``v`` None means the not yet issued pending version."""
    if v is None:
        assert cert.pending is not None
        out: dict[str, Any] = {**ids(vault, cert.name, cert.pending.version),
                               "attributes": pending_attributes(vault, cert.pending)}
        tags = cert.pending.tags
    else:
        out = {**ids(vault, cert.name, v.version), "x5t": kvcerts.x5t(v.cert),
               "cer": kvcerts.b64(kvcerts.der(v.cert)),
               "attributes": version_attributes(vault, v)}
        tags = v.tags
    if tags:
        out["tags"] = tags
    out["policy"] = policy_json(vault, cert)
    if cert.pending is not None and cert.pending.status == "inProgress":
        out["pending"] = {"id": f"{vault.uri}certificates/{cert.name}/pending"}
    return out


def certificate_item(vault: Vault, cert: Certificate, v: CertVersion | None,
                     versioned: bool) -> dict[str, Any]:
    """A CertificateItem for list answers: as recorded, its attributes carry no
    ``recoveryLevel``/``recoverableDays`` and it ends with ``subject`` (``""`` in every
    recorded list answer, whatever the certificate's subject)."""
    op = cert.pending
    version = v.version if v else (op.version if op else "")
    attributes = version_attributes(vault, v) if v else \
        pending_attributes(vault, op) if op else {}
    out: dict[str, Any] = {
        "id": f"{vault.uri}certificates/{cert.name}" + (f"/{version}" if versioned else ""),
    }
    if v is not None:
        out["x5t"] = kvcerts.x5t(v.cert)
    out["attributes"] = {k: val for k, val in attributes.items()
                         if k not in ("recoveryLevel", "recoverableDays")}
    tags = v.tags if v else (op.tags if op else {})
    if tags:
        out["tags"] = tags
    out["subject"] = ""
    return out


def operation(vault: Vault, cert: Certificate, op: PendingOp) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f"{vault.uri}certificates/{cert.name}/pending",
                           "issuer": {"name": op.issuer}, "csr": kvcerts.b64(op.csr),
                           "cancellation_requested": op.cancellation_requested,
                           "status": op.status}
    if op.status_details:
        out["status_details"] = op.status_details
    if op.target:
        out["target"] = op.target
    out["request_id"] = op.request_id
    return out


def secret_bundle(vault: Vault, cert: Certificate, v: CertVersion) -> dict[str, Any]:
    out: dict[str, Any] = {"value": v.secret_value, "contentType": v.content_type,
                           "id": f"{vault.uri}secrets/{cert.name}/{v.version}",
                           "managed": True, "attributes": version_attributes(vault, v),
                           "kid": f"{vault.uri}keys/{cert.name}/{v.version}"}
    if v.tags:
        out["tags"] = v.tags
    return out


def secret_item(vault: Vault, cert: Certificate, v: CertVersion,
                versioned: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"{vault.uri}secrets/{cert.name}" + (f"/{v.version}" if versioned else ""),
        "attributes": version_attributes(vault, v), "contentType": v.content_type,
        "managed": True}
    if v.tags:
        out["tags"] = v.tags
    return out


def deleted_json(vault: Vault, item: DeletedCertificate, full: bool
                  ) -> dict[str, Any]:
    cert = item.cert
    current = cert.versions[-1] if cert.versions else None
    base = bundle(vault, cert, current) if full else \
        certificate_item(vault, cert, current, versioned=False)
    return {"recoveryId": f"{vault.uri}deletedcertificates/{cert.name}",
            "deletedDate": item.deleted, "scheduledPurgeDate": item.purge, **base}


def page(vault: Vault, request: web.Request, items: list[dict[str, Any]]
          ) -> web.Response:
    """One page with Key Vault's ``nextLink`` (absolute, ``$skiptoken`` + ``maxresults``)."""
    raw = request.query.get("maxresults")
    try:
        size = MAX_RESULTS if raw in (None, "") else int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_RESULTS:
        raise bad(f"The value of parameter 'maxresults' must be between 1 and "
                  f"{MAX_RESULTS}.")
    start = decode_skip(request.query.get("$skiptoken", ""))
    body: dict[str, Any] = {"value": items[start:start + size], "nextLink": None}
    # A full page links to the next one even when nothing follows (the last page is
    # then empty), as recorded.
    if start + size <= len(items):
        token = base64.urlsafe_b64encode(
            json.dumps({"NextMarker": start + size}).encode()).rstrip(b"=").decode()
        body["nextLink"] = (f"{vault.uri}{request.path.lstrip('/')}?api-version="
                            f"{request.query['api-version']}&$skiptoken={token}"
                            f"&maxresults={size}")
    return json_response(body)


async def read_body(request: web.Request) -> dict[str, Any]:
    text = await request.text()
    try:
        body = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise bad(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.")
    return body


def find_cert(vault: Vault, name: str) -> Certificate:
    cert = vault.certificates.get(name.lower())
    if cert is None:
        raise not_found("certificate", name)
    return cert


def find_version(cert: Certificate, version: str | None) -> CertVersion | None:
    """A version by id, or the current one for ''/None (None if only pending exists)."""
    if not version:
        if cert.versions:
            return cert.versions[-1]
        if cert.pending is not None and cert.pending.status == "inProgress":
            return None
        raise not_found("certificate", cert.name)
    found = cert.version(version)
    if found is None:
        raise not_found("certificate", f"{cert.name}/{version}")
    return found


def pending_of(vault: Vault, name: str) -> tuple[Certificate, PendingOp]:
    cert = vault.certificates.get(name.lower())
    if cert is None or cert.pending is None:
        raise KvError(404, "PendingCertificateNotFound",
                      f"Pending certificate not found: {name}")
    return cert, cert.pending


def deleted_of(vault: Vault, name: str) -> DeletedCertificate:
    item = vault.deleted.get(name.lower())
    if item is None:
        raise KvError(404, "CertificateNotFound", f"Deleted Certificate not found: {name}")
    return item


def refuse_deleted(vault: Vault, name: str) -> None:
    if name.lower() in vault.deleted:
        raise KvError(409, "Conflict",
                      f"Certificate {name} is currently in a deleted but recoverable state, "
                      "and its name cannot be reused; in this state, the certificate can "
                      "only be recovered or purged.")


def refuse_pending(cert: Certificate | None) -> None:
    if cert is not None and cert.pending is not None and cert.pending.status == "inProgress":
        raise KvError(409, "Conflict",
                      f"There is a pending operation for certificate {cert.name}. Merge, "
                      "cancel or delete it before requesting a new version.")

