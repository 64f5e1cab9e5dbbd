"""SDK errors that never reached a service, translated into one clear line (table-driven)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.adapters.arm_errors import credential_failure, translate
from shared.domain.errors import TransientError

CHAIN = """DefaultAzureCredential failed to retrieve a token from the included credentials.
Attempted credentials:
\tEnvironmentCredential: EnvironmentCredential authentication unavailable.
\tManagedIdentityCredential: App Service managed identity configuration not found in \
environment. Token request error: (invalid_scope) None, None
\tAzureCliCredential: Azure CLI not found on path
To mitigate this issue, please refer to the troubleshooting guidelines."""

FAILURES = [
    (
        CHAIN,
        "ManagedIdentityCredential: App Service managed identity configuration not found in "
        "environment. Token request error: (invalid_scope) None, None",
    ),
    ("ManagedIdentityCredential: timed out", "ManagedIdentityCredential: timed out"),
    ("Authentication failed: boom\nsecond line", "Authentication failed: boom"),
    ("", "no reason given"),
]


@pytest.mark.parametrize(("message", "line"), FAILURES)
def test_credential_failure_keeps_the_line_that_matters(message: str, line: str) -> None:
    assert credential_failure(message) == line


TRANSLATIONS = [
    (ServiceRequestError("refused"), "reading x: connection failed (ServiceRequestError)"),
    (ServiceResponseError("reset"), "reading x: connection failed (ServiceResponseError)"),
    (
        ClientAuthenticationError(CHAIN),
        "reading x: could not get an access token for the app's identity (ManagedIdentity"
        "Credential: App Service managed identity configuration not found in environment. "
        "Token request error: (invalid_scope) None, None)",
    ),
]


@pytest.mark.parametrize(("exc", "message"), TRANSLATIONS)
def test_failures_before_any_answer_are_transient(exc: Exception, message: str) -> None:
    error = translate(exc, "reading x")
    assert isinstance(error, TransientError)
    assert str(error) == message
    assert "\n" not in str(error)
