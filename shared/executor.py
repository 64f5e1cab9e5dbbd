"""Carry out one plan on one cloud service: the only code path that writes to Azure.

Steps, each logged: re-read the service under its lock and re-plan (the caller's
``replan`` reads the certificate again too: another invocation may have converged the
service already, or a newer version may have appeared), check the package is still the
one deployed, mint a fresh package SAS, send ONE PUT carrying cscfg + osProfile +
packageUrl, follow the long-running operation (renewing the lock), verify the result.
The caller stores the record; the SAS itself is never returned in anything that is logged
or stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from shared import cscfg
from shared.adapters.compute import Compute, operation_id
from shared.adapters.storage import Storage
from shared.config import Settings
from shared.errors import PlatformRejected, PreconditionFailed, TransientError
from shared.model import PACKAGE_MD5_TAG, CloudServiceSnapshot, Plan

log = logging.getLogger("certrotate.executor")
IN_PROGRESS = {"creating", "updating", "deleting"}


@dataclass
class Execution:
    """What happened while executing (mutable while it runs, then read by the caller)."""

    status: str = "pending"  # noop | succeeded | updating
    operation_id: str | None = None
    sas_expiry: datetime | None = None
    continuation_token: str | None = None
    final_thumbprints: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def execute(
    plan: Plan,
    service: CloudServiceSnapshot,
    replan: Callable[[CloudServiceSnapshot], Plan],
    compute: Compute,
    storage: Storage,
    settings: Settings,
    now: Callable[[], datetime],
    progress: Callable[[Execution], None],
    wait_seconds: float,
) -> tuple[Plan, Execution]:
    """Execute ``plan``; returns the plan actually applied and what happened."""
    run = Execution()
    started = time.monotonic()

    def mark(step: str) -> None:
        run.timings[step] = round(time.monotonic() - started, 3)

    package = service.package_url or ""
    with storage.lock(service.id) as lease:
        mark("locked")
        # Re-read under the lock: the truth may have moved since planning.
        fresh = compute.get(service.id)
        if (fresh.provisioning_state or "").lower() in IN_PROGRESS:
            raise TransientError(
                f"{fresh.name} is {fresh.provisioning_state}: another operation is running"
            )
        plan = replan(fresh)
        if plan.is_noop:
            run.status = "noop"
            log.info("%s: already converged under the lock; nothing to write", fresh.name)
            return plan, run
        # Never deploy a package other than the one running.
        expected_md5 = fresh.tags.get(PACKAGE_MD5_TAG)
        if expected_md5:
            actual = storage.package_md5(package)
            if actual != expected_md5:
                raise PreconditionFailed(
                    f"package {package} changed since it was deployed: Content-MD5 is {actual}, "
                    f"tag {PACKAGE_MD5_TAG} says {expected_md5}; redeploy it or update the tag"
                )
        sas_url, run.sas_expiry = storage.package_sas(package, settings.package_sas_hours, now())
        mark("sas")
        log.info(
            "%s: package SAS minted (read-only, expires %s)",
            fresh.name,
            run.sas_expiry.isoformat(timespec="seconds"),
        )
        poller = compute.begin_update(fresh, plan.configuration_after, plan.secrets_after, sas_url)
        del sas_url
        run.operation_id = operation_id(poller)
        run.continuation_token = poller.continuation_token()
        run.status = "updating"
        mark("submitted")
        log.info("%s: update submitted (operation %s)", fresh.name, run.operation_id)
        progress(run)
        final = compute.wait(poller, wait_seconds, lease.renew)
        if final is None:
            log.warning(
                "%s: update still running after %.0fs; a later run will follow it",
                fresh.name,
                wait_seconds,
            )
            return plan, run
        mark("succeeded")
        verify(plan, final)
        run.final_thumbprints = thumbprints_by_role(final)
        run.status = "succeeded"
        log.info(
            "%s: operation succeeded in %.1fs",
            fresh.name,
            run.timings["succeeded"] - run.timings["submitted"],
        )
    return plan, run


def verify(plan: Plan, final: CloudServiceSnapshot) -> None:
    """The service as Azure now reports it must hold what the plan wrote."""
    if (final.provisioning_state or "").lower() != "succeeded":
        raise PlatformRejected(
            final.provisioning_state or "Unknown",
            f"{final.name} ended in state {final.provisioning_state}",
        )
    deployed = set(thumbprints_by_role(final).values())
    missing = {c.new for c in plan.changes} - deployed
    if missing:
        raise PlatformRejected(
            "VerificationFailed", f"{final.name} does not hold thumbprint(s) {sorted(missing)}"
        )
    urls = {u.lower() for g in final.secrets for u in g.certificate_urls}
    if plan.desired.secret_id.lower() not in urls:
        raise PlatformRejected(
            "VerificationFailed", f"{final.name} osProfile lacks {plan.desired.secret_id}"
        )


def thumbprints_by_role(service: CloudServiceSnapshot) -> dict[str, str]:
    return {
        f"{c.role}/{c.name}": c.thumbprint.upper()
        for c in cscfg.parse(service.configuration).certificates
    }
