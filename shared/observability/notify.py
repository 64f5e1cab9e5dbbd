"""Notifications: what a finished run tells the world, as CloudEvents and as chat messages.

Theory of operation
-------------------
The engine calls the observer built by :func:`observer` once per finished (non-dry) run.
It records the run's metrics (:mod:`shared.observability.telemetry`, a no-op unless enabled), then:

* with ``NOTIFY_EVENTGRID_ENDPOINT``, publishes one CloudEvent 1.0 per service result
  (``CertRotation.Run.<Outcome>``, subject the cloud service id) and one per action
  (``CertRotation.Action.<Kind>``, subject ``<vault id>/certificates/<name>``) in a single
  batch, through ``EventGridPublisherClient`` with the managed identity (or
  ``NOTIFY_EVENTGRID_KEY`` for local use);
* with ``NOTIFY_WEBHOOK_URL``, posts one chat message per failure or required action and
  one digest of what changed (Teams workflow Adaptive Card or Slack ``text`` + blocks).

Building events and messages is pure (table-tested); sending is bounded (short timeouts,
one retry of a refused or unreachable send, by the one retry policy,
:data:`~shared.adapters.retries.NOTIFY_RULES`) and never raises: a notification that fails is
logged as a warning and the rotation's outcome stands. Text that leaves the app passes
:func:`redact`, so a SAS signature, a token or a key in an error message never reaches a
topic or a channel; the webhook URL (itself a secret) is never logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.eventgrid import EventGridPublisherClient

from shared.adapters.clients import USER_AGENT, Clients
from shared.adapters.retries import NOTIFY_RULES, retrying
from shared.config import Settings
from shared.observability import telemetry

if TYPE_CHECKING:
    from shared.domain.runs import Run, ServiceResult

log = logging.getLogger("certrotate.notify")

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
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 5.0
WEBHOOK_TIMEOUT_S = 5.0  # per socket operation (connect, TLS handshake, each read)
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


def _describe(exc: Exception) -> str:
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


# -- sending -------------------------------------------------------------------------------


class _UnknownOptionWarning(logging.Filter):
    """azure-eventgrid 4.22.1 drops every constructor option for basic topics, so retries,
    timeouts and the CA bundle go with each ``send``; it also hands them to its CloudEvent
    model, which warns "<option> is not a known attribute ..." once per event and option.
    This drops exactly that warning (the options do reach the pipeline)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "is not a known attribute of class" not in str(record.msg)


_EVENTGRID_MODEL_LOGGER = "azure.eventgrid._legacy._generated._serialization"
_UNKNOWN_OPTION_WARNING = _UnknownOptionWarning()


class Notifier:
    """Sends a run's events and chat messages; every failure is logged, none is raised."""

    def __init__(self, settings: Settings, credential: TokenCredential, source: str) -> None:
        self.settings = settings
        self.source = source
        self._publisher: EventGridPublisherClient | None = None
        if settings.notify_eventgrid_endpoint:
            key = settings.notify_eventgrid_key
            self._publisher = EventGridPublisherClient(
                settings.notify_eventgrid_endpoint,
                AzureKeyCredential(key) if key else credential,
            )
            logging.getLogger(_EVENTGRID_MODEL_LOGGER).addFilter(_UNKNOWN_OPTION_WARNING)
        self._send_options: dict[str, Any] = {
            "user_agent": USER_AGENT,
            "retry_total": 0,  # retried by the one policy (shared.adapters.retries), not here
            "connection_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
        }
        if settings.ca_bundle:
            self._send_options["connection_verify"] = settings.ca_bundle
        self._ssl = ssl.create_default_context(cafile=settings.ca_bundle)

    def __call__(self, run: Run) -> None:
        if self._publisher is not None:
            self.publish(run)
        if self.settings.notify_webhook_url:
            self.post_chat(run)

    def publish(self, run: Run) -> None:
        publisher = self._publisher
        assert publisher is not None
        events = cloud_events(run, self.source, lambda: str(uuid.uuid4()))
        if not events:
            return
        host = urlsplit(self.settings.notify_eventgrid_endpoint or "").netloc
        try:
            retrying(
                lambda: publisher.send(events, **self._send_options),
                _sdk_failure,
                method="POST",
                kind="eventgrid",
                rules=NOTIFY_RULES,
            )
        except Exception as exc:  # a notification never fails a rotation
            log.warning(
                "notification: publishing %d event(s) to Event Grid topic %s failed: %s",
                len(events),
                host,
                _describe(exc),
            )
            return
        log.info("notification: published %d event(s) to Event Grid topic %s", len(events), host)

    def post_chat(self, run: Run) -> None:
        """Post the run's messages in order; after a failure the rest are not tried, so an
        unreachable channel costs one bounded attempt per run, not one per message."""
        render = PAYLOADS[self.settings.notify_webhook_format]
        messages = chat_messages(run)
        for index, message in enumerate(messages):
            problem = self._post(render(message))
            if problem:
                log.warning(
                    "notification: chat webhook (%s) failed for '%s': %s; %d further "
                    "message(s) of this run not sent",
                    self.settings.notify_webhook_format,
                    message.title,
                    problem,
                    len(messages) - index - 1,
                )
                return
        if messages:
            log.info(
                "notification: posted %d chat message(s) (%s)",
                len(messages),
                self.settings.notify_webhook_format,
            )

    def _post(self, payload: dict[str, Any]) -> str | None:
        """POST to the webhook; the problem, if any, described without the URL (a secret).

        Retried once (:data:`~shared.adapters.retries.NOTIFY_RULES`) after 429/503 or a
        refused connection. A timeout or another 5xx is not retried: the message may have
        arrived (the rule every POST of the app follows), and an endpoint that hangs must
        cost one timeout, not two.
        """
        request = urllib.request.Request(
            self.settings.notify_webhook_url or "",
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )

        def send() -> None:
            with urllib.request.urlopen(
                request, timeout=WEBHOOK_TIMEOUT_S, context=self._ssl
            ) as response:
                response.read()

        try:
            retrying(send, _webhook_failure, method="POST", kind="webhook", rules=NOTIFY_RULES)
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return f"no answer within {WEBHOOK_TIMEOUT_S:.0f}s"
            return redact(f"no connection ({exc.reason})")
        except TimeoutError:
            return f"no answer within {WEBHOOK_TIMEOUT_S:.0f}s"
        except OSError as exc:
            return type(exc).__name__
        return None


def _webhook_failure(exc: Exception) -> tuple[int | None, str | None]:
    """A webhook failure as :func:`~shared.adapters.retries.decide` reads it. A timeout is
    a lost answer: the message may have arrived, so a POST is not sent again."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code, None
    if isinstance(exc, TimeoutError) or (
        isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, TimeoutError)
    ):
        return None, "read"
    if isinstance(exc, urllib.error.URLError | ConnectionError):
        return None, "connect"
    return None, type(exc).__name__


def _sdk_failure(exc: Exception) -> tuple[int | None, str | None]:
    """An Event Grid SDK failure as :func:`~shared.adapters.retries.decide` reads it."""
    if isinstance(exc, HttpResponseError):
        return exc.status_code, None
    if isinstance(exc, ServiceRequestError):
        return None, "connect"
    if isinstance(exc, ServiceResponseError):
        return None, "read"
    return None, type(exc).__name__


def app_source() -> str:
    """The CloudEvent ``source``: the function app's name in Azure, the host name elsewhere."""
    return f"/certrotate/{os.environ.get('WEBSITE_SITE_NAME') or socket.gethostname()}"


def observer(settings: Settings, clients: Clients) -> Callable[[Run], None]:
    """What the engine calls with each finished run: telemetry, then notifications."""
    notifier = (
        Notifier(settings, clients.credential, app_source())
        if settings.notify_eventgrid_endpoint or settings.notify_webhook_url
        else None
    )

    steps: list[Callable[[Run], None]] = [telemetry.record_run]
    if notifier is not None:
        steps.append(notifier)

    def observe(run: Run) -> None:
        for step in steps:
            if run.quiet and step is notifier:
                continue  # an hourly "all converged" is not news
            try:
                step(run)
            except Exception as exc:  # telemetry and notifications never fail a rotation
                log.warning(
                    "notification: %s failed for run %s: %s",
                    getattr(step, "__name__", type(step).__name__),
                    run.id,
                    _describe(exc),
                )

    return observe
