"""``reconcile``: the timer backstop that converges everything an event would have.

Events can be missed (a subscription created late, deliveries dead-lettered, a manual cscfg
edit that reintroduced an old thumbprint); the timer repairs all of these by running the
same engine over every managed service in scope, and finishes updates that outlived the
invocation that sent them. Schedule: ``RECONCILE_SCHEDULE`` (NCRONTAB, default hourly).
The invocation fails when some work could not be done (transient errors), so it shows up
in monitoring; the next tick retries it.
"""

from __future__ import annotations

import logging
import os

import azure.functions as func

from handlers.runtime import engine
from shared.errors import TransientError

bp = func.Blueprint()
log = logging.getLogger("certrotate.reconcile")
DEFAULT_SCHEDULE = "0 0 * * * *"


@bp.function_name("reconcile")
@bp.timer_trigger(
    arg_name="timer",
    schedule=os.environ.get("RECONCILE_SCHEDULE") or DEFAULT_SCHEDULE,
    run_on_startup=False,
)
def reconcile(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.info("reconcile: timer is past due; running now")
    report = engine().reconcile()
    transient = report["outcomes"].get("transient", 0)
    if transient:
        raise TransientError(f"reconcile: {transient} item(s) hit transient errors; see above")
