// The cloud-service role on one target subscription: on the whole subscription when no
// resource groups are listed (ROTATION_RESOURCE_GROUPS empty), else on each listed group.
targetScope = 'subscription'

param principalId string
param resourceGroups array
param roleDefinitionId string

// certrotate cloud service operator (custom role from roles.bicep)
resource subscriptionAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (empty(resourceGroups)) {
  name: guid(subscription().id, principalId, roleDefinitionId)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: roleDefinitionId
  }
}

module groupAccess 'target-resource-group.bicep' = [for rg in resourceGroups: {
  name: 'certrotate-target-${uniqueString(principalId, rg)}'
  scope: resourceGroup(rg)
  params: {
    principalId: principalId
    roleDefinitionId: roleDefinitionId
  }
}]
