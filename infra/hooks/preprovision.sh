#!/usr/bin/env bash
# Before `azd provision`: refuse a bad configuration with a message naming the setting, make
# sure every vault lets cloud services read its certificates (enabledForDeployment, which a
# template cannot change without replacing the vault), read each vault's permission model
# (RBAC or access policies: access.bicep grants roles in the first, adds an access policy in
# the second), and find each vault's existing Event Grid system topic (Azure allows one per
# vault) so access.bicep adopts it. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
. infra/hooks/lib.sh

require_env CERTROTATE_KEYVAULT_IDS "the comma-separated ARM ids of the Key Vaults whose certificates are rotated"
mode="${CERTROTATE_VAULT_DEPLOYMENT_ACCESS:-check}"
[[ $mode == check || $mode == set ]] ||
  fail "CERTROTATE_VAULT_DEPLOYMENT_ACCESS is '$mode': use check (stop if a vault lacks enabledForDeployment) or set (turn it on)"

mapfile -t containers < <(split_list "${CERTROTATE_PACKAGE_CONTAINER_IDS:-}")
for id in "${containers[@]}"; do
  check_arm_id "$id" "$CONTAINER_ID_RE" CERTROTATE_PACKAGE_CONTAINER_IDS "a blob container id (…/storageAccounts/{account}/blobServices/default/containers/{container})"
done
mapfile -t network_groups < <(split_list "${CERTROTATE_NETWORK_RESOURCE_GROUP_IDS:-}")
for id in "${network_groups[@]}"; do
  check_arm_id "$id" "$GROUP_ID_RE" CERTROTATE_NETWORK_RESOURCE_GROUP_IDS "a resource group id (/subscriptions/{id}/resourceGroups/{name})"
done
[[ -z ${CERTROTATE_NOTIFY_EVENTGRID_TOPIC_ID:-} ]] ||
  check_arm_id "$CERTROTATE_NOTIFY_EVENTGRID_TOPIC_ID" "$TOPIC_ID_RE" CERTROTATE_NOTIFY_EVENTGRID_TOPIC_ID "an Event Grid custom topic id"
[[ -z ${CERTROTATE_NOTIFY_WEBHOOK_SECRET_ID:-} ]] ||
  check_arm_id "$CERTROTATE_NOTIFY_WEBHOOK_SECRET_ID" "$SECRET_ID_RE" CERTROTATE_NOTIFY_WEBHOOK_SECRET_ID "a Key Vault secret id (…/vaults/{vault}/secrets/{name})"

mapfile -t vaults < <(split_list "$CERTROTATE_KEYVAULT_IDS")
[[ ${#vaults[@]} -gt 0 ]] || fail "CERTROTATE_KEYVAULT_IDS names no vault"
for id in "${vaults[@]}"; do
  check_arm_id "$id" "$VAULT_ID_RE" CERTROTATE_KEYVAULT_IDS "a Key Vault id (/subscriptions/{id}/resourceGroups/{group}/providers/Microsoft.KeyVault/vaults/{name})"
done

# Every setting is valid: only now touch Azure.
topics=()
modes=()
for id in "${vaults[@]}"; do
  sub="$(arm_part "$id" 2)" rg="$(arm_part "$id" 4)" name="$(arm_part "$id" 8)"
  vault=(--subscription "$sub" --resource-group "$rg" --name "$name" --only-show-errors)

  # One line per value. enableRbacAuthorization is absent (null, an empty line) on vaults made
  # before the flag existed: Azure then uses access policies, as for false.
  shown="$(az keyvault show "${vault[@]}" \
    --query '[properties.enabledForDeployment, properties.enableRbacAuthorization]' -o tsv)" ||
    fail "cannot read vault $id: check the id and that 'az login' uses an account that can read it"
  mapfile -t flags <<<"$shown"
  enabled="${flags[0]:-}" rbac="${flags[1]:-}"
  if [[ ${rbac,,} == true ]]; then
    modes+=(rbac)
  else
    modes+=(policy)
    log "vault $name uses access policies: the app gets an access policy there (accessPolicies/add), no roles"
  fi
  if [[ ${enabled,,} != true ]]; then
    [[ $mode == set ]] ||
      fail "vault $name has enabledForDeployment off, so cloud services cannot read its certificates. Turn it on with 'az keyvault update --subscription $sub --resource-group $rg --name $name --enabled-for-deployment true', or let this hook do it: azd env set CERTROTATE_VAULT_DEPLOYMENT_ACCESS set"
    az keyvault update "${vault[@]}" --enabled-for-deployment true -o none
    log "turned on enabledForDeployment for vault $name"
  fi

  adopted=""
  while IFS=$'\t' read -r source topic topic_rg; do
    [[ ${source,,} == "${id,,}" ]] || continue
    [[ ${topic_rg,,} == "${rg,,}" ]] ||
      fail "vault $name already has the system topic $topic in resource group $topic_rg; Azure allows one per vault and certrotate adopts it only in the vault's own group ($rg). Move or delete that topic, then retry."
    adopted="$topic"
  done < <(az eventgrid system-topic list --subscription "$sub" --only-show-errors \
    --query "[?topicType=='Microsoft.KeyVault.vaults'].[source, name, resourceGroup]" -o tsv)
  [[ -z $adopted ]] || log "vault $name: adopting its existing system topic $adopted"
  topics+=("$adopted")
done

azd env set CERTROTATE_VAULT_MODES "$(IFS=,; printf '%s' "${modes[*]}")"
azd env set CERTROTATE_SYSTEM_TOPIC_NAMES "$(IFS=,; printf '%s' "${topics[*]}")"
