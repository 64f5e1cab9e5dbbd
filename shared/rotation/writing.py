"""Sending a write under the service's lease: the one place a PUT goes to Azure.

:class:`Context` is what a holder of the lease works with (the service, the adapters,
the lease, the time left); :func:`submit` mints the package SAS, journals the intent,
sends the PUT and journals its continuation token, for the rotation and for a rollback
alike. Following the write to its end is :mod:`shared.rotation.follow`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from azure.core.polling import LROPoller

from shared.adapters.compute import operation_id
from shared.config import Settings
from shared.domain.errors import PlatformRejected, Unconfirmed
from shared.domain.journal import Pending
from shared.domain.model import PACKAGE_TAG, CloudServiceSnapshot, SecretGroup
from shared.domain.outcomes import WriteStatus
from shared.domain.packages import parse_package
from shared.domain.runs import Execution, WriteResult
from shared.rotation.ports import CloudServices, JournalLease, Store

log = logging.getLogger("certrotate.executor")  # one logger for writing and following
IN_PROGRESS = {"creating", "updating", "deleting"}
PROGRESS_EVERY = 10.0  # seconds between "still updating" lines while following an operation
# A look's wait for the status of an operation it resumed (one poll, asked at once).
LOOK_SECONDS = 10.0


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
