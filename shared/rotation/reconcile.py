"""Reconcile: converge every managed service in scope, as events would have.

The backstop for lost events and for services nobody told us about: journaled writes are
finished first, then the services are grouped by the (vault, certificate) pairs they use
and each group is a run (or, fanned out, a dry run whose changes are queued as batches).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.config import Settings
from shared.domain import convergence
from shared.domain.errors import RotationError, TransientError
from shared.domain.model import CloudServiceSnapshot
from shared.domain.records import Trigger
from shared.rotation.clock import budget
from shared.rotation.pending import PendingWrites
from shared.rotation.ports import ServiceReader
from shared.rotation.queueing import Queueing
from shared.rotation.rotate import Rotator

log = logging.getLogger("certrotate")


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        compute: ServiceReader,
        pending: PendingWrites,
        rotator: Rotator,
        queueing: Queueing,
        now: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.compute = compute
        self.pending = pending
        self.rotator = rotator
        self.queueing = queueing
        self.now = now

    def reconcile(
        self, wait_seconds: float | None = None, fan_out: bool = False
    ) -> dict[str, Any]:
        """See :meth:`shared.rotation.engine.Engine.reconcile`."""
        started = self.now()
        remaining = budget(
            self.settings.operation_wait_seconds if wait_seconds is None else wait_seconds
        )
        fan_out = fan_out and self.queueing.queues is not None
        outcomes = self.pending.sweep(remaining(), by="reconcile", look=fan_out)
        groups: dict[tuple[str, str], list[CloudServiceSnapshot]] = {}
        names: dict[tuple[str, str], tuple[str, str]] = {}
        services = 0
        for service in self.compute.list_services():
            admitted = convergence.admit(service, untagged=self.settings.untagged)
            if not admitted.writes:  # counted as opted-out or unmanaged
                outcomes[str(admitted.reason)] += 1
                continue
            services += 1
            for vault_id, certificate in service.certificates_used():
                key = (vault_id.lower(), certificate.lower())
                groups.setdefault(key, []).append(service)
                names.setdefault(key, (vault_id, certificate))
        runs: list[str] = []
        for key, members in sorted(groups.items()):
            vault_id, certificate = names[key]
            try:
                run = self.rotator.rotate(
                    vault_id,
                    certificate,
                    Trigger("reconcile"),
                    services=members,
                    wait_seconds=remaining(),
                    pending=set(),
                    dry_run=fan_out,
                )
                if fan_out:
                    self.queueing.queue_changes(run)
            except RotationError as exc:
                log.warning("reconcile: %s/%s: %s", vault_id, certificate, exc)
                outcomes["transient" if isinstance(exc, TransientError) else "failed"] += 1
                continue
            outcomes.update(
                "queued" if fan_out and r.outcome == "dry-run" else r.outcome
                for r in run.results
            )
            if not run.quiet and not fan_out:
                runs.append(run.id)
        report = {
            "started": started.isoformat(),
            "seconds": round((self.now() - started).total_seconds(), 3),
            "services": services,
            "certificates": len(groups),
            "outcomes": dict(sorted(outcomes.items())),
            "runs": runs,
        }
        log.info("reconcile: %s", report)
        return report
