#!/usr/bin/env bash
# After `azd provision`: deploy infra/access.bicep, i.e. every right the app needs outside its
# own resource group (target scopes, vaults, package storage, notification targets) and the
# vaults' system topics. A plain ARM deployment, so re-running it changes nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
. infra/hooks/lib.sh

for name in AZURE_ENV_NAME AZURE_SUBSCRIPTION_ID AZURE_LOCATION AZURE_RESOURCE_GROUP \
  IDENTITY_PRINCIPAL_ID TARGET_SUBSCRIPTIONS APP_STORAGE_ACCOUNT_NAME DEAD_LETTER_CONTAINER \
  GRANT_CERTIFICATES_OFFICER CERTROTATE_KEYVAULT_IDS CERTROTATE_VAULT_MODES; do
  require_env "$name" "set by azd provision or the preprovision hook (run azd provision again)"
done

log "granting access outside $AZURE_RESOURCE_GROUP and creating the vaults' system topics"
az deployment sub create --only-show-errors -o none \
  --name "$(deployment_name access)" \
  --subscription "$AZURE_SUBSCRIPTION_ID" \
  --location "$AZURE_LOCATION" \
  --template-file infra/access.bicep \
  --parameters \
  environmentName="$AZURE_ENV_NAME" \
  principalId="$IDENTITY_PRINCIPAL_ID" \
  keyVaultIds="$CERTROTATE_KEYVAULT_IDS" \
  vaultAccessModes="$CERTROTATE_VAULT_MODES" \
  networkResourceGroupIds="${CERTROTATE_NETWORK_RESOURCE_GROUP_IDS:-}" \
  systemTopicNames="${CERTROTATE_SYSTEM_TOPIC_NAMES:-}" \
  rotationSubscriptions="$TARGET_SUBSCRIPTIONS" \
  rotationResourceGroups="${TARGET_RESOURCE_GROUPS:-}" \
  packageContainerIds="${CERTROTATE_PACKAGE_CONTAINER_IDS:-}" \
  renewOnNearExpiry="$GRANT_CERTIFICATES_OFFICER" \
  notifyEventGridTopicId="${CERTROTATE_NOTIFY_EVENTGRID_TOPIC_ID:-}" \
  notifyWebhookSecretId="${CERTROTATE_NOTIFY_WEBHOOK_SECRET_ID:-}" \
  appResourceGroup="$AZURE_RESOURCE_GROUP" \
  appStorageAccountName="$APP_STORAGE_ACCOUNT_NAME" \
  deadLetterContainerName="$DEAD_LETTER_CONTAINER"
