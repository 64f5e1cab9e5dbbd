"""What sits below a cloud service: its instance view, roles, role instances and update
domains, and the actions on them (restart, power off, start, walking an update domain of a
``Manual`` update), each an operation like a PUT.
"""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from emulators.arm import ArmRequest
from emulators.arm_operations import operation_time
from emulators.cloudservices.control import RouteHandlers
from emulators.cloudservices.model import SDK_VERSION, Instance, Service, invalid, missing_property
from emulators.core import json_response


class Children(RouteHandlers):
    """Handlers for the routes below one cloud service."""

    async def restart(self, req: ArmRequest) -> web.StreamResponse:
        """CloudServices_Restart: ``{"roleInstances": [names or "*"]}``; the model, the
        instances' configuration and the provisioning state are left alone."""
        checked = self.lookup.authorize(req, "restart/action", self.lookup.service_path(req))
        service = self.lookup.service(req)
        body = await req.json_body()
        names = body.get("roleInstances") if isinstance(body, dict) else None
        if not isinstance(names, list) or not names or not all(
                isinstance(n, str) and n for n in names):
            raise missing_property("roleInstances")
        known = {i.name.lower() for i in service.instances}
        for name in names:
            if name != "*" and name.lower() not in known:
                raise self.lookup.child_not_found(req, "roleInstances", name)
        self.lookup.refuse_if_busy(self.lookup.key(req))
        op = self.operations.begin(service, "restart", service.state, state_after=service.state)
        op.checked = checked
        return web.Response(status=202,
                            headers=self.arm.async_headers(op, req.api_version, monitor=True))

    async def power_off(self, req: ArmRequest) -> web.StreamResponse:
        """CloudServices_PowerOff: the instances stop, their resources stay allocated."""
        return await self._power(req, "poweroff")

    async def start(self, req: ArmRequest) -> web.StreamResponse:
        """CloudServices_Start: a powered-off service's instances start (and settle)."""
        return await self._power(req, "start")

    async def _power(self, req: ArmRequest, kind: str) -> web.StreamResponse:
        """202 with ``Location`` (``monitor=true``) and ``Azure-AsyncOperation``, as the
        Stop-AzCloudService recording answers; the model and the state are left alone."""
        service = self.lookup.service(req)
        self.lookup.refuse_if_busy(self.lookup.key(req))
        op = self.operations.begin(service, kind, service.state, state_after=service.state)
        return web.Response(status=202,
                            headers=self.arm.async_headers(op, req.api_version, monitor=True))

    async def instance_view(self, req: ArmRequest) -> web.StreamResponse:
        service = self.lookup.service(req)
        started = not service.powered_off
        power = f"PowerState/{'started' if started else 'stopped'}"
        # Azure's order: every ProvisioningState code, then PowerState, then RoleState.
        codes = [self.views.instance_codes(service, i) for i in service.instances]
        summary = Counter(c[0] for c in codes)
        summary.update(power for _ in codes)
        summary.update(c[1] for c in codes)
        time = operation_time(service.modified_at)
        state = service.state.lower()
        current = service.next_update_domain()
        top = service.update_domains() - 1
        return json_response({
            "roleInstance": {"statusesSummary": [{"code": c, "count": n}
                                                 for c, n in summary.items()]},
            "sdkVersion": SDK_VERSION,
            "privateIds": [service.private_id],
            "statuses": [
                {"code": f"ProvisioningState/{state}",
                 "level": "Error" if state == "failed" else "Info",
                 "displayStatus": f"Provisioning {state}"
                 if state in ("succeeded", "failed") else service.state, "time": time},
                {"code": power, "level": "Info",
                 "displayStatus": "Started" if started else "Stopped", "time": time},
                {"code": f"CurrentUpgradeDomain/{current}", "level": "Info",
                 "displayStatus": f"Current Upgrade Domain of cloud service is {current}."},
                {"code": f"MaxUpgradeDomain/{top}", "level": "Info",
                 "displayStatus": f"Max Upgrade Domain of cloud service is {top}."},
            ],
        })

    async def list_roles(self, req: ArmRequest) -> web.StreamResponse:
        service = self.lookup.service(req)
        return self.arm.page(req, [self.views.role(service, r) for r in service.roles])

    async def get_role(self, req: ArmRequest) -> web.StreamResponse:
        service = self.lookup.service(req)
        for role in service.roles:
            if role.name.lower() == req.params["role"].lower():
                return json_response(self.views.role(service, role))
        raise self.lookup.child_not_found(req, "roles", req.params["role"])

    def _instance(self, req: ArmRequest) -> tuple[Service, Instance]:
        service = self.lookup.service(req)
        wanted = req.params["instance"].lower()
        for instance in service.instances:
            if instance.name.lower() == wanted:
                return service, instance
        raise self.lookup.child_not_found(req, "roleInstances", req.params["instance"])

    async def list_instances(self, req: ArmRequest) -> web.StreamResponse:
        service = self.lookup.service(req)
        expand = req.http.query.get("$expand", "").lower() == "instanceview"
        return self.arm.page(req, [self.views.role_instance(service, i, expand)
                                   for i in service.instances])

    async def get_instance(self, req: ArmRequest) -> web.StreamResponse:
        service, instance = self._instance(req)
        expand = req.http.query.get("$expand", "").lower() == "instanceview"
        return json_response(self.views.role_instance(service, instance, expand))

    async def get_instance_view(self, req: ArmRequest) -> web.StreamResponse:
        service, instance = self._instance(req)
        return json_response(self.views.role_instance_view(service, instance))

    def _update_domain_number(self, req: ArmRequest, service: Service) -> int:
        text = req.params["updateDomain"]
        if not text.isdigit() or int(text) >= service.update_domains():
            raise self.lookup.child_not_found(req, "updateDomains", text)
        return int(text)

    async def list_update_domains(self, req: ArmRequest) -> web.StreamResponse:
        service = self.lookup.service(req)
        return self.arm.page(req, [self.views.update_domain(service, n)
                                   for n in range(service.update_domains())])

    async def get_update_domain(self, req: ArmRequest) -> web.StreamResponse:
        service = self.lookup.service(req)
        number = self._update_domain_number(req, service)
        return json_response(self.views.update_domain(service, number))

    async def walk_update_domain(self, req: ArmRequest) -> web.StreamResponse:
        """Apply the latest configuration to one update domain; domains go in order."""
        checked = self.lookup.authorize(req, "updateDomains/write", req.http.path.rstrip("/"))
        service = self.lookup.service(req)
        number = self._update_domain_number(req, service)
        self.lookup.refuse_if_busy(self.lookup.key(req))
        upcoming = service.next_update_domain()
        if upcoming not in (-1, number):
            raise invalid(f"Update domain {number} cannot be walked now: update domain "
                          f"{upcoming} is the next one to update.", "updateDomain")
        op = self.operations.begin(service, "walk", "Updating", update_domain=number)
        op.checked = checked
        return web.Response(status=202,
                            headers=self.arm.async_headers(op, req.api_version, monitor=True))
