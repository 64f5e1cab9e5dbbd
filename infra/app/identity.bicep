// The user-assigned identity the function app runs as. It is a separate module so every
// role assignment can name its principal before the app exists, and so the identity (and
// its grants) survives a redeployment of the app itself.
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
