"""The product's small error set.

Adapters translate SDK exceptions into these at the boundary, so the engine and the
handlers reason about *what to do next* (ignore, refuse, retry) and never about HTTP
status codes. Every message names what was wrong and, where it helps, what to do.
"""

from __future__ import annotations


class RotationError(Exception):
    """Root of every error the product raises on purpose."""


class InvalidInput(RotationError):
    """A request or event is malformed. ``field`` names the offending part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


class IgnoredEvent(RotationError):
    """An event that is well-formed but not ours to act on (other type, other scope)."""


class NotFound(RotationError):
    """A vault, certificate or cloud service that the request names does not exist.
    ``field`` names the part of the request that named it, when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConfigError(RotationError):
    """The app's settings are missing or inconsistent; fixed by an operator, not a retry."""


class PlanRefused(RotationError):
    """The plan would be rejected by the platform (or is unsafe); nothing was written."""


class PreconditionFailed(RotationError):
    """The world is not as the rotation requires (e.g. the package blob changed)."""


class PlatformRejected(RotationError):
    """Azure refused or failed the update. ``code`` is the platform's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.detail = message


class VaultAccessDenied(PlatformRejected):
    """Key Vault refused the app in its permission model (the message names the vault, the
    missing permission and the model). Retrying cannot help until someone grants it."""


class TransientError(RotationError):
    """Worth retrying later: throttling, 5xx, a concurrent operation, a held lease."""


class Waiting(TransientError):
    """Something already in progress on the service must end first (another invocation's
    lease, an update still running): worth waiting for, never a reason to give up soon."""


class Busy(Waiting):
    """Another invocation holds the service's lease: it is already converging or following it."""


class BackingOff(RotationError):
    """The version to write failed before and waits out its backoff (shared.domain.backoff)."""


class Unconfirmed(TransientError):
    """A write whose answer was lost, timed out or was a server error: it may have been
    applied (Azure answers a cloud-service PUT 500 after ~44 s while the update runs).

    Never repeated blindly: whoever holds the journal reads the service to tell.
    """
