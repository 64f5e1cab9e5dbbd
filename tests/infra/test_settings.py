"""Every setting the app reads is an app setting the deployment sets, and none is stale."""

from __future__ import annotations

import re

from emulators.appsettings import settings_read_by_the_app
from emulators.stack import app_settings
from shared.config import Settings
from tests.infra.bicep import ROOT, template, variable

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


def test_every_binding_expression_setting_is_always_set() -> None:
    """The Functions host does not index a function whose ``%SETTING%`` is missing ("'%X%'
    does not resolve to a value"): infra sets each from a parameter that cannot be empty,
    whose default the app accepts, and the local stack sets each too."""
    expressions = {
        name
        for path in (ROOT / "handlers").glob("*.py")
        for name in re.findall(r'"%([A-Za-z][A-Za-z0-9_]*)%"', path.read_text())
    }
    assert expressions == {"RECONCILE_SCHEDULE", "FOLLOW_SCHEDULE"}
    main = template("main.bicep")
    chosen = main["modules"]["app"]["config"]["params"]["settings"]
    base = {"ROTATION_SUBSCRIPTIONS": "00000000-0000-0000-0000-000000000001",
            "ROTATION_STORAGE_URL": "https://st.blob.core.windows.net"}
    for name in sorted(expressions):
        param = main["parameters"][chosen[name]]
        least = [d["argument"] for d in param["decorators"] if d["type"] == "min_length"]
        assert least and least[0] >= 1, f"{name}: its parameter may be empty"
        Settings.from_env({**base, name: param["default"]})  # a schedule the app accepts
    stack = app_settings({k: "x" for k in (
        "AZURE_SUBSCRIPTION_ID", "AZURITE_BLOB_URL", "AZURITE_QUEUE_URL", "ARM_ENDPOINT",
        "STACK_CA_BUNDLE", "AZURE_CLIENT_ID", "LOCAL_VAULT_PORTS")})
    assert expressions <= set(stack)
