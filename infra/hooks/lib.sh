# shellcheck shell=bash
# Shared by the azd hooks (sourced, never run): messages, required settings, ARM id parsing.
# The hooks print resource ids and names only; nothing they handle is a secret.

log() { printf 'certrotate: %s\n' "$*" >&2; }

fail() {
  printf 'certrotate: ERROR: %s\n' "$*" >&2
  exit 1
}

# require_env NAME WHAT: stop with a message saying what NAME must hold and how to set it.
require_env() {
  [[ -n ${!1:-} ]] || fail "$1 is not set: it must be $2. Set it with: azd env set $1 '<value>'"
}

# split_list "a, b,,c": one trimmed, non-empty item per line.
split_list() {
  local item
  local -a items
  IFS=',' read -r -a items <<<"$1"
  for item in "${items[@]}"; do
    item="${item#"${item%%[![:space:]]*}"}"
    item="${item%"${item##*[![:space:]]}"}"
    [[ -n $item ]] && printf '%s\n' "$item"
  done
  return 0
}

# check_arm_id ID REGEX SETTING WHAT: stop unless ID (from SETTING) matches REGEX, ignoring case;
# WHAT says what the setting must hold.
check_arm_id() {
  shopt -s nocasematch
  if [[ ! $1 =~ $2 ]]; then
    shopt -u nocasematch
    fail "$3 holds '$1', which is not $4"
  fi
  shopt -u nocasematch
}

# arm_part ID INDEX: the INDEX-th '/'-separated part (2 subscription, 4 group, 8 name).
arm_part() {
  local -a parts
  IFS='/' read -r -a parts <<<"$1"
  printf '%s' "${parts[$2]}"
}

# Deployment names are limited to 64 characters.
deployment_name() { printf '%.64s' "certrotate-$1-${AZURE_ENV_NAME}"; }

# Accepted ARM id shapes, used by the hooks that source this file.
# shellcheck disable=SC2034
readonly VAULT_ID_RE='^/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/]+/providers/Microsoft\.KeyVault/vaults/[a-z0-9-]{3,24}$'
# shellcheck disable=SC2034
readonly GROUP_ID_RE='^/subscriptions/[0-9a-f-]{36}/resourceGroups/[-_.()a-z0-9]{1,90}$'
# shellcheck disable=SC2034
readonly CONTAINER_ID_RE='^/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/]+/providers/Microsoft\.Storage/storageAccounts/[a-z0-9]{3,24}/blobServices/default/containers/[a-z0-9-]{3,63}$'
# shellcheck disable=SC2034
readonly TOPIC_ID_RE='^/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/]+/providers/Microsoft\.EventGrid/topics/[a-z0-9-]{3,50}$'
# shellcheck disable=SC2034
readonly SECRET_ID_RE='^/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/]+/providers/Microsoft\.KeyVault/vaults/[a-z0-9-]{3,24}/secrets/[a-z0-9-]{1,127}$'
