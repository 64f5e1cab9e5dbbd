"""The pipeline's queue messages: what one step hands the next, as ids only.

Three work queues carry the rotation out of Event Grid's 30 s delivery window (see the
README's pipeline diagram):

* ``cert-rotation-hints``: :class:`Hint`, "look at this certificate" (from an event, an
  operator or the reconcile timer). The hint worker discovers the services, opens the run
  and fans out one :class:`ServiceWork` per service.
* ``cert-rotation-services``: :class:`ServiceWork`, "converge this service in this run".
  The service worker plans under the service's lease, sends the one PUT and returns.
* ``cert-rotation-follow``: :class:`Follow`, "look at this service's journaled write
  again", re-sent with a visibility delay until the write has ended.

A message is data anyone with queue-write access could have written: :func:`parse` checks
every field as strictly as an HTTP body, and a message never carries a secret, a SAS or a
certificate, only ids the workers read the truth by. Each worker re-plans from that truth,
so a duplicate or stale message writes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.compute_ids import split_service_id
from shared.errors import InvalidInput
from shared.events import parse_vault_id
from shared.requests import CERTIFICATE_NAME

HINTS_QUEUE = "cert-rotation-hints"
SERVICES_QUEUE = "cert-rotation-services"
FOLLOW_QUEUE = "cert-rotation-follow"
TRIGGER_KINDS = ("event", "manual", "reconcile")
MAX_TEXT = 48 * 1024  # Azure's limit is 64 KiB of base64: 48 KiB of text
_RUN_ID_CHARS = frozenset("0123456789abcdefTZ-")


@dataclass(frozen=True)
class Origin:
    """What started the run: an event (its type and id), an operator or the timer."""

    kind: str  # event | manual | reconcile
    event_type: str | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class Hint:
    """Rotate ``certificate`` of ``vault_id`` wherever it is used (``only``: these services)."""

    run_id: str
    vault_id: str
    certificate: str
    origin: Origin
    version: str | None = None  # the event's version (NearExpiry/Expired decide on it)
    only: tuple[str, ...] = ()
    force: bool = False


@dataclass(frozen=True)
class ServiceWork:
    """Converge ``service_id`` to the desired version of the run's certificate."""

    run_id: str
    vault_id: str
    certificate: str
    service_id: str
    origin: Origin
    force: bool = False


@dataclass(frozen=True)
class Follow:
    """Look again at the journaled write on ``service_id`` (sent by run ``run_id``)."""

    run_id: str
    service_id: str


Message = Hint | ServiceWork | Follow


def to_text(message: Message) -> str:
    """The message as queue text (JSON; the host base64-encodes it, as host.json says)."""
    body: dict[str, Any] = {"runId": message.run_id}
    if isinstance(message, Follow):
        body.update(kind="follow", cloudService=message.service_id)
    else:
        body.update(
            vault=message.vault_id,
            certificate=message.certificate,
            trigger={
                "kind": message.origin.kind,
                "eventType": message.origin.event_type,
                "eventId": message.origin.event_id,
            },
            force=message.force,
        )
        if isinstance(message, Hint):
            body.update(kind="hint", version=message.version, cloudServices=list(message.only))
        else:
            body.update(kind="service", cloudService=message.service_id)
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def parse(text: str, expected: type[Message]) -> Message:
    """The message in ``text``, or InvalidInput naming the first field that is wrong."""
    if len(text) > MAX_TEXT:
        raise InvalidInput("message", f"longer than {MAX_TEXT} characters")
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise InvalidInput("message", "not JSON") from exc
    if not isinstance(body, dict):
        raise InvalidInput("message", "not a JSON object")
    kind = {Hint: "hint", ServiceWork: "service", Follow: "follow"}[expected]
    if body.get("kind") != kind:
        raise InvalidInput("kind", f"must be {kind!r} on this queue")
    run_id = _run_id(body.get("runId"))
    if expected is Follow:
        _only(body, {"kind", "runId", "cloudService"})
        return Follow(run_id, _service_id(body.get("cloudService"), "cloudService"))
    common = {"kind", "runId", "vault", "certificate", "trigger", "force"}
    vault_id, _ = parse_vault_id(_text(body.get("vault"), "vault", 400), "vault")
    certificate = _text(body.get("certificate"), "certificate", 127)
    if not CERTIFICATE_NAME.fullmatch(certificate):
        raise InvalidInput("certificate", "not a Key Vault certificate name")
    origin = _origin(body.get("trigger"))
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise InvalidInput("force", "must be true or false")
    if expected is ServiceWork:
        _only(body, common | {"cloudService"})
        service_id = _service_id(body.get("cloudService"), "cloudService")
        return ServiceWork(run_id, vault_id, certificate, service_id, origin, force)
    _only(body, common | {"version", "cloudServices"})
    version = body.get("version")
    if version is not None:
        version = _text(version, "version", 64)
    services = body.get("cloudServices", [])
    if not isinstance(services, list) or len(services) > 500:
        raise InvalidInput("cloudServices", "must be a list of at most 500 service ids")
    only = tuple(_service_id(s, "cloudServices") for s in services)
    return Hint(run_id, vault_id, certificate, origin, version, only, force)


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(unknown[0], "unknown field")


def _text(value: object, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInput(field, f"must be a non-empty string of at most {limit} characters")
    return value


def _run_id(value: object) -> str:
    text = _text(value, "runId", 64)
    if not set(text) <= _RUN_ID_CHARS:
        raise InvalidInput("runId", "not a rotation run id")
    return text


def _service_id(value: object, field: str) -> str:
    text = _text(value, field, 400)
    try:
        split_service_id(text)
    except InvalidInput as exc:
        raise InvalidInput(field, exc.detail) from exc
    return text


def _origin(value: object) -> Origin:
    if not isinstance(value, dict) or value.get("kind") not in TRIGGER_KINDS:
        raise InvalidInput("trigger", f"must be an object whose kind is one of {TRIGGER_KINDS}")
    _only(value, {"kind", "eventType", "eventId"})
    event_type, event_id = value.get("eventType"), value.get("eventId")
    for field, item in (("trigger.eventType", event_type), ("trigger.eventId", event_id)):
        if item is not None:
            _text(item, field, 128)
    return Origin(value["kind"], event_type, event_id)
