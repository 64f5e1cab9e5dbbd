// The rotator itself: its storage, monitoring, Flex Consumption plan and function app, and the
// rights its identity needs on them. Nothing here uses a key: storage allows no shared key,
// Application Insights no local auth, and the app reaches both with its managed identity.
param location string
param tags object
param resourceToken string
param identityId string
param identityClientId string
param identityPrincipalId string
param maximumInstanceCount int

@description('App settings chosen in main.bicep (scope, schedules, renewal, SAS lifetime, notifications).')
param settings object

param notifyEventGridTopicId string
param notifyWebhookSecretId string

@secure()
param notifyWebhookUrl string

// Built-in role GUIDs, from MicrosoftDocs/azure-docs
// articles/role-based-access-control/built-in-roles/storage.md and monitor.md.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataReader = '19e7f393-937e-4f77-808e-94535e297925'
var storageQueueDataMessageProcessor = '8a0f0c08-91a1-4084-bc3d-661d67233fed'
var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

var deploymentContainerName = 'app-package'
var deadLetterContainerName = 'eventgrid-deadletter'
// Created up front so the app never needs to create containers; names as in shared/config.py.
var containerNames = [
  deploymentContainerName
  deadLetterContainerName
  'cert-rotation-runs'
  'cert-rotation-locks'
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Flex Consumption without a virtual network reaches its storage over the public endpoint; access is Entra-only (no shared key, no anonymous blobs).
  // checkov:skip=CKV_AZURE_59:Same reason: public network access is how the plan and Event Grid dead-lettering reach the account.
  // checkov:skip=CKV_AZURE_206:Holds only the app package, run records, locks and dead letters; locally redundant storage is enough.
  // checkov:skip=CKV_AZURE_43:The name is 'st' plus uniqueString() (13 lowercase alphanumerics), so valid; checkov cannot evaluate uniqueString().
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [for name in containerNames: {
  parent: blobs
  name: name
  properties: {
    publicAccess: 'None'
  }
}]

// The work queues of the pipeline (README "Pipeline"): one hint per certificate event, one
// message per service to converge, follow-up messages while an update runs. Each has its
// '-poison' companion, where the host moves a message after host.json maxDequeueCount failed
// attempts. All are created here, so neither the host nor the app ever needs to create a
// queue (the app's identity holds no right to).
var workQueueNames = [
  'cert-rotation-hints'
  'cert-rotation-services'
  'cert-rotation-follow'
]
var poisonQueueNames = [for name in workQueueNames: '${name}-poison']
var queueNames = concat(workQueueNames, poisonQueueNames)

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for name in queueNames: {
  parent: queueService
  name: name
}]

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    retentionInDays: 30
    sku: {
      name: 'PerGB2018'
    }
    features: {
      disableLocalAuth: true
    }
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy is not offered by Flex Consumption in every region; a lost invocation is redelivered by Event Grid (retries for 24 h) and caught by the reconcile timer.
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

// Optional notification targets: a custom topic (endpoint read from it) and a webhook URL that
// is either a Key Vault reference (preferred: the URL never passes through a deployment) or the
// secure parameter.
// ARM resolves names and indexes even on the branch or resource a condition skips, so an
// empty id is replaced by a well-formed placeholder before it is split.
var notifyTopicId = split(empty(notifyEventGridTopicId) ? '${resourceGroup().id}/providers/Microsoft.EventGrid/topics/none' : notifyEventGridTopicId, '/')
var webhookSecretId = split(empty(notifyWebhookSecretId) ? '${resourceGroup().id}/providers/Microsoft.KeyVault/vaults/none/secrets/none' : notifyWebhookSecretId, '/')

resource notifyTopic 'Microsoft.EventGrid/topics@2025-02-15' existing = if (!empty(notifyEventGridTopicId)) {
  name: notifyTopicId[8]
  scope: resourceGroup(notifyTopicId[2], notifyTopicId[4])
}
var webhookSetting = empty(notifyWebhookSecretId) ? notifyWebhookUrl : '@Microsoft.KeyVault(VaultName=${webhookSecretId[8]};SecretName=${webhookSecretId[10]})'

// The chosen settings plus what the host and the SDKs need to use the identity.
var appSettings = union(settings, {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
  // The queue triggers' and queue outputs' connection (functions-reference.md "Connecting to
  // host storage with an identity").
  AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
  ROTATION_STORAGE_URL: storage.properties.primaryEndpoints.blob
  AZURE_CLIENT_ID: identityClientId
  ARM_ENDPOINT: environment().resourceManager
  // Tokens go only to this cloud's endpoints (shared/domain/destinations.py); a sovereign cloud's
  // suffixes come from environment() like its ARM endpoint.
  KEYVAULT_DNS_SUFFIX: environment().suffixes.keyvaultDns
  STORAGE_DNS_SUFFIX: environment().suffixes.storage
  APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
  NOTIFY_EVENTGRID_ENDPOINT: empty(notifyEventGridTopicId) ? '' : notifyTopic.properties.endpoint
  NOTIFY_WEBHOOK_URL: webhookSetting
})

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17:Client certificates cannot be used: Event Grid delivers to the trigger with a function key, and callers of the HTTP API use function keys.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero per event; there is no fixed instance count to fail over between, and Event Grid redelivers.
  // checkov:skip=CKV_AZURE_213:There is no long-lived instance for a health probe to evict on Flex Consumption; failed deliveries are retried by Event Grid.
  // checkov:skip=CKV_AZURE_222:Event Grid push delivery needs a public endpoint; a private one would need a virtual network.
  name: 'func-certrotate-${resourceToken}'
  location: location
  tags: union(tags, {
    'azd-service-name': 'rotator'
  })
  kind: 'functionapp,linux'
  // The deployment container must exist and the identity must be able to use it first.
  dependsOn: [
    containers
    hostStorage
  ]
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// The app settings as their own config resource, as the Flex Consumption samples do.
resource appSettingsConfig 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov treats every sites/config as the site's 'web' configuration; this one is 'appsettings',
  // which holds none of the properties these checks read (they pass on the site itself).
  // checkov:skip=CKV_AZURE_13:Checks the 'web' config (authentication); not applicable to 'appsettings'. The HTTP API uses function keys.
  // checkov:skip=CKV_AZURE_63:Checks the 'web' config (HTTP logging); not applicable to 'appsettings'. Logs go to Application Insights.
  // checkov:skip=CKV_AZURE_65:Checks the 'web' config (detailed errors); not applicable to 'appsettings'.
  // checkov:skip=CKV_AZURE_66:Checks the 'web' config (failed request tracing); not applicable to 'appsettings'.
  // checkov:skip=CKV_AZURE_80:Checks the 'web' config (.NET version); not applicable to 'appsettings', and the app is Python.
  // checkov:skip=CKV_AZURE_88:Checks the 'web' config (Azure Files); not applicable to 'appsettings', and Flex Consumption uses no file share.
  // checkov:skip=CKV_AZURE_222:Checks the 'web' config (public access); not applicable to 'appsettings'. Event Grid push delivery needs a public endpoint.
  parent: site
  name: 'appsettings'
  properties: appSettings
}

// No FTP and no basic-auth publishing: azd deploys with an Entra token.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// Storage Blob Data Owner on the app's own account: what Functions documents for identity-based
// host storage (includes/functions-azurewebjobsstorage-permissions.md), and it also covers the
// Flex deployment container, run records and lock leases. The account holds nothing else.
resource hostStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageBlobDataOwner)
  scope: storage
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
  }
}

// The queues, on the app's own account only (they live nowhere else). What the Functions docs
// recommend for the Queue Storage extension (functions-bindings-storage-queue-trigger.md,
// "Grant permission to the identity"), minus what only creating queues needs:
//   Storage Queue Data Reader             the trigger's queue-exists check (queue metadata)
//   Storage Queue Data Message Processor  the trigger: receive, renew, release, delete
//   Storage Queue Data Message Sender     the output binding, the app's own enqueues (with a
//                                         visibility delay) and the host's poison copies
// Not Storage Queue Data Contributor: it adds creating, deleting and clearing queues, and
// every queue (poison ones included) is created above.
resource queueReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageQueueDataReader)
  scope: storage
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataReader)
  }
}

// Storage Queue Data Message Processor (see above).
resource queueProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageQueueDataMessageProcessor)
  scope: storage
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageProcessor)
  }
}

// Storage Queue Data Message Sender (see above).
resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageQueueDataMessageSender)
  scope: storage
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
  }
}

// Monitoring Metrics Publisher on Application Insights: Entra-authenticated telemetry, the
// only kind a component with DisableLocalAuth accepts.
resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identityPrincipalId, monitoringMetricsPublisher)
  scope: insights
  properties: {
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}

output functionAppName string = site.name
output functionAppId string = site.id
output functionAppUrl string = 'https://${site.properties.defaultHostName}'
output storageAccountName string = storage.name
output storageAccountId string = storage.id
output deadLetterContainerName string = deadLetterContainerName
