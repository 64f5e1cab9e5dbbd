"""Notifications: sending what a finished run says to a topic and to a chat channel.

Theory of operation
-------------------
The engine calls the observer built by :func:`observer` once per finished (non-dry)
run. It records the run's metrics (:mod:`shared.observability.telemetry`, a no-op
unless enabled), then:

* with ``NOTIFY_EVENTGRID_ENDPOINT``, publishes the run's CloudEvents 1.0 in a single
  batch through ``EventGridPublisherClient`` with the managed identity (or
  ``NOTIFY_EVENTGRID_KEY`` for local use);
* with ``NOTIFY_WEBHOOK_URL``, posts its chat messages in order (Teams workflow Adaptive
  Card or Slack ``text`` + blocks).

What they say is built, pure and redacted, in :mod:`shared.observability.announcements`.
Sending is bounded (short timeouts, one retry of a refused or unreachable send by the one
retry policy, :data:`~shared.adapters.retries.NOTIFY_RULES`) and never raises: a
notification that fails is logged as a warning and the rotation's outcome stands. The
webhook URL (itself a secret) is never logged.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.eventgrid import EventGridPublisherClient

from shared.adapters.clients import USER_AGENT, Clients
from shared.adapters.retries import NOTIFY_RULES, retrying
from shared.config import Settings
from shared.domain.runs import Run
from shared.observability import telemetry
from shared.observability.announcements import (
    PAYLOADS,
    chat_messages,
    cloud_events,
    describe_failure,
    redact,
)

log = logging.getLogger("certrotate.notify")

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 5.0
WEBHOOK_TIMEOUT_S = 5.0  # per socket operation (connect, TLS handshake, each read)


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
                describe_failure(exc),
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
                    describe_failure(exc),
                )

    return observe
