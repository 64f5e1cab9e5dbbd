"""Access tokens as Azure AD issues them, minted by the local managed-identity endpoint.

Tokens are real JWTs (HS256 with a per-stack secret) carrying the claims that the
services check: ``aud`` (the resource), ``iss`` (``https://sts.windows.net/{tenant}/``,
which Azurite's ``--oauth basic`` requires), ``tid``/``oid`` (Azurite copies them into a
user-delegation key), ``nbf``/``exp``. Every emulator validates signature, audience and
expiry and answers 401 otherwise, so a client that asks for the wrong scope fails here as
it would in Azure. Expiry uses the wall clock, not the emulated clock: the SDKs cache
tokens by wall-clock time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

TOKEN_LIFETIME_S = 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Principal:
    """Who a token was issued to (the managed identity)."""

    object_id: str
    client_id: str
    tenant_id: str


class InvalidToken(Exception):
    """Why a bearer token was refused; the text goes into the 401 body."""


@dataclass(frozen=True)
class TokenAuthority:
    secret: bytes
    tenant_id: str

    def mint(self, resource: str, principal: Principal, lifetime_s: int = TOKEN_LIFETIME_S) -> str:
        now = int(time.time())
        claims = {
            "aud": resource.rstrip("/"),
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now,
            "nbf": now - 60,
            "exp": now + lifetime_s,
            "oid": principal.object_id,
            "tid": principal.tenant_id,
            "appid": principal.client_id,
            "sub": principal.object_id,
            "uti": uuid.uuid4().hex,
            "ver": "1.0",
        }
        head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(claims).encode())
        sig = hmac.new(self.secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(sig)}"

    def validate(self, token: str, audiences: tuple[str, ...]) -> dict[str, Any]:
        """Return the claims, or raise InvalidToken saying what is wrong."""
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("malformed token")
        expected = hmac.new(self.secret, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256)
        try:
            valid_sig = hmac.compare_digest(_unb64(parts[2]), expected.digest())
            claims: dict[str, Any] = json.loads(_unb64(parts[1]))
        except ValueError as exc:
            raise InvalidToken("malformed token") from exc
        if not valid_sig:
            raise InvalidToken("signature verification failed")
        now = time.time()
        if claims.get("exp", 0) <= now:
            raise InvalidToken("token is expired")
        if claims.get("nbf", 0) > now + 300:
            raise InvalidToken("token is not yet valid")
        accepted = {a.rstrip("/") for a in audiences}
        if claims.get("aud") not in accepted:
            raise InvalidToken(
                f"invalid audience '{claims.get('aud')}', expected one of {sorted(accepted)}"
            )
        return claims
