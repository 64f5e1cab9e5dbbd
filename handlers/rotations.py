"""Manual rotation over HTTP: ``POST /api/rotations``, ``GET /api/rotations/{id}`` and
the run history ``GET /api/rotations`` (JSON, or ``?format=html`` pages for people).

The same rotation as an event, with the operator choosing vault, certificate and
optionally the services. A real run is checked here (unknown vault, certificate or
service: 404), queued on ``cert-rotation-services`` and answered 202 with its run id at
once; queue workers on any instance send the PUTs and follow looks the updates, so no HTTP
request is held for PUTs sent one after another (Azure ends one after ~230 s). A dry run
is answered with the plan. Without a queue endpoint (not in Azure) a run is done in the
request, following its updates for up to ``HTTP_WAIT_SECONDS``.

Input is validated completely before anything is read from Azure, so a bad request
changes nothing; every error answers JSON naming the field: 413 for a body over
``MAX_BODY``, 400 for anything malformed (including nesting deeper than ``MAX_DEPTH`` and
a key given twice), 404 for a vault outside ``ROTATION_SUBSCRIPTIONS``. Statuses come from
the one table in :mod:`handlers.responses`, as for every HTTP function.

Reads never write: ``GET /api/rotations/{id}`` answers the run record as stored. A run's
updates still running are finished by the follow pipeline (``rotation_follow`` looks, the
``follow_updates`` sweep), not by whoever reads the record.
"""

from __future__ import annotations

import logging
from collections import Counter
from urllib.parse import urlencode

import azure.functions as func

from handlers.responses import answers_errors, json_response
from handlers.runtime import engine
from handlers.status import html_response, page_format
from shared.domain.compute_ids import split_service_id
from shared.domain.errors import InvalidInput, NotFound
from shared.domain.json_body import load_object
from shared.domain.records import Trigger
from shared.domain.requests import RotationRequest
from shared.domain.runs import QUEUED_MESSAGE, Run, describe
from shared.status import run_html
from shared.status.history import MAX_SCAN, recent_records

bp = func.Blueprint()
log = logging.getLogger("certrotate.http")
MAX_BODY = 64 * 1024  # a request with 200 service ids is ~30 KiB
MAX_DEPTH = 4  # the request itself needs 2 (an object holding a list)
RUN_ID_CHARS = set("0123456789abcdefTZ-")
# Azure ends an HTTP request after ~230 s; an update still running after this long is
# answered 202 "updating" and goes on in Azure (its record keeps the operation's token).
HTTP_WAIT_SECONDS = 60.0
PAGE_SIZE, MAX_PAGE = 20, 100  # runs per history page: default, most


def _run_id(text: str, field: str) -> str:
    if not text or len(text) > 64 or not set(text) <= RUN_ID_CHARS:
        raise InvalidInput(field, "not a rotation run id")
    return text


def parse_request(raw: bytes) -> RotationRequest:
    """The request, checked field by field, or InvalidInput naming the first bad one."""
    body = load_object(raw, max_bytes=MAX_BODY, max_depth=MAX_DEPTH)
    unknown = set(body) - {"vault", "certificate", "cloudServices", "dryRun", "force"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "unknown field")
    return RotationRequest.from_fields(
        body.get("vault"),
        body.get("certificate"),
        body.get("cloudServices", []),
        body.get("dryRun", False),
        body.get("force", False),
    )


@bp.function_name("rotations")
@bp.route(route="rotations", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@answers_errors
def start_rotation(req: func.HttpRequest) -> func.HttpResponse:
    request = parse_request(req.get_body())
    if not engine().settings.in_scope(request.vault_id):
        raise NotFound("the vault is in a subscription not in ROTATION_SUBSCRIPTIONS", "vault")
    if not request.dry_run and engine().queues is not None:
        return _queued(engine().queue_rotation(
            request.vault_id, request.certificate, request.cloud_services, request.force
        ))
    run = engine().rotate(
        request.vault_id,
        request.certificate,
        Trigger("manual"),
        only=request.cloud_services,
        dry_run=request.dry_run,
        wait_seconds=HTTP_WAIT_SECONDS,
        force=request.force,
    )
    if request.dry_run:
        return json_response(
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
    # 200: the run has ended for every service; 202: an update still runs (or hit a
    # transient failure and waits for the next attempt): follow it at Location.
    finished = run.status == "done"
    return json_response(
        {
            "id": run.id,
            "status": run.status,
            "finished": finished,
            "outcomes": dict(sorted(Counter(r.outcome for r in run.results).items())),
            "services": [
                {"cloudService": r.service_id, "outcome": r.outcome, "message": r.message}
                for r in run.results
            ],
        },
        200 if finished else 202,
        {"Location": f"/api/rotations/{run.id}"},
    )


def _queued(runs: list[Run]) -> func.HttpResponse:
    """202 for a rotation queued as ``runs`` (one per SERVICES_PER_MESSAGE services):
    follow the first at Location, or each by its id."""
    return json_response(
        {
            "id": runs[0].id,
            "runs": [run.id for run in runs],
            "status": "queued",
            "finished": False,
            "outcomes": {"queued": sum(len(run.waiting) for run in runs)},
            "services": [
                {"cloudService": service, "outcome": "queued", "message": QUEUED_MESSAGE,
                 "run": run.id}
                for run in runs for service in run.waiting
            ],
        },
        202,
        {"Location": f"/api/rotations/{runs[0].id}"},
    )


@bp.function_name("rotation_status")
@bp.route(route="rotations/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@answers_errors
def rotation_status(req: func.HttpRequest) -> func.HttpResponse:
    """The run record as stored (JSON or a page): read-only, whatever its status."""
    run_id = _run_id(req.route_params.get("id", ""), "id")
    wanted = page_format(req)
    record = engine().storage.load_record(run_id)
    if wanted == "html":
        return html_response(run_html.render_run(record))
    return json_response(record.to_json(), 200)


@bp.function_name("rotation_history")
@bp.route(route="rotations", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@answers_errors
def rotation_history(req: func.HttpRequest) -> func.HttpResponse:
    """Runs newest first, ``limit`` at a time (``before``: the last id of the previous page),
    only those touching ``cloudService`` if given. Read-only."""
    wanted = page_format(req)
    text = req.params.get("limit", str(PAGE_SIZE))
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidInput("limit", f"must be a whole number from 1 to {MAX_PAGE}")
    limit = int(text)
    before = req.params.get("before") or None
    if before is not None:
        _run_id(before, "before")
    service = req.params.get("cloudService") or None
    if service is not None:
        try:
            split_service_id(service)
        except InvalidInput as exc:
            raise InvalidInput("cloudService", exc.detail) from None
    records = list(
        recent_records(
            engine().storage, limit=limit + 1, service_id=service, scan=MAX_SCAN, before=before
        )
    )
    page, more = records[:limit], len(records) > limit
    after = {"limit": str(limit), "before": page[-1].id} if more else None
    if service is not None and after is not None:
        after["cloudService"] = service
    if wanted == "html":
        next_link = urlencode({**after, "format": "html"}) if after else None
        return html_response(run_html.render_history(page, next_link))
    return json_response(
        {
            "runs": [r.to_json() for r in page],
            "next": f"/api/rotations?{urlencode(after)}" if after else None,
        },
        200,
    )
