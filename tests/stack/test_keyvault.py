"""Key Vault emulator through the real clients: ``CertificateClient``/``SecretClient`` for
the data plane, and ARM over HTTPS with a managed-identity token for the vault resource
(no management SDK is installed). Event tests subscribe a webhook the test runs itself to
the vault's Event Grid system topic.

Clients are built with ``verify_challenge_resource=False`` because the vaults live on
127.0.0.1 (a test-side setting; the product keeps the check on). Every test uses its own
certificate names, so the module shares two vaults.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.keyvault.certificates import (
    CertificateClient,
    CertificateContentType,
    CertificateOperation,
    CertificatePolicy,
    CertificatePolicyAction,
    CertificateProperties,
    KeyCurveName,
    KeyType,
    KeyVaultCertificate,
    LifetimeAction,
    WellKnownIssuerNames,
)
from azure.keyvault.secrets import SecretClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from emulators.polling import wait_for
from tests.conftest import LocalStack
from tests.webhook import Webhook

KV_API = "2023-07-01"
RG_API = "2021-04-01"
EG_API = "2025-02-15"
PFX = CertificateContentType.pkcs12
PEM = CertificateContentType.pem
KV_NEW = "Microsoft.KeyVault.CertificateNewVersionCreated"
KV_NEAR = "Microsoft.KeyVault.CertificateNearExpiry"
KV_EXPIRED = "Microsoft.KeyVault.CertificateExpired"



def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- ARM over HTTPS ----------------------------------------------------------------------


class Arm:
    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.credential = DefaultAzureCredential()

    def call(self, method: str, path: str, body: Any = None, api_version: str = KV_API,
             token: str | None = None) -> requests.Response:
        token = token or self.credential.get_token("https://management.azure.com/.default").token
        url = path if path.startswith("https://") else f"{self.stack.env['ARM_ENDPOINT']}{path}"
        params = None if "api-version=" in url else {"api-version": api_version}
        return requests.request(method, url, params=params, json=body, timeout=30,
                                headers={"Authorization": f"Bearer {token}"},
                                verify=self.stack.ca)

    def new_rg(self) -> str:
        rg = unique("rg-kv")
        resp = self.call("PUT", f"/subscriptions/{self.stack.subscription}/resourcegroups/{rg}",
                         {"location": "westus"}, api_version=RG_API)
        assert resp.status_code == 201, resp.text
        return rg

    def vault_path(self, rg: str, name: str) -> str:
        return (f"/subscriptions/{self.stack.subscription}/resourceGroups/{rg}"
                f"/providers/Microsoft.KeyVault/vaults/{name}")

    def vault_body(self, **props: Any) -> dict[str, Any]:
        """An access-policy vault in which the tests' identity may do what these tests do:
        every certificate operation they call, and reading the secrets behind them."""
        return {"location": "westus", "tags": {"env": "test"}, "properties": {
            "tenantId": self.stack.env["AZURE_TENANT_ID"],
            "sku": {"family": "A", "name": "standard"},
            "accessPolicies": [{
                "tenantId": self.stack.env["AZURE_TENANT_ID"],
                "objectId": self.stack.env["APP_PRINCIPAL_ID"],
                "permissions": {
                    "certificates": ["get", "list", "create", "import", "update", "delete",
                                     "recover", "purge"],
                    "secrets": ["get", "list"]}}],
            **props}}

    def new_vault(self, rg: str, **props: Any) -> dict[str, Any]:
        resp = self.call("PUT", self.vault_path(rg, unique("kv")), self.vault_body(**props))
        assert resp.status_code == 201, resp.text
        return dict(resp.json())


@pytest.fixture(scope="module")
def arm(stack: LocalStack) -> Arm:
    return Arm(stack)


@pytest.fixture(scope="module")
def rg(arm: Arm) -> str:
    return arm.new_rg()


@pytest.fixture(scope="module")
def vault(arm: Arm, rg: str) -> dict[str, Any]:
    return arm.new_vault(rg, enabledForDeployment=True)


@pytest.fixture(scope="module")
def certs(stack: LocalStack, vault: dict[str, Any]) -> CertificateClient:
    return CertificateClient(vault["properties"]["vaultUri"], DefaultAzureCredential(),
                             connection_verify=stack.ca, verify_challenge_resource=False)


@pytest.fixture(scope="module")
def secrets(stack: LocalStack, vault: dict[str, Any]) -> SecretClient:
    return SecretClient(vault["properties"]["vaultUri"], DefaultAzureCredential(),
                        connection_verify=stack.ca, verify_challenge_resource=False)


# -- local certificate material ------------------------------------------------------------


def sha1(data: bytes) -> bytes:
    return hashlib.sha1(data).digest()


def make_cert(cn: str, days_before: float = 1, days_after: float = 90,
              issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
              key: Any = None, ca: bool = False) -> tuple[Any, x509.Certificate]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name, signer = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=days_before))
            .not_valid_after(now + dt.timedelta(days=days_after))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA256()))
    return key, cert


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pfx(key: Any, cert: x509.Certificate, password: bytes | None = None) -> bytes:
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    return pkcs12.serialize_key_and_certificates(b"imported", key, cert, None, encryption)


def pem(key: Any, cert: x509.Certificate) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())) + cert.public_bytes(
        serialization.Encoding.PEM)


def public_der(key: Any) -> bytes:
    return bytes(key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo))


def props(cert: KeyVaultCertificate) -> CertificateProperties:
    assert cert.properties is not None
    return cert.properties


def cer(cert: KeyVaultCertificate) -> bytes:
    assert cert.cer is not None
    return bytes(cert.cer)


def create_self(certs: CertificateClient, name: str, policy: CertificatePolicy | None = None,
                **kwargs: Any) -> KeyVaultCertificate:
    poller = certs.begin_create_certificate(name, policy or CertificatePolicy.get_default(),
                                            _polling_interval=0, **kwargs)
    result = poller.result()
    assert isinstance(result, KeyVaultCertificate)
    return result


# -- the vault resource ----------------------------------------------------------------------


def test_vault_resource_lifecycle(stack: LocalStack, arm: Arm) -> None:
    rg = arm.new_rg()
    name = unique("kv")
    path = arm.vault_path(rg, name)
    created = arm.call("PUT", path, arm.vault_body(enabledForDeployment=True))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"] == path and body["name"] == name
    assert body["type"] == "Microsoft.KeyVault/vaults" and body["location"] == "westus"
    assert body["tags"] == {"env": "test"}
    props = body["properties"]
    uri = props["vaultUri"]
    assert uri.startswith("https://127.0.0.1:") and uri.endswith("/")
    assert props["provisioningState"] == "Succeeded" and props["enabledForDeployment"] is True
    assert props["tenantId"] == stack.env["AZURE_TENANT_ID"]
    assert props["sku"] == {"family": "A", "name": "standard"}
    assert props["enableSoftDelete"] is True and props["softDeleteRetentionInDays"] == 90

    again = arm.call("PUT", path, arm.vault_body(enabledForDeployment=True))
    assert again.status_code == 200 and again.json()["properties"]["vaultUri"] == uri

    patched = arm.call("PATCH", path, {"tags": {"team": "x"},
                                       "properties": {"enabledForDeployment": False}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["properties"]["enabledForDeployment"] is False
    assert patched.json()["tags"] == {"team": "x"}
    got = arm.call("GET", path).json()
    assert got["properties"]["enabledForDeployment"] is False
    assert got["properties"]["vaultUri"] == uri

    irreversible = arm.call("PATCH", path, {"properties": {"enableSoftDelete": False}})
    assert irreversible.status_code == 400 and "irreversible" in irreversible.json()[
        "error"]["message"]

    other = arm.call("PUT", path.replace(name, unique("kv")), arm.vault_body())
    assert other.status_code == 201
    assert other.json()["properties"]["vaultUri"] != uri
    listed: list[dict[str, Any]] = []
    page = arm.call("GET", path.rsplit("/", 1)[0])
    while True:
        assert page.status_code == 200, page.text
        listed += page.json()["value"]
        if not page.json().get("nextLink"):
            break
        page = arm.call("GET", page.json()["nextLink"])
    assert {v["name"] for v in listed} == {name, other.json()["name"]}

    assert arm.call("DELETE", path).status_code == 200
    assert arm.call("GET", path).json()["error"]["code"] == "ResourceNotFound"
    assert arm.call("DELETE", path).status_code == 204
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{uri}certificates?api-version=7.5", verify=stack.ca, timeout=5)


def test_vault_put_is_validated_like_azure(stack: LocalStack, arm: Arm, rg: str) -> None:
    bad_name = arm.call("PUT", arm.vault_path(rg, "9-bad--name"), arm.vault_body())
    assert bad_name.status_code == 400
    assert bad_name.json()["error"]["code"] == "VaultNameNotValid"
    no_location = arm.call("PUT", arm.vault_path(rg, unique("kv")),
                           {"properties": arm.vault_body()["properties"]})
    assert no_location.json()["error"]["code"] == "LocationRequired"
    no_tenant = arm.vault_body()
    del no_tenant["properties"]["tenantId"]
    assert arm.call("PUT", arm.vault_path(rg, unique("kv")), no_tenant).status_code == 400
    no_sku = arm.vault_body()
    del no_sku["properties"]["sku"]
    assert arm.call("PUT", arm.vault_path(rg, unique("kv")), no_sku).status_code == 400
    missing_rg = arm.call("PUT", arm.vault_path("rg-does-not-exist", unique("kv")),
                          arm.vault_body())
    assert missing_rg.status_code == 404
    assert missing_rg.json()["error"]["code"] == "ResourceGroupNotFound"
    name = unique("kv")
    assert arm.call("PUT", arm.vault_path(rg, name), arm.vault_body()).status_code == 201
    elsewhere = arm.call("PUT", arm.vault_path(arm.new_rg(), name), arm.vault_body())
    assert elsewhere.status_code == 409
    assert elsewhere.json()["error"]["code"] == "VaultAlreadyExists"


# -- the challenge and the front door ---------------------------------------------------------


def test_challenge_then_bearer_as_in_the_request_log(stack: LocalStack, arm: Arm,
                                                      rg: str) -> None:
    fresh = arm.new_vault(rg)
    uri = fresh["properties"]["vaultUri"]
    client = CertificateClient(uri, DefaultAzureCredential(), connection_verify=stack.ca,
                               verify_challenge_resource=False)
    mark = stack.request_mark()
    with pytest.raises(ResourceNotFoundError):
        client.get_certificate("absent")
    port = uri.rstrip("/").rsplit(":", 1)[1]
    calls = [r for r in stack.requests_since(mark) if r["service"] == "keyvault"]
    assert [(r["method"], r["path"], r["status"]) for r in calls] == [
        ("GET", "/certificates/absent/", 401), ("GET", "/certificates/absent/", 404)]
    bare = requests.get(f"{uri}certificates/absent/?api-version=7.5", verify=stack.ca,
                        timeout=10)
    assert bare.status_code == 401
    assert bare.json() == {"error": {"code": "Unauthorized",
                                     "message": "AKV10000: Request is missing a Bearer or PoP "
                                                "token."}}
    assert bare.headers["WWW-Authenticate"] == (
        f'Bearer authorization="https://login.windows.net/'
        f'{stack.env["AZURE_TENANT_ID"]}", resource="https://vault.azure.net"')
    assert port in uri


def test_wrong_audience_and_bad_tokens_get_401(stack: LocalStack, vault: dict[str, Any]
                                               ) -> None:
    uri = vault["properties"]["vaultUri"]
    credential = DefaultAzureCredential()
    arm_token = credential.get_token("https://management.azure.com/.default").token
    resp = requests.get(f"{uri}certificates?api-version=7.5", verify=stack.ca, timeout=10,
                        headers={"Authorization": f"Bearer {arm_token}"})
    assert resp.status_code == 401
    assert resp.json()["error"]["message"] == (
        "AKV10022: Invalid audience. Expected https://vault.azure.net, found: "
        "https://management.azure.com.")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer authorization=")
    vault_token = credential.get_token("https://vault.azure.net/.default").token
    forged = vault_token[:-4] + ("AAAA" if not vault_token.endswith("AAAA") else "BBBB")
    resp = requests.get(f"{uri}certificates?api-version=7.5", verify=stack.ca, timeout=10,
                        headers={"Authorization": f"Bearer {forged}"})
    assert resp.status_code == 401 and "AKV10046" in resp.json()["error"]["message"]
    resp = requests.get(f"{uri}certificates", verify=stack.ca, timeout=10,
                        headers={"Authorization": f"Bearer {vault_token}"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "BadParameter"
    resp = requests.get(f"{uri}certificates?api-version=7.5", verify=stack.ca, timeout=10,
                        headers={"Authorization": f"Bearer {vault_token}"})
    assert resp.status_code == 200 and "value" in resp.json()


def test_issuer_tenant_must_match_the_vault(stack: LocalStack, arm: Arm, rg: str) -> None:
    other = arm.new_vault(rg, tenantId=str(uuid.uuid4()))
    client = CertificateClient(other["properties"]["vaultUri"], DefaultAzureCredential(),
                               connection_verify=stack.ca, verify_challenge_resource=False)
    with pytest.raises(HttpResponseError) as caught:
        client.get_certificate("anything")
    assert caught.value.status_code == 401
    assert "AKV10032: Invalid issuer" in str(caught.value.message)


def test_missing_objects_map_to_resource_not_found(certs: CertificateClient,
                                                   secrets: SecretClient) -> None:
    with pytest.raises(ResourceNotFoundError) as caught:
        certs.get_certificate("nope")
    assert caught.value.error is not None and caught.value.error.code == "CertificateNotFound"
    assert "A certificate with (name/id) nope was not found in this key vault" in str(
        caught.value.message)
    with pytest.raises(ResourceNotFoundError):
        certs.get_certificate_version("nope", "0" * 32)
    with pytest.raises(ResourceNotFoundError) as missing_secret:
        secrets.get_secret("nope")
    assert missing_secret.value.error is not None
    assert missing_secret.value.error.code == "SecretNotFound"
    with pytest.raises(HttpResponseError) as invalid:
        certs.get_certificate("bad_name")
    assert invalid.value.status_code == 400


@pytest.mark.usefixtures("no_faults")
def test_injected_429_is_retried_by_the_sdk(stack: LocalStack,
                                            certs: CertificateClient) -> None:
    name = unique("throttled")
    create_self(certs, name, CertificatePolicy(issuer_name="Self", subject="CN=t",
                                               key_type=KeyType.ec))
    stack.admin("POST", "/faults", {"service": "keyvault", "method": "GET", "status": 429,
                                    "retry_after": 0, "path": f"^/certificates/{name}/$"})
    mark = stack.request_mark()
    assert certs.get_certificate(name).name == name
    calls = [(r["status"], r["injected"]) for r in stack.requests_since(mark)
             if r["service"] == "keyvault"]
    assert calls == [(429, True), (200, False)]


# -- certificates ------------------------------------------------------------------------------


def test_self_signed_with_the_default_policy(certs: CertificateClient,
                                             secrets: SecretClient) -> None:
    name = unique("default")
    started = dt.datetime.now(dt.UTC)
    cert = create_self(certs, name)
    assert cert.name == name
    assert props(cert).x509_thumbprint == sha1(cer(cert))
    parsed = x509.load_der_x509_certificate(cer(cert))
    assert parsed.subject.rfc4514_string() == "CN=DefaultPolicy"
    assert abs((parsed.not_valid_before_utc - started).total_seconds() + 600) < 60
    lifetime = parsed.not_valid_after_utc - started
    assert dt.timedelta(days=364, hours=23) <= lifetime <= dt.timedelta(days=366, minutes=1)
    assert props(cert).not_before == parsed.not_valid_before_utc
    assert props(cert).expires_on == parsed.not_valid_after_utc
    assert props(cert).recovery_level == "Recoverable+Purgeable"
    policy = cert.policy
    assert policy is not None and policy.issuer_name == "Self"
    assert (policy.key_type, policy.key_size, policy.exportable) == (KeyType.rsa, 2048, True)
    assert policy.content_type == PFX and policy.validity_in_months == 12
    assert policy.enhanced_key_usage == ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"]
    assert [a.action for a in policy.lifetime_actions or []] == [
        CertificatePolicyAction.auto_renew]

    secret = secrets.get_secret(name)
    assert secret.properties.content_type == "application/x-pkcs12"
    assert secret.properties.managed is True
    assert secret.id == cert.secret_id and secret.properties.key_id == cert.key_id
    key, inner, chain = pkcs12.load_key_and_certificates(
        base64.b64decode(secret.value or ""), None)
    assert key is not None and inner is not None and chain == []
    assert sha1(der(inner)) == props(cert).x509_thumbprint
    assert public_der(key) == inner.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    operation = certs.get_certificate_operation(name)
    assert operation.status == "completed" and operation.csr


def test_custom_policy_pem_ec_and_sans(certs: CertificateClient, secrets: SecretClient) -> None:
    name = unique("custom")
    policy = CertificatePolicy(
        issuer_name=WellKnownIssuerNames.self, subject="CN=web.contoso.com, O=Contoso",
        san_dns_names=["web.contoso.com", "www.contoso.com"], key_type=KeyType.ec,
        key_curve_name=KeyCurveName.p_384, content_type=PEM, validity_in_months=3,
        lifetime_actions=[LifetimeAction(CertificatePolicyAction.email_contacts,
                                         days_before_expiry=20)])
    cert = create_self(certs, name, policy, tags={"app": "web"})
    parsed = x509.load_der_x509_certificate(cer(cert))
    assert parsed.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Contoso"
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["web.contoso.com", "www.contoso.com"]
    public = parsed.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp384r1"
    assert 88 <= (parsed.not_valid_after_utc - parsed.not_valid_before_utc).days <= 93
    assert props(cert).tags == {"app": "web"}
    assert cert.policy is not None and cert.policy.key_curve_name == KeyCurveName.p_384
    secret = secrets.get_secret(name, props(cert).version)
    assert secret.properties.content_type == "application/x-pem-file"
    assert secret.value is not None and secret.value.startswith("-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(secret.value.encode(), None)
    inner = x509.load_pem_x509_certificate(secret.value.encode())
    assert sha1(der(inner)) == props(cert).x509_thumbprint
    assert public_der(key) == public_der_cert(inner)


def public_der_cert(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def test_non_exportable_key_stays_out_of_the_secret(certs: CertificateClient,
                                                    secrets: SecretClient) -> None:
    name = unique("sealed")
    # The SDK drops key_props when exportable=False is the only key setting (so Key Vault
    # would default to exportable): name the key type too, as real callers must.
    cert = create_self(certs, name, CertificatePolicy(issuer_name="Self", subject="CN=sealed",
                                                      exportable=False, key_type=KeyType.rsa))
    assert cert.policy is not None and cert.policy.exportable is False
    key, inner, extra = pkcs12.load_key_and_certificates(
        base64.b64decode(secrets.get_secret(name).value or ""), None)
    certificates = ([inner] if inner else []) + extra  # no key: nothing marks it the leaf
    assert key is None and [sha1(der(c)) for c in certificates] == [
        props(cert).x509_thumbprint]


def test_invalid_policies_are_refused(certs: CertificateClient) -> None:
    for policy in (CertificatePolicy(issuer_name="Self", subject="CN=x", key_size=1024),
                   CertificatePolicy(issuer_name="Self", subject="XX=nope"),
                   CertificatePolicy(issuer_name="Self", subject="CN=x",
                                     validity_in_months=0)):
        with pytest.raises(HttpResponseError) as caught:
            certs.begin_create_certificate(unique("invalid"), policy)
        assert caught.value.status_code == 400
        assert caught.value.error is not None and caught.value.error.code == "BadParameter"


def test_import_pfx_with_password_and_pem(certs: CertificateClient,
                                          secrets: SecretClient) -> None:
    key, local = make_cert("imported.contoso.com", key=rsa.generate_private_key(65537, 2048))
    name = unique("pfx")
    imported = certs.import_certificate(name, pfx(key, local, b"s3cret"), password="s3cret")
    assert props(imported).x509_thumbprint == sha1(der(local))
    assert cer(imported) == der(local)
    policy = imported.policy
    assert policy is not None and policy.issuer_name == "Unknown"
    assert policy.subject == "CN=imported.contoso.com" and policy.key_size == 2048
    assert policy.content_type == PFX
    secret_key, secret_cert, _ = pkcs12.load_key_and_certificates(
        base64.b64decode(secrets.get_secret(name).value or ""), None)
    assert secret_cert is not None and sha1(der(secret_cert)) == sha1(der(local))
    assert secret_key is not None and public_der(secret_key) == public_der(key)

    with pytest.raises(HttpResponseError) as wrong_password:
        certs.import_certificate(unique("pfx"), pfx(key, local, b"s3cret"), password="nope")
    assert wrong_password.value.status_code == 400

    ec_key, ec_cert = make_cert("pem.contoso.com")
    pem_name = unique("pem")
    with pytest.raises(HttpResponseError) as pem_without_policy:
        certs.import_certificate(pem_name, pem(ec_key, ec_cert))
    assert "PKCS#12" in str(pem_without_policy.value.message)
    imported_pem = certs.import_certificate(
        pem_name, pem(ec_key, ec_cert),
        policy=CertificatePolicy(issuer_name="Unknown", subject="CN=ignored", content_type=PEM))
    assert props(imported_pem).x509_thumbprint == sha1(der(ec_cert))
    assert imported_pem.policy is not None
    assert imported_pem.policy.subject == "CN=pem.contoso.com"
    assert imported_pem.policy.key_type == KeyType.ec
    value = secrets.get_secret(pem_name).value or ""
    assert value.startswith("-----BEGIN PRIVATE KEY-----") and "BEGIN CERTIFICATE" in value


def test_versions_are_paged(stack: LocalStack, certs: CertificateClient) -> None:
    name = unique("paged")
    policy = CertificatePolicy(issuer_name="Self", subject="CN=paged", key_type=KeyType.ec)
    made = [props(create_self(certs, name, policy)).version for _ in range(5)]
    assert props(certs.get_certificate(name)).version == made[-1]
    mark = stack.request_mark()
    listed = list(certs.list_properties_of_certificate_versions(name, max_page_size=2))
    # In Key Vault's order: by version id, not by creation (as recorded).
    assert [p.version for p in listed] == sorted(made)
    assert all(p.x509_thumbprint and p.enabled for p in listed)
    pages = [r for r in stack.requests_since(mark)
             if r["service"] == "keyvault" and r["path"].endswith("/versions")]
    assert len(pages) == 3 and "skiptoken" in pages[1]["query"]
    assert len(list(certs.list_properties_of_certificate_versions(name))) == 5
    names = {p.name for p in certs.list_properties_of_certificates(max_page_size=2)}
    assert name in names


def test_policy_get_and_update(certs: CertificateClient) -> None:
    name = unique("policy")
    create_self(certs, name)
    policy = certs.get_certificate_policy(name)
    assert policy.subject == "CN=DefaultPolicy" and policy.validity_in_months == 12
    updated = certs.update_certificate_policy(name, CertificatePolicy(
        issuer_name="Self", subject="CN=DefaultPolicy", validity_in_months=6,
        lifetime_actions=[LifetimeAction(CertificatePolicyAction.email_contacts,
                                         days_before_expiry=30)]))
    assert updated.validity_in_months == 6
    assert [(a.action, a.days_before_expiry) for a in updated.lifetime_actions or []] == [
        (CertificatePolicyAction.email_contacts, 30)]
    assert certs.get_certificate_policy(name).validity_in_months == 6
    renewed = create_self(certs, name, certs.get_certificate_policy(name))
    parsed = x509.load_der_x509_certificate(cer(renewed))
    assert 180 <= (parsed.not_valid_after_utc - parsed.not_valid_before_utc).days <= 186


def test_disable_a_version(certs: CertificateClient, secrets: SecretClient) -> None:
    name = unique("disable")
    first = create_self(certs, name, CertificatePolicy(issuer_name="Self", subject="CN=d",
                                                       key_type=KeyType.ec))
    version = props(first).version or ""
    updated = props(certs.update_certificate_properties(name, version, enabled=False,
                                                        tags={"state": "retired"}))
    assert updated.enabled is False and updated.tags == {"state": "retired"}
    assert props(certs.get_certificate_version(name, version)).enabled is False
    with pytest.raises(HttpResponseError) as caught:
        secrets.get_secret(name, version)
    assert caught.value.status_code == 403
    assert "disabled secret" in str(caught.value.message)
    listed = list(certs.list_properties_of_certificate_versions(name))
    assert [(p.version, p.enabled) for p in listed] == [(version, False)]


def test_unknown_issuer_pending_csr_and_merge(certs: CertificateClient,
                                              secrets: SecretClient) -> None:
    name = unique("merge")
    policy = CertificatePolicy(issuer_name=WellKnownIssuerNames.unknown,
                               subject="CN=merge.contoso.com",
                               san_dns_names=["merge.contoso.com"])
    operation = certs.begin_create_certificate(name, policy).result()
    assert isinstance(operation, CertificateOperation)
    assert operation.status == "inProgress" and operation.issuer_name == "Unknown"
    csr = x509.load_der_x509_csr(certs.get_certificate_operation(name).csr or b"")
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=merge.contoso.com"
    pending = certs.get_certificate(name)
    assert props(pending).enabled is False and pending.cer is None

    ca_key, ca = make_cert("Test CA", ca=True)
    _, stranger = make_cert("merge.contoso.com", issuer=(ca, ca_key))
    with pytest.raises(HttpResponseError) as mismatch:
        certs.merge_certificate(name, [der(stranger)])
    assert mismatch.value.status_code == 400

    now = dt.datetime.now(dt.UTC)
    signed = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.subject)
              .public_key(csr.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
              .sign(ca_key, hashes.SHA256()))
    merged = certs.merge_certificate(name, [der(signed), der(ca)])
    assert props(merged).x509_thumbprint == sha1(der(signed))
    assert props(merged).version == props(pending).version
    assert certs.get_certificate_operation(name).status == "completed"
    key, leaf, chain = pkcs12.load_key_and_certificates(
        base64.b64decode(secrets.get_secret(name).value or ""), None)
    assert leaf is not None and der(leaf) == der(signed)
    assert [der(c) for c in chain] == [der(ca)]
    assert key is not None and public_der(key) == public_der_cert(signed)


def test_delete_and_recover(certs: CertificateClient) -> None:
    name = unique("deleted")
    create_self(certs, name, CertificatePolicy(issuer_name="Self", subject="CN=x",
                                               key_type=KeyType.ec))
    deleted = certs.begin_delete_certificate(name, _polling_interval=0).result()
    assert deleted.recovery_id and deleted.scheduled_purge_date
    with pytest.raises(ResourceNotFoundError):
        certs.get_certificate(name)
    assert certs.get_deleted_certificate(name).name == name
    with pytest.raises(HttpResponseError) as conflict:
        certs.begin_create_certificate(name, CertificatePolicy.get_default())
    assert conflict.value.status_code == 409
    recovered = certs.begin_recover_deleted_certificate(name, _polling_interval=0).result()
    assert recovered.name == name and cer(certs.get_certificate(name))


# -- events and lifetime -------------------------------------------------------------------




@pytest.fixture(scope="module")
def receiver(arm: Arm, rg: str, vault: dict[str, Any]) -> Iterator[Webhook]:
    """A system topic on the module's vault with a webhook subscription to ``Webhook``."""
    server = Webhook()
    topic = (f"/subscriptions/{arm.stack.subscription}/resourceGroups/{rg}"
             f"/providers/Microsoft.EventGrid/systemTopics/{vault['name']}-events")
    resp = arm.call("PUT", topic, {"location": "westus", "properties": {
        "source": vault["id"], "topicType": "Microsoft.KeyVault.vaults"}}, api_version=EG_API)
    assert resp.status_code in (200, 201), resp.text
    resp = arm.call("PUT", f"{topic}/eventSubscriptions/all", {"properties": {
        "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": server.url}}}},
        api_version=EG_API)
    assert resp.status_code == 201, resp.text
    wait_for(lambda: arm.call("GET", f"{topic}/eventSubscriptions/all", api_version=EG_API)
             .json()["properties"]["provisioningState"] == "Succeeded")
    yield server
    server.close()


def test_new_version_events(receiver: Webhook, certs: CertificateClient,
                            vault: dict[str, Any]) -> None:
    name = unique("events")
    cert = create_self(certs, name, CertificatePolicy(issuer_name="Self", subject="CN=e",
                                                      key_type=KeyType.ec))
    key, local = make_cert("imported")
    imported = certs.import_certificate(name, pfx(key, local))
    events = wait_for(lambda: len(got := receiver.of(KV_NEW, name)) == 2 and got)
    by_version = {e["data"]["Version"]: e for e in events}
    assert set(by_version) == {props(cert).version, props(imported).version}
    uri = vault["properties"]["vaultUri"]
    first = by_version[props(cert).version]
    assert first["topic"] == vault["id"] and first["dataVersion"] == "1"
    not_before, expires = props(cert).not_before, props(cert).expires_on
    assert not_before is not None and expires is not None
    assert first["data"] == {
        "Id": f"{uri}certificates/{name}/{props(cert).version}",
        "VaultName": vault["name"], "ObjectType": "Certificate", "ObjectName": name,
        "Version": props(cert).version,
        "NBF": int(not_before.timestamp()), "EXP": int(expires.timestamp())}


def test_near_expiry_and_expired_once_per_current_version(
        receiver: Webhook, certs: CertificateClient) -> None:
    soon, gone = unique("soon"), unique("gone")
    key, near = make_cert("soon", days_before=60, days_after=10)
    certs.import_certificate(soon, pfx(key, near))
    key, expired = make_cert("gone", days_before=60, days_after=-1)
    certs.import_certificate(gone, pfx(key, expired))
    wait_for(lambda: receiver.of(KV_NEAR, soon) and receiver.of(KV_EXPIRED, gone))
    time.sleep(1.5)  # more lifetime checks run; none may repeat an event
    assert len(receiver.of(KV_NEAR, soon)) == 1 and not receiver.of(KV_EXPIRED, soon)
    assert len(receiver.of(KV_EXPIRED, gone)) == 1 and len(receiver.of(KV_NEAR, gone)) == 1


def test_auto_renew_lifetime_action_issues_a_new_version(
        receiver: Webhook, certs: CertificateClient) -> None:
    name = unique("renew")
    key, old = make_cert("renew.contoso.com", days_before=80, days_after=5)
    policy = CertificatePolicy(issuer_name="Self", subject="CN=renew.contoso.com",
                               lifetime_actions=[LifetimeAction(
                                   CertificatePolicyAction.auto_renew, lifetime_percentage=80)])
    first = certs.import_certificate(name, pfx(key, old), policy=policy)
    renewed = wait_for(lambda: [e for e in receiver.of(KV_NEW, name)
                                if e["data"]["Version"] != props(first).version])
    latest = certs.get_certificate(name)
    assert props(latest).version == renewed[0]["data"]["Version"]
    parsed = x509.load_der_x509_certificate(cer(latest))
    assert parsed.subject.rfc4514_string() == "CN=renew.contoso.com"
    assert parsed.not_valid_after_utc > old.not_valid_after_utc
    assert len(list(certs.list_properties_of_certificate_versions(name))) == 2


# -- authorization: role assignments and access policies through ARM --------------------------

AUTH_API = "2022-04-01"
CERT_USER = "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba"  # Key Vault Certificate User


def assignment(arm: Arm, scope: str, role: str = CERT_USER,
               principal: str | None = None) -> requests.Response:
    return arm.call("PUT", f"{scope}/providers/Microsoft.Authorization/roleAssignments/"
                    f"{uuid.uuid4()}", {"properties": {
                        "roleDefinitionId": f"/subscriptions/{arm.stack.subscription}/providers"
                                            f"/Microsoft.Authorization/roleDefinitions/{role}",
                        "principalId": principal or arm.stack.env["APP_PRINCIPAL_ID"],
                        "principalType": "ServicePrincipal"}}, api_version=AUTH_API)


def inner_code(exc: HttpResponseError) -> str:
    assert exc.error is not None and isinstance(exc.error.innererror, dict)
    return str(exc.error.innererror["code"])


def test_rbac_vault_follows_role_assignments_at_any_parent_scope(
        stack: LocalStack, arm: Arm) -> None:
    rg = arm.new_rg()
    made = arm.call("PUT", arm.vault_path(rg, unique("kv")), {
        "location": "westus", "properties": {
            "tenantId": stack.env["AZURE_TENANT_ID"], "sku": {"family": "A", "name": "standard"},
            "enableRbacAuthorization": True,
            # Ignored by an RBAC vault, as in Azure.
            "accessPolicies": arm.vault_body()["properties"]["accessPolicies"]}})
    assert made.status_code == 201, made.text
    vault = made.json()
    certs = CertificateClient(vault["properties"]["vaultUri"], DefaultAzureCredential(),
                              connection_verify=stack.ca, verify_challenge_resource=False)
    with pytest.raises(HttpResponseError) as refused:
        list(certs.list_properties_of_certificates())
    assert refused.value.status_code == 403 and inner_code(refused.value) == "ForbiddenByRbac"
    # Someone else's assignment grants nothing; the app's at the resource group does.
    assert assignment(arm, vault["id"], principal=str(uuid.uuid4())).status_code == 201
    with pytest.raises(HttpResponseError):
        list(certs.list_properties_of_certificates())
    group = f"/subscriptions/{stack.subscription}/resourceGroups/{rg}"
    granted = assignment(arm, group)
    assert granted.status_code == 201, granted.text
    body = granted.json()
    assert body["type"] == "Microsoft.Authorization/roleAssignments"
    assert body["properties"]["scope"] == group
    assert body["properties"]["principalId"] == stack.env["APP_PRINCIPAL_ID"]
    assert list(certs.list_properties_of_certificates()) == []
    # The reader role cannot create: the create data action is not in it.
    with pytest.raises(HttpResponseError) as refused:
        certs.begin_create_certificate(unique("c"), CertificatePolicy.get_default())
    assert "'Microsoft.KeyVault/vaults/certificates/create/action'" in str(refused.value)
    assert arm.call("GET", body["id"], api_version=AUTH_API).json() == body
    assert arm.call("DELETE", body["id"], api_version=AUTH_API).status_code == 200
    assert arm.call("GET", body["id"], api_version=AUTH_API).status_code == 404
    with pytest.raises(HttpResponseError):
        list(certs.list_properties_of_certificates())


def test_role_assignment_refusals(stack: LocalStack, arm: Arm) -> None:
    scope = f"/subscriptions/{stack.subscription}"
    unknown = assignment(arm, scope, role=str(uuid.uuid4()))
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "RoleDefinitionDoesNotExist"
    rg = f"{scope}/resourceGroups/{arm.new_rg()}"
    assert assignment(arm, rg).status_code == 201
    again = assignment(arm, rg)
    assert again.status_code == 409 and again.json()["error"]["code"] == "RoleAssignmentExists"
    bad_name = arm.call("PUT", f"{rg}/providers/Microsoft.Authorization/roleAssignments/x1",
                        {"properties": {}}, api_version=AUTH_API)
    assert bad_name.status_code == 400


def test_access_policies_add_replace_remove(stack: LocalStack, arm: Arm) -> None:
    rg = arm.new_rg()
    body = arm.vault_body()
    mine = body["properties"].pop("accessPolicies")[0]
    other = dict(mine, objectId=str(uuid.uuid4()), permissions={"secrets": ["get"]})
    body["properties"]["accessPolicies"] = [other]
    vault = arm.call("PUT", arm.vault_path(rg, unique("kv")), body).json()
    certs = CertificateClient(vault["properties"]["vaultUri"], DefaultAzureCredential(),
                              connection_verify=stack.ca, verify_challenge_resource=False)
    with pytest.raises(HttpResponseError) as refused:
        list(certs.list_properties_of_certificates())
    assert refused.value.status_code == 403 and inner_code(refused.value) == "AccessDenied"
    assert "does not have certificates list permission on key vault" in str(refused.value)

    def update(kind: str, permissions: dict[str, list[str]]) -> list[dict[str, Any]]:
        resp = arm.call("PUT", f"{vault['id']}/accessPolicies/{kind}", {"properties": {
            "accessPolicies": [dict(mine, permissions=permissions)]}})
        assert resp.status_code == 200, resp.text
        assert resp.json()["type"] == "Microsoft.KeyVault/vaults/accessPolicies"
        return list(resp.json()["properties"]["accessPolicies"])

    after = update("add", {"certificates": ["list"]})
    assert after[0] == other and after[1]["permissions"] == {"certificates": ["list"]}
    assert list(certs.list_properties_of_certificates()) == []
    assert update("add", {"certificates": ["get", "list"]})[1]["permissions"] == {
        "certificates": ["list", "get"]}
    assert update("replace", {"certificates": ["get"]})[1]["permissions"] == {
        "certificates": ["get"]}
    with pytest.raises(HttpResponseError):
        list(certs.list_properties_of_certificates())
    assert update("remove", {"certificates": ["get"]}) == [other]
    assert arm.call("GET", vault["id"]).json()["properties"]["accessPolicies"] == [other]
    wrong = arm.call("PUT", f"{vault['id']}/accessPolicies/merge", {"properties": {
        "accessPolicies": []}})
    assert wrong.status_code == 400
