// One target Key Vault: the app's rights on it and the Event Grid system topic that carries
// its certificate events. Deployed in the vault's own resource group and subscription.
// The vault itself is only read: its enabledForDeployment flag is checked (or set) by the
// preprovision hook, because a template can only replace a vault, never patch one flag; the
// same hook reads its permission model (rbacAuthorization). An RBAC vault gets role
// assignments (an access policy would be ignored there); an access-policy vault gets one entry
// for the app through accessPolicies/add, which merges it in and leaves the vault and every
// other entry alone (role assignments would be ignored there).
param vaultName string
param principalId string
param renewOnNearExpiry bool
param rbacAuthorization bool
param vaultDeployerId string
param systemTopicName string
param tags object

// Built-in role GUIDs, from MicrosoftDocs/azure-docs
// articles/role-based-access-control/built-in-roles/security.md.
var keyVaultCertificateUser = 'db79e9a7-68ee-4b58-9aeb-b90e7c24fcba'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultCertificatesOfficer = 'a4417e6f-fecd-4de8-b567-7b0420556985'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

// Key Vault Certificate User: read certificate versions, policy and pending operations.
resource certificateUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (rbacAuthorization) {
  name: guid(vault.id, principalId, keyVaultCertificateUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCertificateUser)
  }
}

// Key Vault Secrets User: read the secret (PFX) identifiers that osProfile.secrets reference.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (rbacAuthorization) {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

// Key Vault Certificates Officer: request a new version on NearExpiry (RENEW_ON_NEAR_EXPIRY).
resource certificatesOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (rbacAuthorization && renewOnNearExpiry) {
  name: guid(vault.id, principalId, keyVaultCertificatesOfficer)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCertificatesOfficer)
  }
}

// What the app reads in an access-policy vault (as the two roles above grant in an RBAC
// vault), plus what requesting a new version needs with RENEW_ON_NEAR_EXPIRY (create, and
// update for the pending operation).
var policyEntry = {
  tenantId: subscription().tenantId
  objectId: principalId
  permissions: {
    certificates: renewOnNearExpiry ? [
      'get'
      'list'
      'create'
      'update'
    ] : [
      'get'
      'list'
    ]
    secrets: [
      'get'
    ]
  }
}

resource appPolicy 'Microsoft.KeyVault/vaults/accessPolicies@2023-07-01' = if (!rbacAuthorization) {
  parent: vault
  name: 'add'
  properties: {
    accessPolicies: [
      policyEntry
    ]
  }
}

// certrotate vault deployer (custom role from roles.bicep): Microsoft.KeyVault/vaults/deploy/action.
resource vaultDeployer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, vaultDeployerId)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: vaultDeployerId
  }
}

// Azure allows one system topic per source; an existing one is adopted by name (the
// preprovision hook finds it). Its own identity writes dead letters (dead-letter-access.bicep).
resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: systemTopicName
  location: vault.location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

output systemTopicId string = systemTopic.id
output accessPolicy object = rbacAuthorization ? {} : policyEntry
output systemTopicPrincipalId string = systemTopic.identity.principalId
