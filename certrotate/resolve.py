"""What the operator asks, resolved among the services in scope before anything is done.

Names may be short (:mod:`certrotate.names`); every form is checked before anything is
read, and what is missing is said plainly: the vault, the certificate or the service, as
the operator spelled it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from certrotate import names
from certrotate.exits import BadInput
from certrotate.output import short_name
from shared.domain.errors import NotFound
from shared.domain.model import CloudServiceSnapshot, SecretUrl
from shared.domain.records import Trigger
from shared.domain.requests import RotationRequest
from shared.domain.runs import Run
from shared.rotation.engine import Engine

# A well-formed vault id that checks every other field's form before a short name is resolved.
_FORM_ONLY_VAULT = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.KeyVault/vaults/form-only"
)


def check_forms(args: argparse.Namespace) -> None:
    """Refuse a name that cannot be one before anything is read (exit 2)."""
    given = [("--vault", "vault", args.vault)] if getattr(args, "vault", None) else []
    given += [("--cloud-service", "cloud service", text) for text in services_given(args)]
    for option, kind, text in given:
        try:
            names.check_form(kind, text)
        except ValueError as exc:
            raise BadInput(f"{option}: {exc}") from None


def services_given(args: argparse.Namespace) -> list[str]:
    given = getattr(args, "cloud_service", None)
    return [] if not given else [given] if isinstance(given, str) else list(given)


def resolved_request(engine: Engine, args: argparse.Namespace, dry_run: bool) -> RotationRequest:
    """The request with names resolved among the services in scope, and what is missing
    said plainly (vault, certificate or service, as the operator spelled it)."""
    # Every field's form is checked before anything is read (a stand-in for short names).
    RotationRequest.from_fields(
        args.vault if names.is_arm_id(args.vault) else _FORM_ONLY_VAULT,
        args.certificate,
        [t for t in services_given(args) if names.is_arm_id(t)],
        dry_run,
    )
    services = list(engine.compute.list_services())
    vault_id = names.vault_id(args.vault, services)
    given = services_given(args)
    only = [names.service_id(text, services) for text in given]
    request = RotationRequest.from_fields(vault_id, args.certificate, only, dry_run)
    explain_missing(engine, request, services, dict(zip(only, given, strict=True)))
    return request  # the engine refuses a vault outside ROTATION_SUBSCRIPTIONS


def explain_missing(
    engine: Engine,
    request: RotationRequest,
    services: Sequence[CloudServiceSnapshot],
    given: Mapping[str, str],
) -> None:
    """NotFound naming the vault, certificate or service that is missing, if one is."""
    vault, certificate = request.vault_id, request.certificate
    known = {s.id.lower() for s in services}
    for service_id in request.cloud_services:
        if service_id.lower() not in known:
            text = given.get(service_id, service_id)
            raise NotFound(f"cloud service '{text}' not found in scope")
    urls = sorted(
        {
            parsed.vault_url
            for s in services
            for g in s.secrets
            if g.source_vault_id.lower() == vault.lower()
            for u in g.certificate_urls
            if (parsed := SecretUrl.parse(u)) is not None
        }
    )
    if not urls:
        raise NotFound(f"vault '{vault}' not found: no cloud service in scope uses it")
    users = [s for s in services if s.references(vault, certificate)]
    if not users:
        listed = {n.lower() for n in engine.keyvault.certificate_names(urls[0])}
        if certificate.lower() not in listed:
            raise NotFound(f"certificate '{certificate}' not found in vault {short_name(vault)}")
        raise NotFound(
            f"certificate '{certificate}' of vault {short_name(vault)} is used by no cloud service "
            "in scope"
        )
    using = {s.id.lower() for s in users}
    for service_id in request.cloud_services:
        if service_id.lower() not in using:
            raise NotFound(
                f"cloud service '{given.get(service_id, service_id)}' does not use certificate "
                f"'{certificate}' of vault {short_name(vault)}"
            )


def dry_run_of(engine: Engine, request: RotationRequest) -> Run:
    return engine.rotate(
        request.vault_id,
        request.certificate,
        Trigger("manual"),
        only=request.cloud_services,
        dry_run=True,
    )


def checked_run_id(text: str) -> str:
    if not text or len(text) > 64 or not set(text) <= set("0123456789abcdefTZ-"):
        raise BadInput(f"RUN_ID: '{text}' is not a rotation run id")
    return text
