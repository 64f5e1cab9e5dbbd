"""Translate azure-core exceptions into the product's error set, in one place."""

from __future__ import annotations

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.domain.errors import NotFound, PlatformRejected, RotationError, TransientError

TRANSIENT_STATUS = {408, 409, 429, 500, 502, 503, 504}


def error_code(exc: HttpResponseError) -> tuple[str, str]:
    """(code, message) from an ARM/Key Vault error body, falling back to the status."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or (str(exc.status_code) if exc.status_code else "Error")
    message = getattr(error, "message", None) or exc.message or str(exc)
    return str(code), str(message).splitlines()[0]


def credential_failure(message: str) -> str:
    """The one line of a credential chain's failure that matters, for a one-line error.

    ``DefaultAzureCredential`` lists every credential it tried, most of them merely
    unavailable on a Functions host; the managed identity's line says what went wrong.
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    managed = next((line for line in lines if line.startswith("ManagedIdentityCredential:")), None)
    return managed or (lines[0] if lines else "no reason given")


def translate(exc: Exception, what: str) -> RotationError:
    """The product error for an SDK failure while doing ``what``."""
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return TransientError(f"{what}: connection failed ({type(exc).__name__})")
    if isinstance(exc, ResourceNotFoundError):
        return NotFound(f"{what}: not found")
    if isinstance(exc, ClientAuthenticationError) and exc.status_code is None:
        return TransientError(
            f"{what}: could not get an access token for the app's identity "
            f"({credential_failure(str(exc.message))})"
        )
    if isinstance(exc, HttpResponseError):
        code, message = error_code(exc)
        if exc.status_code in TRANSIENT_STATUS:
            return TransientError(f"{what}: {exc.status_code} {code}: {message}")
        return PlatformRejected(code, f"{what}: {message}")
    return TransientError(f"{what}: {type(exc).__name__}")
