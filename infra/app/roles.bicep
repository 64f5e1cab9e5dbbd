// The two custom roles, defined once per subscription that holds a target scope or a vault
// (a role definition is assignable only inside its assignableScopes, and its GUID is
// tenant-wide, so the GUID and the display name include the subscription).
//
// Actions verified against MicrosoftDocs/azure-docs
// articles/role-based-access-control/permissions/compute.md and .../permissions/security.md.
targetScope = 'subscription'

param environmentName string

// What the app calls, in shared/adapters/compute.py: list/get (read), the one PUT (write),
// get_instance_view, list_update_domains and, for upgradeMode Manual, walk_update_domain
// (PUT …/updateDomains/{n}), then the Azure-AsyncOperation polls under
// /providers/Microsoft.Compute/locations/{loc}/operations/{id}.
// The update-domain walk has no documented action of its own (the provider lists only
// updateDomains/read, and Azure rejects a role naming an action it does not list), so the
// wildcard is limited to that one child type; nothing else exists under it.
var cloudServiceActions = [
  'Microsoft.Compute/cloudServices/read'
  'Microsoft.Compute/cloudServices/write'
  'Microsoft.Compute/cloudServices/instanceView/read'
  'Microsoft.Compute/cloudServices/updateDomains/*'
  'Microsoft.Compute/locations/operations/read'
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
