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

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.config import Settings
from shared.domain.convergence import Reason, after_earlier_write
from shared.domain.errors import (
    PreconditionFailed,
    TransientError,
    Waiting,
)
from shared.domain.journal import Pending
from shared.domain.model import (
    PACKAGE_MD5_TAG,
    CloudServiceSnapshot,
    Plan,
)
from shared.domain.outcomes import WriteStatus
from shared.domain.packages import PackageRef, parse_package
from shared.domain.runs import Execution, WriteResult
from shared.rotation.follow import follow
from shared.rotation.ports import CloudServices, Ports, Store
from shared.rotation.writing import IN_PROGRESS, Context, Ended, log, submit


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
        """A journaled write has ended (see :data:`~shared.rotation.writing.Ended`)."""
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
    compute: CloudServices,
    storage: Store,
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


def package_of(service: CloudServiceSnapshot, settings: Settings) -> PackageRef | None:
    """The package the service's tag names, parsed against ``PACKAGE_CONTAINERS``; None
    for an untagged service under ``ROTATION_UNTAGGED=update`` (a configuration-only PUT).

    Raises PackageRefused (bad input: the service is refused) naming the rule broken.
    """
    if not service.package_url and settings.untagged == "update":
        return None
    return parse_package(service.package_url or "", settings.package_containers)
