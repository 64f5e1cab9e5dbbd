"""The app's settings, read once from the environment and validated up front.

A missing or malformed setting fails the first invocation with a message naming the
setting and the fix, rather than failing half-way through a rotation. Local-only
relaxations (a private CA, Key Vault's challenge-resource check) are explicit settings
that default to the secure production behaviour.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared.domain.destinations import Destinations
from shared.domain.errors import ConfigError
from shared.domain.messages import MAX_SERVICES
from shared.domain.packages import ContainerRef, parse_containers

UNTAGGED_MODES = ("report", "update")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# NCRONTAB with seconds, six fields (Flex Consumption takes no TimeSpan schedules).
_NCRONTAB = re.compile(r"^\s*[\w*/,-]+(\s+[\w*/,-]+){5}\s*$")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw} is out of range [{low}, {high}]")
    return value


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    value = _number(env, name, default, low, high)
    if value != int(value):
        raise ConfigError(f"{name}={env[name].strip()} is not a whole number")
    return int(value)


def _https(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip().rstrip("/")
    if raw and not raw.startswith("https://"):
        raise ConfigError(f"{name} must be an https URL")
    return raw or None


def _port_range(env: Mapping[str, str], name: str) -> tuple[int, int] | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    low, _, high = raw.partition("-")
    try:
        ports = (int(low), int(high or low))
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a port range (e.g. 20000-20511)") from None
    if not 1 <= ports[0] <= ports[1] <= 65535:
        raise ConfigError(f"{name}={raw!r} is not a port range (e.g. 20000-20511)")
    return ports


def _schedule(env: Mapping[str, str], name: str) -> None:
    """A timer's schedule, which the Functions host reads (``%NAME%`` in handlers/timers.py):
    checked here so a malformed one is named at the first invocation. Missing is the
    host's to report (it does not index the timer)."""
    raw = env.get(name, "")
    if raw and not _NCRONTAB.match(raw):
        raise ConfigError(
            f"{name}={raw!r} is not an NCRONTAB schedule (six fields, e.g. '0 0 * * * *')"
        )


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in env.get(name, "").split(",") if p.strip())


@dataclass(frozen=True)
class Settings:
    subscriptions: tuple[str, ...]
    resource_groups: tuple[str, ...]  # empty: every resource group of the subscriptions
    storage_url: str  # the function's own blob endpoint: leases and run records
    arm_endpoint: str = "https://management.azure.com"
    ca_bundle: str | None = None
    verify_challenge_resource: bool = True
    managed_identity_client_id: str | None = None
    package_sas_hours: float = 4.0
    rewrite_settings: bool = False
    renew_on_near_expiry: bool = True
    operation_wait_seconds: float = 900.0
    # How long a queue worker follows the updates it sent before returning; by default it
    # does not wait at all (an update takes minutes in Azure: a worker held for them is a
    # worker the other services wait for): what is still running is followed by message
    # (cert-rotation-follow). Event Grid itself is answered before any work starts.
    event_wait_seconds: float = 0.0
    # How many services one queue message (one run) converges: a certificate used by more
    # is fanned out over cert-rotation-services, so no invocation has hundreds of PUTs to
    # send one after another (tens of seconds each in Azure, under a 30 min timeout), and
    # the instances share the work.
    services_per_message: int = 10
    # The app's queue endpoint (the host's AzureWebJobsStorage__queueServiceUri): where a
    # batch waiting for something in progress is sent again with a visibility delay.
    queue_url: str | None = None
    # The first such delay; it doubles per wait up to 15 min (shared.domain.messages.wait_delay).
    wait_seconds: float = 30.0
    # How long after each look a running update is looked at again (a follow message's
    # visibility delay): Azure's own polling pace for cloud service updates.
    follow_seconds: float = 30.0
    arm_polling_interval: float | None = None
    # After an update succeeded, how long role instances may stay Busy/Starting before the
    # rotation is reported as not settled (never rolled back for it).
    settle_seconds: float = 600.0
    rollback: bool = False
    notify_eventgrid_endpoint: str | None = None
    notify_eventgrid_key: str | None = None  # local use only; Azure uses the identity
    notify_webhook_url: str | None = None
    notify_webhook_format: str = "teams"  # teams | slack
    runs_container: str = "cert-rotation-runs"
    locks_container: str = "cert-rotation-locks"
    failures_container: str = "cert-rotation-failures"
    # Services without a package tag: "report" (unmanaged, as listed) or "update"
    # (configuration-only PUTs, no packageUrl: Azure keeps the deployed package).
    untagged: str = "report"
    # Where packages may come from, and where tokens may go (shared.domain.destinations).
    package_containers: tuple[ContainerRef, ...] = ()
    keyvault_dns_suffix: str = "vault.azure.net"
    storage_dns_suffix: str = "core.windows.net"
    local_vault_ports: tuple[int, int] | None = None  # the local stack's vaults only

    def destinations(self) -> Destinations:
        """The only hosts a request carrying the app's token may go to."""
        exact = [self.arm_endpoint, self.storage_url, *(c.url for c in self.package_containers)]
        if self.queue_url:
            exact.append(self.queue_url)
        if self.notify_eventgrid_endpoint:
            exact.append(self.notify_eventgrid_endpoint)
        return Destinations.of(
            exact, self.keyvault_dns_suffix, self.storage_dns_suffix, self.local_vault_ports
        )

    def in_scope(self, vault_id: str) -> bool:
        """Whether a vault (an ARM id validated by ``shared.domain.events``) may be acted on.

        Vaults are scoped by subscription only: CSES installs certificates only from a vault
        in the cloud service's own subscription, so a vault in any other subscription cannot
        serve a service we manage, and an event naming one is foreign (or forged).
        ``ROTATION_RESOURCE_GROUPS`` scopes the cloud services, not vaults, which often live
        in a shared resource group of their own.
        """
        parts = vault_id.split("/")
        subscription = parts[2] if len(parts) > 2 and parts[1].lower() == "subscriptions" else ""
        return subscription.lower() in {s.lower() for s in self.subscriptions}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        subscriptions = _list(env, "ROTATION_SUBSCRIPTIONS")
        if not subscriptions:
            own = (
                env.get("AZURE_SUBSCRIPTION_ID") or env.get("WEBSITE_OWNER_NAME", "").split("+")[0]
            )
            subscriptions = (own,) if own else ()
        if not subscriptions:
            raise ConfigError(
                "ROTATION_SUBSCRIPTIONS is not set and the app's own subscription is unknown: "
                "set ROTATION_SUBSCRIPTIONS to a comma-separated list of subscription ids"
            )
        bad = [s for s in subscriptions if not _GUID.match(s)]
        if bad:
            raise ConfigError(f"ROTATION_SUBSCRIPTIONS holds non-GUID values: {', '.join(bad)}")
        storage = env.get("ROTATION_STORAGE_URL") or env.get("AzureWebJobsStorage__blobServiceUri")
        if not storage or not storage.startswith("https://"):
            raise ConfigError(
                "ROTATION_STORAGE_URL (or AzureWebJobsStorage__blobServiceUri) must be the https "
                "blob endpoint of the app's storage account (run records and locks live there)"
            )
        polling = env.get("ARM_POLLING_INTERVAL", "").strip()
        untagged = (env.get("ROTATION_UNTAGGED") or "report").strip().lower()
        if untagged not in UNTAGGED_MODES:
            raise ConfigError(
                f"ROTATION_UNTAGGED={untagged!r} is not supported (use report or update)"
            )
        webhook_format = (env.get("NOTIFY_WEBHOOK_FORMAT") or "teams").strip().lower()
        if webhook_format not in ("teams", "slack"):
            raise ConfigError(
                f"NOTIFY_WEBHOOK_FORMAT={webhook_format!r} is not supported (use teams or slack)"
            )
        for name in ("NOTIFY_EVENTGRID_ENDPOINT", "NOTIFY_WEBHOOK_URL"):
            if env.get(name) and not env[name].startswith("https://"):
                raise ConfigError(f"{name} must be an https URL")
        storage_suffix = (env.get("STORAGE_DNS_SUFFIX") or cls.storage_dns_suffix).strip(".")
        _schedule(env, "RECONCILE_SCHEDULE")
        _schedule(env, "FOLLOW_SCHEDULE")
        return cls(
            package_containers=parse_containers(
                env.get("PACKAGE_CONTAINERS", ""), storage_suffix
            ),
            keyvault_dns_suffix=(
                env.get("KEYVAULT_DNS_SUFFIX") or cls.keyvault_dns_suffix
            ).strip("."),
            storage_dns_suffix=storage_suffix,
            local_vault_ports=_port_range(env, "LOCAL_VAULT_PORTS"),
            subscriptions=subscriptions,
            resource_groups=_list(env, "ROTATION_RESOURCE_GROUPS"),
            storage_url=storage.rstrip("/"),
            arm_endpoint=(env.get("ARM_ENDPOINT") or cls.arm_endpoint).rstrip("/"),
            ca_bundle=env.get("ROTATION_CA_BUNDLE") or None,
            verify_challenge_resource=_flag(env, "KEYVAULT_VERIFY_CHALLENGE_RESOURCE", True),
            managed_identity_client_id=env.get("AZURE_CLIENT_ID") or None,
            package_sas_hours=_number(env, "PACKAGE_SAS_HOURS", 4.0, 0.25, 168.0),
            rewrite_settings=_flag(env, "ROTATION_REWRITE_SETTINGS", False),
            renew_on_near_expiry=_flag(env, "RENEW_ON_NEAR_EXPIRY", True),
            operation_wait_seconds=_number(env, "OPERATION_WAIT_SECONDS", 900.0, 0.0, 1500.0),
            event_wait_seconds=_number(env, "EVENT_WAIT_SECONDS", 0.0, 0.0, 1500.0),
            services_per_message=_whole(env, "SERVICES_PER_MESSAGE", 10, 1, MAX_SERVICES),
            queue_url=_https(env, "AzureWebJobsStorage__queueServiceUri"),
            wait_seconds=_number(env, "QUEUE_WAIT_SECONDS", 30.0, 1.0, 900.0),
            follow_seconds=_number(env, "FOLLOW_POLL_SECONDS", 30.0, 1.0, 300.0),
            arm_polling_interval=(
                _number(env, "ARM_POLLING_INTERVAL", 30.0, 0.0, 300.0) if polling else None
            ),
            settle_seconds=_number(env, "INSTANCE_SETTLE_SECONDS", 600.0, 0.0, 1500.0),
            rollback=_flag(env, "ROTATION_ROLLBACK", False),
            notify_eventgrid_endpoint=env.get("NOTIFY_EVENTGRID_ENDPOINT") or None,
            notify_eventgrid_key=env.get("NOTIFY_EVENTGRID_KEY") or None,
            notify_webhook_url=env.get("NOTIFY_WEBHOOK_URL") or None,
            notify_webhook_format=webhook_format,
            untagged=untagged,
        )
