"""The Cloud Services emulator as the rest of the stack sees it: one object that builds the
shared :class:`~emulators.cloudservices.state.State` and the parts acting on it, and maps
the provider's ARM routes onto them.
"""

from __future__ import annotations

from emulators.arm import RG_PROVIDERS, Arm, ResourceRoutes
from emulators.blobs import Blobs
from emulators.cloudservices.admin import admin_routes
from emulators.cloudservices.children import Children
from emulators.cloudservices.control import Lookup, ServiceCrud
from emulators.cloudservices.model import RESOURCE_TYPE, AdminRoute
from emulators.cloudservices.operations import Operations
from emulators.cloudservices.state import State, Wiring
from emulators.cloudservices.views import Views
from emulators.core import Platform
from emulators.keyvault import KeyVault


class CloudServices:
    """The provider: its parts, wired to one state, behind ARM's routes."""

    def __init__(
        self, platform: Platform, arm: Arm, vaults: KeyVault, blobs: Blobs, update_seconds: float
    ) -> None:
        self.state = State(Wiring(platform, arm, vaults, blobs, update_seconds), update_seconds)
        self.views = Views(self.state)
        operations = Operations(self.state)
        platform.reset_hooks.append(self.state.reset)
        platform.clock_hooks.append(operations.on_clock)
        lookup = Lookup(self.state, operations)
        crud = ServiceCrud(self.state, lookup, self.views, operations)
        children = Children(self.state, lookup, self.views, operations)
        arm.resources(ResourceRoutes(
            RG_PROVIDERS + RESOURCE_TYPE, "cloudService", list=crud.list,
            list_all=crud.list_all, get=crud.get, put=crud.put, patch=crud.patch,
            delete=crud.delete,
            actions=(
                ("POST", "restart", children.restart),
                ("POST", "poweroff", children.power_off),
                ("POST", "start", children.start),
                ("GET", "instanceView", children.instance_view),
                ("GET", "roles", children.list_roles),
                ("GET", "roles/{role}", children.get_role),
                ("GET", "roleInstances", children.list_instances),
                ("GET", "roleInstances/{instance}", children.get_instance),
                ("GET", "roleInstances/{instance}/instanceView", children.get_instance_view),
                ("GET", "updateDomains", children.list_update_domains),
                ("GET", "updateDomains/{updateDomain}", children.get_update_domain),
                ("PUT", "updateDomains/{updateDomain}", children.walk_update_domain),
            )), wrap=lookup.guard)

    def admin_routes(self) -> list[AdminRoute]:
        """``/cloudservices`` state, operation length, and armed operation failures."""
        return admin_routes(self.state, self.views)
