"""Managed identity endpoint, App Service / Functions flavour.

Theory of operation: with ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` in the
environment, azure-identity's ``ManagedIdentityCredential`` (and so
``DefaultAzureCredential``) sends ``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01
&resource=R[&client_id=C]`` with ``X-IDENTITY-HEADER``. We answer like App Service:
``{access_token, expires_on, resource, token_type, client_id}``. Only resources that
Azure AD knows for this product are issued (a typo in a scope fails here as in Azure),
and a ``client_id`` must name the stack's identity.
"""

from __future__ import annotations

import time

from aiohttp import web

from emulators.core import Platform, json_response
from emulators.tokens import TOKEN_LIFETIME_S, Principal

KNOWN_RESOURCES = (
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://vault.azure.net",
    "https://storage.azure.com",
    "https://eventgrid.azure.net",
)


def build(platform: Platform, header_secret: str, principal: Principal) -> web.Application:
    app = platform.make_app("identity")

    async def token(request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != header_secret:
            return json_response(
                {"statusCode": 401, "message": "X-IDENTITY-HEADER is missing or wrong"}, 401
            )
        if request.query.get("api-version") != "2019-08-01":
            return json_response({"statusCode": 400, "message": "unsupported api-version"}, 400)
        resource = request.query.get("resource", "").rstrip("/")
        if resource not in KNOWN_RESOURCES:
            return json_response(
                {
                    "statusCode": 400,
                    "message": f"AADSTS500011: The resource principal named {resource} was "
                    "not found in the tenant.",
                },
                400,
            )
        for selector in ("client_id", "object_id", "principal_id"):
            wanted = request.query.get(selector)
            if wanted and wanted not in (principal.client_id, principal.object_id):
                return json_response(
                    {"statusCode": 400, "message": f"Identity not found ({selector}={wanted})"},
                    400,
                )
        return json_response(
            {
                "access_token": platform.tokens.mint(resource, principal),
                "expires_on": str(int(time.time()) + TOKEN_LIFETIME_S),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": principal.client_id,
            }
        )

    app.router.add_get("/msi/token", token)
    return app
