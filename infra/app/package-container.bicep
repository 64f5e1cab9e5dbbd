// Lets the app read one package container: the blob's Content-MD5 check, and the read right a
// user-delegation SAS needs from its signer (the SAS grants no more than the signer holds).
param accountName string
param containerName string
param principalId string

// Storage Blob Data Reader, from built-in-roles/storage.md.
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName

  resource blobs 'blobServices' existing = {
    name: 'default'

    resource container 'containers' existing = {
      name: containerName
    }
  }
}

// Storage Blob Data Reader on the package container only.
resource reader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account::blobs::container.id, principalId, storageBlobDataReader)
  scope: account::blobs::container
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
  }
}
