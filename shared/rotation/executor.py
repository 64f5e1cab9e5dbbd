"""Carry out one plan on one cloud service: the only code path that writes to Azure.

Under the service's lease (:meth:`Storage.lock`), in this order:

1. finish what an earlier invocation left in the journal (:mod:`shared.domain.journal`): follow
   its operation by continuation token instead of sending a second PUT; if it is still
   running, stop here (the service is busy);
2. re-read the service and re-plan (the caller's ``replan`` reads the certificate again
   too: another invocation may have converged the service, or a newer version appeared);
3. parse the package tag strictly (an allow-listed container only), read the blob's
   Content-MD5 and ETag (checked against the md5 tag, recorded for the audit);
4. mint a fresh package SAS, then journal the intent with what the service ran before,
   send ONE PUT carrying cscfg + osProfile + packageUrl, journal the continuation token.
   A PUT whose answer is lost, times out or is a 5xx is never repeated: it may have
   landed (Azure answers 500 after ~44 s while the update runs). The journal keeps it
   without a token and the service's own state is followed; the service is re-planned
   only once a later holder of the journal finds it still untouched (not updating, not
   holding the planned model);
5. follow the operation (renewing the lease); for ``upgradeMode`` Manual walk the update
   domains in order, journaling each; verify the model; then let the role instances
   settle (Busy/Starting for a while after an update) within ``INSTANCE_SETTLE_SECONDS``
   (:mod:`shared.domain.instances` judges them): a stopped service is updated but not failed;
   instances that never settle are reported, never rolled back;
6. on a platform ``Failed`` or an instance failure state, with ``ROTATION_ROLLBACK``, put
   the previous configuration back the same way.

The journal is cleared only when the write has ended one way or another, so an invocation
that dies or times out at any point leaves enough for the next one to finish it. The SAS is
never returned in anything that is logged or stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from azure.core.polling import LROPoller

from shared.adapters.compute import Compute, operation_id
from shared.adapters.storage import Storage
from shared.config import Settings
from shared.domain import cscfg
from shared.domain.convergence import Reason, after_earlier_write
from shared.domain.errors import (
    PlatformRejected,
    PreconditionFailed,
    RotationError,
    TransientError,
    Unconfirmed,
    Waiting,
)
from shared.domain.instances import Settle, Verdict, judge
from shared.domain.journal import Pending
from shared.domain.model import (
    PACKAGE_MD5_TAG,
    PACKAGE_TAG,
    CloudServiceSnapshot,
    Plan,
    SecretGroup,
)
from shared.domain.packages import PackageRef, parse_package
from shared.domain.runs import Execution, WriteResult, WriteStatus
from shared.rotation.ports import CloudServices, JournalLease, Ports, Store

log = logging.getLogger("certrotate.executor")
IN_PROGRESS = {"creating", "updating", "deleting"}
PROGRESS_EVERY = 10.0  # seconds between "still updating" lines while following an operation
# Failures that are no reason to put the previous model back: the write succeeded, but the
# service does not hold it (someone else's write came after ours; a rollback would undo it).
NO_ROLLBACK = {"VerificationFailed"}
# A look's wait for the status of an operation it resumed (one poll, asked at once).
LOOK_SECONDS = 10.0
STOPPED_NOTE = "model updated; instances stopped, the certificate loads when they start"


# Told, under the service's lease, that a journaled write has ended (never while it still
# runs): what the caller keeps about it (the failure backoff) is then written before any
# other invocation can take the service and act on a stale view.
Ended = Callable[[Pending, WriteResult], None]


@dataclass
class Context:
    """What following a journaled write needs, bundled for the helpers below."""

    service_id: str
    name: str
    upgrade_mode: str | None
    compute: CloudServices
    storage: Store
    settings: Settings
    now: Callable[[], datetime]
    lease: JournalLease
    deadline: float
    ended: Ended = field(default=lambda entry, outcome: None)
    # A look (a follow message): the service as read under the lease. While its state says
    # the update is running nothing else is asked (no poller is left polling after the
    # invocation); and role instances not settled yet are looked at again later, not
    # waited for.
    looked: CloudServiceSnapshot | None = None

    @classmethod
    def locked(
        cls,
        service: CloudServiceSnapshot,
        compute: CloudServices,
        storage: Store,
        settings: Settings,
        now: Callable[[], datetime],
        lease: JournalLease,
        wait_seconds: float,
        ended: Ended | None = None,
        look: bool = False,
    ) -> Context:
        """The context of work on ``service`` under ``lease``, for ``wait_seconds`` from now;
        ``look``: a follow message's look at ``service`` (see ``looked``)."""
        return cls(
            service.id,
            service.name,
            service.upgrade_mode,
            compute,
            storage,
            settings,
            now,
            lease,
            time.monotonic() + wait_seconds,
            ended or (lambda entry, outcome: None),
            service if look else None,
        )

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def patience(self) -> float:
        """How long to wait on an operation's poller: the time left, and in a look at
        least LOOK_SECONDS (its first status is asked at once: a look at an operation that
        has ended must get to read that status, whatever time is left)."""
        if self.looked is None:
            return self.remaining()
        return max(self.remaining(), LOOK_SECONDS)

    def ticker(self, what: str) -> Callable[[], None]:
        """Renew the lease between polls and say every so often that work goes on."""
        started = last = time.monotonic()

        def tick() -> None:
            nonlocal last
            self.lease.renew()
            if time.monotonic() - last >= PROGRESS_EVERY:
                last = time.monotonic()
                log.info("%s: %s still running (%.0fs)", self.name, what, last - started)

        return tick


class Caller(Protocol):
    """What a write asks of the code that wants it (:mod:`shared.rotation.converge`)."""

    def replan(self, fresh: CloudServiceSnapshot) -> Plan:
        """The plan against the service as re-read under the lease; BackingOff while its
        version waits out a failure recorded meanwhile."""
        ...

    def sent(self, execution: Execution) -> None:
        """Azure accepted the PUT: the run is recorded as updating (before it is followed)."""
        ...

    def ended(self, entry: Pending, outcome: WriteResult) -> None:
        """A journaled write has ended (see :data:`Ended`)."""
        ...


@dataclass(frozen=True)
class Write:
    """One write to carry out: the plan made before the lease, for ``service``, by ``run_id``;
    ``wait_seconds`` to follow it here (0: only look at a write found in flight)."""

    plan: Plan
    service: CloudServiceSnapshot
    run_id: str
    wait_seconds: float


def execute(write: Write, ports: Ports, caller: Caller) -> tuple[Plan, Execution]:
    """Execute ``write.plan``; returns the plan actually applied and what happened."""
    plan, service, wait_seconds = write.plan, write.service, write.wait_seconds
    compute, storage, settings, now = ports.compute, ports.storage, ports.settings, ports.now
    run = Execution()
    started = time.monotonic()

    def mark(step: str) -> None:
        run.timings[step] = round(time.monotonic() - started, 3)

    with storage.lock(service.id) as lease:
        mark("locked")
        # With no time to wait, a write found in flight is only looked at (no poller).
        ctx = Context.locked(
            service,
            compute,
            storage,
            settings,
            now,
            lease,
            wait_seconds,
            caller.ended,
            look=wait_seconds <= 0,
        )
        if lease.pending is not None:
            # Finish the earlier write first (shared.domain.convergence decides what is left).
            found = lease.pending
            run.resumed = follow(ctx, found)
            earlier = after_earlier_write(
                run.resumed, wrote=found.version, version=plan.desired.version
            )
            if earlier.reason is Reason.STILL_RUNNING:
                raise Waiting(earlier.message)
            ctx.ended(found, run.resumed)
            if earlier.reason is Reason.SAME_VERSION_FAILED:
                run.status = WriteStatus.EARLIER_FAILED
                return plan, run
        # Re-read under the lock: the truth may have moved since planning.
        fresh = compute.get(service.id)
        if (fresh.provisioning_state or "").lower() in IN_PROGRESS:
            raise Waiting(
                f"{fresh.name} is {fresh.provisioning_state}: another operation is running"
            )
        plan = caller.replan(fresh)
        if plan.is_noop:
            run.status = WriteStatus.NOOP
            log.info("%s: already converged under the lock; nothing to write", fresh.name)
            return plan, run
        # Never deploy a package other than the one tagged, and only from an allow-listed
        # container: the tag is re-read under the lock and parsed strictly.
        package = package_of(fresh, settings)
        run.package = storage.package_facts(package) if package is not None else None
        expected_md5 = fresh.tags.get(PACKAGE_MD5_TAG)
        if run.package is not None and expected_md5 and run.package.md5 != expected_md5.strip():
            raise PreconditionFailed(
                f"package changed since it was tagged: the Content-MD5 of {run.package.url} no "
                f"longer matches tag {PACKAGE_MD5_TAG}; redeploy it or update the tag"
            )
        entry = Pending(
            run_id=write.run_id,
            kind="update",
            vault_id=plan.vault_id,
            certificate=plan.certificate,
            version=plan.desired.version,
            package_url=package.url if package is not None else "",
            expect_thumbprints=tuple(sorted({c.new for c in plan.changes})),
            expect_secrets=(plan.desired.secret_id,),
            previous_configuration=fresh.configuration,
            previous_secrets=fresh.secrets,
            submitted=now().isoformat(),
        )
        ctx.name = fresh.name
        entry, poller = submit(ctx, fresh, entry, plan.configuration_after, plan.secrets_after, run)
        mark("submitted")
        caller.sent(run)
        if poller is not None and ctx.remaining() <= 0:
            # Not followed here (an Unpolled poller): the update runs on in Azure, and a
            # follow look (or the sweep) follows it by its journaled token.
            outcome = WriteResult(entry.run_id, WriteStatus.UPDATING, "update still running")
        else:
            # Unconfirmed (no poller): this first look at an untouched service is not final.
            outcome = follow(ctx, entry, poller, final_look=poller is not None)
        if outcome.status == WriteStatus.NOT_APPLIED:
            raise TransientError(outcome.message)
        if outcome.status != WriteStatus.UPDATING:
            ctx.ended(entry, outcome)
        run.status, run.message = outcome.status, outcome.message
        run.final_thumbprints = outcome.final_thumbprints
        if outcome.status == WriteStatus.SUCCEEDED:
            mark("succeeded")
            log.info(
                "%s: update succeeded in %.1fs",
                fresh.name,
                run.timings["succeeded"] - run.timings["submitted"],
            )
        elif outcome.status == WriteStatus.UPDATING:
            log.warning(
                "%s: update still running after %.0fs; a later run will follow it",
                fresh.name,
                wait_seconds,
            )
    return plan, run


def resume(
    service_id: str,
    compute: Compute,
    storage: Storage,
    settings: Settings,
    now: Callable[[], datetime],
    wait_seconds: float,
    *,
    ended: Ended | None = None,
    look: bool = False,
) -> WriteResult | None:
    """Finish the journaled write of ``service_id``, if any (no new write is planned);
    ``look``: only look at it, as a follow message does (see :class:`Context`)."""
    with storage.lock(service_id) as lease:
        if lease.pending is None:
            return None
        found = lease.pending
        service = compute.get(service_id)
        ctx = Context.locked(
            service, compute, storage, settings, now, lease, wait_seconds, ended, look
        )
        log.info("%s: following the update sent by run %s", service.name, found.run_id)
        outcome = follow(ctx, found)
        if outcome.status != WriteStatus.UPDATING:
            ctx.ended(found, outcome)
        return outcome


def submit(
    ctx: Context,
    service: CloudServiceSnapshot,
    entry: Pending,
    configuration: str,
    secrets: tuple[SecretGroup, ...],
    run: Execution,
) -> tuple[Pending, LROPoller[Any] | None]:
    """Mint a SAS, journal the intent, send the PUT, journal its continuation token.

    The SAS comes first: a failure minting it (storage, a refused container) then leaves
    no journal entry behind, so the service's outcome stays the true reason and nothing
    later mistakes it for a write that "never reached Azure". The SAS itself is never
    journaled, logged or recorded.

    A PUT refused with an answer (4xx), or never sent, clears the journal: nothing is in
    flight. A PUT that may have landed (:class:`Unconfirmed`) keeps it, with what Azure
    answered, and returns no poller: the service's state is then followed instead.
    """
    sas_url = None
    if entry.package_url:  # "": a configuration-only update (ROTATION_UNTAGGED=update)
        package = parse_package(entry.package_url, ctx.settings.package_containers)
        sas_url, run.sas_expiry = ctx.storage.package_sas(
            package, ctx.settings.package_sas_hours, ctx.now()
        )
        log.info(
            "%s: package SAS minted for %s (read-only, expires %s)",
            service.name,
            package.url,
            run.sas_expiry.isoformat(timespec="seconds"),
        )
    ctx.lease.write(entry)  # before the PUT: a crash after it is noticed by the next holder
    try:
        poller = ctx.compute.begin_update(
            service, configuration, secrets, sas_url, poll=ctx.remaining() > 0
        )
    except Unconfirmed as exc:
        entry = replace(entry, unconfirmed=str(exc))
        ctx.lease.write(entry)  # it may be running: tracked until the service tells
        run.status = WriteStatus.UPDATING
        log.warning("%s: %s; not resent, following the service's state", service.name, exc)
        return entry, None
    except PlatformRejected as exc:
        ctx.lease.write(None)  # refused before any work started: nothing is in flight
        ctx.ended(
            entry, WriteResult(entry.run_id, WriteStatus.FAILED, str(exc))
        )  # Azure refused this write
        if entry.package_url:
            raise
        raise PlatformRejected(
            exc.code,
            f"{exc.detail}; Azure refused an update without packageUrl: this service needs "
            f"the {PACKAGE_TAG} tag (the blob URL of its deployed .cspkg)",
        ) from exc
    except Exception:
        ctx.lease.write(None)  # refused before any work started: nothing is in flight
        raise
    finally:
        del sas_url
    run.operation_id = operation_id(poller)
    run.continuation_token = poller.continuation_token()
    run.status = WriteStatus.UPDATING
    entry = replace(entry, operation_id=run.operation_id, continuation_token=run.continuation_token)
    ctx.lease.write(entry)
    log.info("%s: %s submitted (operation %s)", service.name, entry.kind, run.operation_id)
    return entry, poller


def package_of(service: CloudServiceSnapshot, settings: Settings) -> PackageRef | None:
    """The package the service's tag names, parsed against ``PACKAGE_CONTAINERS``; None
    for an untagged service under ``ROTATION_UNTAGGED=update`` (a configuration-only PUT).

    Raises PackageRefused (bad input: the service is refused) naming the rule broken.
    """
    if not service.package_url and settings.untagged == "update":
        return None
    return parse_package(service.package_url or "", settings.package_containers)


def follow(
    ctx: Context, entry: Pending, poller: LROPoller[Any] | None = None, final_look: bool = True
) -> WriteResult:
    """Drive a journaled write to its end (or until time runs out); the journal tracks it.

    ``poller``: the sender's own poller (already polling in its thread); without it the
    operation is followed by the journaled continuation token, or without a token by the
    service's state. ``final_look``: whether a service found untouched proves the PUT did
    not land (False right after an unconfirmed answer: Azure may still be taking it, so
    the journal stays for the next holder to look again).
    """
    what = "rollback" if entry.kind == "rollback" else "update"
    try:
        final: CloudServiceSnapshot | None = None
        if entry.next_update_domain is None:
            final = _model_applied(ctx, entry, poller)
            if final is None:
                return WriteResult(entry.run_id, WriteStatus.UPDATING, f"{what} still running")
            if entry.continuation_token is None and not _holds(entry, final):
                return _not_applied(ctx, entry, what, final_look)
            if (ctx.upgrade_mode or "").lower() == "manual":
                entry = replace(entry, next_update_domain=0, continuation_token=None)
                ctx.lease.write(entry)
        if entry.next_update_domain is not None:
            done = _walk(ctx, entry)
            if done is None:
                return WriteResult(
                    entry.run_id, WriteStatus.UPDATING, f"{what}: walking update domains"
                )
            entry = done
            final = None  # the walk changed the service's state: read it again
        final = final or ctx.compute.get(ctx.service_id)
        _verify(entry, final)
        entry, verdict = _settle(ctx, entry)
        if verdict is None:
            return WriteResult(
                entry.run_id, WriteStatus.UPDATING, f"{what} applied; role instances settling"
            )
        if verdict.settle is Settle.FAILED:
            raise PlatformRejected(
                "RoleInstancesFailed", f"{ctx.name} role instances report {verdict.describe()}"
            )
    except PlatformRejected as exc:
        return _failed(ctx, entry, exc)
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
    if state == "failed" and _lacks(entry, service) is None:
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
    if entry.kind == "rollback" or not ctx.settings.rollback or exc.code in NO_ROLLBACK:
        ctx.lease.write(None)
        message = (
            f"the rollback after '{entry.failure}' failed too: {reason}"
            if entry.kind == "rollback"
            else f"the update failed: {reason}"
        )
        return WriteResult(entry.run_id, WriteStatus.FAILED, message)
    service = ctx.compute.get(ctx.service_id)
    if (service.provisioning_state or "").lower() in IN_PROGRESS:
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


def _holds(entry: Pending, service: CloudServiceSnapshot) -> bool:
    try:
        _verify(entry, service)
    except PlatformRejected:
        return False
    return True


def _lacks(entry: Pending, service: CloudServiceSnapshot) -> str | None:
    """What of the write's model the service does not hold (None: it holds all of it)."""
    deployed = set(thumbprints_by_role(service).values())
    missing = set(entry.expect_thumbprints) - deployed
    if missing:
        return f"{service.name} does not hold thumbprint(s) {sorted(missing)}"
    urls = {u.lower() for g in service.secrets for u in g.certificate_urls}
    lacking = [u for u in entry.expect_secrets if u.lower() not in urls]
    if lacking:
        return f"{service.name} osProfile lacks {lacking}"
    return None


def _verify(entry: Pending, final: CloudServiceSnapshot) -> None:
    """The service as Azure now reports it must hold what the write put there."""
    if (final.provisioning_state or "").lower() != "succeeded":
        raise PlatformRejected(
            final.provisioning_state or "Unknown",
            f"{final.name} ended in state {final.provisioning_state}",
        )
    lacking = _lacks(entry, final)
    if lacking:
        raise PlatformRejected("VerificationFailed", lacking)


def thumbprints_by_role(service: CloudServiceSnapshot) -> dict[str, str]:
    return {
        f"{c.role}/{c.name}": c.thumbprint.upper()
        for c in cscfg.parse(service.configuration).certificates
    }
