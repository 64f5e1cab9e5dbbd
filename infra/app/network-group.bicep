// The network-join role on a resource group that holds public IPs or virtual networks the
// target cloud services reference from outside their own scope (CERTROTATE_NETWORK_RESOURCE_GROUP_IDS).
param principalId string
param networkJoinerId string

// certrotate network joiner (custom role from roles.bicep)
resource networkJoin 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, networkJoinerId)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: networkJoinerId
  }
}
