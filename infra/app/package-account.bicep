// Lets the app mint user-delegation keys on a storage account holding .cspkg packages.
param accountName string
param principalId string

// Storage Blob Delegator, from built-in-roles/storage.md: only
// Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action, which is an
// account-level action, so it cannot be scoped to the container.
var storageBlobDelegator = 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName
}

// Storage Blob Delegator on the package storage account.
resource delegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, storageBlobDelegator)
  scope: account
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDelegator)
  }
}
