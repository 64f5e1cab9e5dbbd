"""The Cloud Services emulator as the rest of the stack sees it: one object that builds the
shared :class:`~emulators.cloudservices.state.State` and the parts acting on it, and maps
the provider's ARM routes onto them.
"""

from __future__ import annotations

from emulators.arm import Arm
from emulators.blobs import Blobs
from emulators.cloudservices.admin import admin_routes
from emulators.cloudservices.children import Children
from emulators.cloudservices.control import Lookup, ServiceCrud
from emulators.cloudservices.model import AdminRoute, ArmHandler
from emulators.cloudservices.operations import Operations
from emulators.cloudservices.state import State, Wiring
from emulators.cloudservices.views import Views
from emulators.core import Platform
from emulators.keyvault import KeyVault


class CloudServices:
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
        base = ("/subscriptions/{subscription}/resourceGroups/{resourceGroup}"
                "/providers/Microsoft.Compute/cloudServices")
        cs = base + "/{cloudService}"
        routes: list[tuple[str, str, ArmHandler]] = [
            ("GET", "/subscriptions/{subscription}/providers/Microsoft.Compute/cloudServices",
             crud.list_all),
            ("GET", base, crud.list),
            ("PUT", cs, crud.put),
            ("PATCH", cs, crud.patch),
            ("GET", cs, crud.get),
            ("DELETE", cs, crud.delete),
            ("POST", cs + "/restart", children.restart),
            ("POST", cs + "/poweroff", children.power_off),
            ("POST", cs + "/start", children.start),
            ("GET", cs + "/instanceView", children.instance_view),
            ("GET", cs + "/roles", children.list_roles),
            ("GET", cs + "/roles/{role}", children.get_role),
            ("GET", cs + "/roleInstances", children.list_instances),
            ("GET", cs + "/roleInstances/{instance}", children.get_instance),
            ("GET", cs + "/roleInstances/{instance}/instanceView", children.get_instance_view),
            ("GET", cs + "/updateDomains", children.list_update_domains),
            ("GET", cs + "/updateDomains/{updateDomain}", children.get_update_domain),
            ("PUT", cs + "/updateDomains/{updateDomain}", children.walk_update_domain),
        ]
        for method, pattern, handler in routes:
            arm.route(method, pattern, lookup.guard(handler))

    def admin_routes(self) -> list[AdminRoute]:
        """``/cloudservices`` state, operation length, and armed operation failures."""
        return admin_routes(self.state, self.views)
