"""Following a journaled write to its end: the driver of the journal's state machine.

The stages, observations and steps are a table in :mod:`shared.domain.journal` (pure,
unit-tested row by row); this module makes the observations (the only I/O: the
operation's poller, the service, its role instances, the update-domain walk), asks the
table, and does the step: journal, walk, verify, settle, finish, fail or roll back
(a rollback is sent by :func:`shared.rotation.writing.submit` and followed the same way).

It runs under the service's lease (:class:`Context` holds it), called by the executor
for the write it just sent, or for one an earlier invocation left in the journal.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from azure.core.polling import LROPoller

from shared.domain import cscfg
from shared.domain.errors import PlatformRejected, RotationError
from shared.domain.instances import Settle, Verdict, judge
from shared.domain.journal import (
    NEXT_STAGE,
    OnFailure,
    Pending,
    Seen,
    Stage,
    Step,
    holds,
    lacks,
    next_step,
    on_failure,
    stage_of,
    thumbprints_by_role,
    verify,
    wants_rollback,
)
from shared.domain.model import CloudServiceSnapshot
from shared.domain.outcomes import WriteStatus
from shared.domain.runs import Execution, WriteResult
from shared.rotation.writing import IN_PROGRESS, Context, log, submit

# Failures that are no reason to put the previous model back: the write succeeded, but the
# service does not hold it (someone else's write came after ours; a rollback would undo it).
NO_ROLLBACK = frozenset({"VerificationFailed"})
STOPPED_NOTE = "model updated; instances stopped, the certificate loads when they start"


def follow(
    ctx: Context, entry: Pending, poller: LROPoller[Any] | None = None, final_look: bool = True
) -> WriteResult:
    """Drive a journaled write to its end (or until time runs out); the journal tracks it.

    The driver of :data:`shared.domain.journal.TRANSITIONS`: one observation per stage
    (:func:`_observe`, the only I/O), the table says what it means, the step is done here.

    ``poller``: the sender's own poller; without it the operation is followed by the
    journaled continuation token, or without a token by the service's state.
    ``final_look``: whether a service found untouched proves the PUT did not land (False
    right after an unconfirmed answer: Azure may still be taking it, so the journal stays
    for the next holder to look again).
    """
    what = "rollback" if entry.kind == "rollback" else "update"
    seeing = _Seeing(poller, final_look)
    stage = stage_of(entry)
    while True:
        try:
            seen, entry = _observe(ctx, stage, entry, seeing)
        except PlatformRejected as exc:
            seen, seeing.failure = Seen.FAILED, exc
        step = next_step(stage, seen)
        if step is Step.COME_BACK:
            return WriteResult(entry.run_id, WriteStatus.UPDATING, _GOES_ON[stage].format(what))
        if step in (Step.LET_GO, Step.LOOK_AGAIN):
            return _not_applied(ctx, entry, what, final_look=step is Step.LET_GO)
        if step is Step.FAILURE:
            assert seeing.failure is not None
            return _failed(ctx, entry, seeing.failure)
        if step in (Step.FINISH, Step.FINISH_SLOW):
            assert seeing.final is not None and seeing.verdict is not None
            return _finish(ctx, entry, seeing.final, seeing.verdict)
        if step is Step.WALK:
            entry = replace(entry, next_update_domain=0, continuation_token=None)
            ctx.lease.write(entry)
        stage = NEXT_STAGE[step]


# What a write that goes on past this invocation says, by the stage it stopped at.
_GOES_ON = {
    Stage.SENT: "{} still running",
    Stage.ACCEPTED: "{} still running",
    Stage.WALKING: "{}: walking update domains",
    Stage.SETTLING: "{} applied; role instances settling",
}


@dataclass
class _Seeing:
    """What the observations of one :func:`follow` carry from one stage to the next."""

    poller: LROPoller[Any] | None
    final_look: bool
    final: CloudServiceSnapshot | None = None  # the service as the operation left it
    verdict: Verdict | None = None
    failure: PlatformRejected | None = None


def _observe(ctx: Context, stage: Stage, entry: Pending, seeing: _Seeing) -> tuple[Seen, Pending]:
    """Make the one observation ``stage`` calls for; PlatformRejected means Seen.FAILED."""
    if stage in (Stage.SENT, Stage.ACCEPTED):
        seeing.final = _model_applied(ctx, entry, seeing.poller)
        if seeing.final is None:
            return Seen.RUNNING, entry
        if entry.continuation_token is None and not holds(entry, seeing.final):
            return (Seen.UNTOUCHED if seeing.final_look else Seen.UNTOUCHED_TOO_SOON), entry
        manual = (ctx.upgrade_mode or "").lower() == "manual"
        return (Seen.LANDED_MANUAL if manual else Seen.LANDED), entry
    if stage is Stage.WALKING:
        done = _walk(ctx, entry)
        seeing.final = None  # the walk changed the service's state: read it again
        return (Seen.RUNNING, entry) if done is None else (Seen.WALKED, done)
    if stage is Stage.VERIFYING:
        seeing.final = seeing.final or ctx.compute.get(ctx.service_id)
        verify(entry, seeing.final)
        return Seen.HOLDS, entry
    entry, seeing.verdict = _settle(ctx, entry)
    if seeing.verdict is None:
        return Seen.RUNNING, entry
    if seeing.verdict.settle is Settle.FAILED:
        raise PlatformRejected(
            "RoleInstancesFailed", f"{ctx.name} role instances report {seeing.verdict.describe()}"
        )
    return _SETTLED[seeing.verdict.settle], entry


_SETTLED = {Settle.RUNNING: Seen.SETTLED, Settle.STOPPED: Seen.STOPPED, Settle.WAITING: Seen.SLOW}


def _finish(
    ctx: Context, entry: Pending, final: CloudServiceSnapshot, verdict: Verdict
) -> WriteResult:
    """The write has ended: clear the journal and say how."""
    ctx.lease.write(None)
    thumbprints = thumbprints_by_role(final)
    if entry.kind == "rollback":
        status = WriteStatus.ROLLED_BACK
        message = f"the update failed ({entry.failure}); the previous configuration is restored"
    else:
        status, message = WriteStatus.SUCCEEDED, f"now on version {entry.version}"
    if verdict.settle is Settle.STOPPED:
        message += f": {STOPPED_NOTE}"
    elif verdict.settle is Settle.WAITING:
        status = WriteStatus.FAILED
        message += (
            f", but role instances had not settled after {ctx.settings.settle_seconds:.0f} s "
            f"({verdict.describe()}); not rolled back: slow instances are not a failure"
        )
    log.log(
        logging.INFO if status is WriteStatus.SUCCEEDED else logging.ERROR,
        "%s: %s",
        ctx.name,
        message,
    )
    return WriteResult(entry.run_id, status, message, thumbprints)


def _not_applied(ctx: Context, entry: Pending, what: str, final_look: bool) -> WriteResult:
    """The write has no token and the service, no longer updating, does not hold it.

    On the final look the journal lets it go and the service may be planned again; right
    after an unconfirmed answer the entry stays for the next holder to look again.
    """
    if entry.unconfirmed is None:  # the sender died before Azure answered
        message = f"the {what} never reached Azure"
    else:
        message = f"the {what} did not land ({entry.unconfirmed}): {ctx.name} shows no change"
    if final_look:
        ctx.lease.write(None)
        message += "; it is planned again"
    else:
        message += "; the next run looks again before planning it again"
    log.warning("%s: %s", ctx.name, message)
    if entry.kind == "rollback" and final_look:
        # The update itself failed, whatever became of the rollback: that is the truth the
        # run that sent the update must record (it still says "updating" otherwise).
        return WriteResult(
            entry.run_id, WriteStatus.FAILED, f"the update failed ({entry.failure}); {message}"
        )
    return WriteResult(
        entry.run_id, WriteStatus.NOT_APPLIED, message, record=entry.unconfirmed is None
    )


def _model_applied(
    ctx: Context, entry: Pending, poller: LROPoller[Any] | None
) -> CloudServiceSnapshot | None:
    """Follow the PUT to its end: by token, or (no token: the sender died) by the service.

    The service as the operation left it (read once: the poller's final GET, or the last
    poll of the service); None while it still runs; PlatformRejected if it failed.
    """
    tick = ctx.ticker("update")
    looked = (ctx.looked.provisioning_state or "").lower() if ctx.looked else None
    if poller is None and entry.continuation_token and looked in IN_PROGRESS:
        return None  # a look: still running, and the operation is asked only once it ended
    if poller is None and entry.continuation_token:
        poller = ctx.compute.resume(ctx.service_id, entry.continuation_token)
    if poller is not None:
        if not ctx.compute.wait(poller, ctx.patience(), tick):
            return None
        return ctx.compute.final(poller)
    while True:
        service = ctx.compute.get(ctx.service_id)
        state = (service.provisioning_state or "").lower()
        if state not in IN_PROGRESS:
            break
        if ctx.remaining() <= 0 or ctx.looked is not None:
            return None
        time.sleep(min(ctx.remaining(), ctx.settings.arm_polling_interval or 30.0))
        tick()
    if state == "failed" and lacks(entry, service) is None:
        # Failed holding our model: our write failed (a Failed service that does not hold
        # it failed before, and our write did not land: the caller tells).
        raise PlatformRejected("Failed", f"{service.name} ended in state Failed")
    return service


def _settle(ctx: Context, entry: Pending) -> tuple[Pending, Verdict | None]:
    """Wait for the role instances to settle; None if this invocation's time ran out.

    The budget (``INSTANCE_SETTLE_SECONDS``) runs from when the model was first seen
    applied, journaled so a later follower does not start it again. A WAITING verdict
    comes back only once the budget is spent.
    """
    since = entry.settling_since
    if since is None:
        since = ctx.now().isoformat()
        entry = replace(entry, settling_since=since)
        ctx.lease.write(entry)
    ends = datetime.fromisoformat(since) + timedelta(seconds=ctx.settings.settle_seconds)
    tick = ctx.ticker("role instances settling")
    while True:
        verdict = judge(ctx.compute.instance_states(ctx.service_id))
        left = (ends - ctx.now()).total_seconds()
        if verdict.settle is not Settle.WAITING or left <= 0:
            return entry, verdict
        if ctx.remaining() <= 0 or ctx.looked is not None:
            return entry, None
        log.info("%s: role instances report %s; waiting", ctx.name, verdict.describe())
        time.sleep(min(left, ctx.remaining(), ctx.settings.arm_polling_interval or 30.0))
        tick()


def _walk(ctx: Context, entry: Pending) -> Pending | None:
    """Walk the update domains from ``entry.next_update_domain`` on, in order, journaling
    each; None if time ran out (the journal says where to go on)."""
    count = ctx.compute.update_domains(ctx.service_id)
    assert entry.next_update_domain is not None
    while entry.next_update_domain < count:
        domain = entry.next_update_domain
        token = entry.continuation_token if entry.walking == domain else None
        poller = ctx.compute.begin_walk(ctx.service_id, domain, token)
        if token is None:
            entry = replace(entry, walking=domain, continuation_token=poller.continuation_token())
            ctx.lease.write(entry)
            log.info("%s: walking update domain %d of %d", ctx.name, domain, count)
        try:
            if not ctx.compute.wait(poller, ctx.patience(), ctx.ticker(f"update domain {domain}")):
                return None
        except PlatformRejected as exc:
            raise PlatformRejected(
                exc.code, f"update domain {domain} of {count} failed, walk stopped there: {exc}"
            ) from exc
        entry = replace(entry, next_update_domain=domain + 1, walking=None, continuation_token=None)
        ctx.lease.write(entry)
    return entry


def _failed(ctx: Context, entry: Pending, exc: PlatformRejected) -> WriteResult:
    """Record the failure; roll back first when asked to (and not already rolling back)."""
    reason = f"{exc.code}: {exc.detail}"
    log.error("%s: %s failed: %s", ctx.name, entry.kind, reason)
    if not wants_rollback(entry.kind, ctx.settings.rollback, exc.code, NO_ROLLBACK):
        ctx.lease.write(None)
        message = (
            f"the rollback after '{entry.failure}' failed too: {reason}"
            if entry.kind == "rollback"
            else f"the update failed: {reason}"
        )
        return WriteResult(entry.run_id, WriteStatus.FAILED, message)
    service = ctx.compute.get(ctx.service_id)
    busy = (service.provisioning_state or "").lower() in IN_PROGRESS
    if on_failure(entry.kind, ctx.settings.rollback, exc.code, NO_ROLLBACK, busy) is (
        OnFailure.FAIL_BUSY
    ):
        ctx.lease.write(None)
        return WriteResult(
            entry.run_id,
            WriteStatus.FAILED,
            f"the update failed: {reason}; not rolled back: "
            f"{service.name} is {service.provisioning_state}",
        )
    previous = cscfg.parse(entry.previous_configuration)
    back = replace(
        entry,
        kind="rollback",
        failure=reason,
        expect_thumbprints=tuple(sorted({c.thumbprint.upper() for c in previous.certificates})),
        expect_secrets=tuple(u for g in entry.previous_secrets for u in g.certificate_urls),
        operation_id=None,
        continuation_token=None,
        walking=None,
        next_update_domain=None,
        submitted=ctx.now().isoformat(),
    )
    log.warning("%s: restoring the previous configuration (ROTATION_ROLLBACK)", ctx.name)
    try:
        back, poller = submit(
            ctx, service, back, entry.previous_configuration, entry.previous_secrets, Execution()
        )
    except RotationError as refused:
        # The rollback PUT was refused before anything started (submit cleared the journal):
        # the update's failure is still the truth its run must record, not a transient.
        message = f"the update failed: {reason}; the rollback could not be sent: {refused}"
        log.error("%s: %s", ctx.name, message)
        return WriteResult(entry.run_id, WriteStatus.FAILED, message)
    return follow(ctx, back, poller)
