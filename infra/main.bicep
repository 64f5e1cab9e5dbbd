// certrotate on Azure, first of three deployments (all plain Bicep, no registry modules, so
// checkov and tests/infra read every line offline):
//   main.bicep    (azd provision) the app resource group: identity, storage, monitoring,
//                 Flex Consumption plan, function app, and the app's rights on its own resources.
//   access.bicep  (postprovision hook) everything outside that group: custom roles, the app's
//                 rights on target scopes, vaults and package storage, the vaults' system topics.
//   events.bicep  (postdeploy hook) the Event Grid subscriptions, which need the deployed function.
// Why the split: `azd down` deletes every resource group that holds a resource of azd's own
// deployment (Azure/azure-dev#2916), so that deployment must never touch a vault's or a cloud
// service's group. The predown hook removes what access.bicep and events.bicep created.
//
// Lists arrive as comma-separated strings (the form the app settings and azd environment
// variables use) and are split here.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names every resource and role of this deployment.')
param environmentName string

@minLength(1)
@description('Region of the app resource group (a region where Flex Consumption is offered).')
param location string

@description('ROTATION_SUBSCRIPTIONS: comma-separated subscription ids whose cloud services are in scope; empty means this subscription.')
param rotationSubscriptions string = ''

@description('ROTATION_RESOURCE_GROUPS: comma-separated resource group names in scope (in every subscription above); empty means whole subscriptions.')
param rotationResourceGroups string = ''

@description('Comma-separated ARM ids of the blob containers holding the .cspkg packages; they become PACKAGE_CONTAINERS, the only containers a cert-rotation-package tag may name (access.bicep grants read on exactly these).')
param packageContainerIds string = ''

@description('PACKAGE_SAS_HOURS: lifetime of the package SAS in hours, 0.25 to 168.')
param packageSasHours string = '4'

@description('ROTATION_REWRITE_SETTINGS: also rewrite cscfg settings that hold an old thumbprint.')
param rewriteSettings bool = false

@description('RENEW_ON_NEAR_EXPIRY: request a new certificate version on NearExpiry when no person is needed (access.bicep then grants Key Vault Certificates Officer on the vaults).')
param renewOnNearExpiry bool = true

@minValue(0)
@maxValue(1500)
@description('OPERATION_WAIT_SECONDS: how long a timer or HTTP invocation follows updates (under the 30 min functionTimeout).')
param operationWaitSeconds int = 900

@minValue(0)
@maxValue(1500)
@description('EVENT_WAIT_SECONDS: how long a queue worker follows the updates it sent before returning; 0 (default): it returns after the PUT and follow messages look at the update (Event Grid is answered before the work starts).')
param eventWaitSeconds int = 0

@minValue(1)
@maxValue(100)
@description('SERVICES_PER_MESSAGE: services one queue message (one run) converges; a certificate used by more is fanned out over cert-rotation-services across instances.')
param servicesPerMessage int = 10

@allowed([
  'report'
  'update'
])
@description('ROTATION_UNTAGGED: services without a cert-rotation-package tag are reported as unmanaged (report) or rotated with configuration-only updates that keep the deployed package (update).')
param rotationUntagged string = 'report'

@minValue(0)
@maxValue(1500)
@description('INSTANCE_SETTLE_SECONDS: after an update succeeded, how long role instances may stay Busy/Starting before the run says they had not settled (never rolled back for it).')
param instanceSettleSeconds int = 600

@description('ROTATION_ROLLBACK: roll a service back when its update fails verification.')
param rollback bool = false

// The timers' schedules are %SETTING% binding expressions (handlers/timers.py): the host does
// not index a timer whose setting is missing, so both are always set, never empty.
@minLength(11)
@description('RECONCILE_SCHEDULE: NCRONTAB schedule of the backstop reconcile run.')
param reconcileSchedule string = '0 0 * * * *'

@minLength(11)
@description('FOLLOW_SCHEDULE: NCRONTAB schedule of the sweep that looks at journaled updates whose follow message was lost.')
param followSchedule string = '0 */5 * * * *'

@description('Optional ARM id of an Event Grid custom topic to publish run notifications to (access.bicep grants EventGrid Data Sender on it).')
param notifyEventGridTopicId string = ''

@description('Optional ARM id of a Key Vault secret holding the Teams/Slack webhook URL (…/vaults/{v}/secrets/{s}); preferred over notifyWebhookUrl (access.bicep grants read on that secret).')
param notifyWebhookSecretId string = ''

@secure()
@description('Optional Teams/Slack webhook URL. It embeds a signature: prefer notifyWebhookSecretId. Never an output.')
param notifyWebhookUrl string = ''

@allowed([
  'teams'
  'slack'
])
@description('NOTIFY_WEBHOOK_FORMAT: payload shape of the webhook.')
param notifyWebhookFormat string = 'teams'

@minValue(1)
@maxValue(1000)
@description('Flex Consumption scale-out limit; kept low so a burst of events cannot flood ARM.')
param maximumInstanceCount int = 40

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var requestedSubscriptions = [for s in (empty(rotationSubscriptions) ? [] : split(rotationSubscriptions, ',')): toLower(trim(s))]
var targetSubscriptions = empty(requestedSubscriptions) ? [
  subscription().subscriptionId
] : requestedSubscriptions
var targetResourceGroups = [for rg in (empty(rotationResourceGroups) ? [] : split(rotationResourceGroups, ',')): trim(rg)]
// .../storageAccounts/{account}/blobServices/default/containers/{container} → the container's
// URL in this cloud (the preprovision hook checked the id's shape).
var packageContainerUrls = [for id in (empty(packageContainerIds) ? [] : split(packageContainerIds, ',')): 'https://${split(trim(id), '/')[8]}.blob.${environment().suffixes.storage}/${split(trim(id), '/')[12]}']

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-certrotate-${resourceToken}'
    location: location
    tags: tags
  }
}

module app 'app/app.bicep' = {
  name: 'app'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    identityPrincipalId: identity.outputs.principalId
    maximumInstanceCount: maximumInstanceCount
    settings: {
      ROTATION_SUBSCRIPTIONS: join(targetSubscriptions, ',')
      ROTATION_RESOURCE_GROUPS: join(targetResourceGroups, ',')
      PACKAGE_SAS_HOURS: packageSasHours
      PACKAGE_CONTAINERS: join(packageContainerUrls, ',')
      ROTATION_REWRITE_SETTINGS: string(rewriteSettings)
      RENEW_ON_NEAR_EXPIRY: string(renewOnNearExpiry)
      OPERATION_WAIT_SECONDS: string(operationWaitSeconds)
      EVENT_WAIT_SECONDS: string(eventWaitSeconds)
      SERVICES_PER_MESSAGE: string(servicesPerMessage)
      INSTANCE_SETTLE_SECONDS: string(instanceSettleSeconds)
      ROTATION_ROLLBACK: string(rollback)
      ROTATION_UNTAGGED: rotationUntagged
      RECONCILE_SCHEDULE: reconcileSchedule
      FOLLOW_SCHEDULE: followSchedule
      NOTIFY_WEBHOOK_FORMAT: notifyWebhookFormat
    }
    notifyEventGridTopicId: notifyEventGridTopicId
    notifyWebhookSecretId: notifyWebhookSecretId
    notifyWebhookUrl: notifyWebhookUrl
  }
}

// azd stores these in the environment, where the hooks read them. None is a secret.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output FUNCTION_APP_ID string = app.outputs.functionAppId
output FUNCTION_APP_URL string = app.outputs.functionAppUrl
output IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APP_STORAGE_ACCOUNT_NAME string = app.outputs.storageAccountName
output DEAD_LETTER_STORAGE_ID string = app.outputs.storageAccountId
output DEAD_LETTER_CONTAINER string = app.outputs.deadLetterContainerName
output TARGET_SUBSCRIPTIONS string = join(targetSubscriptions, ',')
output TARGET_RESOURCE_GROUPS string = join(targetResourceGroups, ',')
output GRANT_CERTIFICATES_OFFICER bool = renewOnNearExpiry
