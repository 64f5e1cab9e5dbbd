"""No keys anywhere, TLS 1.2+, HTTPS only, FTP off, local auth off, no secret in an output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, ROOT, files, resource, resources, template, variable

APP = "app/app.bicep"
SECRET_WORDS = re.compile(r"key|secret|password|passwd|token|sas|connection|credential", re.I)
DEPLOYMENT_TEXTS = [*INFRA.rglob("*.bicep"), *INFRA.rglob("*.json"), *INFRA.rglob("*.sh"),
                    ROOT / "azure.yaml"]


@pytest.mark.parametrize("path", DEPLOYMENT_TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_account_keys_anywhere(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"\blist\w*\(|listkeys|AccountKey=|--account-key|keys list", text, re.I)


def test_app_storage_takes_no_shared_key() -> None:
    props = resource(APP, "storage").body["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["defaultToOAuthAuthentication"] is True
    assert resource(APP, "containers").body["properties"] == {"publicAccess": "None"}


def test_function_app_is_https_only_with_ftp_off() -> None:
    site = resource(APP, "site").body
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["ftpsState"] == "Disabled"
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    assert props["siteConfig"]["scmMinTlsVersion"] == "1.2"
    for policy in ("ftpCredentials", "scmCredentials"):
        assert resource(APP, policy).body["properties"] == {"allow": False}


def test_flex_consumption_python_with_identity_based_deployment_storage() -> None:
    assert resource(APP, "plan").body["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    config = resource(APP, "site").body["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    auth = config["deployment"]["storage"]["authentication"]
    assert auth == {"type": "UserAssignedIdentity", "userAssignedIdentityResourceId": "identityId"}


def test_host_storage_and_telemetry_use_the_identity() -> None:
    assert resource(APP, "appSettingsConfig").body["properties"] == "appSettings"
    union = variable(APP, "appSettings")["function"]["parameters"]
    fixed = next(v for v in union.values() if isinstance(v, dict))
    assert fixed["AzureWebJobsStorage__credential"] == "managedidentity"
    assert fixed["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert fixed["AZURE_CLIENT_ID"] == "identityClientId"
    assert "AzureWebJobsStorage" not in fixed
    assert fixed["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].startswith("Authorization=AAD;")


def test_monitoring_takes_no_local_auth() -> None:
    assert resource(APP, "insights").body["properties"]["DisableLocalAuth"] is True
    assert resource(APP, "logs").body["properties"]["features"] == {"disableLocalAuth": True}


@pytest.mark.parametrize("file", files())
def test_no_output_carries_a_secret(file: str) -> None:
    parsed = template(file)
    secure = {
        name for name, p in parsed.get("parameters", {}).items()
        if any(d["type"] == "secure" for d in p["decorators"])
    }
    for name, output in parsed.get("outputs", {}).items():
        value = json.dumps(output["value"])
        assert not SECRET_WORDS.search(name), f"output {name} looks like a secret"
        assert not secure & set(re.findall(r"\w+", value)), f"output {name} exposes {secure}"


def test_webhook_url_is_secure_and_only_an_app_setting() -> None:
    for file in ("main.bicep", APP):
        decorators = template(file)["parameters"]["notifyWebhookUrl"]["decorators"]
        assert {"type": "secure"} in decorators
    uses = [f for f in files() if "notifyWebhookUrl" in (INFRA / f).read_text()]
    assert uses == [APP, "main.bicep"]
    hooks = "".join(p.read_text() for p in INFRA.glob("hooks/*.sh"))
    assert "WEBHOOK_URL" not in hooks, "the hooks never handle the webhook URL"


def test_every_role_assignment_targets_a_service_principal() -> None:
    for grant in resources("Microsoft.Authorization/roleAssignments"):
        assert grant.body["properties"]["principalType"] == "ServicePrincipal"
