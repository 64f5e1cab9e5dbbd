"""Every setting the app reads is an app setting the deployment sets, and none is stale."""

from __future__ import annotations

from emulators.appsettings import settings_read_by_the_app
from tests.infra.bicep import template, variable

# Read by the app but never set in Azure, with the reason.
NOT_DEPLOYED = {
    "ROTATION_CA_BUNDLE": "local stack only (its private CA)",
    "KEYVAULT_VERIFY_CHALLENGE_RESOURCE": "local stack only (vaults at 127.0.0.1)",
    "ARM_POLLING_INTERVAL": "local stack only; in Azure the SDK polls every 30 s",
    "QUEUE_WAIT_SECONDS": "local stack only (seconds, not minutes); in Azure the 30 s default",
    "FOLLOW_POLL_SECONDS": "local stack only (a second); in Azure the 30 s default, its pace",
    "LOCAL_VAULT_PORTS": "local stack only (its vaults' loopback ports)",
    "NOTIFY_EVENTGRID_KEY": "local stack only; in Azure the identity sends",
    "AZURE_SUBSCRIPTION_ID": "fallback for ROTATION_SUBSCRIPTIONS, which is always set",
    "WEBSITE_OWNER_NAME": "set by the platform",
    "IDENTITY_ENDPOINT": "set by the platform (managed identity endpoint)",
    "IDENTITY_HEADER": "set by the platform (managed identity endpoint)",
    "IDENTITY_SERVER_THUMBPRINT": "Service Fabric only; never set on Functions",
}
# Set for the Functions host or the SDKs, not read by the app's own code.
FOR_THE_PLATFORM = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
def settings_deployed() -> set[str]:
    chosen = template("main.bicep")["modules"]["app"]["config"]["params"]["settings"]
    union = variable("app/app.bicep", "appSettings")["function"]["parameters"]
    fixed = next(v for v in union.values() if isinstance(v, dict))
    return set(chosen) | set(fixed)


def test_every_setting_the_app_reads_is_deployed() -> None:
    missing = settings_read_by_the_app() - settings_deployed() - set(NOT_DEPLOYED)
    assert not missing, f"add these to infra (app settings) or to NOT_DEPLOYED: {missing}"


def test_every_deployed_setting_is_read() -> None:
    stale = settings_deployed() - settings_read_by_the_app() - FOR_THE_PLATFORM
    assert not stale, f"nothing reads these app settings: {stale}"


def test_the_scan_finds_the_known_settings() -> None:
    assert {"ROTATION_SUBSCRIPTIONS", "RECONCILE_SCHEDULE", "PACKAGE_SAS_HOURS",
            "AzureWebJobsStorage__blobServiceUri", "APPLICATIONINSIGHTS_CONNECTION_STRING",
            *NOT_DEPLOYED} <= settings_read_by_the_app()
