"""What a finished run says: CloudEvents for a topic and chat messages for people.

Pure (table-tested in tests/unit/test_notify.py): built from the :class:`Run` alone,
with every text that leaves the app passed through :func:`redact`, so a SAS signature, a
token or a key in an error message never reaches a topic or a channel. Sending them is
:mod:`shared.observability.notify`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from shared.domain.runs import Run, ServiceResult

EVENT_TYPE_PREFIX = "CertRotation"
# Service outcomes that get a chat message of their own (failures and required actions);
# every other outcome is summed up in the run's digest.
ALERT_ACTIONS = frozenset({"renew-required", "expired", "gave-up"})
# A digest is posted only when something changed or was started: a run of no-ops (a
# duplicate event) stays out of the channel.
DIGEST_ACTIONS = frozenset({"renew-requested", "renew-pending"})
SEVERITY = {
    "failed": "attention",
    "refused": "attention",
    "rolled-back": "attention",
    "expired": "attention",
    "unmanaged": "warning",
    "renew-required": "warning",
}
TITLES = {
    "failed": "Rotation failed",
    "refused": "Rotation refused",
    "rolled-back": "Rotation rolled back",
    "unmanaged": "Action required: service not managed",
    "renew-required": "Action required: renew certificate",
    "expired": "Certificate expired",
}
MAX_MESSAGE_CHARS = 1500

_SECRET_PATTERNS = (
    # query parameters that carry a secret: SAS signature, Functions key, tokens
    re.compile(r"(?i)([?&](?:sig|code|token|access_token|key|client_secret)=)[^&\s\"'<>]+"),
    re.compile(r"(?i)(bearer\s+)[\w.~+/-]+=*"),
    re.compile(r"(?i)(aeg-sas-(?:key|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"),
    re.compile(r"()eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*"),  # a JWT anywhere
    re.compile(r"()-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
)


def redact(text: str) -> str:
    """``text`` with SAS signatures, keys, tokens and private keys replaced by ``REDACTED``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1REDACTED", text)
    return text


def describe_failure(exc: Exception) -> str:
    """An exception in one log-safe line: type, first line of the message, redacted."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)


def _short(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _name(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def _pascal(kind: str) -> str:
    """``rolled-back`` -> ``RolledBack``; ``noop`` -> ``NoOp``."""
    return "NoOp" if kind == "noop" else "".join(p.capitalize() for p in kind.split("-"))


def event_type(group: str, kind: str) -> str:
    """``CertRotation.Run.Rotated``, ``CertRotation.Action.RenewRequired``..."""
    return f"{EVENT_TYPE_PREFIX}.{group}.{_pascal(kind)}"


def certificate_subject(run: Run) -> str:
    return f"{run.vault_id}/certificates/{run.certificate}"


def _time(run: Run) -> str:
    return (run.finished or run.started).astimezone(UTC).isoformat().replace("+00:00", "Z")


def cloud_events(run: Run, source: str, new_id: Callable[[], str]) -> list[dict[str, Any]]:
    """The run as CloudEvents 1.0 (wire form): one per service result, one per action."""
    common = {"specversion": "1.0", "source": source, "time": _time(run)}
    base = {
        "runId": run.id,
        "trigger": run.to_json()["trigger"],  # as in the run record
        "vault": run.vault_id,
        "certificate": run.certificate,
    }
    events = []
    for result in run.results:
        rollout = result.rollout
        data = {
            **base,
            "cloudService": result.service_id,
            "outcome": result.outcome,
            "message": _short(result.message),
            "fromVersions": list(rollout.from_versions) if rollout else [],
            "toVersion": rollout.to_version if rollout else None,
            "toThumbprint": rollout.to_thumbprint if rollout else None,
            "expires": rollout.expires.isoformat() if rollout and rollout.expires else None,
            "package": _package(result),
        }
        events.append(
            {
                **common,
                "id": new_id(),
                "type": event_type("Run", result.outcome),
                "subject": result.service_id,
                "data": data,
            }
        )
    for action in run.actions:
        data = {
            **base,
            "action": action.kind,
            "message": _short(action.message),
            "cloudServices": [r.service_id for r in run.results],
        }
        events.append(
            {
                **common,
                "id": new_id(),
                "type": event_type("Action", action.kind),
                "subject": certificate_subject(run),
                "data": data,
            }
        )
    return events


# -- chat messages -------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatMessage:
    """One message for people, independent of the chat product that renders it."""

    title: str
    severity: str  # attention | warning | good
    text: str
    facts: tuple[tuple[str, str], ...]


def _package(result: ServiceResult) -> dict[str, str | None] | None:
    """The package an update deployed (URL without query, Content-MD5, ETag), if any."""
    execution = result.execution
    return execution.package.to_json() if execution and execution.package else None


def _facts(run: Run, service_id: str | None = None) -> tuple[tuple[str, str], ...]:
    facts = []
    if service_id:
        facts.append(("Cloud service", _name(service_id)))
        result = next((r for r in run.results if r.service_id == service_id), None)
        package = _package(result) if result else None
        if package:
            facts.append(("Package", f"{package['url']} (Content-MD5 {package['md5']})"))
    trigger = run.trigger.kind
    if run.trigger.event_type:
        trigger += f" ({run.trigger.event_type.rsplit('.', 1)[-1]})"
    facts += [
        ("Certificate", run.certificate),
        ("Vault", _name(run.vault_id)),
        ("Trigger", trigger),
        ("Run", run.id),
    ]
    return tuple(facts)


def chat_messages(run: Run) -> list[ChatMessage]:
    """One message per failure or required action, then one digest of what changed."""
    messages = []
    for result in run.results:
        if result.outcome.alerts:
            messages.append(
                ChatMessage(
                    f"{TITLES[result.outcome]}: {run.certificate} on {_name(result.service_id)}",
                    SEVERITY[result.outcome],
                    _short(result.message),
                    _facts(run, result.service_id),
                )
            )
    for action in run.actions:
        if action.kind in ALERT_ACTIONS:
            messages.append(
                ChatMessage(
                    f"{TITLES[action.kind]}: {run.certificate} in {_name(run.vault_id)}",
                    SEVERITY[action.kind],
                    _short(action.message),
                    _facts(run),
                )
            )
    changed = [r for r in run.results if r.outcome.digest]
    started = [a for a in run.actions if a.kind in DIGEST_ACTIONS]
    if changed or started:
        lines = [
            f"{_name(r.service_id)}: {r.outcome}"
            + (f" ({_short(r.message, 200)})" if r.message else "")
            for r in run.results
            if not r.outcome.alerts
        ]
        lines += [_short(a.message, 300) for a in started]
        counts = ", ".join(
            f"{sum(r.outcome == o for r in run.results)} {o}"
            for o in sorted({r.outcome for r in run.results})
        )
        messages.append(
            ChatMessage(
                f"Rotation of {run.certificate} ({_name(run.vault_id)}): {counts or 'no services'}",
                "good",
                "\n".join(lines),
                _facts(run),
            )
        )
    return messages


TEAMS_COLOR = {"attention": "Attention", "warning": "Warning", "good": "Good"}
SLACK_ICON = {"attention": ":red_circle:", "warning": ":warning:", "good": ":white_check_mark:"}


def teams_payload(message: ChatMessage) -> dict[str, Any]:
    """A Teams workflow ("post to a channel when a webhook request is received") message:
    an Adaptive Card in the Bot Framework ``message`` + ``attachments`` envelope."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": message.title,
            "weight": "Bolder",
            "size": "Medium",
            "color": TEAMS_COLOR[message.severity],
            "wrap": True,
        }
    ]
    if message.text:
        body.append({"type": "TextBlock", "text": message.text, "wrap": True})
    body.append({"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in message.facts]})
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                },
            }
        ],
    }


def _slack_escape(text: str) -> str:
    """Slack reads ``&``, ``<`` and ``>`` as markup (``<!channel>`` pings everyone)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: ChatMessage) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (the notification fallback) plus blocks,
    within Block Kit's limits (header 150 chars, section 3000, 10 fields of 2000)."""
    title = f"{SLACK_ICON[message.severity]} {message.title}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}}
    ]
    if message.text:
        text = {"type": "mrkdwn", "text": _slack_escape(message.text)[:3000]}
        blocks.append({"type": "section", "text": text})
    blocks.append(
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{k}*\n{_slack_escape(v)}"[:2000]}
                for k, v in message.facts[:10]
            ],
        }
    )
    return {"text": _slack_escape(message.title), "blocks": blocks}


PAYLOADS: dict[str, Callable[[ChatMessage], dict[str, Any]]] = {
    "teams": teams_payload,
    "slack": slack_payload,
}
