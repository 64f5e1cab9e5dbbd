// Lets the app resolve the Key Vault reference behind NOTIFY_WEBHOOK_URL: read access to that
// one secret, not to the vault.
param vaultName string
param secretName string
param principalId string

// Key Vault Secrets User, from built-in-roles/security.md.
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName

  resource secret 'secrets' existing = {
    name: secretName
  }
}

// Key Vault Secrets User on the webhook secret only.
resource secretReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault::secret.id, principalId, keyVaultSecretsUser)
  scope: vault::secret
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}
