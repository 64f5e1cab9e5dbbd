"""The pipeline's queue messages: what one step hands the next, as ids only.

Two work queues carry the rotation out of Event Grid's 30 s delivery window (see the
README's pipeline diagram):

* ``cert-rotation-hints``: :class:`Hint`, "look at this certificate". The Event Grid
  function only accepts the event and queues a hint; the hint worker
  (:mod:`handlers.hints`) discovers the services that use the certificate, converges the
  first ``SERVICES_PER_MESSAGE`` itself and fans the rest out.
* ``cert-rotation-services``: :class:`ServiceBatch`, "converge these services" (at most
  ``SERVICES_PER_MESSAGE`` of them), each batch a run of its own, on whichever instance
  takes it; the services a hint's run could not finish for a transient reason come back
  this way too. The reconcile timer queues the services it finds to change this way,
  and ``POST /api/rotations`` an operator's run (:class:`Requested`: the run id only).
* ``cert-rotation-follow``: :class:`Follow`, "look at these updates again". A run does not
  sit in a poll loop while Azure applies an update (minutes): what is still running when
  its short wait ends is followed by a message made visible ``FOLLOW_POLL_SECONDS`` later,
  each look one read, sent again until the update has ended; then it is verified, the
  next update domain walked (Manual mode) and the outcome recorded in the run that sent it.

A message is data anyone with queue-write access could have written: :func:`parse` checks
every field as strictly as an HTTP body, and a message never carries a secret, a SAS or a
certificate, only ids the worker reads the truth by. The worker re-plans from that truth,
so a duplicate or stale message writes nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from shared.domain.compute_ids import split_service_id
from shared.domain.errors import InvalidInput
from shared.domain.events import (
    CERTIFICATE_NAME,
    CERTIFICATE_VERSION,
    EVENT_ID,
    EXPIRED,
    NEAR_EXPIRY,
    NEW_VERSION,
    parse_vault_id,
)

HINTS_QUEUE = "cert-rotation-hints"
SERVICES_QUEUE = "cert-rotation-services"
FOLLOW_QUEUE = "cert-rotation-follow"
WORK_QUEUES = (HINTS_QUEUE, SERVICES_QUEUE, FOLLOW_QUEUE)
MAX_SERVICES = 100  # per batch message (SERVICES_PER_MESSAGE is at most this)
# A batch waiting for something in progress (another invocation's lease, a running update)
# is sent again with a growing delay, this many times (about 2.5 h with the 30 s default,
# as patient as Event Grid's first retries); after that its attempts count again.
MAX_WAITS = 12
LONGEST_WAIT_S = 900
# A follow message is sent again at most this many times (2 h at the 30 s default); an
# update running longer is left to the follow_updates sweep, which follows it to the end.
MAX_FOLLOWS = 240
# The trigger of a batch the reconcile timer queued (an event's names eventType and eventId).
RECONCILE = {"kind": "reconcile"}
RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}")  # shared.rotation.recording.new_run_id
CERTIFICATE_EVENTS = frozenset({NEW_VERSION, NEAR_EXPIRY, EXPIRED})
MAX_TEXT = 48 * 1024  # Azure's limit is 64 KiB of base64: 48 KiB of text


@dataclass(frozen=True)
class Origin:
    """The event that raised the hint: its type (a Key Vault certificate event) and id."""

    event_type: str
    event_id: str


@dataclass(frozen=True)
class Requested:
    """An operator's rotation (``POST /api/rotations``), queued as run ``run_id``. The
    worker takes what it may do (vault, certificate, services, ``force``) from that run's
    queued record, never from the message: a forged one can only start a run an operator
    asked for and that has not ended."""

    run_id: str


@dataclass(frozen=True)
class Hint:
    """Rotate ``certificate`` of ``vault_id`` wherever it is used.

    Each attempt at a hint is a run of its own (as each Event Grid delivery used to be):
    a retried hint re-plans from the truth, and its earlier attempts' records stay as they
    ended, so the history shows why it was retried.
    """

    vault_id: str
    certificate: str
    origin: Origin
    version: str | None = None  # the event's version (NearExpiry/Expired decide on it)


@dataclass(frozen=True)
class ServiceBatch:
    """Converge ``services`` (cloud service ids) to the desired version of ``certificate``,
    as one run; ``origin`` is the event the hint came from, the operator's request, or
    None when the reconcile timer queued it."""

    vault_id: str
    certificate: str
    origin: Origin | Requested | None
    services: tuple[str, ...]
    waited: int = 0  # times it was sent again to wait (at most MAX_WAITS)

    def waits_again(self, services: tuple[str, ...]) -> ServiceBatch | None:
        """This batch for ``services`` once more after a wait, or None past MAX_WAITS."""
        if self.waited >= MAX_WAITS:
            return None
        return ServiceBatch(
            self.vault_id, self.certificate, self.origin, services, self.waited + 1
        )


@dataclass(frozen=True)
class Follow:
    """Look again at the journaled updates of ``services`` (cloud service ids): the journal
    (in each service's lock blob) says which run sent the update and what it must hold, so
    the message carries nothing else. ``followed``: how many looks came before."""

    services: tuple[str, ...]
    followed: int = 0

    def again(self, services: tuple[str, ...]) -> Follow | None:
        """The next look at ``services`` (those still running), or None past MAX_FOLLOWS."""
        if not services or self.followed >= MAX_FOLLOWS:
            return None
        return Follow(services, self.followed + 1)


def source(origin: Origin | Requested | None) -> str:
    """What queued a batch, for people: ``event ID``, ``manual run ID``, or the timer."""
    if origin is None:
        return "the reconcile timer's batch"
    if isinstance(origin, Requested):
        return f"manual run {origin.run_id}"
    return f"event {origin.event_id}"


def _trigger(origin: Origin | Requested | None) -> dict[str, str]:
    if origin is None:
        return RECONCILE
    if isinstance(origin, Requested):
        return {"kind": "manual", "runId": origin.run_id}
    return {"eventType": origin.event_type, "eventId": origin.event_id}


def follows(services: list[str], size: int) -> list[Follow]:
    """Follow messages for ``services``, at most ``size`` each."""
    return [Follow(tuple(services[i : i + size])) for i in range(0, len(services), size)]


def wait_delay(first: float, waited: int) -> int:
    """Seconds before the ``waited``-th wait's message is visible: doubling from ``first``,
    at most LONGEST_WAIT_S."""
    return int(min(first * 2 ** max(0, waited - 1), LONGEST_WAIT_S))


def to_text(message: Hint | ServiceBatch | Follow) -> str:
    """The message as queue text (JSON; the host base64-encodes it, as host.json says)."""
    body: dict[str, Any]
    if isinstance(message, Follow):
        body = {"kind": "follow", "cloudServices": list(message.services)}
        body.update(followed=message.followed)
    else:
        origin = message.origin
        body = {
            "vault": message.vault_id,
            "certificate": message.certificate,
            "trigger": _trigger(origin),
        }
        if isinstance(message, Hint):
            body.update(kind="hint", version=message.version)
        else:
            body.update(
                kind="services", cloudServices=list(message.services), waited=message.waited
            )
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def parse(text: str) -> Hint:
    """The hint in ``text``, or InvalidInput naming the first field that is wrong."""
    body = _body(text, "hint", {"version"})
    version = body.get("version")
    if version is not None and not (
        isinstance(version, str) and CERTIFICATE_VERSION.fullmatch(version)
    ):
        raise InvalidInput("version", "not a Key Vault certificate version")
    vault_id, certificate, origin = _common(body)
    if not isinstance(origin, Origin):
        raise InvalidInput("trigger", "a hint comes from an event: eventType and eventId")
    return Hint(vault_id, certificate, origin, version)


def parse_batch(text: str) -> ServiceBatch:
    """The service batch in ``text``, or InvalidInput naming the first field that is wrong
    (the worker still checks each service is in scope before reading it)."""
    body = _body(text, "services", {"cloudServices", "waited"})
    services = _services(body)
    waited = _count(body, "waited", MAX_WAITS)
    vault_id, certificate, origin = _common(body)
    return ServiceBatch(vault_id, certificate, origin, services, waited)


def parse_follow(text: str) -> Follow:
    """The follow message in ``text``, or InvalidInput naming the first field that is wrong
    (the worker still checks each service is in scope, and follows only what its journal
    holds: a forged message can make it look, never write)."""
    body = _body(text, "follow", {"cloudServices", "followed"}, common=False)
    return Follow(_services(body), _count(body, "followed", MAX_FOLLOWS))


def _services(body: dict[str, Any]) -> tuple[str, ...]:
    services = body.get("cloudServices")
    if not isinstance(services, list) or not 1 <= len(services) <= MAX_SERVICES:
        raise InvalidInput("cloudServices", f"must be a list of 1 to {MAX_SERVICES} service ids")
    for item in services:
        split_service_id(_text(item, "cloudServices", 400))
        if any(ord(c) < 0x20 or c == "\x7f" for c in item):  # ids end up in log lines
            raise InvalidInput("cloudServices", "a service id holds a control character")
    return tuple(services)


def _count(body: dict[str, Any], field: str, most: int) -> int:
    value = body.get(field, 0)
    if type(value) is not int or not 0 <= value <= most:
        raise InvalidInput(field, f"must be a whole number from 0 to {most}")
    return value


def batches(
    vault_id: str, certificate: str, origin: Origin | Requested | None, services: list[str],
    size: int,
) -> list[ServiceBatch]:
    """``services`` in batches of at most ``size``, in order."""
    return [
        ServiceBatch(vault_id, certificate, origin, tuple(services[i : i + size]))
        for i in range(0, len(services), size)
    ]


def _body(text: str, kind: str, extra: set[str], common: bool = True) -> dict[str, Any]:
    if len(text) > MAX_TEXT:
        raise InvalidInput("message", f"longer than {MAX_TEXT} characters")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise InvalidInput("message", "not JSON") from exc
    if not isinstance(body, dict):
        raise InvalidInput("message", "not a JSON object")
    if body.get("kind") != kind:
        raise InvalidInput("kind", f"must be {kind!r} on this queue")
    _only(body, ({"kind", "vault", "certificate", "trigger"} if common else {"kind"}) | extra)
    return body


def _common(body: dict[str, Any]) -> tuple[str, str, Origin | Requested | None]:
    vault_id, _ = parse_vault_id(_text(body.get("vault"), "vault", 400), "vault")
    certificate = _text(body.get("certificate"), "certificate", 127)
    if not CERTIFICATE_NAME.fullmatch(certificate):
        raise InvalidInput("certificate", "not a Key Vault certificate name")
    return vault_id, certificate, _origin(body.get("trigger"))


def _only(body: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(prefix + unknown[0], "unknown field")


def _text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInput(field, f"must be a non-empty string of at most {limit} characters")
    return value


def _origin(value: object) -> Origin | Requested | None:
    if value == RECONCILE:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("trigger", "must be an object with eventType and eventId")
    if value.get("kind") == "manual":
        _only(value, {"kind", "runId"}, "trigger.")
        run_id = _text(value.get("runId"), "trigger.runId", 64)
        if not RUN_ID.fullmatch(run_id):
            raise InvalidInput("trigger.runId", "not a run id")
        return Requested(run_id)
    _only(value, {"eventType", "eventId"}, "trigger.")
    event_type = _text(value.get("eventType"), "trigger.eventType", 128)
    if event_type not in CERTIFICATE_EVENTS:
        raise InvalidInput("trigger.eventType", f"must be one of {sorted(CERTIFICATE_EVENTS)}")
    event_id = _text(value.get("eventId"), "trigger.eventId", 256)
    if not EVENT_ID.fullmatch(event_id):  # it ends up in log lines: no control characters
        raise InvalidInput("trigger.eventId", "holds a control character")
    return Origin(event_type, event_id)
