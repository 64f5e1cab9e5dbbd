// Lets one vault's system topic write undeliverable events to the dead-letter container in
// the app's storage (Event Grid dead-letters with the topic's own identity, since the account
// allows no shared key).
param storageAccountName string
param containerName string
param principalId string

// Storage Blob Data Contributor, from built-in-roles/storage.md.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName

  resource blobs 'blobServices' existing = {
    name: 'default'

    resource container 'containers' existing = {
      name: containerName
    }
  }
}

// Storage Blob Data Contributor on the dead-letter container only.
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage::blobs::container.id, principalId, storageBlobDataContributor)
  scope: storage::blobs::container
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
  }
}
