"""Access tokens as Azure AD issues them, minted by the local managed-identity endpoint.

Tokens are real JWTs (HS256 with a per-stack secret, encoded and verified by PyJWT)
carrying the claims that the services check: ``aud`` (the resource), ``iss``
(``https://sts.windows.net/{tenant}/``, which Azurite's ``--oauth basic`` requires),
``tid``/``oid`` (Azurite copies them into a user-delegation key), ``nbf``/``exp``. Every
emulator validates signature, expiry, not-before and audience, in that order, and answers
401 otherwise, so a client that asks for the wrong scope fails here as it would in Azure.
Expiry uses the wall clock, not the emulated clock: the SDKs cache tokens by wall-clock
time.

Each refusal is its own :class:`InvalidToken` subclass carrying what a caller words its
401 with (Key Vault names the audience it found, or the token's encoded header); ``str()``
of any of them is the reason ARM and Event Grid put into their 401 messages.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

TOKEN_LIFETIME_S = 3600
# How far in the future a token's ``nbf`` may lie (clock skew between issuer and service).
# PyJWT's leeway would widen ``exp`` by as much, so this one check is ours.
NOT_BEFORE_SKEW_S = 300
ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who a token was issued to (the managed identity)."""

    object_id: str
    client_id: str
    tenant_id: str


class InvalidToken(Exception):
    """Why a bearer token was refused; ``str()`` is the reason that goes into a 401 body."""


class MissingToken(InvalidToken):
    def __init__(self) -> None:
        super().__init__("missing bearer token")


class MalformedToken(InvalidToken):
    def __init__(self) -> None:
        super().__init__("malformed token")


class BadSignature(InvalidToken):
    """Not signed with this stack's secret; ``encoded_header`` is the token's first part,
    which Key Vault quotes back."""

    def __init__(self, encoded_header: str) -> None:
        super().__init__("signature verification failed")
        self.encoded_header = encoded_header


class ExpiredToken(InvalidToken):
    def __init__(self) -> None:
        super().__init__("token is expired")


class NotYetValid(InvalidToken):
    def __init__(self) -> None:
        super().__init__("token is not yet valid")


class WrongAudience(InvalidToken):
    """Issued for another resource; ``found`` is the token's ``aud`` (None when absent)."""

    def __init__(self, found: Any, accepted: frozenset[str]) -> None:
        super().__init__(f"invalid audience '{found}', expected one of {sorted(accepted)}")
        self.found = found


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
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def validate(self, token: str, audiences: tuple[str, ...]) -> dict[str, Any]:
        """Return the claims.

        Raises:
            InvalidToken: the subclass saying what is wrong, checked in Azure AD's order:
                signature, expiry, not-before, audience.
        """
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self.secret, algorithms=[ALGORITHM],
                # Audience is matched below: a v1 token's single ``aud`` string, exactly.
                options={"require": ["exp"], "verify_aud": False, "verify_nbf": False,
                         "verify_iat": False},
            )
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError) as exc:
            raise BadSignature(token.split(".", 1)[0]) from exc
        except (jwt.ExpiredSignatureError, jwt.MissingRequiredClaimError) as exc:
            raise ExpiredToken from exc
        except jwt.InvalidTokenError as exc:
            raise MalformedToken from exc
        if claims.get("nbf", 0) > time.time() + NOT_BEFORE_SKEW_S:
            raise NotYetValid
        accepted = frozenset(a.rstrip("/") for a in audiences)
        if claims.get("aud") not in accepted:
            raise WrongAudience(claims.get("aud"), accepted)
        return claims
