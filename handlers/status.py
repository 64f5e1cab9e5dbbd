"""``GET /api/status``: what every cloud service in scope runs, as JSON or a small page.

Read-only: it lists services, vaults and run records and changes nothing. The JSON is
:meth:`shared.status.inventory.Inventory.to_json`, the same document ``certrotate status --json``
prints; ``?format=html`` renders it for people.
"""

from __future__ import annotations

import logging

import azure.functions as func

from handlers.responses import answers_errors, json_response
from handlers.runtime import engine
from shared.domain.errors import InvalidInput
from shared.status import status_html
from shared.status.gather import gather

bp = func.Blueprint()
log = logging.getLogger("certrotate.http")
FORMATS = ("json", "html")
# The page holds no script and loads nothing: forbid both, and keep it out of caches.
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    # A ?code= the page was opened with must not leave in a Referer header.
    "Referrer-Policy": "no-referrer",
}


def page_format(req: func.HttpRequest) -> str:
    """``json`` or ``html`` from ``?format=``; InvalidInput naming ``format`` otherwise."""
    wanted = str(req.params.get("format", "json")).strip().lower()
    if wanted not in FORMATS:
        raise InvalidInput("format", f"must be one of {', '.join(FORMATS)}")
    return wanted


def html_response(page: str) -> func.HttpResponse:
    return func.HttpResponse(
        page, status_code=200, mimetype="text/html", charset="utf-8", headers=HTML_HEADERS
    )


@bp.function_name("status")
@bp.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@answers_errors
def status(req: func.HttpRequest) -> func.HttpResponse:
    wanted = page_format(req)
    found = gather(engine())
    if wanted == "html":
        return html_response(status_html.render(found))
    return json_response(found.to_json(), 200)
