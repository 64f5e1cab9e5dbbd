"""Every role the deployment grants: which role, at which scope, named guid(scope, principal, role).

The table is the table of docs/permissions.md in test form; a grant added to a template
without a row here, or a row whose template changed, fails.
"""

from __future__ import annotations

import pytest

from tests.infra.bicep import comment_above, render, resource, resources, template, variable

ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"

# Built-in role GUIDs, as listed in MicrosoftDocs/azure-docs built-in-roles/*.md.
BUILT_IN = {
    "Key Vault Certificate User": "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Certificates Officer": "a4417e6f-fecd-4de8-b567-7b0420556985",
    "Storage Blob Delegator": "db58b8e5-c6ad-4a2a-8342-4190687cbf4a",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Reader": "19e7f393-937e-4f77-808e-94535e297925",
    "Storage Queue Data Message Processor": "8a0f0c08-91a1-4084-bc3d-661d67233fed",
    "Storage Queue Data Message Sender": "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "EventGrid Data Sender": "d5a91429-5739-47e2-a06b-3470a27159e7",
}
CLOUD_SERVICE_OPERATOR = "certrotate cloud service operator"
OPERATION_READER = "certrotate operation reader"
NETWORK_JOINER = "certrotate network joiner"
VAULT_DEPLOYER = "certrotate vault deployer"

# (file, symbol): (role name, variable or parameter holding the role GUID, scope,
#                  the scope's resource type, condition)
GRANTS = {
    ("app/app.bicep", "hostStorage"): (
        "Storage Blob Data Owner", "storageBlobDataOwner", "storage",
        "Microsoft.Storage/storageAccounts", None,
    ),
    ("app/app.bicep", "queueReader"): (
        "Storage Queue Data Reader", "storageQueueDataReader", "storage",
        "Microsoft.Storage/storageAccounts", None,
    ),
    ("app/app.bicep", "queueProcessor"): (
        "Storage Queue Data Message Processor", "storageQueueDataMessageProcessor", "storage",
        "Microsoft.Storage/storageAccounts", None,
    ),
    ("app/app.bicep", "queueSender"): (
        "Storage Queue Data Message Sender", "storageQueueDataMessageSender", "storage",
        "Microsoft.Storage/storageAccounts", None,
    ),
    ("app/app.bicep", "telemetryPublisher"): (
        "Monitoring Metrics Publisher", "monitoringMetricsPublisher", "insights",
        "Microsoft.Insights/components", None,
    ),
    ("app/vault.bicep", "certificateUser"): (
        "Key Vault Certificate User", "keyVaultCertificateUser", "vault",
        "Microsoft.KeyVault/vaults", "rbacAuthorization",
    ),
    ("app/vault.bicep", "secretsUser"): (
        "Key Vault Secrets User", "keyVaultSecretsUser", "vault", "Microsoft.KeyVault/vaults",
        "rbacAuthorization",
    ),
    ("app/vault.bicep", "certificatesOfficer"): (
        "Key Vault Certificates Officer", "keyVaultCertificatesOfficer", "vault",
        "Microsoft.KeyVault/vaults", "rbacAuthorization && renewOnNearExpiry",
    ),
    ("app/vault.bicep", "vaultDeployer"): (
        VAULT_DEPLOYER, "vaultDeployerId", "vault", "Microsoft.KeyVault/vaults", None,
    ),
    ("app/dead-letter-access.bicep", "deadLetterWriter"): (
        "Storage Blob Data Contributor", "storageBlobDataContributor", "storage::blobs::container",
        "Microsoft.Storage/storageAccounts/blobServices/containers", None,
    ),
    ("app/package-account.bicep", "delegator"): (
        "Storage Blob Delegator", "storageBlobDelegator", "account",
        "Microsoft.Storage/storageAccounts", None,
    ),
    ("app/package-container.bicep", "reader"): (
        "Storage Blob Data Reader", "storageBlobDataReader", "account::blobs::container",
        "Microsoft.Storage/storageAccounts/blobServices/containers", None,
    ),
    ("app/notify-topic.bicep", "sender"): (
        "EventGrid Data Sender", "eventGridDataSender", "topic", "Microsoft.EventGrid/topics", None,
    ),
    ("app/webhook-secret.bicep", "secretReader"): (
        "Key Vault Secrets User", "keyVaultSecretsUser", "vault::secret",
        "Microsoft.KeyVault/vaults/secrets", None,
    ),
    ("app/target-subscription.bicep", "subscriptionAccess"): (
        CLOUD_SERVICE_OPERATOR, "roleDefinitionId", "subscription()", None, "empty(resourceGroups)",
    ),
    ("app/target-subscription.bicep", "subscriptionJoin"): (
        NETWORK_JOINER, "networkJoinerId", "subscription()", None, "empty(resourceGroups)",
    ),
    ("app/target-subscription.bicep", "operationStatus"): (
        OPERATION_READER, "operationReaderId", "subscription()", None, None,
    ),
    ("app/target-resource-group.bicep", "groupAccess"): (
        CLOUD_SERVICE_OPERATOR, "roleDefinitionId", "resourceGroup()", None, None,
    ),
    ("app/target-resource-group.bicep", "groupJoin"): (
        NETWORK_JOINER, "networkJoinerId", "resourceGroup()", None, None,
    ),
    ("app/network-group.bicep", "networkJoin"): (
        NETWORK_JOINER, "networkJoinerId", "resourceGroup()", None, None,
    ),
}

# What shared/adapters/compute.py calls, and nothing else (see the comments in roles.bicep):
# custom role symbol -> (its actions variable, the actions).
CUSTOM_ROLES = {
    "cloudServiceOperator": ("cloudServiceActions", [
        "Microsoft.Compute/cloudServices/read",
        "Microsoft.Compute/cloudServices/write",
        "Microsoft.Compute/cloudServices/instanceView/read",
        "Microsoft.Compute/cloudServices/updateDomains/*",
    ]),
    "operationReader": ("operationReadActions", ["Microsoft.Compute/locations/*/read"]),
    "networkJoiner": ("networkJoinActions", [
        "Microsoft.Network/publicIPAddresses/join/action",
        "Microsoft.Network/virtualNetworks/subnets/join/action",
    ]),
    "vaultDeployer": ("vaultDeployActions", ["Microsoft.KeyVault/vaults/deploy/action"]),
}


def test_every_role_assignment_is_in_the_table() -> None:
    found = {(r.file, r.symbol) for r in resources(ROLE_ASSIGNMENT)}
    assert found == set(GRANTS), "a grant was added or removed: update GRANTS and the docs"


@pytest.mark.parametrize(("file", "symbol"), sorted(GRANTS))
def test_role_scope_and_name(file: str, symbol: str) -> None:
    role_name, role_ref, scope, scope_type, condition = GRANTS[(file, symbol)]
    grant = resource(file, symbol)
    props = grant.body["properties"]

    assert render(grant.body["name"]) == f"guid({scope}.id, {props['principalId']}, {role_ref})"
    assert props["principalType"] == "ServicePrincipal"
    assert render(grant.condition) == render(condition)
    assert role_name in comment_above(file, symbol), "name the role in a comment above the grant"

    if scope_type is None:  # a subscription or resource group: the deployment's own scope
        assert "scope" not in grant.body
    else:
        assert render(grant.body["scope"]) == scope
        assert resource(file, scope.replace("::", "__")).type == scope_type

    if role_name in BUILT_IN:
        assert variable(file, role_ref) == BUILT_IN[role_name]
        assert render(props["roleDefinitionId"]) == (
            f"subscriptionResourceId(Microsoft.Authorization/roleDefinitions, {role_ref})"
        )
    else:
        assert props["roleDefinitionId"] == role_ref
        assert role_ref in template(file)["parameters"]


def test_custom_roles_hold_only_what_the_app_calls() -> None:
    roles = "app/roles.bicep"
    defined = {r.symbol for r in resources("Microsoft.Authorization/roleDefinitions")}
    assert defined == set(CUSTOM_ROLES)
    for symbol, (name, actions) in CUSTOM_ROLES.items():
        assert variable(roles, name) == actions
        props = resource(roles, symbol).body["properties"]
        assert props["type"] == "CustomRole"
        assert props["permissions"] == [
            {"actions": name, "notActions": [], "dataActions": [], "notDataActions": []}
        ]
        assert render(props["assignableScopes"]) == "[subscription().id]"
        assert render(resource(roles, symbol).body["name"]).startswith("guid(subscription().id, ")
    wildcards = sorted(a for _, actions in CUSTOM_ROLES.values() for a in actions if "*" in a)
    assert wildcards == ["Microsoft.Compute/cloudServices/updateDomains/*",
                         "Microsoft.Compute/locations/*/read"]


def test_custom_roles_reach_their_assignments() -> None:
    params = {
        (m, p): render(template("access.bicep")["modules"][m]["config"]["config"]["params"][p])
        for m, p in (("targets", "roleDefinitionId"), ("targets", "operationReaderId"),
                     ("targets", "networkJoinerId"), ("networkAccess", "networkJoinerId"),
                     ("vaultAccess", "vaultDeployerId"))
    }
    assert params == {
        ("targets", "roleDefinitionId"):
            "roles[indexOf(roleSubscriptions, s)].outputs.cloudServiceOperatorId",
        ("targets", "operationReaderId"):
            "roles[indexOf(roleSubscriptions, s)].outputs.operationReaderId",
        ("targets", "networkJoinerId"):
            "roles[indexOf(roleSubscriptions, s)].outputs.networkJoinerId",
        ("networkAccess", "networkJoinerId"):
            "roles[indexOf(roleSubscriptions, g.subscriptionId)].outputs.networkJoinerId",
        ("vaultAccess", "vaultDeployerId"):
            "roles[indexOf(roleSubscriptions, v.subscriptionId)].outputs.vaultDeployerId",
    }


def test_azd_deployment_stays_in_the_app_resource_group() -> None:
    """`azd down` deletes every resource group azd's deployment touched (Azure/azure-dev#2916)."""
    main = template("main.bicep")
    assert set(main["modules"]) == {"identity", "app"}
    for module in main["modules"].values():
        assert module["config"]["scope"] == "rg"
    assert {r.symbol for r in resources() if r.file == "main.bicep"} == {"rg"}
    for r in resources():
        if r.file in ("app/app.bicep", "app/identity.bicep") and not r.existing:
            assert r.body.get("scope") in (None, *template(r.file)["resources"]), r.symbol


def test_access_policy_vaults_get_one_added_entry_for_the_app() -> None:
    """accessPolicies/add merges one entry (never the vault PUT, which would replace every
    policy); it carries what the two reader roles grant in an RBAC vault, plus create/update
    with RENEW_ON_NEAR_EXPIRY, and predown removes the same entry (the output)."""
    policy = resource("app/vault.bicep", "appPolicy")
    assert policy.type == "Microsoft.KeyVault/vaults/accessPolicies"
    assert policy.condition == {"operator": {"type": "not",
                                             "operands": {"bool_value": "rbacAuthorization"}}}
    assert policy.body["name"] == "add"
    assert policy.body["parent"] == "vault"
    assert policy.body["properties"]["accessPolicies"] == ["policyEntry"]
    entry = variable("app/vault.bicep", "policyEntry")
    assert render(entry["objectId"]) == "principalId"
    assert entry["permissions"]["secrets"] == ["get"]
    certificates = entry["permissions"]["certificates"]["operator"]["operands"]
    assert certificates == {"condition": "renewOnNearExpiry",
                            "true_value": ["get", "list", "create", "update"],
                            "false_value": ["get", "list"]}
    assert not [r for r in resources("Microsoft.KeyVault/vaults") if not r.existing]
    outputs = template("access.bicep")["outputs"]
    assert "accessPolicies" in outputs
