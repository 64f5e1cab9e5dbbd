"""From what arrives (a Key Vault event, a queued hint, a queued batch of services) to a run.

Everything that arrives is a hint: it names a vault and a certificate (and maybe services),
each checked against the scope before anything is read; which services use the
certificate, and which version they should hold, come from Azure and Key Vault themselves.
A ``CertificateNearExpiry`` or ``CertificateExpired`` event adds an action to its run
(:mod:`shared.rotation.renewing`); the services converge on what exists either way.
"""

from __future__ import annotations

import logging

from shared.config import Settings
from shared.domain.errors import NotFound, VaultAccessDenied
from shared.domain.events import EXPIRED, NEAR_EXPIRY, CertificateEvent
from shared.domain.messages import Hint, Origin, Requested, ServiceBatch, batches
from shared.domain.model import CloudServiceSnapshot
from shared.domain.records import Action, RunRecord, Trigger
from shared.domain.runs import Run
from shared.rotation.discovery import Discovery
from shared.rotation.ports import RunRecords, ServiceReader
from shared.rotation.recording import RunRecorder, trigger_of
from shared.rotation.renewing import Renewals
from shared.rotation.rotate import Rotator

log = logging.getLogger("certrotate")


class Intake:
    def __init__(
        self,
        settings: Settings,
        compute: ServiceReader,
        storage: RunRecords,
        discovery: Discovery,
        records: RunRecorder,
        renewals: Renewals,
        rotator: Rotator,
    ) -> None:
        self.settings = settings
        self.compute = compute
        self.storage = storage
        self.discovery = discovery
        self.records = records
        self.renewals = renewals
        self.rotator = rotator

    def hint(self, hint: Hint) -> tuple[Run | None, list[ServiceBatch]]:
        """See :meth:`shared.rotation.engine.Engine.handle_hint`."""
        if not self.discovery.vault_in_scope(hint.vault_id):
            return None, []
        event = _event_of(hint.origin, hint.vault_id, hint.certificate, hint.version)
        size = self.settings.services_per_message
        run, rest = self.event(event, size)
        again = [r.service_id for r in run.results if r.outcome == "transient"] if run else []
        ids = again + [s.id for s in rest]
        return run, batches(hint.vault_id, hint.certificate, hint.origin, ids, size)

    def batch(self, batch: ServiceBatch) -> Run | None:
        """See :meth:`shared.rotation.engine.Engine.handle_batch`."""
        if not self.discovery.vault_in_scope(batch.vault_id):
            return None
        run_id, force = None, False
        if isinstance(batch.origin, Requested):  # checked before anything is read from Azure
            asked = self._requested(batch)
            if asked is None:
                return None
            run_id, force = batch.origin.run_id, asked
        services = []
        for service_id in batch.services:
            if not self.discovery.service_in_scope(service_id):
                log.warning("batch names %s, which is out of scope: skipped", service_id)
                continue
            try:
                snapshot = self.compute.get(service_id)
            except NotFound:
                log.info("%s no longer exists: skipped", service_id)
                continue
            if snapshot.references(batch.vault_id, batch.certificate):
                services.append(snapshot)
        if not services:
            if run_id is not None:  # the operator follows this run: it must end
                self.records.nothing_left(run_id, batch)
            return None
        trigger = trigger_of(batch.origin)
        try:
            cert = self.discovery.read_certificate(batch.vault_id, batch.certificate, services)
        except VaultAccessDenied as exc:
            return self.records.vault_refused(
                trigger, batch.vault_id, batch.certificate, services, exc
            )
        return self.rotator.rotate(
            batch.vault_id,
            batch.certificate,
            trigger,
            services=services,
            certificate_state=cert,
            wait_seconds=self.settings.event_wait_seconds,
            force=force,
            run_id=run_id,
        )

    def _requested(self, batch: ServiceBatch) -> bool | None:
        """For a batch an operator's request queued: its ``force``, read from the queued
        run's record; None (refused, logged) unless that record is a manual run of this
        vault and certificate, naming these services, that has not ended (a forged or
        duplicate message must neither overwrite a finished run's record nor lift a
        backoff nobody lifted)."""
        assert isinstance(batch.origin, Requested)
        run_id = batch.origin.run_id
        try:
            record: RunRecord | None = self.storage.load_record(run_id)
        except NotFound:
            record = None
        if record is None or not record.queued_for(
            batch.vault_id, batch.certificate, batch.services
        ):
            log.error("batch for manual run %s refused: no such queued run of %s/%s naming "
                      "its services", run_id, batch.vault_id.rsplit("/", 1)[-1],
                      batch.certificate)
            return None
        if not record.status.resumable:
            log.info("manual run %s is %s already: its batch has nothing to do", run_id,
                     record.status)
            return None
        return record.force

    def event(
        self, event: CertificateEvent, first: int | None
    ) -> tuple[Run | None, list[CloudServiceSnapshot]]:
        """The event's run over its ``first`` services (all if None), and the others."""
        services = self.discovery.services_using(event.vault_id, event.certificate)
        if not services:
            log.info(
                "event %s: no cloud service in scope uses %s/%s; nothing to do",
                event.event_id,
                event.vault_name,
                event.certificate,
            )
            return None, []
        trigger = Trigger("event", event.kind, event.event_id)
        try:
            cert = self.discovery.read_certificate(event.vault_id, event.certificate, services)
        except VaultAccessDenied as exc:
            refused = self.records.vault_refused(
                trigger, event.vault_id, event.certificate, services, exc
            )
            return refused, []
        actions: list[Action] = []
        if event.kind == NEAR_EXPIRY:
            try:
                actions.append(self.renewals.near_expiry(event, cert, services))
            except VaultAccessDenied as exc:  # the services still converge on what exists
                log.error("event %s: %s", event.event_id, exc)
                actions.append(Action("renew-refused", str(exc)))
        elif event.kind == EXPIRED:
            actions.append(self.renewals.expired(event, cert, services))
        mine = services if first is None else services[:first]
        run = self.rotator.rotate(
            event.vault_id,
            event.certificate,
            trigger,
            services=mine,
            certificate_state=cert,
            actions=actions,
            wait_seconds=self.settings.event_wait_seconds,
        )
        return run, services[len(mine) :]


def _event_of(
    origin: Origin, vault_id: str, certificate: str, version: str | None
) -> CertificateEvent:
    """The event a queued message came from, as far as the message tells (ids only)."""
    return CertificateEvent(
        kind=origin.event_type,
        event_id=origin.event_id,
        vault_id=vault_id,
        vault_name=vault_id.rsplit("/", 1)[-1],
        certificate=certificate,
        version=version,
        not_before=None,
        expires=None,
        event_time=None,
    )
