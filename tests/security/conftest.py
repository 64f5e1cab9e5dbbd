"""The end-to-end fixtures (``op``, ``world``) for the security tests, shared with tests/e2e."""

from tests.e2e.conftest import op, world

__all__ = ["op", "world"]
