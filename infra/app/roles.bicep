// The custom roles, defined once per subscription that holds a target scope, a vault or a
// network resource group (a role definition is assignable only inside its assignableScopes, and its GUID is
// tenant-wide, so the GUID and the display name include the subscription).
//
// Actions verified against MicrosoftDocs/azure-docs
// articles/role-based-access-control/permissions/compute.md, networking.md and security.md
// (tests/infra/test_role_actions.py checks each against tests/fixtures/azure/permissions).
targetScope = 'subscription'

param environmentName string

// What the app calls, in shared/adapters/compute.py: list/get (read), the one PUT (write),
// get_instance_view, list_update_domains and, for upgradeMode Manual, walk_update_domain
// (PUT …/updateDomains/{n}).
// The update-domain walk has no documented action of its own (the provider lists only
// updateDomains/read, and Azure rejects a role naming an action it does not list), so the
// wildcard is limited to that one child type; nothing else exists under it.
var cloudServiceActions = [
  'Microsoft.Compute/cloudServices/read'
  'Microsoft.Compute/cloudServices/write'
  'Microsoft.Compute/cloudServices/instanceView/read'
  'Microsoft.Compute/cloudServices/updateDomains/*'
]

// Following the update: Azure answers the PUT (and a walk) with an Azure-AsyncOperation at
// /subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc}/CsOperations/{id}
// (azure-powershell src/CloudService/test/Update-AzCloudService.Recording.json), and ARM
// authorizes that GET as the action named by its path, {namespace}/locations/CsOperations/read
// (ARM refuses such polls with AuthorizationFailed when the caller lacks the action, e.g.
// Azure/azure-sdk-for-python#48096 for Microsoft.CognitiveServices/locations/computeOperations/read).
// permissions/compute.md lists no CsOperations action, so no role can name it exactly and
// locations/operations/read does not cover it: the wildcard below is the narrowest grant that
// does, and it only reads (operation statuses, OS versions, usages, sizes of a region). The
// path holds no resource group, so this role is assigned on each target subscription even
// when ROTATION_RESOURCE_GROUPS narrows the operator role to groups (target-subscription.bicep).
var operationReadActions = [
  'Microsoft.Compute/locations/*/read'
]

// The PUT re-sends networkProfile, whose load balancer frontends reference a public IP or a
// subnet; ARM's linked access check makes the writer hold the join action on each referenced
// resource (403 LinkedAuthorizationFailed otherwise), as for any resource that joins a
// network. Assigned on the target scopes and on CERTROTATE_NETWORK_RESOURCE_GROUP_IDS.
var networkJoinActions = [
  'Microsoft.Network/publicIPAddresses/join/action'
  'Microsoft.Network/virtualNetworks/subnets/join/action'
]

// A PUT whose osProfile.secrets reference a vault makes the platform fetch those secrets on
// the caller's behalf; like a VM deployment this needs the vault's deploy action
// (articles/key-vault/key-vault-secure-your-key-vault.md: "key vault deploy permission so that
// the VMs they deploy can fetch secrets from the key vault").
var vaultDeployActions = [
  'Microsoft.KeyVault/vaults/deploy/action'
]

resource cloudServiceOperator 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'certrotate-cloud-service-operator')
  properties: {
    roleName: 'certrotate cloud service operator (${environmentName}, ${subscription().subscriptionId})'
    description: 'Read and update cloud services (extended support) and follow their operations; nothing else.'
    type: 'CustomRole'
    permissions: [
      {
        actions: cloudServiceActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource operationReader 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'certrotate-operation-reader')
  properties: {
    roleName: 'certrotate operation reader (${environmentName}, ${subscription().subscriptionId})'
    description: 'Read the status of Compute operations (cloud service updates) in this subscription; nothing else.'
    type: 'CustomRole'
    permissions: [
      {
        actions: operationReadActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource networkJoiner 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'certrotate-network-joiner')
  properties: {
    roleName: 'certrotate network joiner (${environmentName}, ${subscription().subscriptionId})'
    description: 'Let cloud service updates keep referencing their public IPs and subnets (the join actions only).'
    type: 'CustomRole'
    permissions: [
      {
        actions: networkJoinActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource vaultDeployer 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, 'certrotate-vault-deployer')
  properties: {
    roleName: 'certrotate vault deployer (${environmentName}, ${subscription().subscriptionId})'
    description: 'Let cloud service updates reference certificates in this vault (the vault deploy action only).'
    type: 'CustomRole'
    permissions: [
      {
        actions: vaultDeployActions
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

output cloudServiceOperatorId string = cloudServiceOperator.id
output vaultDeployerId string = vaultDeployer.id
output operationReaderId string = operationReader.id
output networkJoinerId string = networkJoiner.id
