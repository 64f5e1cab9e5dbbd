"""Cloud service ARM ids: validated once, split into subscription, group and name."""

from __future__ import annotations

import re

from shared.domain.errors import InvalidInput

_SERVICE_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.Compute/cloudServices/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


def split_service_id(service_id: str) -> tuple[str, str, str]:
    match = _SERVICE_ID.match(service_id.strip().rstrip("/"))
    if match is None:
        raise InvalidInput(
            "cloudServices",
            f"{service_id!r} is not a cloud service id "
            "(/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/cloudServices/{name})",
        )
    return match["sub"], match["rg"], match["name"]
