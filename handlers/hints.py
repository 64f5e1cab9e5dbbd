"""The queue workers that do an event's rotation, and their poison twins.

``keyvault_events`` answers Event Grid at once and queues a :class:`shared.domain.messages.Hint`.

``rotation_hints`` takes it from ``cert-rotation-hints``, discovers the services that use
the certificate and converges the first ``SERVICES_PER_MESSAGE`` of them itself (the same
engine call an event used to make inside its delivery; each attempt is a run of its own).
The other services, and any of its own that hit a transient failure, go out as
:class:`shared.domain.messages.ServiceBatch` messages on ``cert-rotation-services`` through the
queue output binding, written by the host once the function returned.

``rotation_services`` converges one batch as a run of its own, on whichever instance takes
it, so hundreds of services are neither one invocation's serial work (a PUT takes tens of
seconds in Azure, under a 30 min timeout) nor one instance's. Services that only wait for
something in progress (another invocation's lease, an update still running) are sent
again with a growing visibility delay (``QUEUE_WAIT_SECONDS``, doubling, at most 12 times)
instead of failing the attempt: waiting spends none of the message's attempts.

The queue gives the retry semantics: an attempt that fails (discovery failed; a batch run
hit transient failures) raises, the host makes the message visible again after host.json's
``visibilityTimeout`` and delivers it again (``dequeueCount`` one higher), which is safe
because every attempt re-plans from the truth; after ``maxDequeueCount`` attempts the host
moves it to ``<queue>-poison``.

``rotation_follow`` looks at updates still running (:class:`shared.domain.messages.Follow`, sent
by the run that sent them, visible ``FOLLOW_POLL_SECONDS`` later): one read while Azure
applies the update; once it has ended, verify, walk the next update domain, record it in
the run that sent it and notify; otherwise the next look is queued. No worker sits in a
poll loop for the minutes an update takes.

The poison functions take those: a message is never dropped silently. It is logged as an
error and announced as a ``gave-up`` action on a run of its own (chat and CloudEvent
notifications, and the run's record, so status shows it); the ``reconcile`` timer
converges the services later all the same. A message that is not valid (only someone with
queue-write access can send one) is refused the same way, naming the field, without any
request to Azure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import List, TypeVar  # noqa: UP035 (the worker's binding check refuses list[str])

import azure.functions as func

from handlers.runtime import engine
from shared.domain.errors import InvalidInput, TransientError
from shared.domain.messages import (
    FOLLOW_QUEUE,
    HINTS_QUEUE,
    SERVICES_QUEUE,
    Follow,
    Hint,
    ServiceBatch,
    parse,
    parse_batch,
    parse_follow,
    source,
    to_text,
)
from shared.domain.runs import Run

bp = func.Blueprint()
log = logging.getLogger("certrotate.hints")
CONNECTION = "AzureWebJobsStorage"
POISON = "-poison"


M = TypeVar("M", bound=Hint | ServiceBatch | Follow)


def _received(msg: func.QueueMessage, kind: str, parser: Callable[[str], M]) -> M | None:
    """The message, or None after saying loudly why it is refused (a retry cannot make it
    valid, so it is acknowledged)."""
    try:
        return parser(msg.get_body().decode("utf-8", "replace"))
    except InvalidInput as exc:
        log.error("%s message %s refused: %s", kind, msg.id, exc)
        return None


def _finished(run: Run) -> None:
    summary = ", ".join(f"{r.service_id.rsplit('/', 1)[-1]}={r.outcome}" for r in run.results)
    log.info("run %s finished: %s", run.id, summary or "no services")


@bp.function_name("rotation_hints")
@bp.queue_trigger(arg_name="msg", queue_name=HINTS_QUEUE, connection=CONNECTION)
@bp.queue_output(arg_name="batches", queue_name=SERVICES_QUEUE, connection=CONNECTION)
def rotation_hints(msg: func.QueueMessage, batches: func.Out[List[str]]) -> None:  # noqa: UP006
    hint = _received(msg, "hint", parse)
    if hint is None:
        return
    log.info(
        "hint for %s/%s (event %s, attempt %d)",
        hint.vault_id.rsplit("/", 1)[-1],
        hint.certificate,
        hint.origin.event_id,
        msg.dequeue_count or 1,
    )
    run, more = engine().handle_hint(hint)
    if run is not None:
        _finished(run)
    if more:
        log.info(
            "hint for %s: %d service(s) queued in %d batch(es)",
            hint.certificate, sum(len(b.services) for b in more), len(more),
        )
    batches.set([to_text(b) for b in more])


@bp.function_name("rotation_services")
@bp.queue_trigger(arg_name="msg", queue_name=SERVICES_QUEUE, connection=CONNECTION)
def rotation_services(msg: func.QueueMessage) -> None:
    batch = _received(msg, "service batch", parse_batch)
    if batch is None:
        return
    log.info(
        "batch of %d service(s) for %s (%s, attempt %d)",
        len(batch.services), batch.certificate, source(batch.origin), msg.dequeue_count or 1,
    )
    run = engine().handle_batch(batch)
    if run is None:
        return
    _finished(run)
    if run.transient and not engine().wait_again(batch, run):
        raise TransientError(f"run {run.id} hit transient failures; the batch is retried")


@bp.function_name("rotation_follow")
@bp.queue_trigger(arg_name="msg", queue_name=FOLLOW_QUEUE, connection=CONNECTION)
def rotation_follow(msg: func.QueueMessage) -> None:
    follow = _received(msg, "follow", parse_follow)
    if follow is None:
        return
    log.info("look %d at the update(s) of %d service(s)", follow.followed + 1,
             len(follow.services))
    again = engine().handle_follow(follow)
    if again is not None:
        engine().follow_again(again)


@bp.function_name("rotation_hints_poison")
@bp.queue_trigger(arg_name="msg", queue_name=HINTS_QUEUE + POISON, connection=CONNECTION)
def rotation_hints_poison(msg: func.QueueMessage) -> None:
    _give_up(msg, "hint", parse)


@bp.function_name("rotation_services_poison")
@bp.queue_trigger(arg_name="msg", queue_name=SERVICES_QUEUE + POISON, connection=CONNECTION)
def rotation_services_poison(msg: func.QueueMessage) -> None:
    _give_up(msg, "service batch", parse_batch)


@bp.function_name("rotation_follow_poison")
@bp.queue_trigger(arg_name="msg", queue_name=FOLLOW_QUEUE + POISON, connection=CONNECTION)
def rotation_follow_poison(msg: func.QueueMessage) -> None:
    """A look that failed every attempt (only the send of the next look can fail it):
    nothing is lost, the journals still hold the updates and the ``follow_updates`` sweep
    finishes them; said loudly all the same."""
    follow = _received(msg, "poison follow", parse_follow)
    if follow is not None:
        log.error(
            "gave up following the update(s) of %s by message; the follow_updates sweep "
            "finishes them", ", ".join(s.rsplit("/", 1)[-1] for s in follow.services),
        )


def _give_up(
    msg: func.QueueMessage, kind: str, parser: Callable[[str], Hint | ServiceBatch]
) -> None:
    """Record and announce a message the queue gave up on; one that does not even parse
    is logged (naming the field) and dropped: there is nothing to record it against."""
    message = _received(msg, f"poison {kind}", parser)
    if message is None:
        return
    services = message.services if isinstance(message, ServiceBatch) else ()
    engine().gave_up(message.vault_id, message.certificate, message.origin, services)
