"""The retry rules (pure) and the service kind of a URL, table-driven.

The policy itself runs inside the real SDK pipelines in ``tests/e2e/test_faults.py``.
"""

from __future__ import annotations

import pytest

from shared.adapters.retries import (
    NOTIFY_RULES,
    RULES,
    Decision,
    Failure,
    decide,
    retrying,
    service_kind,
)

DECISIONS = [
    # what failed                                                    -> wait, or why not
    (Failure("GET", 1, status=429, retry_after=3), Decision(3)),
    (Failure("GET", 1, status=429, retry_after=0), Decision(0)),
    (Failure("GET", 1, status=500), Decision(1)),
    (Failure("GET", 2, status=503), Decision(2)),
    (Failure("GET", 3, status=504), Decision(4)),
    (Failure("GET", 4, status=500), Decision(None, "4 attempts made")),
    (Failure("PUT", 1, status=500), Decision(1)),
    (Failure("DELETE", 1, status=502), Decision(1)),
    (Failure("PUT", 1, status=408), Decision(1)),
    (Failure("POST", 1, status=429, retry_after=2), Decision(2)),
    (Failure("POST", 1, status=503), Decision(1)),
    (Failure("POST", 1, status=500), Decision(None, "a POST answered 500 may have been applied")),
    (Failure("PATCH", 1, status=504), Decision(None, "a PATCH answered 504 may have been applied")),
    (Failure("PUT", 1, status=409, retry_after=5), Decision(None, "409 is not retried")),
    (Failure("GET", 1, status=404), Decision(None, "404 is not retried")),
    (Failure("PUT", 1, error="connect"), Decision(1)),
    (Failure("POST", 2, error="connect"), Decision(2)),
    (Failure("GET", 1, error="read"), Decision(1)),
    (
        Failure("PUT", 1, error="read"),
        Decision(None, "a PUT whose answer was lost may have been applied"),
    ),
    (Failure("GET", 1, error="DecodeError"), Decision(None, "not a transient failure")),
    (Failure("GET", 1, status=429, retry_after=30), Decision(30)),
    (
        Failure("GET", 1, status=429, retry_after=31),
        Decision(None, "the server asked for 31s, over the 30s cap"),
    ),
    (Failure("GET", 2, waited=30, status=429, retry_after=30), Decision(30)),
    (
        Failure("GET", 3, waited=60, status=429, retry_after=1),
        Decision(None, "the 60s retry budget is spent"),
    ),
    (Failure("get", 1, status=500), Decision(1)),  # method case does not matter
    # ARM writes may start an operation: only throttling and unsent requests are repeated.
    (
        Failure("PUT", 1, status=500, kind="arm"),
        Decision(None, "an ARM PUT answered 500 may have started an operation"),
    ),
    (
        Failure("PUT", 1, status=503, retry_after=1, kind="arm"),
        Decision(None, "an ARM PUT answered 503 may have started an operation"),
    ),
    (
        Failure("PUT", 1, status=408, kind="arm"),
        Decision(None, "an ARM PUT answered 408 may have started an operation"),
    ),
    (
        Failure("POST", 1, status=503, kind="arm"),
        Decision(None, "an ARM POST answered 503 may have started an operation"),
    ),
    (
        Failure("PUT", 1, error="read", kind="arm"),
        Decision(None, "a PUT whose answer was lost may have been applied"),
    ),
    (Failure("PUT", 1, status=429, retry_after=1, kind="arm"), Decision(1)),
    (Failure("PUT", 1, error="connect", kind="arm"), Decision(1)),
    (Failure("GET", 1, status=500, kind="arm"), Decision(1)),  # reads are still retried
    (Failure("PUT", 1, status=500, kind="storage"), Decision(1)),  # a blob PUT is idempotent
]


@pytest.mark.parametrize(("failure", "expected"), DECISIONS)
def test_decide(failure: Failure, expected: Decision) -> None:
    assert decide(failure) == expected


def test_no_request_waits_longer_than_the_budget_or_tries_more_than_the_limit() -> None:
    waited, attempt = 0.0, 1
    while (decision := decide(Failure("GET", attempt, waited, status=429, retry_after=30))).wait:
        waited += decision.wait
        attempt += 1
    assert attempt <= RULES.max_attempts
    assert waited <= RULES.budget


KINDS = [
    ("https://management.azure.com/subscriptions/s/providers/Microsoft.Compute/cloudServices",
     "arm"),
    ("https://management.usgovcloudapi.net/providers/Microsoft.Compute/operations", "arm"),
    ("https://127.0.0.1:5001/subscriptions/s/resourceGroups/rg?api-version=2021-04-01", "arm"),
    ("https://kv1.vault.azure.net/certificates/web-tls/versions?api-version=7.6", "keyvault"),
    ("https://kv1.vault.azure.cn/secrets/web-tls/abc", "keyvault"),
    ("https://127.0.0.1:5002/certificates/web-tls/", "keyvault"),
    ("https://127.0.0.1:5002/deletedcertificates/web-tls", "keyvault"),
    ("https://acct.blob.core.windows.net/packages/app.cspkg?sv=2025&sig=SECRET", "storage"),
    ("https://127.0.0.1:10000/devstoreaccount1/cert-rotation-locks/x.lock?comp=lease",
     "storage"),
    ("http://127.0.0.1:41741/msi/token?api-version=2019-08-01&resource=x", "identity"),
    ("http://localhost:8081/MSI/token/", "identity"),
    ("http://169.254.169.254/metadata/identity/oauth2/token", "identity"),
    ("https://login.microsoftonline.com/tenant/oauth2/v2.0/token", "identity"),
    ("https://topic.westus-1.eventgrid.azure.net/api/events", "eventgrid"),
    ("https://127.0.0.1:5003/topics/t1/api/events", "eventgrid"),
    ("https://example.com/anything", "other"),
]


@pytest.mark.parametrize(("url", "kind"), KINDS)
def test_service_kind(url: str, kind: str) -> None:
    assert service_kind(url) == kind


class Refused(Exception):
    def __init__(self, status: int | None = None, error: str | None = None) -> None:
        super().__init__(f"{status or error}")
        self.status, self.error = status, error


@pytest.mark.parametrize(
    ("failures", "calls", "sleeps", "succeeds"),
    [
        ([], 1, [], True),
        ([Refused(503)], 2, [1.0], True),  # refused before acting: retried once
        ([Refused(429), Refused(429)], 2, [1.0], False),  # NOTIFY_RULES: two attempts
        ([Refused(500)], 1, [], False),  # a POST answered 500 may have been applied
        ([Refused(error="read")], 1, [], False),  # its answer lost: it may have arrived
        ([Refused(error="connect")], 2, [1.0], True),  # never sent
        ([Refused(400)], 1, [], False),
    ],
)
def test_retrying_a_notification_post(
    failures: list[Refused], calls: int, sleeps: list[float], succeeds: bool
) -> None:
    pending, made, slept = list(failures), [], []

    def call() -> str:
        made.append(1)
        if pending:
            raise pending.pop(0)
        return "sent"

    def run() -> str:
        return retrying(
            call, lambda e: (e.status, e.error),  # type: ignore[attr-defined]
            method="POST", kind="webhook", rules=NOTIFY_RULES, sleep=slept.append,
        )

    if succeeds:
        assert run() == "sent"
    else:
        with pytest.raises(Refused):
            run()
    assert (len(made), slept) == (calls, sleeps)
