"""Which cloud services use a certificate, what is in scope, and reading the certificate once.

Which services use a certificate is *discovered* from their ``osProfile.secrets`` (no
mapping is kept anywhere), and the vault URL the certificate is read from comes from those
references, never from an event: an event or message only names a vault and a
certificate, and everything it names is checked against ``ROTATION_SUBSCRIPTIONS`` (and
``ROTATION_RESOURCE_GROUPS``) before anything is read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from shared.config import Settings
from shared.domain.compute_ids import split_service_id
from shared.domain.errors import NotFound
from shared.domain.model import Certificate, CloudServiceSnapshot, SecretUrl
from shared.rotation.ports import Certificates, ServiceReader

log = logging.getLogger("certrotate")


class Discovery:
    def __init__(
        self, settings: Settings, compute: ServiceReader, keyvault: Certificates
    ) -> None:
        self.settings = settings
        self.compute = compute
        self.keyvault = keyvault
        self.destinations = settings.destinations()

    def services_using(
        self, vault_id: str, certificate: str, only: Iterable[str] = ()
    ) -> list[CloudServiceSnapshot]:
        wanted = {s.lower() for s in only}
        found = [s for s in self.compute.list_services() if s.references(vault_id, certificate)]
        if wanted:
            found = [s for s in found if s.id.lower() in wanted]
        return found

    def asked_for(
        self, vault_id: str, certificate: str, only: Iterable[str]
    ) -> list[CloudServiceSnapshot]:
        """The services an operator's rotation covers: those in scope using the certificate
        (``only`` these, if given); NotFound for a vault out of scope or a service that
        does not use it."""
        self.vault_or_not_found(vault_id)
        only = tuple(only)
        services = self.services_using(vault_id, certificate, only)
        missing = {o.lower() for o in only} - {s.id.lower() for s in services}
        if missing:
            raise NotFound(
                f"cloud service(s) {sorted(missing)} do not reference certificate "
                f"'{certificate}' of vault {vault_id} (or are out of scope)"
            )
        return services

    def read_certificate(
        self, vault_id: str, certificate: str, services: list[CloudServiceSnapshot]
    ) -> Certificate:
        """Read the certificate from the vault URL the services themselves reference."""
        urls = {
            parsed.vault_url
            for s in services
            for g in s.secrets
            if g.source_vault_id.lower() == vault_id.lower()
            for u in g.certificate_urls
            if (parsed := SecretUrl.parse(u))
            and parsed.name.lower() == certificate.lower()
            and self.destinations.allows(parsed.vault_url)
        }
        if not urls:
            raise NotFound(
                f"no cloud service in scope references certificate '{certificate}' "
                f"of vault {vault_id}"
            )
        return self.keyvault.certificate(vault_id, sorted(urls)[0], certificate)

    def vault_or_not_found(self, vault_id: str) -> None:
        if not self.settings.in_scope(vault_id):
            raise NotFound(
                f"vault {vault_id} is in a subscription not in ROTATION_SUBSCRIPTIONS"
            )

    def vault_in_scope(self, vault_id: str) -> bool:
        """A queued message naming a vault outside ``ROTATION_SUBSCRIPTIONS`` (only someone
        with queue-write access can send one) is refused at once, without a request: a
        retry cannot bring it into scope."""
        if self.settings.in_scope(vault_id):
            return True
        log.error("message for vault %s refused: its subscription is not in "
                  "ROTATION_SUBSCRIPTIONS", vault_id.rsplit("/", 1)[-1])
        return False

    def service_in_scope(self, service_id: str) -> bool:
        """A service (named by a message or a journal) this app may touch: the journals'
        storage may be shared."""
        subscription, group, _ = split_service_id(service_id)
        groups = {g.lower() for g in self.settings.resource_groups}
        return subscription.lower() in {s.lower() for s in self.settings.subscriptions} and (
            not groups or group.lower() in groups
        )
