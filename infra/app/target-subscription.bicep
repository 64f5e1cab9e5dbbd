// The app's roles on one target subscription: the cloud-service and network-join roles on the
// whole subscription when no resource groups are listed (ROTATION_RESOURCE_GROUPS empty), else
// on each listed group; the operation reader always on the subscription, because operation
// status URLs (…/providers/Microsoft.Compute/locations/{loc}/CsOperations/{id}) sit outside
// every resource group.
targetScope = 'subscription'

param principalId string
param resourceGroups array
param roleDefinitionId string
param operationReaderId string
param networkJoinerId string

// certrotate cloud service operator (custom role from roles.bicep)
resource subscriptionAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (empty(resourceGroups)) {
  name: guid(subscription().id, principalId, roleDefinitionId)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: roleDefinitionId
  }
}

// certrotate network joiner (custom role from roles.bicep)
resource subscriptionJoin 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (empty(resourceGroups)) {
  name: guid(subscription().id, principalId, networkJoinerId)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: networkJoinerId
  }
}

// certrotate operation reader (custom role from roles.bicep)
resource operationStatus 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, operationReaderId)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: operationReaderId
  }
}

module groupAccess 'target-resource-group.bicep' = [for rg in resourceGroups: {
  name: 'certrotate-target-${uniqueString(principalId, rg)}'
  scope: resourceGroup(rg)
  params: {
    principalId: principalId
    roleDefinitionId: roleDefinitionId
    networkJoinerId: networkJoinerId
  }
}]
