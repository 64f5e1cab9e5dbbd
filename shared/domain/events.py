"""Turn one Event Grid delivery item into a *hint* for the rotation engine.

Why this module exists and why it is shaped this way:

* It is pure (no I/O, no ``azure.functions`` import). The handlers turn
  ``func.EventGridEvent`` / ``func.CloudEvent`` into plain dicts first, so this
  parsing is tested without the Functions host and one code path serves the
  trigger, the webhook and the simulator.
* Key Vault events come in two envelopes (Event Grid schema: ``eventType``,
  ``topic``, ``eventTime``; CloudEvents 1.0: ``type``, ``source``, ``time``) and
  the documented ``data`` sample is sloppy (``"ObjectName "`` with a trailing
  space, a leading space in ``Version``, ``NBF``/``EXP`` as strings, ``id`` vs
  ``Id``; CloudEvents validation sends ``data`` double-encoded). So ``data`` keys
  and string values are stripped and keys are matched case-insensitively.
* The result is only a hint: which vault (by ARM id) and which certificate name
  changed. The engine re-discovers everything else from the cloud services
  themselves. In particular ``data.Id`` (a full URL such as
  ``https://kv1.vault.azure.net/certificates/...``) is never read or returned:
  its host is whatever the sender wrote, and following it would send our
  managed-identity token to an attacker's server. Credentials may only go to
  vault URLs discovered from the cloud services' own ``osProfile.secrets``.
  For the same reason the vault name comes from the envelope's ARM id and a
  disagreeing ``data.VaultName`` is refused rather than trusted.
* Anything that is not a certificate event (other Key Vault objects, access
  policy changes, the webhook handshake) raises :class:`IgnoredEvent`, so the
  handler can acknowledge it without retry; malformed input raises
  :class:`InvalidInput` naming the field.
* Whatever the sender wrote ends up in log lines, so the event id may not hold control
  characters (a newline would forge a log line) and error messages quote rejected values
  clipped to a few dozen characters.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.domain.errors import IgnoredEvent, InvalidInput

NEW_VERSION = "Microsoft.KeyVault.CertificateNewVersionCreated"
NEAR_EXPIRY = "Microsoft.KeyVault.CertificateNearExpiry"
EXPIRED = "Microsoft.KeyVault.CertificateExpired"
SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"

_CERTIFICATE_TYPES = {t.casefold(): t for t in (NEW_VERSION, NEAR_EXPIRY, EXPIRED)}

# Vault names: 3-24 characters, letters, digits and hyphens, starting with a letter and
# not ending with a hyphen (Key Vault's naming rule).
_VAULT_ID = re.compile(
    r"/subscriptions/[^/\s]+/resourceGroups/[^/\s]+"
    r"/providers/Microsoft\.KeyVault/vaults/(?P<name>[a-z][a-z0-9-]{1,22}[a-z0-9])/?",
    re.IGNORECASE,
)
CERTIFICATE_NAME = re.compile(r"[0-9a-zA-Z-]{1,127}")
CERTIFICATE_VERSION = re.compile(r"[0-9a-zA-Z]{1,64}")
# Event ids are the sender's choice (a GUID from Key Vault) and end up in log lines and run
# records: no control characters (a newline would forge a log line), bounded length.
EVENT_ID = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
_SHOWN_CHARS = 64  # how much of a rejected value an error message quotes
_UNIX_SECONDS = re.compile(r"[+-]?[0-9]{1,19}(?:\.[0-9]{0,9})?")  # ASCII, bounded
_ISO_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<fraction>\d{1,7}))?(?P<zone>[Zz]|[+-]\d{2}:\d{2})"
)


@dataclass(frozen=True)
class CertificateEvent:
    """What a certificate event tells the engine; see the module docstring for trust."""

    kind: str
    event_id: str
    vault_id: str
    vault_name: str
    certificate: str
    version: str | None
    not_before: datetime | None
    expires: datetime | None
    event_time: datetime | None


@dataclass(frozen=True)
class _Schema:
    """Envelope key names of one delivery schema."""

    type_key: str
    source_key: str
    time_key: str


_EVENT_GRID = _Schema(type_key="eventType", source_key="topic", time_key="eventTime")
_CLOUD_EVENTS = _Schema(type_key="type", source_key="source", time_key="time")


def parse_event(item: Mapping[str, Any]) -> CertificateEvent:
    """Parse one delivery item (Event Grid schema or CloudEvents 1.0, as a plain dict)."""
    if not isinstance(item, Mapping):
        raise InvalidInput("event", f"expected a JSON object, got {type(item).__name__}")
    schema = _schema_of(item)
    kind = _certificate_kind(item, schema)
    event_id = _required_text(item.get("id"), "id")
    if not EVENT_ID.fullmatch(event_id):
        raise InvalidInput(
            "id", f"{_shown(event_id)} has control characters or is over 256 characters"
        )
    vault_id, vault_name = parse_vault_id(item.get(schema.source_key), schema.source_key)
    data = _normalised_data(item.get("data"))

    object_type = _text(data.get("objecttype"), "data.ObjectType")
    if object_type is not None and object_type.casefold() != "certificate":
        raise IgnoredEvent(
            f"{kind} event for ObjectType {_shown(object_type)}; only certificates"
        )

    claimed_vault = _text(data.get("vaultname"), "data.VaultName")
    if claimed_vault is not None and claimed_vault.casefold() != vault_name.casefold():
        raise InvalidInput(
            "data.VaultName",
            f"{_shown(claimed_vault)} does not match vault {vault_name!r} "
            f"of {schema.source_key}",
        )

    version = _text(data.get("version"), "data.Version")
    if version is not None and not CERTIFICATE_VERSION.fullmatch(version):
        raise InvalidInput("data.Version", f"{_shown(version)} is not a Key Vault version id")

    return CertificateEvent(
        kind=kind,
        event_id=event_id,
        vault_id=vault_id,
        vault_name=vault_name,
        certificate=_certificate_name(data, item.get("subject")),
        version=version,
        not_before=_unix_time(data.get("nbf"), "data.NBF"),
        expires=_unix_time(data.get("exp"), "data.EXP"),
        event_time=_event_time(item.get(schema.time_key), schema.time_key),
    )


def _shown(value: object) -> str:
    """``repr`` of a sender-supplied value, clipped: error messages are logged, and an
    event may carry up to a megabyte of whatever its sender chose."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _schema_of(item: Mapping[str, Any]) -> _Schema:
    return _CLOUD_EVENTS if "specversion" in item else _EVENT_GRID


def _is_validation(event_type: str) -> bool:
    return event_type.strip().casefold() == SUBSCRIPTION_VALIDATION.casefold()


def _certificate_kind(item: Mapping[str, Any], schema: _Schema) -> str:
    event_type = _required_text(item.get(schema.type_key), schema.type_key)
    if schema is _CLOUD_EVENTS:
        spec = _text(item.get("specversion"), "specversion")
        if spec != "1.0":
            raise InvalidInput(
                "specversion", f"{_shown(spec)} is not a supported CloudEvents version"
            )
    if _is_validation(event_type):
        raise IgnoredEvent(
            f"{SUBSCRIPTION_VALIDATION} is the webhook handshake; "
            "the Functions host's Event Grid extension answers it"
        )
    kind = _CERTIFICATE_TYPES.get(event_type.casefold())
    if kind is None:
        raise IgnoredEvent(
            f"event type {_shown(event_type)} is not a Key Vault certificate event"
        )
    return kind


def _text(value: Any, field: str) -> str | None:
    """A stripped string, or None when absent or blank; any other type is invalid."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(field, f"expected a string, got {type(value).__name__}")
    return value.strip() or None


def _required_text(value: Any, field: str) -> str:
    text = _text(value, field)
    if text is None:
        raise InvalidInput(field, "is missing or blank")
    return text


def parse_vault_id(value: Any, field: str) -> tuple[str, str]:
    """``(vault_id, vault_name)`` from the envelope's ARM id; trailing slash removed."""
    text = _required_text(value, field)
    match = _VAULT_ID.fullmatch(text)
    if match is None:
        raise InvalidInput(
            field,
            f"{_shown(text)} is not a Key Vault ARM id (/subscriptions/{{sub}}"
            "/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name})",
        )
    return text.removesuffix("/"), match["name"]


def _decoded_data(raw: Any) -> Any:
    """``data`` as sent, decoded once more when it arrived as a JSON string."""
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidInput("data", f"is a string but not valid JSON ({exc})") from None


def _normalised_data(raw: Any) -> dict[str, Any]:
    """``data`` with keys stripped and case-folded and string values stripped."""
    data = _decoded_data(raw)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InvalidInput("data", f"expected a JSON object, got {type(data).__name__}")
    normalised: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise InvalidInput("data", f"key {_shown(key)} is not a string")
        folded = key.strip().casefold()
        clean = value.strip() if isinstance(value, str) else value
        if folded in normalised and normalised[folded] != clean:
            raise InvalidInput(
                f"data.{key.strip()[:_SHOWN_CHARS]}", "given more than once with different values"
            )
        normalised[folded] = clean
    return normalised


def _certificate_name(data: Mapping[str, Any], subject: Any) -> str:
    """``data.ObjectName`` if present, else the subject; Key Vault's naming rule applies."""
    name = _text(data.get("objectname"), "data.ObjectName")
    origin = "data.ObjectName"
    if name is None:
        name, origin = _text(subject, "subject"), "subject"
    if name is None:
        raise InvalidInput("data.ObjectName", "no certificate name in data.ObjectName or subject")
    if not CERTIFICATE_NAME.fullmatch(name):
        raise InvalidInput(
            "data.ObjectName",
            f"{_shown(name)} (from {origin}) is not a Key Vault certificate name "
            "(1-127 letters, digits or hyphens)",
        )
    return name


def _unix_time(value: Any, field: str) -> datetime | None:
    """Unix seconds as int, float or numeric string -> aware UTC datetime."""
    if value is None or value == "":
        return None
    seconds: int | float
    if isinstance(value, str) and _UNIX_SECONDS.fullmatch(value):
        seconds = float(value) if "." in value else int(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value
    else:
        raise InvalidInput(
            field, f"{_shown(value)} is not Unix seconds (number or numeric string)"
        )
    try:
        if not math.isfinite(seconds):
            raise ValueError("not finite")
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidInput(field, f"{_shown(value)} is out of range ({exc})") from None


def _event_time(value: Any, field: str) -> datetime | None:
    """ISO 8601 with a zone (``Z`` or ``±hh:mm``, up to 7 fractional digits) -> aware UTC.

    An aware ``datetime`` (as ``func.EventGridEvent.event_time`` gives) is accepted too.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput(field, "datetime has no time zone")
        return value.astimezone(UTC)
    text = _required_text(value, field)
    match = _ISO_TIME.fullmatch(text)
    if match is None:
        raise InvalidInput(field, f"{_shown(text)} is not an ISO 8601 time with a zone")
    # Event Grid sends 7 fractional digits (100 ns ticks); datetime keeps microseconds.
    fraction = (match["fraction"] or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match["zone"] in ("Z", "z") else match["zone"]
    try:
        parsed = datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}{zone}")
    except ValueError as exc:
        raise InvalidInput(field, f"{_shown(text)} is not a valid time ({exc})") from None
    return parsed.astimezone(UTC)
