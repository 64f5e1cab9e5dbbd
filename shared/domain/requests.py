"""What an operator may ask of the engine, validated the same way whoever asks.

The HTTP API (JSON body) and the ``certrotate`` CLI (arguments) both end in these checks,
so a request the one refuses the other refuses too, with the same field names and
messages. Nothing is read from Azure before a request is valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.domain.compute_ids import split_service_id
from shared.domain.errors import InvalidInput
from shared.domain.events import CERTIFICATE_NAME, parse_vault_id


@dataclass(frozen=True)
class RotationRequest:
    vault_id: str
    certificate: str
    cloud_services: tuple[str, ...]  # empty: every service in scope that uses it
    dry_run: bool
    force: bool = False  # write even a version that backs off after failing (shared.domain.backoff)

    @classmethod
    def from_fields(
        cls, vault: Any, certificate: Any, cloud_services: Any, dry_run: Any, force: Any = False
    ) -> RotationRequest:
        """Check each field as received; raise InvalidInput naming the first bad one."""
        vault_id, _ = parse_vault_id(vault, "vault")
        if not isinstance(certificate, str) or not CERTIFICATE_NAME.fullmatch(certificate):
            raise InvalidInput(
                "certificate",
                "must be a Key Vault certificate name (1-127 letters, digits and hyphens)",
            )
        if not isinstance(cloud_services, (list, tuple)) or not all(
            isinstance(s, str) for s in cloud_services
        ):
            raise InvalidInput("cloudServices", "must be a list of cloud service ARM ids")
        for service in cloud_services:
            split_service_id(service)
        if not isinstance(dry_run, bool):
            raise InvalidInput("dryRun", "must be true or false")
        if not isinstance(force, bool):
            raise InvalidInput("force", "must be true or false")
        return cls(vault_id, certificate, tuple(cloud_services), dry_run, force)
