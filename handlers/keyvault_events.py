"""``keyvault_events``: the Event Grid trigger for Key Vault certificate events.

The function turns the Functions binding object into the plain dict
:func:`shared.events.parse_event` reads, and lets the engine converge. Ignored and
malformed events are acknowledged (a retry cannot make them valid), and so are events
from a vault outside ``ROTATION_SUBSCRIPTIONS``, before the engine sends any request; only
transient failures raise, so Event Grid redelivers, which is safe because the engine
re-plans from the truth. Updates are followed for ``EVENT_WAIT_SECONDS`` (under Event
Grid's 30 s delivery timeout); one still running is acknowledged as ``updating`` and left to
the ``follow_updates`` timer, rather than redelivered while it runs.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import azure.functions as func

from handlers.runtime import engine
from shared.errors import IgnoredEvent, InvalidInput, TransientError
from shared.events import parse_event

bp = func.Blueprint()
log = logging.getLogger("certrotate.events")
_PLAIN_ID = re.compile(r"[\w.:-]{1,64}", re.ASCII)


def _label(event_id: object) -> str:
    """The delivery's id for a log line. The sender wrote it, so anything but a plain id is
    quoted and clipped: a crafted id must not be able to forge or flood log lines."""
    text = event_id if isinstance(event_id, str) else repr(event_id)
    if _PLAIN_ID.fullmatch(text):
        return text
    return repr(text if len(text) <= 64 else text[:64] + "...")


def as_dict(event: func.EventGridEvent | func.CloudEvent) -> dict[str, Any]:
    """The delivery item as Event Grid sent it (either schema)."""
    if isinstance(event, func.CloudEvent):
        return {
            "id": event.id,
            "source": event.source,
            "type": event.type,
            "specversion": event.specversion,
            "subject": event.subject,
            "time": event.time,
            "data": event.get_json(),
        }
    return {
        "id": event.id,
        "topic": event.topic,
        "eventType": event.event_type,
        "subject": event.subject,
        "eventTime": event.event_time,
        "data": event.get_json(),
    }


@bp.function_name("keyvault_events")
@bp.event_grid_trigger(arg_name="event")
def keyvault_events(event: func.EventGridEvent) -> None:
    try:
        hint = parse_event(as_dict(event))
    except IgnoredEvent as exc:
        log.info("event %s ignored: %s", _label(event.id), exc)
        return
    except InvalidInput as exc:
        log.error("event %s rejected: %s", _label(event.id), exc)
        return
    if not engine().settings.in_scope(hint.vault_id):
        # Checked before the engine runs, so a foreign or forged event costs no request.
        log.warning(
            "event %s ignored: vault %s is in subscription %s, which is not in "
            "ROTATION_SUBSCRIPTIONS",
            hint.event_id,
            hint.vault_name,
            hint.vault_id.split("/")[2],
        )
        return
    log.info(
        "event %s received: %s for %s/%s",
        hint.event_id,
        hint.kind.rsplit(".", 1)[-1],
        hint.vault_name,
        hint.certificate,
    )
    run = engine().handle_event(hint)
    if run is None:
        return
    summary = ", ".join(f"{r.service_id.rsplit('/', 1)[-1]}={r.outcome}" for r in run.results)
    log.info("run %s finished: %s", run.id, summary or "no services")
    if run.transient:
        raise TransientError(f"run {run.id} hit transient failures; Event Grid will redeliver")
