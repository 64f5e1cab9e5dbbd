"""The rotation engine: from a hint (vault + certificate name) to converged services.

Flow for one hint: discover the cloud services in scope whose ``osProfile.secrets``
reference the certificate; take the vault URL from those references (never from an
event); read the certificate's versions once; then, per service and isolated from the
others, decide (pure, :mod:`shared.domain.convergence`) and, unless it is a no-op or a dry
run, execute. Each run is stored as a JSON record. A transient failure of any service
makes ``Engine.rotate`` (:meth:`shared.rotation.rotate.Rotator.rotate`) report
``transient`` so event handlers can fail the invocation and let Event Grid retry; the
retry is safe because planning starts again from the truth.

This class is the facade handlers, the CLI and tests call; each part lives in a module
named for what it owns:

- :mod:`~shared.rotation.discovery`: which services use a certificate, scope checks,
  reading the certificate once;
- :mod:`~shared.rotation.intake`: events, hints and batches into runs;
- :mod:`~shared.rotation.renewing`: acting on the renewal decision (NearExpiry, Expired);
- :mod:`~shared.rotation.rotate`: one run over a certificate's services;
- :mod:`~shared.rotation.converge`: one service (decide, then act through the executor);
- :mod:`~shared.rotation.executor`, :mod:`~shared.rotation.writing`,
  :mod:`~shared.rotation.follow`: the one PUT under the lease, and following it (the
  journal's driver);
- :mod:`~shared.rotation.pending`: journaled writes finished later, the backoff they keep;
- :mod:`~shared.rotation.recording`: run records and what later invocations write into them;
- :mod:`~shared.rotation.queueing`: messages to the app's own queues;
- :mod:`~shared.rotation.reconcile`: the backstop over every managed service;
- :mod:`~shared.rotation.ports`: what all of them need from Azure and storage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from shared.adapters.clients import Clients
from shared.adapters.compute import Compute
from shared.adapters.keyvault import KeyVault
from shared.adapters.queues import Queues
from shared.adapters.storage import Storage
from shared.config import Settings
from shared.domain.events import CertificateEvent
from shared.domain.messages import Follow, Hint, Origin, Requested, ServiceBatch
from shared.domain.model import Certificate, CloudServiceSnapshot
from shared.domain.runs import Run
from shared.observability.notify import observer
from shared.rotation.clock import utcnow
from shared.rotation.converge import Converger
from shared.rotation.discovery import Discovery
from shared.rotation.intake import Intake
from shared.rotation.pending import PendingWrites
from shared.rotation.ports import Ports
from shared.rotation.queueing import Queueing
from shared.rotation.reconcile import Reconciler
from shared.rotation.recording import RunRecorder
from shared.rotation.renewing import Renewals
from shared.rotation.rotate import Rotator


class Engine:
    """Builds the parts below from the adapters once; ``now`` and ``notify`` are read at
    each use (a test may set them on a built engine)."""

    def __init__(
        self,
        settings: Settings,
        compute: Compute,
        keyvault: KeyVault,
        storage: Storage,
        now: Callable[[], datetime] = utcnow,
        notify: Callable[[Run], None] | None = None,
        queues: Queues | None = None,
    ) -> None:
        self.settings = settings
        self.compute = compute
        self.keyvault = keyvault
        self.storage = storage
        self.now = now
        self.notify = notify
        self.queues = queues
        self.discovery = Discovery(settings, compute, keyvault)
        self.records = RunRecorder(storage, self._clock, self._announce)
        self.pending = PendingWrites(
            settings, compute, storage, self._clock, self.records,
            self.discovery.service_in_scope,
        )
        self.queueing = Queueing(settings, queues, self.discovery, self.records)
        converger = Converger(
            Ports(compute, storage, settings, self._clock), keyvault, self.records,
            self.pending.finish, self.pending.ended,
        )
        self.rotator = Rotator(
            self.discovery, converger, self.records, self.queueing, storage, self._clock
        )
        # One run over a certificate's services: Rotator.rotate itself (its thirteen
        # keyword options are spelled once, there).
        self.rotate = self.rotator.rotate
        self.intake = Intake(
            settings, compute, storage, self.discovery, self.records,
            Renewals(settings, keyvault, self._clock), self.rotator,
        )
        self.reconciler = Reconciler(
            settings, compute, self.pending, self.rotator, self.queueing, self._clock
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        clients = Clients(settings)
        return cls(
            settings,
            Compute(clients),
            KeyVault(clients),
            Storage(clients),
            notify=observer(settings, clients),
            queues=Queues(clients) if settings.queue_url else None,
        )

    def _clock(self) -> datetime:
        return self.now()

    def _announce(self, run: Run) -> None:
        if self.notify is not None:
            self.notify(run)

    # -- discovery -----------------------------------------------------------------------

    def services_using(
        self, vault_id: str, certificate: str, only: Iterable[str] = ()
    ) -> list[CloudServiceSnapshot]:
        return self.discovery.services_using(vault_id, certificate, only)

    def read_certificate(
        self, vault_id: str, certificate: str, services: list[CloudServiceSnapshot]
    ) -> Certificate:
        """Read the certificate from the vault URL the services themselves reference."""
        return self.discovery.read_certificate(vault_id, certificate, services)

    # -- what arrives --------------------------------------------------------------------

    def handle_event(self, event: CertificateEvent) -> Run | None:
        """Act on a Key Vault certificate event (a hint) for every service using the
        certificate, in this invocation; None if nothing uses it.

        Updates are followed for ``EVENT_WAIT_SECONDS`` in all, so one worker is not held
        for minutes; what is left is journaled and finished by :meth:`finish_pending` (the
        ``follow_updates`` timer).
        """
        return self.intake.event(event, None)[0]

    def handle_hint(self, hint: Hint) -> tuple[Run | None, list[ServiceBatch]]:
        """Run the rotation a queued :class:`Hint` names for the first
        ``SERVICES_PER_MESSAGE`` services using the certificate (each attempt is a run of its
        own), and return the batches to queue: the other services, and those of this run
        that hit a transient failure (their retry is the batch's, so one busy service does
        not hold back the rest)."""
        return self.intake.hint(hint)

    def handle_batch(self, batch: ServiceBatch) -> Run | None:
        """Converge the services a :class:`ServiceBatch` names, as a run of its own; None if
        none of them (still) uses the certificate.

        The ids come from a queue message: each must be in scope before it is read, and
        must still reference the certificate (a service changed or deleted since the hint
        is skipped, as discovery would have).
        """
        return self.intake.batch(batch)

    def gave_up(
        self, vault_id: str, certificate: str, origin: Origin | Requested | None,
        services: tuple[str, ...],
    ) -> None:
        """Record and announce a message the queue gave up on (its poison queue got it): a
        hint (``services`` empty) or a batch of ``services``.

        A run of its own records a ``gave-up`` action (the attempts' runs, where they got
        that far, hold each attempt's errors), which status and notifications raise as an
        alert; the services themselves converge on reconcile's next tick.
        """
        self.records.gave_up(vault_id, certificate, origin, services)

    # -- runs ------------------------------------------------------------------------------

    def reconcile(
        self, wait_seconds: float | None = None, fan_out: bool = False
    ) -> dict[str, Any]:
        """Converge every managed service in scope to the desired version of every
        certificate it uses, as events would have; finish journaled writes first.

        Cheap when nothing changed: one listing of services (paged), one of journals, one
        read per (vault, certificate) pair, thumbprints cached by versioned URL, and no
        write at all (runs with nothing but no-ops are not stored). ``wait_seconds`` is the
        whole run's budget for following updates, as in :meth:`rotate`.

        ``fan_out`` (the timer, when the app has its queue endpoint): each certificate's
        services are planned here, as a dry run (the same reads), and only those with a
        change to make are queued as :class:`ServiceBatch` messages (counted ``queued``),
        so the writes are spread over the instances like an event's, and the timer, which
        the host never runs twice at once, is not held for hundreds of PUTs; journaled
        writes are only looked at.
        """
        return self.reconciler.reconcile(wait_seconds, fan_out)

    # -- queues ----------------------------------------------------------------------------

    def queue_rotation(
        self, vault_id: str, certificate: str, only: Iterable[str] = (), force: bool = False
    ) -> list[Run]:
        """An operator's rotation, queued: the services are checked and the certificate
        read here (an unknown vault, certificate or service is NotFound at once), then each
        batch of ``SERVICES_PER_MESSAGE`` services is a ``queued`` run whose record is
        written before its message is sent, so the answer's run ids can be followed at
        once, and the workers, on any instance, do the PUTs. A message that cannot be sent
        leaves its run ``transient`` (saying so) and raises TransientError."""
        return self.queueing.queue_rotation(vault_id, certificate, only, force)

    def wait_again(self, batch: ServiceBatch, run: Run) -> bool:
        """Send ``batch`` again, for its services of ``run`` that are transient, with a
        visibility delay, when each of them only waits for something in progress (another
        invocation's lease, an update still running): True if sent, and the attempt ends
        there. Waiting is not failing, so it spends none of the message's attempts, as
        Event Grid's retries over hours spent none of a delivery's; after MAX_WAITS sends
        (about 2.5 h) it fails like any other attempt. False when something else failed,
        or the app has no queue endpoint to send with."""
        return self.queueing.wait_again(batch, run)

    def follow_again(self, message: Follow) -> None:
        """Queue ``message`` (the next look), ``FOLLOW_POLL_SECONDS`` from now. Raises
        TransientError when storage cannot take it: the look that asked for it is then
        retried by the queue, nothing is lost."""
        self.queueing.follow_again(message)

    # -- writes that outlived their invocation ---------------------------------------------

    def handle_follow(self, message: Follow) -> Follow | None:
        """Look once at each journaled update ``message`` names and finish those that ended
        (verify, walk the next update domain, record in the run that sent it, notify);
        return the look to queue for the rest, or None when nothing is left to follow.

        A look is one read while Azure still applies the update (no poller left running);
        a service another invocation holds (the sweep, a run) is looked at again too, as
        is one that could not be read now. Past MAX_FOLLOWS looks the update is left to
        the ``follow_updates`` sweep.
        """
        return self.pending.look(message)

    def finish_pending(
        self, wait_seconds: float | None = None, by: str = "follow_updates", look: bool = False
    ) -> Counter[str]:
        """Follow every journaled write in scope to its end and record it in the run that
        sent it; for ``wait_seconds`` in all (default ``OPERATION_WAIT_SECONDS``).
        ``look``: only look at each (the sweep for journals whose follow message was lost:
        it finishes those that ended and leaves the rest running, waiting for none).

        Counts ``resumed-<status>`` per write, ``busy`` where another invocation holds the
        service (it is following it already: not a failure) and ``transient`` where the
        write could not be followed now. One listing of journals when there is nothing to do.
        """
        return self.pending.sweep(wait_seconds, by, look)
