// Lets the app publish run notifications (CloudEvents) to an Event Grid custom topic.
param topicName string
param principalId string

// EventGrid Data Sender, from built-in-roles/integration.md.
var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: topicName
}

// EventGrid Data Sender on the notification topic.
resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, principalId, eventGridDataSender)
  scope: topic
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
  }
}
