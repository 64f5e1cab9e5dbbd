"""The product's reading of Key Vault 403s, on the error bodies real vaults returned
(``tests/fixtures/azure/keyvault/forbidden-*.json``, see PROVENANCE.md there)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from azure.core.exceptions import HttpResponseError, ODataV4Format
from azure.core.pipeline.transport import RequestsTransportResponse

from shared.adapters.kv_errors import vault_error
from shared.domain.errors import PlatformRejected, TransientError, VaultAccessDenied

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "azure" / "keyvault"
URL = "https://kv-one.vault.azure.net/"


def failure(status: int, body: Any) -> HttpResponseError:
    """An SDK error as azure-core builds it from a Key Vault answer."""
    raw = requests.Response()
    raw.status_code, raw.reason = status, "Forbidden"
    raw._content = json.dumps(body).encode()  # the body a transport would have read
    raw.headers["Content-Type"] = "application/json"
    response = RequestsTransportResponse(None, raw)  # type: ignore[arg-type]  # no request
    return HttpResponseError(response=response, error_format=ODataV4Format)


def recorded(name: str) -> HttpResponseError:
    answer = json.loads((FIXTURES / name).read_text())["response"]
    return failure(answer["status"], answer["body"])


def test_access_policy_refusal_names_vault_permission_and_mode() -> None:
    error = vault_error(recorded("forbidden-access-policy.json"), URL, "listing")
    assert isinstance(error, PlatformRejected) and error.code == "Forbidden"
    assert isinstance(error, VaultAccessDenied)  # the engine records it, never retries it
    assert str(error) == ("Forbidden: listing: no access to vault kv-westus2-aks (access "
                          "policy missing for the app: it needs secrets list permission)")


def test_rbac_refusal_names_vault_action_and_mode() -> None:
    error = vault_error(recorded("forbidden-rbac.json"), URL, "reading")
    assert str(error) == (
        "Forbidden: reading: no access to vault test-piyush-kv-1011 (RBAC vault: no role "
        "assignment grants the app 'Microsoft.KeyVault/vaults/secrets/getSecret/action')")


def test_access_policy_wording_alone_is_enough_and_the_url_names_the_vault() -> None:
    body = {"error": {"code": "Forbidden", "message": "The user, group or application 'x' "
                      "does not have certificates get permission on key vault "
                      "'kv-one;location=westus'."}}
    assert str(vault_error(failure(403, body), "https://other.vault.azure.net/", "r")) == (
        "Forbidden: r: no access to vault kv-one (access policy missing for the app: it "
        "needs certificates get permission)")
    rbac = {"error": {"code": "Forbidden", "message": "Caller is not authorized.",
                      "innererror": {"code": "ForbiddenByRbac"}}}
    assert str(vault_error(failure(403, rbac), URL, "r")) == (
        "Forbidden: r: no access to vault kv-one (RBAC vault: no role assignment grants the "
        "app the data action of this call)")


def test_everything_else_is_the_generic_translation() -> None:
    disabled = failure(403, {"error": {"code": "Forbidden", "message": "Operation get is not "
                                       "allowed on a disabled secret.",
                                       "innererror": {"code": "SecretDisabled"}}})
    assert str(vault_error(disabled, URL, "reading")) == (
        "Forbidden: reading: Operation get is not allowed on a disabled secret.")
    missing = failure(404, {"error": {"code": "CertificateNotFound", "message": "gone"}})
    assert str(vault_error(missing, URL, "reading")) == "CertificateNotFound: reading: gone"
    busy = failure(429, {"error": {"code": "Throttled", "message": "slow down"}})
    assert isinstance(vault_error(busy, URL, "reading"), TransientError)
