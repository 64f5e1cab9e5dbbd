// The cloud-service and network-join roles on one target resource group.
param principalId string
param roleDefinitionId string
param networkJoinerId string

// certrotate cloud service operator (custom role from roles.bicep)
resource groupAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, roleDefinitionId)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: roleDefinitionId
  }
}

// certrotate network joiner (custom role from roles.bicep)
resource groupJoin 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, networkJoinerId)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: networkJoinerId
  }
}
