#!/usr/bin/env bash
# After `azd deploy`: subscribe the `keyvault_events` function to each vault's certificate
# events (infra/events.bicep). The subscription names the function by resource id, so it can
# only be created once the deployed code has been indexed; this waits for that (up to 5 min).
# A plain ARM deployment, so re-running it changes nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
. infra/hooks/lib.sh

for name in AZURE_ENV_NAME AZURE_SUBSCRIPTION_ID AZURE_LOCATION AZURE_RESOURCE_GROUP \
  AZURE_FUNCTION_APP_NAME FUNCTION_APP_ID FUNCTION_APP_URL DEAD_LETTER_STORAGE_ID DEAD_LETTER_CONTAINER; do
  require_env "$name" "set by azd provision (run azd provision again)"
done

for attempt in $(seq 30); do
  az functionapp function show --only-show-errors -o none \
    --subscription "$AZURE_SUBSCRIPTION_ID" --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$AZURE_FUNCTION_APP_NAME" --function-name keyvault_events 2>/dev/null && break
  [[ $attempt -lt 30 ]] || fail "the function keyvault_events did not appear in $AZURE_FUNCTION_APP_NAME within 5 minutes; check the deployment logs, then run: azd hooks run postdeploy"
  sleep 10
done

topics="$(az deployment sub show --only-show-errors --subscription "$AZURE_SUBSCRIPTION_ID" \
  --name "$(deployment_name access)" --query properties.outputs.systemTopicIds.value -o json)" ||
  fail "the access deployment is missing: run azd provision (its postprovision hook creates it)"

log "subscribing keyvault_events to the certificate events of every vault"
az deployment sub create --only-show-errors -o none \
  --name "$(deployment_name events)" \
  --subscription "$AZURE_SUBSCRIPTION_ID" \
  --location "$AZURE_LOCATION" \
  --template-file infra/events.bicep \
  --parameters \
  environmentName="$AZURE_ENV_NAME" \
  systemTopicIds="$topics" \
  functionAppId="$FUNCTION_APP_ID" \
  deadLetterStorageId="$DEAD_LETTER_STORAGE_ID" \
  deadLetterContainerName="$DEAD_LETTER_CONTAINER"

log "ready: $FUNCTION_APP_URL (run records: GET $FUNCTION_APP_URL/api/rotations/{id} with a function key)"
