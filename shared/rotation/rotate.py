"""One run: converge every service using a certificate, each isolated from the others.

The services come from discovery (or the caller, which found them already); the
certificate is read once; each service is converged (:mod:`shared.rotation.converge`) and
the run is saved after each, so a reader sees it grow. A run ends ``transient`` when a
service failed transiently (the message is retried, safely: planning starts again from the
truth; an operator's queued run is that same run again, so it is ``retrying`` until an
attempt ends it or the queue gives up), and its updates still running are queued to be
looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from shared.domain.model import Certificate, CloudServiceSnapshot
from shared.domain.outcomes import RunStatus
from shared.domain.records import Action, Trigger
from shared.domain.runs import Run
from shared.observability import logcontext
from shared.rotation.clock import budget
from shared.rotation.converge import Converger
from shared.rotation.discovery import Discovery
from shared.rotation.ports import Journals
from shared.rotation.queueing import Queueing
from shared.rotation.recording import RunRecorder, new_run_id

log = logging.getLogger("certrotate")


class Rotator:
    def __init__(
        self,
        discovery: Discovery,
        converger: Converger,
        records: RunRecorder,
        queueing: Queueing,
        journals: Journals,
        now: Callable[[], datetime],
    ) -> None:
        self.discovery = discovery
        self.converger = converger
        self.records = records
        self.queueing = queueing
        self.journals = journals
        self.now = now

    def rotate(
        self,
        vault_id: str,
        certificate: str,
        trigger: Trigger,
        *,
        only: Iterable[str] = (),
        dry_run: bool = False,
        services: list[CloudServiceSnapshot] | None = None,
        certificate_state: Certificate | None = None,
        actions: Iterable[Action] = (),
        wait_seconds: float | None = None,
        pending: set[str] | None = None,
        force: bool = False,
        run_id: str | None = None,
    ) -> Run:
        """Converge every service in scope using the certificate; never raises for one
        service's failure (it is in the run's results).

        ``wait_seconds`` bounds how long the run follows its updates, all services together
        (default ``OPERATION_WAIT_SECONDS``), so an invocation's length does not grow with
        the number of services: once it is spent, later updates are still sent but reported
        ``updating``, and their journal lets a later invocation finish them; the updates
        themselves go on in Azure. ``pending``: ids (lower case) of services with a journaled
        write to finish first (listed here unless the caller already did). ``force``: an
        operator's explicit request, which writes a version even while it backs off.
        """
        run = Run(
            id=run_id or new_run_id(self.now()),
            trigger=trigger,
            vault_id=vault_id,
            certificate=certificate,
            dry_run=dry_run,
            started=self.now(),
            actions=list(actions),
            force=force,
        )
        if services is None:
            services = self.discovery.asked_for(vault_id, certificate, only)
        else:
            self.discovery.vault_or_not_found(vault_id)
        if run_id is not None:
            run.waiting = tuple(s.id for s in services)
        with logcontext.bound(run_id=run.id):
            cert = certificate_state or self.discovery.read_certificate(
                vault_id, certificate, services
            )
            log.info(
                "run %s: %s/%s used by %d cloud service(s)",
                run.id,
                vault_id.rsplit("/", 1)[-1],
                certificate,
                len(services),
            )
            self.records.save(run)
            remaining = budget(
                self.converger.settings.operation_wait_seconds
                if wait_seconds is None
                else wait_seconds
            )
            if pending is None:
                pending = set() if dry_run else self.journals.pending_services()
            for service in services:
                with logcontext.bound(service_id=service.id):
                    result = self.converger.converge(run, service, cert, remaining, pending)
                run.results.append(result)
                self.records.save(run)
            # A queued run (``run_id``) failing transiently is run again by its queue.
            run.status = RunStatus.of(
                (r.outcome for r in run.results), left_updating=False, retried=run_id is not None
            )
            run.finished = self.now()
            self.records.save(run)
            if not dry_run:
                self.records.announce(run)
            self.queueing.follow_later(run)
        return run
