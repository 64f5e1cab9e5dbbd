"""Bounded, logged retries for every Azure client the product builds.

Why not the SDKs' defaults: they retry silently and long (azure-core up to 10 times and
honours any ``Retry-After``, even an hour; azure-storage-blob waits 15 s, 18 s, 24 s).
Inside an Event Grid invocation that is the wrong trade. Event Grid already redelivers a
failed invocation on its own schedule (10 s, 30 s, 1 min, 5 min, ...), and every
redelivery plans again from the truth, so the in-process loop only has to ride out a
blip; when the blip lasts, the invocation must fail promptly and say why.

The rules (:data:`RULES`):

* at most **4 attempts** per request (3 retries);
* wait what the server asks (``Retry-After``, honoured exactly, never shortened),
  otherwise 1 s, 2 s, 4 s;
* a ``Retry-After`` above **30 s** is not waited for in-process (the invocation fails and
  Event Grid's redelivery comes back later); no single wait is longer;
* at most **60 s** of waiting per request in total;
* retried: 408, 429, 500, 502, 503, 504 and connection failures (the request never left)
  for idempotent methods; for POST and PATCH only 429 and 503 (the server refused before
  acting) and connection failures; a lost answer (read error) only for GET, HEAD, OPTIONS.
  **409 is never retried**: it means another operation runs, and repeating a PUT whose
  body was read before that operation would overwrite what it did; the engine re-plans
  on redelivery instead.
* **ARM writes** (PUT, PATCH, POST, DELETE) are retried only on 429 (throttled at ARM's
  front door, before any provider saw it) and connection failures (never sent). A write
  answered 5xx or 408, or whose answer was lost, may have started a long-running
  operation: Azure's recorded traffic has a cloud-service PUT answered 500
  ``InternalOperationError`` "The operation has timed out." after ~44 s, and a blind
  retry would get 409 or apply the write twice. The executor reads the service instead
  (``shared.rotation.executor``); this policy is the only retry the SDK clients have, so no SDK
  layer repeats the PUT either.

Each retry and each give-up is logged at WARNING on ``certrotate.retries`` with the
service kind, method, URL path (never the query: it may hold a SAS; never headers: they
hold tokens), status or error, attempt and wait, and counted in :func:`tally`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import RetryPolicy

log = logging.getLogger("certrotate.retries")
T = TypeVar("T")

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REFUSED_STATUS = frozenset({429, 503})  # the server did not act: safe for any method
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENT_METHODS = SAFE_METHODS | {"PUT", "DELETE"}
THROTTLED_STATUS = frozenset({429})  # refused at ARM's front door: no provider saw it
# Per-request options azure-storage-blob hands to its own retry policy (primary/secondary
# routing); we never use a secondary endpoint, but the options must not reach the transport.
_STORAGE_OPTIONS = ("hosts", "retry_to_secondary")


@dataclass(frozen=True)
class RetryRules:
    max_attempts: int = 4
    first_wait: float = 1.0  # then doubled per attempt
    max_wait: float = 30.0  # the longest single wait, Retry-After included
    budget: float = 60.0  # the most waiting one request may do in total


RULES = RetryRules()
# Notifications ride out one blip and no more: a rotation never waits long on its news.
NOTIFY_RULES = RetryRules(max_attempts=2, first_wait=1.0, max_wait=5.0, budget=5.0)


@dataclass(frozen=True)
class Failure:
    """One failed attempt, as the policy saw it."""

    method: str
    attempt: int  # 1-based number of the attempt that failed
    waited: float = 0.0  # seconds this request already waited
    status: int | None = None  # None: no answer
    error: str | None = None  # "connect" (never sent) | "read" (answer lost) | other
    retry_after: float | None = None
    kind: str = "other"  # the service called (:func:`service_kind`)


@dataclass(frozen=True)
class Decision:
    wait: float | None  # None: do not retry
    reason: str = ""  # why not


def decide(failure: Failure, rules: RetryRules = RULES) -> Decision:
    """Whether to retry ``failure`` and after how long (pure: the rules above)."""
    method = failure.method.upper()
    arm_write = failure.kind == "arm" and method not in SAFE_METHODS
    if failure.status is not None:
        if failure.status not in RETRY_STATUS:
            return Decision(None, f"{failure.status} is not retried")
        if arm_write and failure.status not in THROTTLED_STATUS:
            return Decision(
                None, f"an ARM {method} answered {failure.status} may have started an operation"
            )
        if method not in IDEMPOTENT_METHODS and failure.status not in REFUSED_STATUS:
            return Decision(None, f"a {method} answered {failure.status} may have been applied")
    elif failure.error == "read" and method not in SAFE_METHODS:
        return Decision(None, f"a {method} whose answer was lost may have been applied")
    elif failure.error not in ("connect", "read"):
        return Decision(None, "not a transient failure")
    if failure.attempt >= rules.max_attempts:
        return Decision(None, f"{rules.max_attempts} attempts made")
    if failure.retry_after is not None and failure.retry_after > rules.max_wait:
        return Decision(
            None, f"the server asked for {failure.retry_after:g}s, over the {rules.max_wait:g}s cap"
        )
    if failure.retry_after is not None:
        wait = failure.retry_after
    else:
        wait = min(rules.max_wait, rules.first_wait * 2 ** (failure.attempt - 1))
    if failure.waited + wait > rules.budget:
        return Decision(None, f"the {rules.budget:g}s retry budget is spent")
    return Decision(wait)


_IDENTITY_PATH = re.compile(r"(?i)/(msi/token|metadata/identity/|oauth2/(v2\.0/)?token)")
_KEYVAULT_PATH = re.compile(r"(?i)^/(deleted)?(certificates|secrets|keys)(/|$)")


def service_kind(url: str) -> str:
    """arm | keyvault | storage | identity | eventgrid | other, from host and path.

    Hosts decide in Azure; the paths also recognise the local stack, where every service
    is 127.0.0.1.
    """
    parts = urlsplit(url)
    host, path = (parts.hostname or "").lower(), parts.path
    lower = path.lower()
    if _IDENTITY_PATH.search(path) or host in ("169.254.169.254", "login.microsoftonline.com"):
        return "identity"
    if ".vault." in host or _KEYVAULT_PATH.match(path):
        return "keyvault"
    if host.startswith("management.") or lower.startswith(("/subscriptions/", "/providers/")):
        return "arm"
    if ".eventgrid." in host or lower.endswith("/api/events"):
        return "eventgrid"
    if ".blob." in host or lower.startswith("/devstoreaccount1"):
        return "storage"
    return "other"


@dataclass(frozen=True)
class RetryCounts:
    retried: Mapping[str, int]  # per service kind: retries made
    gave_up: Mapping[str, int]  # per service kind: failures passed on to the caller


class RetryTally:
    """Process-wide counts of retries and give-ups, for telemetry (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._retried: Counter[str] = Counter()
        self._gave_up: Counter[str] = Counter()

    def add(self, kind: str, *, retried: bool) -> None:
        with self._lock:
            (self._retried if retried else self._gave_up)[kind] += 1

    def counts(self) -> RetryCounts:
        with self._lock:
            return RetryCounts(dict(self._retried), dict(self._gave_up))


_TALLY = RetryTally()


def tally() -> RetryCounts:
    """Retries and give-ups so far in this process, per service kind."""
    return _TALLY.counts()


class BoundedRetryPolicy(RetryPolicy[Any, Any]):
    """azure-core's retry loop with :data:`RULES` deciding, logging and counting.

    One instance per client pipeline (a policy is linked into one pipeline). Keyword
    arguments are accepted and ignored: SDKs construct retry policy classes with their
    client options, and overriding those is the point of this policy.
    """

    def __init__(self, **_ignored: Any) -> None:
        retries = RULES.max_attempts - 1
        super().__init__(
            retry_total=retries, retry_connect=retries, retry_read=retries, retry_status=retries
        )

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        options = request.context.options
        location = options.pop("location_mode", None)  # set by storage's StorageHosts policy
        for name in _STORAGE_OPTIONS:
            options.pop(name, None)
        response: PipelineResponse[Any, Any] = super().send(request)
        if location is not None:  # storage's response handlers read it
            response.http_response.location_mode = location
        return response

    def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
        settings: dict[str, Any] = super().configure_retries(options)
        settings.update(attempt=0, waited=0.0, wait=0.0)
        return settings

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        # Every retryable status reaches ``increment``, which decides (and logs) per method.
        return response.http_response.status_code in RETRY_STATUS

    # azure-core 1.41 asks this private hook before ``increment`` and, for POST and PATCH,
    # answers False on its own (no retry, no log). It is overridden so that every failure
    # reaches ``increment``, where :func:`decide` rules per method and the outcome is
    # logged and counted; azure-core has no public way to do this.
    def _is_method_retryable(self, settings: Any, request: Any, response: Any = None) -> bool:
        return True

    def increment(
        self,
        settings: dict[str, Any],
        response: PipelineRequest[Any] | PipelineResponse[Any, Any] | None = None,
        error: Exception | None = None,
    ) -> bool:
        assert response is not None  # azure-core always passes the request or response
        allowed = super().increment(settings, response=response, error=error)
        settings["attempt"] += 1
        request = response.http_request
        status, retry_after = None, None
        if isinstance(response, PipelineResponse):
            status = response.http_response.status_code
            retry_after = self.get_retry_after(response)
        kind = service_kind(request.url)
        failure = Failure(
            method=request.method,
            attempt=settings["attempt"],
            waited=settings["waited"],
            status=status,
            error=_error_kind(error),
            retry_after=retry_after,
            kind=kind,
        )
        decision = decide(failure)
        if decision.wait is not None and not allowed:
            decision = Decision(None, "the SDK allows no retry of this call")
        if decision.wait is not None:
            settings["wait"] = decision.wait
            settings["waited"] += decision.wait
        what = f"{failure.method} {urlsplit(request.url).path}"
        _report(failure, what, status if status is not None else type(error).__name__,
                decision, RULES)
        return decision.wait is not None

    def sleep(self, settings: dict[str, Any], transport: Any, response: Any = None) -> None:
        if settings["wait"] > 0:
            transport.sleep(settings["wait"])


def retrying(
    call: Callable[[], T],
    classify: Callable[[Exception], tuple[int | None, str | None]],
    *,
    method: str,
    kind: str,
    rules: RetryRules,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()`` with :func:`decide`'s retries, for calls that do not go through an SDK
    pipeline of ours (the chat webhook, Event Grid basic-topic publishing, whose client
    drops a custom retry policy). ``classify`` says what a failure was: (status, None)
    for an answer, (None, "connect" | "read" | other) without one. The last failure is
    raised; each retry and give-up is logged and counted as the pipeline policy does."""
    attempt, waited = 0, 0.0
    while True:
        try:
            return call()
        except Exception as exc:
            attempt += 1
            status, error = classify(exc)
            failure = Failure(method, attempt, waited, status, error, None, kind)
            decision = decide(failure, rules)
            _report(failure, method, status if status is not None else error, decision, rules)
            if decision.wait is None:
                raise
            sleep(decision.wait)
            waited += decision.wait


def _report(
    failure: Failure, what: str, answer: object, decision: Decision, rules: RetryRules
) -> None:
    """Count and log one failed attempt and what :func:`decide` made of it: ``what`` is the
    method and, for SDK calls, the URL path (never the query: it may hold a SAS)."""
    _TALLY.add(failure.kind, retried=decision.wait is not None)
    log.warning(
        "%s %s failed (%s) on attempt %d of %d; %s",
        failure.kind,
        what,
        answer,
        failure.attempt,
        rules.max_attempts,
        f"giving up: {decision.reason}"
        if decision.wait is None
        else f"retrying in {decision.wait:.1f}s",
    )


def _error_kind(error: Exception | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, ServiceRequestError):
        return "connect"
    if isinstance(error, ServiceResponseError):
        return "read"
    return type(error).__name__
