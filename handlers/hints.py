"""``rotation_hints``: the queue worker that runs an event's rotation, and its poison twin.

``keyvault_events`` answers Event Grid at once and queues a :class:`shared.messages.Hint`;
this worker takes it from ``cert-rotation-hints`` and converges every service using the
certificate (the same engine call an event used to make inside its delivery); each
attempt is a run of its own. The queue gives the retry semantics: a run that hit transient
failures raises, the host makes the message visible again after host.json's
``visibilityTimeout`` and delivers it again (``dequeueCount`` one higher), which is safe
because every attempt re-plans from the truth; after ``maxDequeueCount`` attempts the host
moves it to ``cert-rotation-hints-poison``.

``rotation_hints_poison`` takes those: the hint is never dropped silently. It is logged as
an error and announced as a ``gave-up`` action on its run (chat and CloudEvent
notifications, and the run's record, so status shows it), and the ``reconcile`` timer
converges the services later all the same. A message that is not a valid hint (only
someone with queue-write access can send one) is refused the same way, naming the field,
without any request to Azure.
"""

from __future__ import annotations

import logging

import azure.functions as func

from handlers.runtime import engine
from shared.errors import InvalidInput, TransientError
from shared.messages import HINTS_QUEUE, parse

bp = func.Blueprint()
log = logging.getLogger("certrotate.hints")
POISON_QUEUE = f"{HINTS_QUEUE}-poison"


@bp.function_name("rotation_hints")
@bp.queue_trigger(arg_name="msg", queue_name=HINTS_QUEUE, connection="AzureWebJobsStorage")
def rotation_hints(msg: func.QueueMessage) -> None:
    try:
        hint = parse(msg.get_body().decode("utf-8", "replace"))
    except InvalidInput as exc:
        # Retrying cannot make it valid: acknowledged, and said loudly.
        log.error("hint message %s refused: %s", msg.id, exc)
        return
    log.info(
        "hint for %s/%s (event %s, attempt %d)",
        hint.vault_id.rsplit("/", 1)[-1],
        hint.certificate,
        hint.origin.event_id,
        msg.dequeue_count or 1,
    )
    run = engine().handle_hint(hint)
    if run is None:
        return
    summary = ", ".join(f"{r.service_id.rsplit('/', 1)[-1]}={r.outcome}" for r in run.results)
    log.info("run %s finished: %s", run.id, summary or "no services")
    if run.transient:
        raise TransientError(f"run {run.id} hit transient failures; the hint is retried")


@bp.function_name("rotation_hints_poison")
@bp.queue_trigger(arg_name="msg", queue_name=POISON_QUEUE, connection="AzureWebJobsStorage")
def rotation_hints_poison(msg: func.QueueMessage) -> None:
    text = msg.get_body().decode("utf-8", "replace")
    try:
        hint = parse(text)
    except InvalidInput as exc:
        log.error("poison hint message %s is not a hint (%s); dropped after logging", msg.id,
                  exc)
        return
    engine().gave_up(hint)
