"""Manual rotation over HTTP: ``POST /api/rotations`` and ``GET /api/rotations/{id}``.

The same engine call as an event, with the operator choosing vault, certificate and
optionally the services. Input is validated completely before anything is read from
Azure, so a bad request changes nothing; every error answers JSON naming the field.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func

from handlers.runtime import engine
from shared.compute_ids import split_service_id
from shared.engine import Trigger, describe
from shared.errors import ConfigError, InvalidInput, NotFound, RotationError, TransientError
from shared.events import CERTIFICATE_NAME, parse_vault_id

bp = func.Blueprint()
log = logging.getLogger("certrotate.http")
MAX_BODY = 64 * 1024
RUN_ID_CHARS = set("0123456789abcdefTZ-")
# Azure ends an HTTP request after ~230 s; an update still running after this long is
# answered 202 "updating" and goes on in Azure (its record keeps the operation's token).
HTTP_WAIT_SECONDS = 60.0


def _json(body: Any, status: int, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body, indent=1), status_code=status, headers=headers, mimetype="application/json"
    )


def _error(status: int, message: str, field: str | None = None) -> func.HttpResponse:
    error: dict[str, Any] = {"message": message}
    if field:
        error["field"] = field
    return _json({"error": error}, status)


def parse_request(raw: bytes) -> tuple[str, str, tuple[str, ...], bool]:
    """(vault id, certificate, cloud service ids, dry run) or InvalidInput."""
    if len(raw) > MAX_BODY:
        raise InvalidInput("body", f"larger than {MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("body", f"not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise InvalidInput("body", "must be a JSON object")
    unknown = set(body) - {"vault", "certificate", "cloudServices", "dryRun"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "unknown field")
    vault_id, _ = parse_vault_id(body.get("vault"), "vault")
    certificate = body.get("certificate")
    if not isinstance(certificate, str) or not CERTIFICATE_NAME.fullmatch(certificate):
        raise InvalidInput(
            "certificate",
            "must be a Key Vault certificate name (1-127 letters, digits and hyphens)",
        )
    services = body.get("cloudServices", [])
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise InvalidInput("cloudServices", "must be a list of cloud service ARM ids")
    for service in services:
        split_service_id(service)
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise InvalidInput("dryRun", "must be true or false")
    return vault_id, certificate, tuple(services), dry_run


@bp.function_name("rotations")
@bp.route(route="rotations", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def start_rotation(req: func.HttpRequest) -> func.HttpResponse:
    try:
        vault_id, certificate, services, dry_run = parse_request(req.get_body())
        run = engine().rotate(
            vault_id,
            certificate,
            Trigger("manual"),
            only=services,
            dry_run=dry_run,
            wait_seconds=HTTP_WAIT_SECONDS,
        )
    except InvalidInput as exc:
        return _error(400, exc.detail, exc.field)
    except NotFound as exc:
        return _error(404, str(exc))
    except TransientError as exc:
        return _json({"error": {"message": str(exc)}}, 503, {"Retry-After": "30"})
    except ConfigError as exc:
        log.error("configuration: %s", exc)
        return _error(500, f"the app is misconfigured: {exc}")
    if dry_run:
        return _json(
            {
                "dryRun": True,
                "services": [
                    {
                        "cloudService": r.service_id,
                        "outcome": r.outcome,
                        "message": r.message,
                        **({"plan": describe(r.plan)} if r.plan else {}),
                    }
                    for r in run.results
                ],
            },
            200,
        )
    location = f"/api/rotations/{run.id}"
    return _json(
        {
            "id": run.id,
            "status": run.status,
            "services": [{"cloudService": r.service_id, "outcome": r.outcome} for r in run.results],
        },
        202,
        {"Location": location},
    )


@bp.function_name("rotation_status")
@bp.route(route="rotations/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def rotation_status(req: func.HttpRequest) -> func.HttpResponse:
    run_id = req.route_params.get("id", "")
    if not run_id or len(run_id) > 64 or not set(run_id) <= RUN_ID_CHARS:
        return _error(400, "not a rotation run id", "id")
    try:
        return _json(engine().storage.load_record(run_id), 200)
    except NotFound as exc:
        return _error(404, str(exc))
    except RotationError as exc:
        return _error(503, str(exc))
