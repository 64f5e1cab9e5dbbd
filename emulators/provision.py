"""Operator-side set-up on the local stack: what a person does in the portal or with az.

Used by ``make demo`` and the end-to-end tests, through the real SDKs (Key Vault,
Compute, Blob) and plain HTTPS for the ARM resources without an SDK here (resource
groups, vaults, Event Grid). Nothing in here is product code.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.identity import DefaultAzureCredential
from azure.keyvault.certificates import CertificateClient, CertificatePolicy, KeyVaultCertificate
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import (
    CloudService,
    CloudServiceNetworkProfile,
    CloudServiceOsProfile,
    CloudServiceProperties,
    CloudServiceRoleProfile,
    CloudServiceRoleProfileProperties,
    CloudServiceRoleSku,
    CloudServiceVaultCertificate,
    CloudServiceVaultSecretGroup,
    LoadBalancerConfiguration,
    LoadBalancerConfigurationProperties,
    LoadBalancerFrontendIpConfiguration,
    LoadBalancerFrontendIpConfigurationProperties,
    SubResource,
)
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas
from azure.storage.queue import QueueClient, TextBase64EncodePolicy
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import NoEncryption, pkcs12
from cryptography.x509.oid import NameOID

from emulators.authorization import ROLE_IDS
from shared.domain.messages import WORK_QUEUES

NS = "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration"
# What the operator's own steps need in a vault (it makes and imports certificates and
# reads their secrets): granted explicitly, like the app's rights, never implied.
OPERATOR_ROLES = ("Key Vault Certificates Officer", "Key Vault Secrets User")
OPERATOR_POLICY = {"certificates": ["get", "list", "create", "import", "update", "delete"],
                   "secrets": ["get", "list"]}
# What the function app reads (RENEW_ON_NEAR_EXPIRY adds certificate create/update).
APP_ROLES = ("Key Vault Certificate User",)
APP_POLICY = {"certificates": ["get", "list"], "secrets": ["get"]}
AUTH_API = "2022-04-01"


def combined(*policies: dict[str, list[str]]) -> dict[str, list[str]]:
    """The union of access-policy permission sets (order kept, no duplicates)."""
    out: dict[str, list[str]] = {}
    for policy in policies:
        for kind, perms in policy.items():
            out.setdefault(kind, [])
            out[kind] += [p for p in perms if p not in out[kind]]
    return out
KV_API = "2023-07-01"


def cscfg(service: str, roles: dict[str, dict[str, str]]) -> str:
    """A realistic service configuration: ``roles`` maps role -> {cert name: thumbprint}."""
    parts = [
        f'<?xml version="1.0" encoding="utf-8"?>\n<ServiceConfiguration serviceName="{service}"'
        f' osFamily="7" osVersion="*" schemaVersion="2015-04.2.6" xmlns="{NS}">\n'
    ]
    for role, certs in roles.items():
        parts.append(
            f'  <Role name="{role}">\n    <Instances count="2" />\n'
            "    <ConfigurationSettings>\n"
            '      <Setting name="Environment" value="demo" />\n'
            "    </ConfigurationSettings>\n    <Certificates>\n"
        )
        parts.extend(
            f'      <Certificate name="{name}" thumbprint="{tp}" thumbprintAlgorithm="sha1" />\n'
            for name, tp in certs.items()
        )
        parts.append("    </Certificates>\n  </Role>\n")
    parts.append(
        '  <NetworkConfiguration>\n    <VirtualNetworkSite name="vnet1" />\n'
        "  </NetworkConfiguration>\n</ServiceConfiguration>\n"
    )
    return "".join(parts)


def thumbprint(cert: KeyVaultCertificate) -> str:
    assert cert.properties and cert.properties.x509_thumbprint
    return cert.properties.x509_thumbprint.hex().upper()


def self_signed_pfx(common_name: str, not_before: datetime, not_after: datetime) -> bytes:
    """A PKCS#12 (no password) holding a fresh RSA key and a self-signed certificate."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return pkcs12.serialize_key_and_certificates(None, key, cert, None, NoEncryption())


@dataclass
class Operator:
    env: dict[str, str]
    location: str = "westus"
    _certs: dict[str, CertificateClient] = field(default_factory=dict)

    @cached_property
    def credential(self) -> DefaultAzureCredential:
        return DefaultAzureCredential()

    @property
    def ca(self) -> str:
        return self.env["STACK_CA_BUNDLE"]

    @property
    def sub(self) -> str:
        return self.env["AZURE_SUBSCRIPTION_ID"]

    @cached_property
    def compute(self) -> ComputeManagementClient:
        return ComputeManagementClient(
            self.credential,
            self.sub,
            base_url=self.env["ARM_ENDPOINT"],
            credential_scopes=["https://management.azure.com/.default"],
            connection_verify=self.ca,
            polling_interval=0.1,
        )

    @cached_property
    def blobs(self) -> BlobServiceClient:
        return BlobServiceClient(
            self.env["AZURITE_BLOB_URL"], credential=self.credential, connection_verify=self.ca
        )

    def enqueue(self, queue: str, text: str) -> None:
        """Put ``text`` on the app's ``queue`` as anyone with queue-write access could
        (base64, the host.json ``messageEncoding``), creating the queue on a fresh stack."""
        client = QueueClient(
            self.env["AZURITE_QUEUE_URL"], queue, self.credential, connection_verify=self.ca,
            message_encode_policy=TextBase64EncodePolicy(),
        )
        try:
            client.send_message(text)
        except ResourceNotFoundError:  # infra creates every queue; a fresh stack has none yet
            client.create_queue()
            client.send_message(text)

    def queued(self, queue: str) -> int:
        """Messages in the app's ``queue``, visible or not (0 before its first message
        created it): work the pipeline still owes. A message leaves its queue only once
        its function returned (or, after its last attempt, for the poison queue)."""
        client = QueueClient(
            self.env["AZURITE_QUEUE_URL"], queue, self.credential, connection_verify=self.ca
        )
        try:
            return client.get_queue_properties().approximate_message_count or 0
        except ResourceNotFoundError:
            return 0

    def owed(self) -> int:
        """Messages in the pipeline's work queues (hints, batches, follow looks), visible
        or not: 0 once the pipeline has nothing left to do."""
        return sum(self.queued(queue) for queue in WORK_QUEUES)

    # -- ARM over plain HTTPS ------------------------------------------------------------

    def arm(self, method: str, path: str, body: Any = None, api: str = "2024-11-04") -> Any:
        token = self.credential.get_token("https://management.azure.com/.default").token
        url = f"{self.env['ARM_ENDPOINT']}{path}?api-version={api}"
        resp = requests.request(
            method,
            url,
            json=body,
            verify=self.ca,
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        )
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text}")
        async_url = resp.headers.get("Azure-AsyncOperation")
        deadline = time.monotonic() + 60
        while async_url and time.monotonic() < deadline:
            status = requests.get(
                async_url, verify=self.ca, timeout=30, headers={"Authorization": f"Bearer {token}"}
            ).json()
            if status.get("status") in ("Succeeded", "Failed", "Canceled"):
                if status["status"] != "Succeeded":
                    raise RuntimeError(f"{method} {path}: {status}")
                return requests.get(
                    url, verify=self.ca, timeout=30, headers={"Authorization": f"Bearer {token}"}
                ).json()
            time.sleep(0.05)
        return resp.json() if resp.content else None

    def resource_group(self, name: str) -> str:
        self.arm(
            "PUT",
            f"/subscriptions/{self.sub}/resourcegroups/{name}",
            {"location": self.location},
            api="2021-04-01",
        )
        return f"/subscriptions/{self.sub}/resourceGroups/{name}"

    def vault(
        self,
        rg: str,
        name: str,
        enabled_for_deployment: bool = True,
        *,
        rbac: bool,
        roles: Sequence[str] = (),
        policy: dict[str, list[str]] | None = None,
    ) -> tuple[str, str]:
        """Create a vault; returns (ARM id, data-plane URL).

        ``rbac`` picks the permission model. The app's principal gets ``roles`` (role
        assignments at the vault: an RBAC vault) or ``policy`` (its access policy: an
        access-policy vault), so each caller states the rights its steps need.
        """
        props: dict[str, Any] = {
            "tenantId": self.env["AZURE_TENANT_ID"],
            "sku": {"family": "A", "name": "standard"},
            "enabledForDeployment": enabled_for_deployment,
            "enableRbacAuthorization": rbac,
        }
        if policy is not None:
            props["accessPolicies"] = [self._policy_entry(policy)]
        vault = self.arm(
            "PUT",
            f"{rg}/providers/Microsoft.KeyVault/vaults/{name}",
            {"location": self.location, "properties": props},
            api=KV_API,
        )
        for role in roles:
            self.grant_role(vault["id"], role)
        return vault["id"], vault["properties"]["vaultUri"]

    @property
    def principal(self) -> str:
        return self.env["APP_PRINCIPAL_ID"]

    def _policy_entry(self, permissions: dict[str, list[str]]) -> dict[str, Any]:
        return {
            "tenantId": self.env["AZURE_TENANT_ID"],
            "objectId": self.principal,
            "permissions": {k: list(v) for k, v in permissions.items()},
        }

    def grant_role(self, scope: str, role: str) -> str:
        """Assign the built-in ``role`` (by name) to the app's principal at ``scope``
        (a subscription, resource group or resource id); returns the assignment's id."""
        definition = (
            f"/subscriptions/{self.sub}/providers/Microsoft.Authorization/roleDefinitions/"
            f"{ROLE_IDS[role]}"
        )
        return self.assign(scope, definition, str(uuid.uuid4()))

    def define_role(self, name: str, actions: Sequence[str]) -> str:
        """A custom role with these control-plane ``actions``, assignable in the subscription,
        as ``infra/app/roles.bicep`` defines one (the same name gives the same role); its id."""
        guid = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.sub}/{name}".lower())
        path = f"/subscriptions/{self.sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
        body = {
            "properties": {
                "roleName": name,
                "type": "CustomRole",
                "permissions": [{"actions": list(actions), "notActions": [], "dataActions": [],
                                 "notDataActions": []}],
                "assignableScopes": [f"/subscriptions/{self.sub}"],
            }
        }
        return str(self.arm("PUT", path, body, api=AUTH_API)["id"])

    def assign(self, scope: str, definition_id: str, name: str | None = None) -> str:
        """Assign a role definition (by id) to the app's principal at ``scope``; without a
        ``name`` the assignment is named from (scope, role, principal), as infra names its
        own, so assigning twice changes nothing. Returns the assignment's id."""
        name = name or str(uuid.uuid5(
            uuid.NAMESPACE_URL, f"{scope}|{definition_id}|{self.principal}".lower()))
        path = f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"
        body = {
            "properties": {
                "roleDefinitionId": definition_id,
                "principalId": self.principal,
                "principalType": "ServicePrincipal",
            }
        }
        return str(self.arm("PUT", path, body, api=AUTH_API)["id"])

    def revoke_role(self, assignment_id: str) -> None:
        self.arm("DELETE", assignment_id, api=AUTH_API)

    def access_policy(
        self, vault_id: str, kind: str, permissions: dict[str, list[str]]
    ) -> list[dict[str, Any]]:
        """``accessPolicies/{kind}`` (add, replace or remove) for the app's principal;
        returns the vault's access policies afterwards."""
        body = {"properties": {"accessPolicies": [self._policy_entry(permissions)]}}
        answer = self.arm("PUT", f"{vault_id}/accessPolicies/{kind}", body, api=KV_API)
        return list(answer["properties"]["accessPolicies"])

    def certificates(self, vault_url: str) -> CertificateClient:
        if vault_url not in self._certs:
            self._certs[vault_url] = CertificateClient(
                vault_url,
                self.credential,
                connection_verify=self.ca,
                verify_challenge_resource=False,
            )
        return self._certs[vault_url]

    def new_version(
        self, vault_url: str, name: str, policy: CertificatePolicy | None = None
    ) -> KeyVaultCertificate:
        client = self.certificates(vault_url)
        poller = client.begin_create_certificate(
            name, policy or CertificatePolicy.get_default(), _polling_interval=0.05
        )
        result = poller.result()
        assert isinstance(result, KeyVaultCertificate)
        return result

    def imported(self, vault_url: str, name: str, days_left: int) -> KeyVaultCertificate:
        """Import a certificate ``name`` whose only version expires ``days_left`` days from
        now (negative: already expired), as a person imports one a CA issued."""
        now = datetime.now(UTC)
        pfx = self_signed_pfx(name, now - timedelta(days=300), now + timedelta(days=days_left))
        return self.certificates(vault_url).import_certificate(name, pfx)

    def package(self, container: str, name: str, data: bytes) -> tuple[str, str]:
        """Upload a .cspkg; returns (blob URL without SAS, base64 Content-MD5)."""
        client = self.blobs.get_container_client(container)
        if not client.exists():
            client.create_container()
        client.upload_blob(name, data, overwrite=True)
        return (
            f"{self.env['AZURITE_BLOB_URL']}/{container}/{name}",
            base64.b64encode(hashlib.md5(data).digest()).decode(),
        )

    def package_sas(self, blob_url: str) -> str:
        now = datetime.now(UTC)
        key = self.blobs.get_user_delegation_key(
            now - timedelta(minutes=5), now + timedelta(hours=1)
        )
        container, blob = blob_url.split("/devstoreaccount1/", 1)[1].split("/", 1)
        sas = generate_blob_sas(
            "devstoreaccount1",
            container,
            blob,
            user_delegation_key=key,
            permission=BlobSasPermissions(read=True),
            expiry=now + timedelta(hours=1),
            start=now - timedelta(minutes=5),
        )
        return f"{blob_url}?{sas}"

    def cloud_service(
        self,
        rg: str,
        name: str,
        configuration: str,
        roles: list[str],
        vault_id: str,
        secret_ids: list[str],
        package: str | None,
        md5: str | None = None,
        upgrade_mode: str = "Auto",
    ) -> CloudService:
        """Deploy a cloud service as an operator would, tagged for rotation if ``package``."""
        tags = {}
        if package:
            tags["cert-rotation-package"] = package
            if md5:
                tags["cert-rotation-package-md5"] = md5
        pkg = package or self.package("packages", f"{name}.cspkg", b"PK\x03\x04untagged")[0]
        model = CloudService(
            location=self.location,
            tags=tags,
            properties=CloudServiceProperties(
                package_url=self.package_sas(pkg),
                configuration=configuration,
                upgrade_mode=upgrade_mode,
                role_profile=CloudServiceRoleProfile(
                    roles=[
                        CloudServiceRoleProfileProperties(
                            name=r,
                            sku=CloudServiceRoleSku(
                                name="Standard_D1_v2", tier="Standard", capacity=2
                            ),
                        )
                        for r in roles
                    ]
                ),
                os_profile=CloudServiceOsProfile(
                    secrets=[
                        CloudServiceVaultSecretGroup(
                            source_vault=SubResource(id=vault_id),
                            vault_certificates=[
                                CloudServiceVaultCertificate(certificate_url=s) for s in secret_ids
                            ],
                        )
                    ]
                ),
                network_profile=CloudServiceNetworkProfile(
                    load_balancer_configurations=[
                        LoadBalancerConfiguration(
                            name="lb",
                            properties=LoadBalancerConfigurationProperties(
                                frontend_ip_configurations=[
                                    LoadBalancerFrontendIpConfiguration(
                                        name="fe",
                                        properties=LoadBalancerFrontendIpConfigurationProperties(
                                            public_ip_address=SubResource(
                                                id=f"{rg}/providers/Microsoft.Network/publicIPAddresses/"
                                                f"{name}-ip"
                                            )
                                        ),
                                    )
                                ]
                            ),
                        )
                    ]
                ),
            ),
        )
        group = rg.rsplit("/", 1)[-1]
        return self.compute.cloud_services.begin_create_or_update(group, name, model).result()

    def deploy(
        self,
        rg: str,
        name: str,
        vault_id: str,
        roles: dict[str, dict[str, KeyVaultCertificate]],
        *,
        tagged: bool = True,
    ) -> CloudService:
        """Upload a package and deploy cloud service ``name`` whose ``roles`` map each role to
        its cscfg certificates (cscfg name -> Key Vault version), all from ``vault_id``; tagged
        for rotation (package and its MD5) unless told otherwise."""
        package, md5 = self.package("packages", f"{name}.cspkg", b"PK\x03\x04" + b"pkg" * 2048)
        used = {c.secret_id: c for certs in roles.values() for c in certs.values()}
        config = cscfg(name, {r: {n: thumbprint(c) for n, c in certs.items()}
                              for r, certs in roles.items()})
        return self.cloud_service(
            rg, name, config, list(roles), vault_id, [s for s in used if s],
            package if tagged else None, md5 if tagged else None,
        )

    def subscribe(
        self, rg: str, vault_id: str, name: str, function: str = "keyvault_events",
        schema: str = "EventGridSchema", dead_letter_container: str | None = None,
        max_attempts: int = 30, webhook: str | None = None,
    ) -> None:
        """The vault's certificate events to ``function``, as infra/app/event-subscription.bicep
        deploys them: a system topic with its own identity on the vault, an ``AzureFunction``
        destination (the function's resource id, so no key), one event per delivery, and
        dead letters written with the topic's identity when a container is named. A
        ``webhook`` URL (a test's own receiver) replaces the function, handshake included."""
        topic = f"{rg}/providers/Microsoft.EventGrid/systemTopics/{vault_id.rsplit('/', 1)[-1]}"
        self.arm(
            "PUT",
            topic,
            {
                "location": self.location,
                "identity": {"type": "SystemAssigned"},
                "properties": {"source": vault_id, "topicType": "Microsoft.KeyVault.vaults"},
            },
            api="2025-02-15",
        )
        batch = {"maxEventsPerBatch": 1, "preferredBatchSizeInKilobytes": 64}
        target: dict[str, Any] = (
            {"endpointType": "WebHook", "properties": {"endpointUrl": webhook, **batch}}
            if webhook is not None
            else {
                "endpointType": "AzureFunction",
                "properties": {
                    "resourceId": f"{self.env['FUNCTION_APP_ID']}/functions/{function}",
                    **batch,
                },
            }
        )
        properties: dict[str, Any] = {
            "destination": target,
            "filter": {
                "includedEventTypes": [
                    "Microsoft.KeyVault.CertificateNewVersionCreated",
                    "Microsoft.KeyVault.CertificateNearExpiry",
                    "Microsoft.KeyVault.CertificateExpired",
                ]
            },
            "eventDeliverySchema": schema,
            "retryPolicy": {"maxDeliveryAttempts": max_attempts, "eventTimeToLiveInMinutes": 1440},
        }
        if dead_letter_container is not None:
            account = (
                f"/subscriptions/{self.sub}/resourceGroups/{rg.rsplit('/', 1)[-1]}"
                "/providers/Microsoft.Storage/storageAccounts/devstoreaccount1"
            )
            properties["deadLetterWithResourceIdentity"] = {
                "identity": {"type": "SystemAssigned"},
                "deadLetterDestination": {
                    "endpointType": "StorageBlob",
                    "properties": {
                        "resourceId": account,
                        "blobContainerName": dead_letter_container,
                    },
                },
            }
        self.arm(
            "PUT",
            f"{topic}/eventSubscriptions/{name}",
            {"properties": properties},
            api="2025-02-15",
        )
