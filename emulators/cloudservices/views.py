"""How a cloud service and its children are written on the wire, as the recordings show
them: the resource, role instances with their instance view and status codes, roles and
update domains.
"""

from __future__ import annotations

from typing import Any

from emulators.arm_operations import system_time
from emulators.cloudservices.model import RESOURCE_TYPE, Instance, RoleSpec, Service, rendered
from emulators.cloudservices.state import State


class Views:
    """Renders services and their children (reads the emulated clock for settling)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.platform = state.wiring.platform

    def resource_id(self, service: Service) -> str:
        return (f"/subscriptions/{self.platform.subscription_id}/resourceGroups/"
                f"{service.resource_group}/providers/{RESOURCE_TYPE}/{service.name}")

    def body(self, service: Service) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.resource_id(service),
            "name": service.name,
            "type": RESOURCE_TYPE,
            "location": service.location,
        }
        if service.tags:
            body["tags"] = service.tags
        if service.zones is not None:
            body["zones"] = service.zones
        body["properties"] = {
            **rendered(service.properties, service.state),
            "provisioningState": service.state,
            "uniqueId": service.unique_id,
        }
        body["systemData"] = {"createdAt": system_time(service.created_at),
                              "lastModifiedAt": system_time(service.modified_at)}
        return body

    def instance_codes(self, service: Service, instance: Instance) -> tuple[str, str]:
        """The instance's ``ProvisioningState/…`` and ``RoleState/…`` codes, as the cloud
        service's ``statusesSummary`` counts them."""
        current = instance.applied >= service.target
        provisioning = f"ProvisioningState/{'succeeded' if current else 'updating'}"
        if service.powered_off:
            role = "RoleState/RoleStateStopped"
        elif instance.settling_until is not None and self.platform.now() < instance.settling_until:
            left = (instance.settling_until - self.platform.now()).total_seconds()
            busy = left > self.state.settle_seconds / 2
            role = f"RoleState/RoleState{'Busy' if busy else 'Starting'}"
        else:
            role = "RoleState/RoleStateStarted"
        if instance.forced is not None:
            if instance.forced.lower().startswith("provisioningstate/"):
                provisioning = instance.forced
            else:
                role = instance.forced
        return provisioning, role

    def instance_statuses(self, service: Service, instance: Instance) -> list[dict[str, Any]]:
        """A running instance shows only its ``RoleState`` (the role instance view
        recording); one still on an older configuration (a Manual update whose update
        domain is not walked yet) also shows ``ProvisioningState/updating``, first, and
        one whose provisioning state a test armed shows that."""
        provisioning, role = self.instance_codes(service, instance)
        statuses: list[dict[str, Any]] = []
        if instance.applied < service.target:
            statuses.append({
                "code": provisioning, "level": "Info", "displayStatus": "Updating",
                "message": (f"The role instance runs configuration version {instance.applied};"
                            f" the cloud service is at version {service.target}."),
            })
        elif not provisioning.lower().endswith("/succeeded"):
            statuses.append({"code": provisioning, "level": "Error",
                             "displayStatus": provisioning.split("/", 1)[1], "message": ""})
        statuses.append({"code": role, "level": "Info", "displayStatus": role.split("/", 1)[1],
                         "message": ""})
        return statuses

    def role_instance_view(self, service: Service, instance: Instance) -> dict[str, Any]:
        return {
            "platformUpdateDomain": service.update_domain_of(instance),
            "platformFaultDomain": instance.index % 2,
            "privateId": service.private_id,
            "statuses": self.instance_statuses(service, instance),
        }

    def role_instance(self, service: Service, instance: Instance, expand: bool) -> dict[str, Any]:
        instance_id = f"{self.resource_id(service)}/roleInstances/{instance.name}"
        sku = next((r.sku for r in service.roles if r.name == instance.role), {})
        nic = {"id": f"{instance_id}/networkInterfaces/nic1"}
        properties: dict[str, Any] = {"networkProfile": {"networkInterfaces": [nic]}}
        if expand:
            properties["instanceView"] = self.role_instance_view(service, instance)
        return {
            "name": instance.name,
            "id": instance_id,
            "type": f"{RESOURCE_TYPE}/roleInstances",
            "location": service.location,
            "sku": {k: sku[k] for k in ("name", "tier") if k in sku},
            "properties": properties,
        }

    def role(self, service: Service, role: RoleSpec) -> dict[str, Any]:
        return {
            "name": role.name,
            "id": f"{self.resource_id(service)}/roles/{role.name}",
            "type": f"{RESOURCE_TYPE}/roles",
            "location": service.location,
            "sku": role.sku,
            "properties": {"uniqueId": f"{service.unique_id}:{role.name}"},
        }

    def update_domain(self, service: Service, number: int) -> dict[str, Any]:
        return {"name": str(number),
                "id": f"{self.resource_id(service)}/updateDomains/{number}"}
