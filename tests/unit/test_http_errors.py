"""The one exception -> HTTP table (handlers/responses.py), row by row, without I/O.

Every error type in shared/domain/errors.py (and the subclasses elsewhere in the domain)
has a row here: a new type without one fails ``test_every_error_type_has_a_case``.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any

import azure.functions as func
import pytest

from handlers.responses import ERRORS, RETRY_AFTER_SECONDS, answer_for, answers_errors
from shared.domain import errors
from shared.domain.destinations import UntrustedDestination
from shared.domain.json_body import BodyTooLarge
from shared.domain.packages import PACKAGE_TAG, PackageRefused, PackageRule

SECRET = "sig=c2VjcmV0"  # stands for anything an exception may carry that must not leave

# (error, status, code, Retry-After, the envelope's fields besides code)
CASES: list[tuple[Exception, int, str, bool, dict[str, Any]]] = [
    (BodyTooLarge("body", "too big"), 413, "BodyTooLarge", False,
     {"message": "too big", "field": "body"}),
    (errors.InvalidInput("vault", "not a vault id"), 400, "InvalidInput", False,
     {"message": "not a vault id", "field": "vault"}),
    (PackageRefused(PackageRule.BLOB), 400, "InvalidInput", False,
     {"message": PackageRule.BLOB.value, "field": PACKAGE_TAG}),
    (errors.NotFound("no rotation run 'x'"), 404, "NotFound", False,
     {"message": "no rotation run 'x'"}),
    (errors.NotFound("vault not in scope", "vault"), 404, "NotFound", False,
     {"message": "vault not in scope", "field": "vault"}),
    (errors.Busy("another invocation holds cs1"), 409, "Busy", True,
     {"message": "another invocation holds cs1"}),
    (errors.Waiting("an update is running on cs1"), 409, "Waiting", True,
     {"message": "an update is running on cs1"}),
    (errors.TransientError("reading the run record: 503"), 503, "Transient", True,
     {"message": "reading the run record: 503"}),
    (errors.Unconfirmed("the PUT's answer was lost"), 503, "Transient", True,
     {"message": "the PUT's answer was lost"}),
    (errors.BackingOff("backing off until 12:00"), 409, "BackingOff", False,
     {"message": "backing off until 12:00"}),
    (errors.PlanRefused("the cscfg names no such certificate"), 409, "PlanRefused", False,
     {"message": "the cscfg names no such certificate"}),
    (errors.PreconditionFailed("the package changed"), 409, "PreconditionFailed", False,
     {"message": "the package changed"}),
    (UntrustedDestination("host not allowed"), 409, "PreconditionFailed", False,
     {"message": "host not allowed"}),
    (errors.PlatformRejected("InvalidParameter", "packageUrl is invalid"), 502,
     "PlatformRejected", False, {"message": "packageUrl is invalid",
                                 "azureCode": "InvalidParameter"}),
    (errors.VaultAccessDenied("Forbidden", "kv1 denies get on secrets"), 502,
     "VaultAccessDenied", False, {"message": "kv1 denies get on secrets",
                                  "azureCode": "Forbidden"}),
    (errors.ConfigError(f"NOTIFY_WEBHOOK_URL={SECRET} is wrong"), 500, "ConfigError", False,
     {"message": "the app is misconfigured; its log names the setting"}),
    (errors.IgnoredEvent("not ours"), 500, "RotationError", False, {"message": "not ours"}),
    (errors.RotationError("something named"), 500, "RotationError", False,
     {"message": "something named"}),
    (KeyError(SECRET), 500, "InternalError", False,
     {"message": "internal error; see the app's log"}),
    (RecursionError(), 500, "InternalError", False,
     {"message": "internal error; see the app's log"}),
]


def _call(exc: Exception) -> func.HttpResponse:
    @answers_errors
    def handler(req: func.HttpRequest) -> func.HttpResponse:
        raise exc

    return handler(func.HttpRequest("GET", "/api/x", body=b""))


@pytest.mark.parametrize(
    ("exc", "status", "code", "retry", "fields"),
    CASES,
    ids=[f"{type(c[0]).__name__}-{i}" for i, c in enumerate(CASES)],
)
def test_the_table_answers_each_error(
    exc: Exception, status: int, code: str, retry: bool, fields: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, "certrotate.http"):
        answer = _call(exc)

    assert answer.status_code == status
    assert answer.mimetype == "application/json"
    assert json.loads(answer.get_body()) == {"error": {"code": code, **fields}}
    assert answer.headers.get("Retry-After") == (str(RETRY_AFTER_SECONDS) if retry else None)
    assert SECRET not in answer.get_body().decode()
    # What is not echoed is logged, for the operator.
    assert (not answer_for(exc).echo) == any(r.levelno >= logging.ERROR for r in caplog.records)


def test_every_error_type_has_a_case() -> None:
    domain = {
        cls for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.RotationError)
    }
    covered = {type(exc) for exc, *_ in CASES}
    assert domain <= covered, domain - covered


def test_a_subclass_row_comes_before_its_base() -> None:
    kinds = [kind for kind, _ in ERRORS]
    for index, kind in enumerate(kinds):
        shadowing = [k for k in kinds[:index] if issubclass(kind, k)]
        assert not shadowing, f"{kind.__name__} is shadowed by {shadowing}"


def test_success_passes_through_and_the_signature_is_kept() -> None:
    def handler(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("ok", status_code=201)

    wrapped = answers_errors(handler)
    assert wrapped(func.HttpRequest("GET", "/api/x", body=b"")).status_code == 201
    assert inspect.signature(wrapped) == inspect.signature(handler)
    assert wrapped.__name__ == "handler"
