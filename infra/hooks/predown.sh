#!/usr/bin/env bash
# Before `azd down` deletes the app's resource group: remove what the postprovision and
# postdeploy hooks created outside it, in dependency order: event subscriptions, role
# assignments, the access policy entries added to access-policy vaults (accessPolicies/remove
# with exactly the entry that was added: the vault and its other entries stay), the system
# topics certrotate created (an adopted topic is left in place), and the custom roles.
# Nothing else in the vaults' or targets' resource groups is touched.
set -euo pipefail
cd "$(dirname "$0")/../.."
. infra/hooks/lib.sh

require_env AZURE_ENV_NAME "set by azd"
require_env AZURE_SUBSCRIPTION_ID "set by azd"

# created_ids DEPLOYMENT: ids of every resource the deployment (and its modules) created.
created_ids() {
  az deployment sub show --only-show-errors --subscription "$AZURE_SUBSCRIPTION_ID" \
    --name "$(deployment_name "$1")" --query 'properties.outputResources[].id' -o tsv 2>/dev/null || true
}

mapfile -t ids < <(created_ids events; created_ids access)
# vault id <TAB> the entry added for the app (JSON), for each access-policy vault.
mapfile -t policies < <(az deployment sub show --only-show-errors --subscription "$AZURE_SUBSCRIPTION_ID" \
  --name "$(deployment_name access)" \
  --query 'properties.outputs.accessPolicies.value[?entry.objectId].[vaultId, to_string(entry)]' -o tsv 2>/dev/null || true)

# delete_matching PATTERN: delete every created resource whose id matches PATTERN.
delete_matching() {
  local id
  for id in "${ids[@]}"; do
    [[ $id =~ $1 ]] || continue
    log "deleting $id"
    az resource delete --only-show-errors --ids "$id" -o none || failures=$((failures + 1))
  done
}

failures=0
delete_matching '/providers/Microsoft.EventGrid/systemTopics/[^/]+/eventSubscriptions/'
delete_matching '/providers/Microsoft.Authorization/roleAssignments/'
for line in "${policies[@]}"; do
  IFS=$'\t' read -r vault entry <<<"$line"
  log "removing the app's access policy from $vault"
  az rest --only-show-errors --method put -o none \
    --url "https://management.azure.com${vault}/accessPolicies/remove?api-version=2023-07-01" \
    --body "{\"properties\": {\"accessPolicies\": [${entry}]}}" || failures=$((failures + 1))
done
delete_matching '/providers/Microsoft.EventGrid/systemTopics/evgt-[^/]+-certrotate$'
delete_matching '/providers/Microsoft.Authorization/roleDefinitions/'
[[ $failures -eq 0 ]] || fail "$failures resource(s) above could not be deleted; delete them by hand, then run azd down again"
