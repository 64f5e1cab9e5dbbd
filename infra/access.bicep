// certrotate on Azure, second deployment (run by infra/hooks/postprovision.sh after
// `azd provision`): every right the app needs outside its own resource group, and the Key
// Vault system topics. Kept out of azd's deployment because `azd down` deletes every resource
// group that deployment touches (see main.bicep); infra/hooks/predown.sh removes these.
//
// Permissions (docs: README "Permissions"):
//   target subscriptions/resource groups  certrotate cloud service operator and network joiner
//                       (custom, roles.bicep)
//   target subscriptions                  certrotate operation reader (custom: the
//                       subscription-level CsOperations polls)
//   network resource groups               certrotate network joiner
//   each RBAC vault     Key Vault Certificate User, Key Vault Secrets User,
//                       Key Vault Certificates Officer (only with renewOnNearExpiry)
//   each access-policy vault              an access policy added for the app (certificates
//                       get/list, + create/update with renewOnNearExpiry; secrets get)
//   each vault          certrotate vault deployer (custom: vaults/deploy/action)
//   each package storage account          Storage Blob Delegator
//   each package container                Storage Blob Data Reader
//   the app's dead-letter container       Storage Blob Data Contributor, for each system topic
//   optional notification topic           EventGrid Data Sender
//   optional webhook secret               Key Vault Secrets User on that one secret
targetScope = 'subscription'

@minLength(1)
param environmentName string

@description('Principal id of the app\'s user-assigned identity (main.bicep output IDENTITY_PRINCIPAL_ID).')
param principalId string

@minLength(1)
@description('Comma-separated ARM ids of the Key Vaults whose certificate events drive rotation.')
param keyVaultIds string

@description('Comma-separated permission models, parallel to keyVaultIds: rbac (enableRbacAuthorization true) or policy (access policies); read from each vault by the preprovision hook.')
param vaultAccessModes string

@description('Comma-separated resource group ids (/subscriptions/{id}/resourceGroups/{name}) holding public IPs or virtual networks the cloud services reference outside the target scopes.')
param networkResourceGroupIds string = ''

@description('Comma-separated existing system topic names, parallel to keyVaultIds; an empty entry creates evgt-{vault}-certrotate. Azure allows one system topic per vault, so the preprovision hook adopts an existing one.')
param systemTopicNames string = ''

@minLength(1)
@description('ROTATION_SUBSCRIPTIONS as the app uses it (main.bicep output TARGET_SUBSCRIPTIONS).')
param rotationSubscriptions string

@description('ROTATION_RESOURCE_GROUPS as the app uses it (main.bicep output TARGET_RESOURCE_GROUPS); empty means whole subscriptions.')
param rotationResourceGroups string = ''

@description('Comma-separated ARM ids of the blob containers holding the .cspkg packages.')
param packageContainerIds string = ''

@description('Whether the app requests new versions on NearExpiry (main.bicep output GRANT_CERTIFICATES_OFFICER).')
param renewOnNearExpiry bool
param notifyEventGridTopicId string = ''
param notifyWebhookSecretId string = ''
param appResourceGroup string
param appStorageAccountName string
param deadLetterContainerName string

var tags = {
  'azd-env-name': environmentName
}
var vaultIdList = [for id in split(keyVaultIds, ','): trim(id)]
var topicNameList = [for name in split(systemTopicNames, ','): trim(name)]
var modeList = [for mode in split(vaultAccessModes, ','): toLower(trim(mode))]
var vaults = [for (id, i) in vaultIdList: {
  id: id
  subscriptionId: toLower(split(id, '/')[2])
  resourceGroup: split(id, '/')[4]
  name: split(id, '/')[8]
  systemTopicName: length(topicNameList) > i && !empty(topicNameList[i]) ? topicNameList[i] : 'evgt-${split(id, '/')[8]}-certrotate'
  rbac: modeList[i] == 'rbac'
}]
var targetSubscriptions = [for s in split(rotationSubscriptions, ','): toLower(trim(s))]
var targetResourceGroups = [for rg in (empty(rotationResourceGroups) ? [] : split(rotationResourceGroups, ',')): trim(rg)]
var vaultSubscriptions = [for v in vaults: v.subscriptionId]
var networkGroups = [for id in (empty(networkResourceGroupIds) ? [] : split(networkResourceGroupIds, ',')): {
  subscriptionId: toLower(split(trim(id), '/')[2])
  name: split(trim(id), '/')[4]
}]
var networkSubscriptions = [for g in networkGroups: g.subscriptionId]
// One set of custom roles per subscription that holds a target scope, a vault or a network
// resource group; union() also drops duplicates.
var roleSubscriptions = union(targetSubscriptions, vaultSubscriptions, networkSubscriptions)
var packageContainers = [for id in (empty(packageContainerIds) ? [] : split(packageContainerIds, ',')): {
  subscriptionId: split(trim(id), '/')[2]
  resourceGroup: split(trim(id), '/')[4]
  account: split(trim(id), '/')[8]
  container: split(trim(id), '/')[12]
}]
var packageAccountIds = [for c in packageContainers: '/subscriptions/${c.subscriptionId}/resourceGroups/${c.resourceGroup}/providers/Microsoft.Storage/storageAccounts/${c.account}']
// An account holding several package containers is granted the delegator role once.
var packageAccounts = union(packageAccountIds, packageAccountIds)
// ARM resolves the scope and names of a module its condition skips, so an empty id is
// replaced by a well-formed placeholder before it is split.
var placeholderGroup = '${subscription().id}/resourceGroups/none/providers'
var notifyTopicId = split(empty(notifyEventGridTopicId) ? '${placeholderGroup}/Microsoft.EventGrid/topics/none' : notifyEventGridTopicId, '/')
var webhookSecretId = split(empty(notifyWebhookSecretId) ? '${placeholderGroup}/Microsoft.KeyVault/vaults/none/secrets/none' : notifyWebhookSecretId, '/')

module roles 'app/roles.bicep' = [for s in roleSubscriptions: {
  name: 'certrotate-roles-${uniqueString(environmentName, s)}'
  scope: subscription(s)
  params: {
    environmentName: environmentName
  }
}]

module targets 'app/target-subscription.bicep' = [for s in targetSubscriptions: {
  name: 'certrotate-targets-${uniqueString(environmentName, s)}'
  scope: subscription(s)
  params: {
    principalId: principalId
    resourceGroups: targetResourceGroups
    roleDefinitionId: roles[indexOf(roleSubscriptions, s)].outputs.cloudServiceOperatorId
    operationReaderId: roles[indexOf(roleSubscriptions, s)].outputs.operationReaderId
    networkJoinerId: roles[indexOf(roleSubscriptions, s)].outputs.networkJoinerId
  }
}]

module networkAccess 'app/network-group.bicep' = [for g in networkGroups: {
  name: 'certrotate-network-${uniqueString(environmentName, g.subscriptionId, g.name)}'
  scope: resourceGroup(g.subscriptionId, g.name)
  params: {
    principalId: principalId
    networkJoinerId: roles[indexOf(roleSubscriptions, g.subscriptionId)].outputs.networkJoinerId
  }
}]

module vaultAccess 'app/vault.bicep' = [for v in vaults: {
  name: 'certrotate-vault-${uniqueString(environmentName, v.id)}'
  scope: resourceGroup(v.subscriptionId, v.resourceGroup)
  params: {
    vaultName: v.name
    principalId: principalId
    renewOnNearExpiry: renewOnNearExpiry
    rbacAuthorization: v.rbac
    vaultDeployerId: roles[indexOf(roleSubscriptions, v.subscriptionId)].outputs.vaultDeployerId
    systemTopicName: v.systemTopicName
    tags: tags
  }
}]

module deadLetterAccess 'app/dead-letter-access.bicep' = [for (v, i) in vaults: {
  name: 'certrotate-deadletter-${uniqueString(environmentName, v.id)}'
  scope: resourceGroup(appResourceGroup)
  params: {
    storageAccountName: appStorageAccountName
    containerName: deadLetterContainerName
    principalId: vaultAccess[i].outputs.systemTopicPrincipalId
  }
}]

module packageAccount 'app/package-account.bicep' = [for id in packageAccounts: {
  name: 'certrotate-package-${uniqueString(environmentName, id)}'
  scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
  params: {
    accountName: split(id, '/')[8]
    principalId: principalId
  }
}]

module packageContainer 'app/package-container.bicep' = [for c in packageContainers: {
  name: 'certrotate-package-${uniqueString(environmentName, c.subscriptionId, c.account, c.container)}'
  scope: resourceGroup(c.subscriptionId, c.resourceGroup)
  params: {
    accountName: c.account
    containerName: c.container
    principalId: principalId
  }
}]

module notifyTopic 'app/notify-topic.bicep' = if (!empty(notifyEventGridTopicId)) {
  name: 'certrotate-notify-${uniqueString(environmentName)}'
  scope: resourceGroup(notifyTopicId[2], notifyTopicId[4])
  params: {
    topicName: notifyTopicId[8]
    principalId: principalId
  }
}

module webhookSecret 'app/webhook-secret.bicep' = if (!empty(notifyWebhookSecretId)) {
  name: 'certrotate-webhook-${uniqueString(environmentName)}'
  scope: resourceGroup(webhookSecretId[2], webhookSecretId[4])
  params: {
    vaultName: webhookSecretId[8]
    secretName: webhookSecretId[10]
    principalId: principalId
  }
}

// Read by infra/hooks/postdeploy.sh (events.bicep subscribes each topic).
output systemTopicIds array = [for (v, i) in vaults: vaultAccess[i].outputs.systemTopicId]
// Read by infra/hooks/predown.sh, which removes exactly these entries (accessPolicies/remove).
output accessPolicies array = [for (v, i) in vaults: {
  vaultId: v.id
  entry: vaultAccess[i].outputs.accessPolicy
}]
