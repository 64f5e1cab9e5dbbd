"""The two timers: ``reconcile`` (the backstop) and ``follow_updates`` (long updates).

``reconcile`` converges everything an event would have. Events can be missed (a
subscription created late, deliveries dead-lettered, a manual cscfg edit that reintroduced
an old thumbprint); the timer repairs all of these over every managed service in scope. It
plans each certificate's services (a dry run: reads only, nothing written when nothing
changed) and queues those with a change to make as batches on ``cert-rotation-services``,
each converged as a reconcile run by whichever instance takes it: the writes are spread
over the instances, and this timer, which the host never runs twice at once, is not held
for them. Schedule: the ``RECONCILE_SCHEDULE`` app setting (NCRONTAB; infra sets hourly).

``follow_updates`` is the backstop sweep of updates still running. A run does not wait for
its updates: it queues a follow message that looks at them until they end
(:mod:`handlers.hints`). Should that message be lost (its queue unreachable when it was
sent, a poison look), the update's journal (the continuation token in the service's lock
blob) is still there, and this timer looks at every journal in scope: an update that has
ended is verified and recorded in the run that sent it; one still running is left to run.
With nothing journaled a tick costs one blob listing and logs nothing. A service whose lease
another invocation holds is being looked at already. Schedule: the ``FOLLOW_SCHEDULE`` app
setting (infra sets every five minutes).

The schedules are ``%SETTING%`` binding expressions, resolved by the Functions host from the
app settings when it indexes the functions, not by this module at import. A setting that
is missing leaves its timer unindexed (the host logs "'%RECONCILE_SCHEDULE%' does not
resolve to a value"), so infra/main.bicep and the local stack always set both;
``Settings.from_env`` checks their shape.

Either invocation fails when some work could not be done (transient errors), so it shows up
in monitoring; the next tick tries again. The Functions host never runs a timer function
twice at once, so a long tick simply delays the next.
"""

from __future__ import annotations

import logging

import azure.functions as func

from handlers.runtime import engine
from shared.domain.errors import TransientError

bp = func.Blueprint()
log = logging.getLogger("certrotate.timers")


def _fail_on_transient(name: str, outcomes: dict[str, int]) -> None:
    transient = outcomes.get("transient", 0)
    if transient:
        raise TransientError(f"{name}: {transient} item(s) hit transient errors; see above")


@bp.function_name("reconcile")
@bp.timer_trigger(
    arg_name="timer",
    schedule="%RECONCILE_SCHEDULE%",
    run_on_startup=False,
)
def reconcile(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("reconcile: timer is past due; running now")
    _fail_on_transient("reconcile", engine().reconcile(fan_out=True)["outcomes"])


@bp.function_name("follow_updates")
@bp.timer_trigger(
    arg_name="timer",
    schedule="%FOLLOW_SCHEDULE%",
    run_on_startup=False,
)
def follow_updates(timer: func.TimerRequest) -> None:
    outcomes = engine().finish_pending(look=True)
    if outcomes:
        log.info("follow_updates: %s", dict(sorted(outcomes.items())))
    _fail_on_transient("follow_updates", outcomes)
