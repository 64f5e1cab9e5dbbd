"""Cloud Services (extended support): the ``Microsoft.Compute/cloudServices`` provider.

THEORY OF OPERATION

The product rotates certificates by re-PUTting a cloud service, so this emulator is about
the PUT: it refuses, synchronously and in Azure's words, every model that the real
platform refuses before it starts work, and it then plays the long-running operation the
SDK polls. The checks run in a fixed order, and a refused PUT stores nothing:

1. an operation on the service is still running -> 409 ``Conflict`` (DELETE, update
   domain walks and restarts too);
2. ``packageUrl`` is missing on a create (an update without it keeps the deployed package,
   as the Update-AzCloudService recording shows), or is not an absolute https URL with a
   query (its SAS): ``InvalidParameter`` "The value of parameter packageUrl is invalid.",
   no ``target``, before the configuration is looked at; ``configuration`` and
   ``configurationUrl`` are both missing;
3. the .cscfg is not well-formed, is not a ``ServiceConfiguration`` in the cscfg namespace,
   or its Role names differ from ``roleProfile.roles[].name``;
4. an ``osProfile.secrets`` certificate is not a versioned secret URL, does not exist, is
   disabled, or sits in a vault that is not ``sourceVault.id`` or not enabled for
   deployment (asked of the Key Vault emulator through ``find_secret``);
5. a cscfg ``Certificate@thumbprint`` has no certificate in ``osProfile.secrets``;
6. the package cannot be downloaded from storage with the SAS the client gave (the
   platform really GETs it from Azurite) or is empty.

An accepted PUT answers 201 (create) or 200 (update) with the resource in ``Creating`` /
``Updating``, ``Azure-AsyncOperation`` at ``.../locations/{loc}/CsOperations/{id}`` and
``x-ms-async-operation-timeout``, and no ``Retry-After`` (clients poll at their own
interval). Actions (DELETE, ``restart``, an update domain walk) answer 202 with no body,
``Azure-AsyncOperation`` and a ``Location`` with ``monitor=true``. The operation ends
``update_seconds`` of emulated time later (a timer, the clock hook and every request
settle due operations): ``Succeeded``, or ``Failed`` when a test armed a failure through
the admin API (the resource keeps the new model, in provisioning state ``Failed``).

Role instances (``{role}_IN_{i}``, ``roleProfile`` capacity of each role) are spread over
``min(5, largest capacity)`` update domains by index. Each instance records the model
version whose configuration it runs. An ``Auto``/``Simultaneous`` update moves every
instance when its operation succeeds; a ``Manual`` one moves none: each update domain must
then be walked, in order, with ``PUT updateDomains/{n}``, and until then the instance
view shows the instance as ``ProvisioningState/updating`` with the version it runs.

Role states: a running instance is ``RoleState/RoleStateStarted`` (the recordings). An
instance that has just taken a new configuration (an update, a walk, ``start``) settles
for ``settle_seconds`` of emulated time (admin setting, 0 by default): ``RoleStateBusy``
for the first half, then ``RoleStateStarting`` (states of the CSES states page, in the
recorded ``RoleState/RoleState<State>`` form). ``POST poweroff`` (CloudServices_PowerOff:
"resources are still attached and you are getting charged", i.e. stopped-allocated) and
``POST start`` are actions like ``restart``; a powered-off service, or one created with
``startCloudService: false``, shows ``PowerState/stopped`` and ``RoleStateStopped``, and an
update leaves it stopped. A test may arm a status code for the instances that the next
model-changing operation touches (``POST /cloudservices/instances-next``): the code
replaces that instance's ``ProvisioningState/…`` or ``RoleState/…`` status until a later
operation gives the instance a new configuration. No recording shows a failed instance,
so the test names the code; the emulator does not make one up.

``PATCH`` (CloudServices_Update) changes only ``tags``, replacing the whole set as ARM's
PATCH does: 409 while an operation runs, otherwise an operation of the same length that
leaves the model, its version, the role instances and the provisioning state it ends in
(a ``Failed`` service stays ``Failed``) alone; Azure's behaviour there is not documented.

Azure RBAC (through ``Arm.authorize``, on resource groups where the caller holds a custom
role; see :mod:`emulators.authorization`): a PUT or PATCH needs
``Microsoft.Compute/cloudServices/write`` on the service and, as ARM's linked access check,
``Microsoft.Network/publicIPAddresses/join/action`` on each public IP and
``Microsoft.Network/virtualNetworks/subnets/join/action`` on each subnet its
``networkProfile`` references, and ``Microsoft.KeyVault/vaults/deploy/action`` on each
``osProfile.secrets`` source vault; a walk ``…/updateDomains/write``, a restart
``…/restart/action``, a DELETE ``…/delete``. Their operations' polls are then checked as
``Microsoft.Compute/locations/CsOperations/read``. Reads are not checked.

A resource is rendered as the recordings show it: ``packageUrl``, ``configurationUrl``
and extensions' ``protectedSettings`` are never returned; the platform's defaults are
filled in when the model is accepted (``osProfile.secrets: []``, ``networkProfile.slotType:
Production``, each extension's ``rolesAppliedTo: ["*"]``), an extension's
``provisioningState`` follows the service's, an empty extension list is dropped once the
operation has ended; ``location`` is normalised (``EastUS2EUAP`` -> ``eastus2euap``);
``tags`` is left out when there are none; ``systemData`` holds only ``createdAt`` and
``lastModifiedAt``. Read-only fields in a PUT body are ignored; every other property is
kept verbatim. State is in memory and cleared by the platform reset.

Layout: :mod:`~emulators.cloudservices.model` (constants, the stored service, rendering)
is plain data; :mod:`~emulators.cloudservices.state` holds what the parts share. The ARM
resource is :mod:`~emulators.cloudservices.control` (with the platform checks and package
fetch of :mod:`~emulators.cloudservices.checks`), what sits below a service is
:mod:`~emulators.cloudservices.children`, the update simulation is
:mod:`~emulators.cloudservices.operations`, the wire shapes are
:mod:`~emulators.cloudservices.views`, the admin API :mod:`~emulators.cloudservices.admin`,
and :mod:`~emulators.cloudservices.emulator` is the facade the stack builds.
"""

from emulators.cloudservices.checks import parse_cscfg
from emulators.cloudservices.emulator import CloudServices
from emulators.cloudservices.model import linked_access

__all__ = ["CloudServices", "linked_access", "parse_cscfg"]
