"""Key Vault emulator: the ``Microsoft.KeyVault/vaults`` ARM resource and each vault's
certificate/secret data plane, with the lifetime events Key Vault sends to Event Grid.

Theory of operation:

* ARM side. ``PUT .../providers/Microsoft.KeyVault/vaults/{name}`` (routed by ``Arm``)
  validates the body as the resource provider does, and on first creation binds a new
  HTTPS loopback listener for the vault: ``properties.vaultUri`` is
  ``https://127.0.0.1:{port}/``, because the SDK derives identifiers from
  ``/certificates/{name}/{version}`` paths and so needs one vault per origin. The port is
  taken from the stack's reserved vault range (``LOCAL_VAULT_PORTS``), the local stand-in
  for Azure's ``*.vault.azure.net``: the app sends Key Vault tokens nowhere else. Vault
  names are global (as the DNS names are in Azure). Deleting the vault closes its listener.
* Data plane. Every request first passes the real challenge: without a bearer token the
  vault answers 401 ``AKV10000`` with ``WWW-Authenticate: Bearer authorization=...,
  resource="https://vault.azure.net"``; a token with a wrong audience, signature, expiry
  or issuer tenant gets the 401 Key Vault gives (``AKV10022``, ``AKV10046``,
  ``AKV10032`` ...). Then ``api-version`` must be present. Routes and names are
  case-insensitive, as in Key Vault.
* Certificates are real: ``Self`` issuance generates a key, a CSR and a self-signed
  certificate from the policy; ``Unknown`` issuance leaves the operation ``inProgress``
  with a real CSR until ``pending/merge`` brings a certificate for the same public key;
  imports read PKCS#12 or PEM. Each completed version keeps its key and chain so the
  certificate-backed secret (``/secrets/{name}/{version}``, ``managed: true``) returns a
  PFX or PEM exactly as Key Vault does (no private key when the key is not exportable).
* Time comes from ``Platform.now()``. A lifetime check runs on every clock advance and
  every second: it applies an ``AutoRenew`` lifetime action of a ``Self`` policy (a new
  version, like Key Vault's renewal), and raises ``CertificateNearExpiry`` (30 days
  before ``exp``) and ``CertificateExpired`` once per current version. Every version that
  becomes available raises ``CertificateNewVersionCreated``. Events go to
  ``EventGrid.publish_system_event`` with the vault's ARM id as source.
* Authorization, after authentication and before the route runs (a missing object
  still answers 403 to a caller without the right, as in Key Vault): each route names
  the access-policy permission (``certificates``/``secrets`` + ``get``, ``list``,
  ``create`` ...) and the RBAC data action (``Microsoft.KeyVault/vaults/certificates/
  read`` ...) it needs. A vault with ``enableRbacAuthorization: true`` asks
  :class:`emulators.authorization.Authorization` whether a role assignment grants the
  action to the token's ``oid`` at the vault or a parent scope (403 ``Forbidden`` /
  ``ForbiddenByRbac``); otherwise ``properties.accessPolicies`` must hold an entry for
  the token's ``oid`` (and ``appid`` when the entry names an application) with the
  permission (403 ``Forbidden`` / ``AccessDenied``). Both messages follow Key Vault's
  wording. Policies change through the vault PUT/PATCH and ARM's ``accessPolicies/
  {add|replace|remove}``.
* Not modelled: keys and plain secrets, issuers and contacts, ARM-level vault soft
  delete, network ACLs, deny assignments. Certificate soft delete (delete, get/list
  deleted, recover, purge) is modelled.

Layout: :mod:`~emulators.keyvault.model` (constants, stored objects, errors) and
:mod:`~emulators.keyvault.views` (how they are written on the wire) are plain data and pure
functions; :mod:`~emulators.keyvault.state` holds what the parts share. The control plane
is :mod:`~emulators.keyvault.control`; the data plane is the front door
:mod:`~emulators.keyvault.dataplane` routing to :mod:`~emulators.keyvault.certificates`,
:mod:`~emulators.keyvault.issuance` and :mod:`~emulators.keyvault.secrets`;
:mod:`~emulators.keyvault.lifetime` runs on the clock; :mod:`~emulators.keyvault.emulator`
is the facade the stack builds.
"""

from emulators.keyvault.emulator import KeyVault
from emulators.keyvault.model import SecretFacts

__all__ = ["KeyVault", "SecretFacts"]
