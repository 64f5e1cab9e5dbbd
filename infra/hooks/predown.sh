#!/usr/bin/env bash
# Before `azd down` deletes the app's resource group: remove what the postprovision and
# postdeploy hooks created outside it, in dependency order: event subscriptions, role
# assignments, the system topics certrotate created (an adopted topic is left in place), and
# the custom roles. Nothing else in the vaults' or targets' resource groups is touched.
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
failures=0
for pattern in '/providers/Microsoft.EventGrid/systemTopics/[^/]+/eventSubscriptions/' \
  '/providers/Microsoft.Authorization/roleAssignments/' \
  '/providers/Microsoft.EventGrid/systemTopics/evgt-[^/]+-certrotate$' \
  '/providers/Microsoft.Authorization/roleDefinitions/'; do
  for id in "${ids[@]}"; do
    [[ $id =~ $pattern ]] || continue
    log "deleting $id"
    az resource delete --only-show-errors --ids "$id" -o none || failures=$((failures + 1))
  done
done
[[ $failures -eq 0 ]] || fail "$failures resource(s) above could not be deleted; delete them by hand, then run azd down again"
