"""``keyvault_events``: the Event Grid trigger for Key Vault certificate events.

The function only accepts: it turns the Functions binding object into the plain dict
:func:`shared.domain.events.parse_event` reads, checks the vault is in scope, and adds one
:class:`shared.domain.messages.Hint` to ``cert-rotation-hints`` through the queue output binding
(written by the host before the delivery is answered). The work itself (discovery, plans,
PUTs, following updates) happens in the queue workers (:mod:`handlers.hints`), so Event
Grid gets its answer in well under a second whatever the number of services or the length
of their updates, and never redelivers, or delays later events, because work was slow.
Ignored and malformed events are acknowledged without a message (a retry cannot make them
valid), and so are events from a vault outside ``ROTATION_SUBSCRIPTIONS``, before any
request is sent. A hint that cannot be added (storage down) fails the invocation, so Event
Grid redelivers it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import azure.functions as func

from handlers.runtime import engine
from shared.domain.errors import IgnoredEvent, InvalidInput
from shared.domain.events import parse_event
from shared.domain.messages import HINTS_QUEUE, Hint, Origin, to_text

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
@bp.queue_output(arg_name="hint", queue_name=HINTS_QUEUE, connection="AzureWebJobsStorage")
def keyvault_events(event: func.EventGridEvent, hint: func.Out[str]) -> None:
    try:
        parsed = parse_event(as_dict(event))
    except IgnoredEvent as exc:
        log.info("event %s ignored: %s", _label(event.id), exc)
        return
    except InvalidInput as exc:
        log.error("event %s rejected: %s", _label(event.id), exc)
        return
    if not engine().settings.in_scope(parsed.vault_id):
        # Checked before anything is queued, so a foreign or forged event costs no work.
        log.warning(
            "event %s ignored: vault %s is in subscription %s, which is not in "
            "ROTATION_SUBSCRIPTIONS",
            parsed.event_id,
            parsed.vault_name,
            parsed.vault_id.split("/")[2],
        )
        return
    message = Hint(
        vault_id=parsed.vault_id,
        certificate=parsed.certificate,
        origin=Origin(parsed.kind, parsed.event_id),
        version=parsed.version,
    )
    hint.set(to_text(message))
    log.info(
        "event %s accepted: %s for %s/%s, queued",
        parsed.event_id,
        parsed.kind.rsplit(".", 1)[-1],
        parsed.vault_name,
        parsed.certificate,
    )
