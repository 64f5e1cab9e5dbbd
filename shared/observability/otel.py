"""OpenTelemetry export to Application Insights; imported only when telemetry is on.

Theory of operation
-------------------
:func:`configure` runs the Azure Monitor distro once. It exports:

* traces, unsampled: the Azure SDKs' own spans (azure-core tracing): one span per SDK call
  and one dependency span per HTTP attempt, with ``http.request.resend_count`` on retries. The
  plain HTTP-library instrumentations are off: azure-core already covers every Azure call
  (it suppresses them inside its spans), and the only other HTTP the app makes is the chat
  webhook, whose URL is a secret that must not become a span attribute;
* logs of the ``certrotate`` logger tree, whose records carry ``run_id`` and
  ``service_id`` (:mod:`shared.observability.logcontext`) as custom dimensions;
* metrics: :class:`RunMetrics` per finished run, and ``certrotate.azure.requests``.

:class:`RunSpans` adds what the dependency spans lack: ``run_id``/``service_id`` on every
span started during a run (read through the log-record factory that carries them), and a
count of HTTP attempts by Azure service, status and retry. The exporter keeps ``http.*``
attributes out of custom dimensions, ``http.request.resend_count`` included, so without
the count retries would not be visible in Application Insights at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from azure.monitor.opentelemetry import configure_azure_monitor
from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.metrics import Meter
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind

if TYPE_CHECKING:
    from shared.domain.runs import Run

METER = "certrotate"
LOGGER = "certrotate"
# Host patterns of the Azure services the app calls (public and sovereign clouds).
AZURE_SERVICES = (
    (".vault.", "keyvault"),
    ("management.", "arm"),
    (".blob.", "storage"),
    (".eventgrid.", "eventgrid"),
    ("169.254.169.254", "identity"),
)
# The days-to-expiry gauge is reported for services that serve (or are being updated to)
# the desired version; failures are visible through the outcome counter instead.
ON_DESIRED = frozenset({"rotated", "noop", "updating"})


def azure_service(host: str) -> str:
    """``management.azure.com`` -> ``arm``; an unknown host is reported as itself."""
    lowered = host.lower()
    return next((name for part, name in AZURE_SERVICES if part in lowered), lowered or "unknown")


def _run_ids() -> dict[str, str]:
    """The current run and service ids, as :mod:`.logcontext` puts them on records."""
    record = logging.getLogRecordFactory()(LOGGER, logging.DEBUG, "", 0, "", None, None)
    return {
        key: value
        for key in ("run_id", "service_id")
        if isinstance(value := getattr(record, key, None), str)
    }


class RunSpans(SpanProcessor):
    """Run ids on every span; one ``certrotate.azure.requests`` count per HTTP attempt."""

    def __init__(self, meter: Meter) -> None:
        self.requests = meter.create_counter(
            "certrotate.azure.requests",
            unit="{request}",
            description="HTTP attempts to Azure by service, status and whether it was a retry",
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        span.set_attributes(_run_ids())

    def on_end(self, span: ReadableSpan) -> None:
        attributes = span.attributes or {}
        if span.kind != SpanKind.CLIENT or "http.request.method" not in attributes:
            return
        resends = attributes.get("http.request.resend_count")
        self.requests.add(
            1,
            {
                "azure.service": azure_service(str(attributes.get("server.address", ""))),
                "http.request.method": str(attributes["http.request.method"]),
                "http.response.status_code": str(
                    attributes.get("http.response.status_code", "none")
                ),
                "retry": isinstance(resends, int) and resends > 0,
            },
        )


class RunMetrics:
    """Instruments recorded once per finished run."""

    def __init__(self, meter: Meter) -> None:
        self.duration = meter.create_histogram(
            "certrotate.rotation.duration", unit="s", description="Run duration"
        )
        self.outcomes = meter.create_counter(
            "certrotate.rotation.outcomes",
            unit="{service}",
            description="Service results by outcome",
        )
        self.actions = meter.create_counter(
            "certrotate.rotation.actions", unit="{action}", description="Run actions by kind"
        )
        self.days_to_expiry = meter.create_gauge(
            "certrotate.certificate.days_to_expiry",
            unit="d",
            description="Days until the certificate version a cloud service uses expires",
        )

    def __call__(self, run: Run) -> None:
        finished = run.finished or run.started
        self.duration.record(
            (finished - run.started).total_seconds(),
            {"trigger": run.trigger.kind, "status": run.status},
        )
        for result in run.results:
            self.outcomes.add(1, {"outcome": result.outcome, "trigger": run.trigger.kind})
            expires = result.rollout.expires if result.rollout else None
            if result.outcome in ON_DESIRED and expires is not None:
                self.days_to_expiry.set(
                    round((expires - finished).total_seconds() / 86400, 2),
                    {
                        "cloud_service": result.service_id,
                        "vault": run.vault_id,
                        "certificate": run.certificate,
                    },
                )
        for action in run.actions:
            self.actions.add(1, {"action": action.kind})


def configure(connection_string: str) -> Callable[[Run], None]:
    """Start export (once per process) and return the per-run recorder."""
    configure_azure_monitor(
        connection_string=connection_string,
        logger_name=LOGGER,
        # Keep every span: a rotation makes tens of calls, and the distro's default rate
        # limit would drop spans before RunSpans sees them (unsampled spans skip processors).
        sampling_ratio=1.0,
        instrumentation_options={
            "requests": {"enabled": False},
            "urllib": {"enabled": False},
            "urllib3": {"enabled": False},
        },
        span_processors=[RunSpans(metrics.get_meter(METER))],
    )
    return RunMetrics(metrics.get_meter(METER))
