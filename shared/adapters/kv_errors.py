"""Key Vault refusals (403) as errors an operator can act on.

Key Vault answers a call its permission model does not allow with 403 ``Forbidden`` and
an inner code saying which model refused it (Key Vault's documented wording, as real
answers show):

- ``AccessDenied``: an access-policy vault; the message reads "The user, group or
  application '…' does not have certificates get permission on key vault
  'kv1;location=westus'. …".
- ``ForbiddenByRbac``: an RBAC vault; the message lists ``Action:
  'Microsoft.KeyVault/vaults/certificates/read'`` and ``Vault: kv1;location=westus``.

The generic translation keeps only the first line ("Caller is not authorized to perform
action on resource."), which names neither the vault nor the missing right. This module
names the vault, the missing permission as Key Vault states it, and the vault's mode, and
leaves every other failure (other 403s too, such as a disabled secret) to
:func:`shared.adapters.arm_errors.translate`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from azure.core.exceptions import HttpResponseError

from shared.adapters.arm_errors import error_code, translate
from shared.domain.errors import RotationError, VaultAccessDenied

_POLICY = re.compile(
    r"does not have (?P<permission>\w+ \w+) permission on key vault '(?P<vault>[^';]+)")
_ACTION = re.compile(r"Action: '(?P<action>[^']+)'")
_VAULT = re.compile(r"Vault: (?P<vault>[^;\s]+)")


def vault_error(exc: Exception, vault_url: str, what: str) -> RotationError:
    """The product error for a Key Vault SDK failure while doing ``what``."""
    if not isinstance(exc, HttpResponseError) or exc.status_code != 403:
        return translate(exc, what)
    error = getattr(exc, "error", None)
    inner = getattr(error, "innererror", None) or {}
    inner_code = str(inner.get("code", "")) if isinstance(inner, dict) else ""
    message = str(getattr(error, "message", None) or exc.message or "")
    code, first_line = error_code(exc)
    vault: str
    if inner_code == "AccessDenied" or _POLICY.search(message):
        found = _POLICY.search(message)
        vault = found["vault"] if found else _vault_name(vault_url)
        needs = f"it needs {found['permission']} permission" if found else first_line
        reason = f"access policy missing for the app: {needs}"
    elif inner_code == "ForbiddenByRbac":
        action, named = _ACTION.search(message), _VAULT.search(message)
        vault = named["vault"] if named else _vault_name(vault_url)
        needs = f"'{action['action']}'" if action else "the data action of this call"
        reason = f"RBAC vault: no role assignment grants the app {needs}"
    else:  # another refusal (e.g. a disabled secret): not about access rights
        return translate(exc, what)
    return VaultAccessDenied(code, f"{what}: no access to vault {vault} ({reason})")


def _vault_name(vault_url: str) -> str:
    """The vault's name from its URL (``https://{name}.vault.azure.net/``); the URL itself
    where the host is not a vault DNS name (the local stack's 127.0.0.1)."""
    host = urlsplit(vault_url).hostname or vault_url
    return host.split(".", 1)[0] if ".vault." in host else vault_url
