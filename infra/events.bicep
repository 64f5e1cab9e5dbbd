// certrotate on Azure, third deployment (run by infra/hooks/postdeploy.sh once the code is
// deployed): one Event Grid subscription per vault system topic, delivering the three
// certificate events to the `keyvault_events` function. The AzureFunction destination names
// the function by resource id, so no function key appears anywhere; the subscription can only
// be created once that function exists, which is why this is not part of `azd provision`.
targetScope = 'subscription'

@minLength(1)
param environmentName string

@description('System topic ids (access.bicep output systemTopicIds).')
param systemTopicIds array

@description('Function app resource id (main.bicep output FUNCTION_APP_ID).')
param functionAppId string

@description('App storage account id and container for undeliverable events (main.bicep outputs).')
param deadLetterStorageId string
param deadLetterContainerName string

@minValue(1)
@maxValue(30)
@description('Event Grid delivery attempts before an event is dead-lettered (Event Grid allows 1 to 30).')
param maxDeliveryAttempts int = 30

@minValue(1)
@maxValue(1440)
@description('Minutes Event Grid keeps retrying an event (at most 1440).')
param eventTimeToLiveInMinutes int = 1440

module subscriptions 'app/event-subscription.bicep' = [for id in systemTopicIds: {
  name: 'certrotate-events-${uniqueString(environmentName, id)}'
  scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
  params: {
    name: take('certrotate-${environmentName}', 64)
    systemTopicName: split(id, '/')[8]
    functionId: '${functionAppId}/functions/keyvault_events'
    deadLetterStorageId: deadLetterStorageId
    deadLetterContainerName: deadLetterContainerName
    maxDeliveryAttempts: maxDeliveryAttempts
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
  }
}]
