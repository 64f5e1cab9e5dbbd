"""Cloud services through azure-mgmt-compute 37.2.0 (api-version 2024-11-04).

Owns every call to ``Microsoft.Compute/cloudServices``: listing the services in scope,
reading one, and sending the single PUT that changes cscfg, ``osProfile`` and
``packageUrl`` together. The PUT body is the resource exactly as just read with only those
three properties replaced, so nothing else the operator set is lost (``packageUrl`` is
write-only in Azure, which is why every PUT must supply it again).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ServiceResponseError
from azure.core.polling import LROPoller
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import (
    CloudService,
    CloudServiceOsProfile,
    CloudServiceUpdate,
    CloudServiceVaultCertificate,
    CloudServiceVaultSecretGroup,
    SubResource,
)
from azure.mgmt.core.polling.arm_polling import ARMPolling

from shared.adapters.arm_errors import error_code, translate
from shared.adapters.clients import Clients
from shared.domain.compute_ids import split_service_id
from shared.domain.errors import PlatformRejected, TransientError, Unconfirmed
from shared.domain.model import CloudServiceSnapshot, SecretGroup, secret_key


class Compute:
    def __init__(self, clients: Clients) -> None:
        self._clients = clients
        self._by_subscription: dict[str, ComputeManagementClient] = {}

    def _client(self, subscription: str) -> ComputeManagementClient:
        client = self._by_subscription.get(subscription.lower())
        if client is None:
            settings = self._clients.settings
            extra: dict[str, Any] = {}
            if settings.arm_polling_interval is not None:
                extra["polling_interval"] = settings.arm_polling_interval
            client = ComputeManagementClient(
                self._clients.credential,
                subscription,
                base_url=settings.arm_endpoint,
                credential_scopes=["https://management.azure.com/.default"],
                **self._clients.options(),
                **extra,
            )
            self._by_subscription[subscription.lower()] = client
        return client

    def list_services(self) -> Iterator[CloudServiceSnapshot]:
        """Every cloud service in scope (pages followed by the SDK)."""
        settings = self._clients.settings
        for subscription in settings.subscriptions:
            operations = self._client(subscription).cloud_services
            try:
                if settings.resource_groups:
                    for rg in settings.resource_groups:
                        yield from (_snapshot(cs) for cs in operations.list(rg))
                else:
                    yield from (_snapshot(cs) for cs in operations.list_all())
            except AzureError as exc:
                raise translate(
                    exc, f"listing cloud services in subscription {subscription}"
                ) from exc

    def get(self, service_id: str) -> CloudServiceSnapshot:
        sub, rg, name = split_service_id(service_id)
        try:
            return _snapshot(self._client(sub).cloud_services.get(rg, name))
        except AzureError as exc:
            raise translate(exc, f"reading cloud service {name}") from exc

    def begin_update(
        self,
        service: CloudServiceSnapshot,
        configuration: str,
        secrets: tuple[SecretGroup, ...],
        package_url: str | None,
        poll: bool = True,
    ) -> LROPoller[CloudService]:
        """Send the one PUT; the poller follows the long-running operation, or with
        ``poll`` False never polls it (:class:`Unpolled`: the caller does not wait, and
        follows it later by continuation token).

        ``package_url`` None: a configuration-only update (no ``packageUrl`` in the body),
        which Azure accepts and which keeps the deployed package (Update-AzCloudService
        recording).

        Raises Unconfirmed when the PUT may have landed without Azure saying so (a 5xx or
        408 answer, a lost answer, a read timeout), so the caller reads the service
        instead of assuming either outcome; other failures are translated as usual (a
        4xx answer, or a request never sent, proves nothing started).
        """
        sub, rg, name = split_service_id(service.id)
        # A copy: the snapshot is frozen, and its model must keep saying what Azure said
        # (a rollback, a log, a retry read it) rather than what this PUT asked for.
        model: CloudService = copy.deepcopy(service.raw)
        props = model.properties
        if props is None:
            raise PlatformRejected("InvalidResource", f"cloud service {name} has no properties")
        props.configuration = configuration
        props.configuration_url = None
        props.package_url = package_url
        props.os_profile = props.os_profile or CloudServiceOsProfile()
        props.os_profile.secrets = _secret_models(props.os_profile.secrets or [], secrets)
        try:
            if poll:
                return self._client(sub).cloud_services.begin_create_or_update(rg, name, model)
            return self._client(sub).cloud_services.begin_create_or_update(
                rg, name, model, polling=Unpolled()
            )
        except AzureError as exc:
            if unconfirmed(exc):
                raise Unconfirmed(
                    f"updating cloud service {name}: {_answer(exc)}; it may have been applied"
                ) from exc
            raise translate(exc, f"updating cloud service {name}") from exc

    def resume(self, service_id: str, token: str) -> LROPoller[CloudService]:
        """Follow an update another invocation sent (no second PUT)."""
        sub, rg, name = split_service_id(service_id)
        try:
            return self._client(sub).cloud_services.begin_create_or_update(
                rg, name, None, continuation_token=token
            )
        except (HttpResponseError, ValueError) as exc:
            raise TransientError(f"resuming the update of {name}: {exc}") from exc

    def update_domains(self, service_id: str) -> int:
        sub, rg, name = split_service_id(service_id)
        try:
            domains = self._client(sub).cloud_services_update_domain.list_update_domains(rg, name)
            return sum(1 for _ in domains)
        except AzureError as exc:
            raise translate(exc, f"listing the update domains of {name}") from exc

    def begin_walk(self, service_id: str, domain: int, token: str | None = None) -> LROPoller[None]:
        """Apply the service's model to one update domain (``upgradeMode`` Manual)."""
        sub, rg, name = split_service_id(service_id)
        operations = self._client(sub).cloud_services_update_domain
        try:
            if token:
                return operations.begin_walk_update_domain(
                    rg, name, domain, continuation_token=token
                )
            return operations.begin_walk_update_domain(rg, name, domain)
        except AzureError as exc:
            raise translate(exc, f"walking update domain {domain} of {name}") from exc

    def instance_states(self, service_id: str) -> dict[str, int]:
        """Status codes of the role instances and their counts (``RoleState/…`` etc.)."""
        sub, rg, name = split_service_id(service_id)
        try:
            view = self._client(sub).cloud_services.get_instance_view(rg, name)
        except AzureError as exc:
            raise translate(exc, f"reading the instance view of {name}") from exc
        summary = view.role_instance.statuses_summary if view.role_instance else None
        return {s.code: s.count or 0 for s in summary or [] if s.code}

    @staticmethod
    def wait(poller: LROPoller[Any], timeout: float, tick: Callable[[], None]) -> bool:
        """Follow the operation up to ``timeout`` s, calling ``tick`` between polls.

        True when it succeeded, False if still running when time ran out. Raises
        PlatformRejected when it ends Failed/Canceled, TransientError when following it
        failed for a reason a later attempt may not meet.
        """
        deadline = time.monotonic() + timeout
        try:
            while not poller.done():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                poller.wait(min(remaining, 5.0))
                tick()
            poller.result()
            return True
        except HttpResponseError as exc:
            code, message = error_code(exc)
            if exc.status_code in (429, 500, 502, 503, 504) and code != "OperationFailed":
                raise TransientError(f"following the operation: {code}: {message}") from exc
            raise PlatformRejected(code, message) from exc
        except AzureError as exc:  # the connection, not the operation, failed
            raise TransientError(f"following the operation: {type(exc).__name__}") from exc

    @staticmethod
    def final(poller: LROPoller[CloudService]) -> CloudServiceSnapshot:
        """The service as a finished update's poller already read it (no new request)."""
        return _snapshot(poller.result())

    def set_tags(self, service_id: str, tags: dict[str, str]) -> None:
        """Replace the service's tags with ``tags`` and wait until Azure has applied them.

        A PATCH (``CloudServiceUpdate`` holds nothing but tags), so the model, the package
        and the role instances are left alone; ARM replaces the whole tag set, so ``tags``
        must hold every tag to keep. Raises NotFound, TransientError (409 while another
        operation runs), PlatformRejected.
        """
        sub, rg, name = split_service_id(service_id)
        wait = self._clients.settings.operation_wait_seconds
        try:
            poller = self._client(sub).cloud_services.begin_update(
                rg, name, parameters=CloudServiceUpdate(tags=tags)
            )
        except AzureError as exc:
            raise translate(exc, f"tagging cloud service {name}") from exc
        if not self.wait(poller, wait, lambda: None):
            raise TransientError(
                f"tagging cloud service {name}: still running after {wait:.0f} s; "
                "read its tags again later"
            )


def unconfirmed(exc: AzureError) -> bool:
    """Whether a write that failed with ``exc`` may nevertheless have been applied.

    A 5xx or 408 answer, or a response that never arrived (``ServiceResponseError``:
    azure-core's "the request was sent" error, raised for read timeouts and connections
    closed before the answer). ``ServiceRequestError`` is "no request was sent".
    """
    if isinstance(exc, ServiceResponseError):
        return True
    status = exc.status_code if isinstance(exc, HttpResponseError) else None
    return status is not None and (status >= 500 or status == 408)


def _answer(exc: AzureError) -> str:
    """What Azure answered, in one line (status, code, message), or that nothing came."""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        code, message = error_code(exc)
        return f"Azure answered {exc.status_code} {code}: {message}"
    return f"no answer ({type(exc).__name__})"


class Unpolled(ARMPolling):
    """ARM polling initialized from the PUT's answer (so the poller has its continuation
    token and operation URL) that never polls: ``LROPoller`` starts a thread that polls
    until the operation ends, which in Azure is minutes after an invocation that does not
    wait has returned (a thread per update, polling every 30 s, for nothing: a follow look
    reads the service instead). ``run`` is the public ``PollingMethod`` step the thread
    calls; made a no-op, the thread ends at once. Such a poller is never waited on or
    asked for its result (its resource would be the PUT's answer); it is only resumed by
    its token.
    """

    def run(self) -> None:
        return None


def operation_id(poller: LROPoller[Any]) -> str | None:
    """The ARM async operation id (last path segment of the polling URL), for records.

    azure-core 1.41 (azure-mgmt-core 1.6 ``ARMPolling``) has no public accessor for the
    polling URL: ``LROBasePolling`` keeps the chosen strategy in ``_operation``. Only a
    record's label depends on it, so any change in the SDK degrades to None.
    """
    try:
        url = poller.polling_method()._operation.get_polling_url()  # type: ignore[attr-defined]
    except AttributeError:
        return None
    return str(url).split("?")[0].rstrip("/").rsplit("/", 1)[-1] or None


def _secret_models(
    current: list[CloudServiceVaultSecretGroup], groups: tuple[SecretGroup, ...]
) -> list[CloudServiceVaultSecretGroup]:
    """Rebuild ``osProfile.secrets`` from the plan, keeping per-certificate flags as read."""
    flags = {
        secret_key(cert.certificate_url or ""): cert.is_bootstrap_certificate
        for group in current
        for cert in group.vault_certificates or []
    }
    return [
        CloudServiceVaultSecretGroup(
            source_vault=SubResource(id=group.source_vault_id),
            vault_certificates=[
                CloudServiceVaultCertificate(
                    certificate_url=url, is_bootstrap_certificate=flags.get(secret_key(url))
                )
                for url in group.certificate_urls
            ],
        )
        for group in groups
    ]


def _snapshot(cs: CloudService) -> CloudServiceSnapshot:
    props = cs.properties
    secrets = tuple(
        SecretGroup(
            source_vault_id=(group.source_vault.id if group.source_vault else "") or "",
            certificate_urls=tuple(
                c.certificate_url for c in group.vault_certificates or [] if c.certificate_url
            ),
        )
        for group in ((props.os_profile.secrets or []) if props and props.os_profile else [])
    )
    return CloudServiceSnapshot(
        id=cs.id or "",
        name=cs.name or "",
        location=cs.location,
        tags=dict(cs.tags or {}),
        configuration=(props.configuration if props else None) or "",
        secrets=secrets,
        provisioning_state=props.provisioning_state if props else None,
        upgrade_mode=str(props.upgrade_mode) if props and props.upgrade_mode else None,
        raw=cs,
    )
