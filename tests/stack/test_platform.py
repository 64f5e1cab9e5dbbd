"""The platform every emulator shares, through real clients: fault injection, the request
log, the emulated clock, reset, the managed-identity endpoint and the stack's lifecycle.

Faults, the request log and identity run against the session stack (faults are cleared
after each test). Moving the clock and ``POST /reset`` would disturb the other modules
(there is no way to move the clock back but a reset, which forgets everything), so those
tests run in a second stack this module starts itself: ``side``. The same stack then
serves the lifecycle tests, the last of which stops it. Requests this module sends carry
their own ``User-Agent`` so their log entries can be told from anyone else's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from azure.core.exceptions import ServiceRequestError
from azure.identity import DefaultAzureCredential
from azure.keyvault.certificates import (
    CertificatePolicy,
    CertificatePolicyAction,
    LifetimeAction,
)
from azure.mgmt.compute import ComputeManagementClient
from azure.storage.blob import BlobServiceClient, ContainerClient

from emulators.polling import wait_for
from emulators.provision import OPERATOR_ROLES, Operator
from emulators.stack import ROOT, Stack, app_settings, read_env
from tests.conftest import LocalStack
from tests.webhook import Webhook

ARM = "https://management.azure.com"
VAULT = "https://vault.azure.net"
RG_API = "2021-04-01"
KV_API = "2023-07-01"
KV_DATA_API = "7.5"
KV_NEW = "Microsoft.KeyVault.CertificateNewVersionCreated"
KV_NEAR = "Microsoft.KeyVault.CertificateNearExpiry"
KV_EXPIRED = "Microsoft.KeyVault.CertificateExpired"
DAY_S = 86400
REQUIRED_KEYS = (
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_TENANT_ID",
    "ARM_ENDPOINT",
    "STACK_CA_BUNDLE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "AZURITE_BLOB_URL",
    "EMULATOR_ADMIN_URL",
    "FUNCTIONS_URL",
    "FUNCTIONS_KEY",
    "FUNCTIONS_MASTER_KEY",
    "EVENTGRID_WEBHOOK_KEY",
)



def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Client:
    """Plain HTTP(S) to one stack, every request tagged with this client's User-Agent."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.agent = unique("platform-test/")
        self.http = requests.Session()
        self.http.headers["User-Agent"] = self.agent
        self._tokens: dict[str, str] = {}

    @property
    def ca(self) -> str:
        return self.env["STACK_CA_BUNDLE"]

    @property
    def sub(self) -> str:
        return self.env["AZURE_SUBSCRIPTION_ID"]

    def identity(self, resource: str, header: str | None = "", **query: str) -> requests.Response:
        """GET the identity endpoint; ``header`` "" means the right X-IDENTITY-HEADER."""
        headers = {"Metadata": "true"}
        if header is not None:
            headers["X-IDENTITY-HEADER"] = header or self.env["IDENTITY_HEADER"]
        params = {"api-version": "2019-08-01", "resource": resource, **query}
        return self.http.get(self.env["IDENTITY_ENDPOINT"], params=params, headers=headers,
                             timeout=10)

    def token(self, resource: str) -> str:
        if resource not in self._tokens:
            resp = self.identity(resource)
            assert resp.status_code == 200, resp.text
            self._tokens[resource] = resp.json()["access_token"]
        return self._tokens[resource]

    def arm(self, method: str, path: str, body: Any = None, api: str = RG_API,
            token: str | None = None) -> requests.Response:
        auth = token if token is not None else self.token(ARM)
        return self.http.request(
            method, f"{self.env['ARM_ENDPOINT']}{path}", params={"api-version": api}, json=body,
            headers={"Authorization": f"Bearer {auth}"}, verify=self.ca, timeout=30)

    def rg_path(self, name: str) -> str:
        return f"/subscriptions/{self.sub}/resourcegroups/{name}"

    def new_rg(self) -> str:
        name = unique("rg-platform-")
        resp = self.arm("PUT", self.rg_path(name), {"location": "westus"})
        assert resp.status_code == 201, resp.text
        return name

    def new_vault(self, rg: str) -> str:
        """A vault in ``rg``; returns its data-plane URL."""
        body = {"location": "westus", "properties": {
            "tenantId": self.env["AZURE_TENANT_ID"], "sku": {"family": "A", "name": "standard"},
            # ``vault()`` lists certificates: the one right these tests use.
            "accessPolicies": [{"tenantId": self.env["AZURE_TENANT_ID"],
                                "objectId": self.env["APP_PRINCIPAL_ID"],
                                "permissions": {"certificates": ["list"]}}]}}
        path = f"/subscriptions/{self.sub}/resourceGroups/{rg}/providers/" \
               f"Microsoft.KeyVault/vaults/{unique('kvplat')}"
        resp = self.arm("PUT", path, body, api=KV_API)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["properties"]["vaultUri"])

    def vault(self, url: str, token: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.http.get(f"{url}certificates", params={"api-version": KV_DATA_API},
                             headers=headers, verify=self.ca, timeout=10)

    def admin(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, self.env["EMULATOR_ADMIN_URL"] + path, json=body,
                                timeout=30)

    def log(self, since: int = 0) -> list[dict[str, Any]]:
        resp = self.admin("GET", f"/requests?since={since}")
        assert resp.status_code == 200, resp.text
        return list(resp.json())

    def mine(self, since: int = 0) -> list[dict[str, Any]]:
        return [r for r in self.log(since) if r["agent"] == self.agent]

    def add_fault(self, **fault: Any) -> dict[str, Any]:
        resp = self.admin("POST", "/faults", fault)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())


def summary(entries: list[dict[str, Any]]) -> list[tuple[str, str, str, int, bool]]:
    return [(r["service"], r["method"], r["path"], r["status"], r["injected"]) for r in entries]


def error_code(resp: requests.Response) -> str:
    return str(resp.json()["error"]["code"])


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """``env`` exported into ``os.environ`` (as sourcing stack.env would), then restored."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stack_ports(folder: Path, env: dict[str, str]) -> dict[str, int]:
    ports = dict(json.loads((folder / "ports.json").read_text())["ports"])
    ports["azurite"] = int(urlsplit(env["AZURITE_BLOB_URL"]).port or 0)
    ports["azurite-queue"] = int(urlsplit(env["AZURITE_QUEUE_URL"]).port or 0)
    for index, url in enumerate(env["FUNCTIONS_URLS"].split(",")):
        ports[f"functions-{index + 1}"] = int(urlsplit(url).port or 0)
    return ports


def pids_of(folder: Path) -> list[int]:
    return [int(p) for p in (folder / "pids").read_text().split()]


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def client(stack: LocalStack) -> Client:
    return Client(stack.env)


@pytest.fixture(scope="module")
def vault_url(client: Client) -> str:
    return client.new_vault(client.new_rg())


@pytest.fixture(scope="module")
def side(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of this module's own (clock and reset tests; lifecycle), with two Functions
    host instances."""
    running = Stack.up(tmp_path_factory.mktemp("side"), update_seconds=0.3, hosts=2)
    try:
        yield running
    finally:
        running.down()


# -- faults --------------------------------------------------------------------------------


def test_sdk_retries_through_injected_503s(stack: LocalStack, client: Client,
                                           no_faults: None) -> None:
    agent = unique("platform-sdk/")
    compute = ComputeManagementClient(
        DefaultAzureCredential(), stack.subscription, base_url=stack.env["ARM_ENDPOINT"],
        credential_scopes=[f"{ARM}/.default"], connection_verify=stack.ca, user_agent=agent)
    rg = client.new_rg()  # empty: one page, whatever other modules deployed
    path = f"/subscriptions/{stack.subscription}/resourceGroups/{rg}/providers/" \
           "Microsoft.Compute/cloudServices"
    assert client.add_fault(service="arm", method="GET", path=re.escape(path) + "$",
                            status=503, retry_after=0, count=2) == {"faults": 1}
    mark = len(client.log())

    assert list(compute.cloud_services.list(rg)) == []

    def by_sdk(since: int) -> list[dict[str, Any]]:
        return [r for r in client.log(since) if agent in r["agent"] and r["service"] == "arm"]

    assert summary(by_sdk(mark)) == [("arm", "GET", path, 503, True),
                                     ("arm", "GET", path, 503, True),
                                     ("arm", "GET", path, 200, False)]
    # count honoured: the fault is used up, the next call goes straight through
    mark = len(client.log())
    assert list(compute.cloud_services.list(rg)) == []
    assert summary(by_sdk(mark)) == [("arm", "GET", path, 200, False)]


def test_injected_error_answers_like_azure(client: Client, no_faults: None) -> None:
    rg = client.new_rg()
    client.add_fault(service="arm", method="GET", path=f"/{rg}$", status=503, retry_after=2)
    resp = client.arm("GET", client.rg_path(rg))
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "2"
    assert resp.headers["x-ms-request-id"]
    assert error_code(resp) == "ServiceUnavailable"
    client.add_fault(service="arm", path=f"/{rg}$", status=429, code="Throttled",
                     message="slow down")
    resp = client.arm("GET", client.rg_path(rg))
    assert (resp.status_code, resp.json()["error"]) == (429, {"code": "Throttled",
                                                              "message": "slow down"})
    assert "Retry-After" not in resp.headers
    assert client.arm("GET", client.rg_path(rg)).status_code == 200


def test_delay_alone_slows_a_request_without_changing_it(client: Client,
                                                         no_faults: None) -> None:
    rg = client.new_rg()
    client.token(ARM)
    delay_ms = 400
    client.add_fault(service="arm", method="GET", path=f"/{rg}$", delay_ms=delay_ms)
    mark = len(client.log())
    started = time.monotonic()
    resp = client.arm("GET", client.rg_path(rg))
    slowed = time.monotonic() - started
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == rg
    assert slowed >= delay_ms / 1000
    started = time.monotonic()
    assert client.arm("GET", client.rg_path(rg)).status_code == 200
    assert time.monotonic() - started < delay_ms / 1000  # count 1: used up
    assert [r["injected"] for r in client.mine(mark)] == [False, False]


def test_method_and_service_filters(client: Client, vault_url: str, no_faults: None) -> None:
    rg = client.new_rg()
    client.add_fault(service="arm", method="put", path=f"/{rg}$", status=409)
    client.add_fault(service="keyvault", path="", status=500)
    mark = len(client.log())
    assert client.arm("GET", client.rg_path(rg)).status_code == 200
    resp = client.arm("PUT", client.rg_path(rg), {"location": "westus"})
    assert (resp.status_code, error_code(resp)) == (409, "Conflict")
    assert client.vault(vault_url).status_code == 500
    assert summary(client.mine(mark)) == [
        ("arm", "GET", client.rg_path(rg), 200, False),
        ("arm", "PUT", client.rg_path(rg), 409, True),
        ("keyvault", "GET", "/certificates", 500, True),
    ]


def test_an_apply_fault_lets_the_request_act_then_answers_its_error_late(
    client: Client, no_faults: None
) -> None:
    """As Azure's recorded PUT that answered 500 after ~44 s: the write happened anyway."""
    rg = unique("rg-apply-")
    client.add_fault(service="arm", method="PUT", path=f"/{rg}$", status=500, apply=True,
                     delay_ms=300, code="InternalOperationError",
                     message="The operation has timed out.")
    mark = len(client.log())
    started = time.monotonic()
    resp = client.arm("PUT", client.rg_path(rg), {"location": "westus"})
    assert time.monotonic() - started >= 0.3
    assert resp.status_code == 500
    assert resp.json()["error"] == {"code": "InternalOperationError",
                                    "message": "The operation has timed out."}
    assert client.arm("GET", client.rg_path(rg)).status_code == 200  # it landed
    (put, get) = client.mine(mark)
    assert (put["status"], put["injected"], put["applied"]) == (500, True, 201)
    assert (get["status"], get["injected"], "applied" in get) == (200, False, False)


def test_an_apply_fault_with_a_delay_alone_acts_at_once_and_holds_its_own_answer(
    client: Client, no_faults: None
) -> None:
    """The write is visible while its answer is still on the way (a slow front door): a
    reader sees it land before the writer hears back, and the writer gets the real answer."""
    rg = unique("rg-held-")
    client.add_fault(service="arm", method="PUT", path=f"/{rg}$", apply=True, delay_ms=10_000)
    mark = len(client.log())
    with ThreadPoolExecutor(1) as pool:
        put = pool.submit(client.arm, "PUT", client.rg_path(rg), {"location": "westus"})
        landed = wait_for(lambda: client.arm("GET", client.rg_path(rg)).status_code == 200,
                          "the held PUT to act")
        assert landed and not put.done()  # seen while its answer is held
        resp = put.result(timeout=60)
    assert resp.status_code == 201 and resp.json()["name"] == rg
    held = [r for r in client.mine(mark) if r["method"] == "PUT"]
    assert [(r["status"], r["injected"], r["applied"]) for r in held] == [(201, False, 201)]


def test_a_drop_fault_closes_the_connection_without_an_answer(
    client: Client, no_faults: None
) -> None:
    applied, lost = unique("rg-drop-"), unique("rg-drop-")
    client.add_fault(service="arm", method="PUT", path=f"/{applied}$", apply=True, drop=True)
    client.add_fault(service="arm", method="PUT", path=f"/{lost}$", drop=True)
    mark = len(client.log())
    for rg in (applied, lost):
        with pytest.raises(requests.ConnectionError):
            client.arm("PUT", client.rg_path(rg), {"location": "westus"})
    assert client.arm("GET", client.rg_path(applied)).status_code == 200  # it landed
    assert client.arm("GET", client.rg_path(lost)).status_code == 404  # it never acted
    puts = [r for r in client.mine(mark) if r["method"] == "PUT"]
    assert [(r.get("applied"), r.get("dropped"), r["injected"]) for r in puts] == [
        (201, True, True), (None, True, True)]


def test_delete_faults_clears_them(client: Client, no_faults: None) -> None:
    rg = client.new_rg()
    client.add_fault(service="arm", path=f"/{rg}$", status=500, count=5)
    assert client.add_fault(service="arm", path=f"/{rg}$", delay_ms=2000) == {"faults": 2}
    resp = client.admin("DELETE", "/faults")
    assert (resp.status_code, resp.json()) == (200, {"faults": 0})
    started = time.monotonic()
    assert client.arm("GET", client.rg_path(rg)).status_code == 200
    assert time.monotonic() - started < 2
    assert client.add_fault(service="arm", path="^/nothing-matches$", status=500) == {"faults": 1}


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"service": "blob", "status": 503}, "service must be one of"),
        ({"service": "functions", "status": 503}, "service must be one of"),
        ({"service": "storage", "status": 503}, "POST /storage takes it away"),
        ({"status": 503}, "service must be one of"),
        ({"service": "arm", "status": 200}, "status must be an integer 400-599"),
        ({"service": "arm", "status": "503"}, "status must be an integer 400-599"),
        ({"service": "arm"}, "needs a status, a delay_ms, drop, or a combination"),
        ({"service": "arm", "delay_ms": 0}, "needs a status, a delay_ms, drop, or a combination"),
        ({"service": "arm", "apply": True}, "an apply fault needs a status, drop or delay_ms"),
        ({"service": "arm", "drop": True, "status": 500}, "either answers a status or drops"),
        ({"service": "arm", "apply": "yes", "status": 500}, "apply and drop must be true or false"),
        ({"service": "arm", "delay_ms": "slow"}, "delay_ms must be an integer"),
        ({"service": "arm", "delay_ms": [1]}, "delay_ms must be an integer"),
        ({"service": "arm", "status": 503, "path": "(unclosed"}, "path is not a valid regex"),
        ({"service": "arm", "status": 503, "count": 0}, "count must be a positive integer"),
        ({"service": "arm", "status": 503, "retry_after": "soon"}, "retry_after must be"),
        ({"service": "arm", "status": 503, "method": ["GET"]}, "method must be a string"),
        (["arm"], "fault must be a JSON object"),
    ],
)
def test_bad_fault_bodies_are_refused(client: Client, no_faults: None, body: Any,
                                      hint: str) -> None:
    resp = client.admin("POST", "/faults", body)
    assert resp.status_code == 400
    assert hint in resp.json()["error"]


def test_fault_body_that_is_not_json(client: Client) -> None:
    resp = requests.post(client.env["EMULATOR_ADMIN_URL"] + "/faults", data="{oops",
                         headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400
    assert "not JSON" in resp.text


# -- request log -----------------------------------------------------------------------


def test_request_log_records_every_emulator_in_order(client: Client, vault_url: str) -> None:
    sub, rg = client.sub, unique("rg-log-")
    vault_token = client.token(VAULT)
    eventgrid = client.env["EVENTGRID_TOPIC_URL"]
    mark = len(client.log())
    before = dt.datetime.now(dt.UTC)
    statuses = [
        client.identity(ARM).status_code,
        client.identity("https://nothing.example").status_code,
        client.arm("GET", client.rg_path(rg)).status_code,
        client.arm("PUT", client.rg_path(rg), {"location": "westus"}).status_code,
        client.arm("GET", client.rg_path(rg)).status_code,
        client.vault(vault_url).status_code,
        client.vault(vault_url, vault_token).status_code,
        client.http.post(f"{eventgrid}/topics/missing/api/events", json=[], verify=client.ca,
                         timeout=10).status_code,
        client.http.get(f"{eventgrid}/eventsubscriptions/x/validate", params={"token": "no"},
                        verify=client.ca, timeout=10).status_code,
    ]
    after = dt.datetime.now(dt.UTC)
    assert statuses == [200, 400, 404, 201, 200, 401, 200, 404, 404]
    entries = client.mine(mark)
    identity_path = urlsplit(client.env["IDENTITY_ENDPOINT"]).path
    assert summary(entries) == [
        ("identity", "GET", identity_path, 200, False),
        ("identity", "GET", identity_path, 400, False),
        ("arm", "GET", f"/subscriptions/{sub}/resourcegroups/{rg}", 404, False),
        ("arm", "PUT", f"/subscriptions/{sub}/resourcegroups/{rg}", 201, False),
        ("arm", "GET", f"/subscriptions/{sub}/resourcegroups/{rg}", 200, False),
        ("keyvault", "GET", "/certificates", 401, False),
        ("keyvault", "GET", "/certificates", 200, False),
        ("eventgrid", "POST", "/topics/missing/api/events", 404, False),
        ("eventgrid", "GET", "/eventsubscriptions/x/validate", 404, False),
    ]
    times = [dt.datetime.fromisoformat(r["time"]) for r in entries]
    assert times == sorted(times)
    assert before <= times[0] and times[-1] <= after
    assert entries[0]["query"] == f"api-version=2019-08-01&resource={ARM}"
    assert entries[2]["query"] == f"api-version={RG_API}"


def test_request_log_since(client: Client) -> None:
    client.identity(ARM)
    client.identity(ARM)
    full = client.log()
    assert len(full) >= 2
    tail = client.log(len(full) - 2)
    assert tail[:2] == full[-2:]
    assert client.log(len(full) + 1000) == []
    assert client.log(0)[: len(full)] == full
    for bad in ("abc", "-1", "1.5"):
        resp = client.admin("GET", f"/requests?since={bad}")
        assert resp.status_code == 400, bad
        assert "since" in resp.json()["error"]


# -- identity ---------------------------------------------------------------------------


def test_identity_endpoint_refuses_what_azure_refuses(client: Client) -> None:
    ok = client.identity(ARM, client_id=client.env["AZURE_CLIENT_ID"])
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert (body["resource"], body["token_type"]) == (ARM, "Bearer")
    assert int(body["expires_on"]) > time.time() + 3000
    for header in (None, "wrong"):
        resp = client.identity(ARM, header=header)
        assert resp.status_code == 401
        assert "X-IDENTITY-HEADER" in resp.json()["message"]
    resp = client.identity("https://managment.azure.com")
    assert resp.status_code == 400
    assert resp.json()["message"].startswith("AADSTS500011")
    resp = client.identity(ARM, client_id=str(uuid.uuid4()))
    assert resp.status_code == 400
    assert "Identity not found" in resp.json()["message"]
    resp = client.http.get(client.env["IDENTITY_ENDPOINT"], params={"resource": ARM},
                           headers={"X-IDENTITY-HEADER": client.env["IDENTITY_HEADER"]},
                           timeout=10)
    assert resp.status_code == 400


def test_tokens_only_work_for_their_audience(client: Client, vault_url: str) -> None:
    arm_token, vault_token = client.token(ARM), client.token(VAULT)
    resp = client.vault(vault_url, arm_token)
    assert resp.status_code == 401
    assert resp.json()["error"]["message"].startswith("AKV10022: Invalid audience")
    assert 'resource="https://vault.azure.net"' in resp.headers["WWW-Authenticate"]
    resp = client.arm("GET", f"/subscriptions/{client.sub}/resourcegroups", token=vault_token)
    assert (resp.status_code, error_code(resp)) == (401, "InvalidAuthenticationToken")
    assert "invalid audience" in resp.json()["error"]["message"]
    assert client.vault(vault_url, vault_token).status_code == 200
    assert client.arm("GET", f"/subscriptions/{client.sub}/resourcegroups",
                      token=arm_token).status_code == 200


# -- clock and reset (in the module's own stack) ----------------------------------------




def clock(side: Client, advance_days: float | None = None) -> dict[str, Any]:
    if advance_days is None:
        resp = side.admin("GET", "/clock")
    else:
        resp = side.admin("POST", "/clock", {"advance_seconds": advance_days * DAY_S})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_clock_moves_certificate_lifetimes(side: Stack) -> None:
    admin = Client(side.env)
    start = clock(admin)
    moved = admin.admin("POST", "/clock", {"advance_seconds": 3600}).json()
    assert moved["offset"] == start["offset"] + 3600
    gap = dt.datetime.fromisoformat(moved["now"]) - dt.datetime.fromisoformat(start["now"])
    assert dt.timedelta(seconds=3600) <= gap < dt.timedelta(seconds=3660)
    assert clock(admin)["offset"] == moved["offset"]
    for bad in ({"advance_seconds": -1}, {"advance_seconds": "1"}, {}, [5]):
        assert admin.admin("POST", "/clock", bad).status_code == 400

    hook = Webhook()
    try:
        with environment(side.env):
            operator = Operator(dict(side.env))
            rg = operator.resource_group(unique("rg-clock-"))
            vault_id, vault_url = operator.vault(
                rg, unique("kvclock"), rbac=True, roles=OPERATOR_ROLES)
            operator.subscribe(rg, vault_id, "clock-events", webhook=hook.url)
            policy = CertificatePolicy(
                issuer_name="Self", subject="CN=clock", validity_in_months=12,
                lifetime_actions=[LifetimeAction(action=CertificatePolicyAction.email_contacts,
                                                 days_before_expiry=30)])
            cert = operator.new_version(vault_url, "clock", policy)
        expires = cert.properties.expires_on
        assert expires is not None
        wait_for(lambda: hook.of(KV_NEW))
        assert not hook.of(KV_NEAR)

        now = dt.datetime.fromisoformat(clock(admin, 340)["now"])
        assert expires - dt.timedelta(days=30) < now < expires  # near expiry, not expired
        near = wait_for(lambda: hook.of(KV_NEAR))
        assert near[0]["subject"] == "clock"
        assert near[0]["topic"] == vault_id
        assert near[0]["data"]["ObjectName"] == "clock"
        assert near[0]["data"]["Version"] == cert.properties.version
        assert near[0]["data"]["EXP"] == int(expires.timestamp())

        clock(admin, 1)
        time.sleep(1.2)  # one lifetime check round of the vault's own ticker
        assert len(hook.of(KV_NEAR)) == 1
        assert not hook.of(KV_EXPIRED)

        now = dt.datetime.fromisoformat(clock(admin, 30)["now"])
        assert now > expires
        expired = wait_for(lambda: hook.of(KV_EXPIRED))
        assert expired[0]["data"]["Version"] == cert.properties.version
        clock(admin, 1)
        time.sleep(1.2)
        assert [len(hook.of(t)) for t in (KV_NEW, KV_NEAR, KV_EXPIRED)] == [1, 1, 1]
    finally:
        hook.close()


def test_reset_forgets_faults_log_clock_and_state(side: Stack) -> None:
    client = Client(side.env)
    rg = client.new_rg()
    vault_url = client.new_vault(rg)
    vault_token = client.token(VAULT)
    assert client.vault(vault_url, vault_token).status_code == 200
    assert client.arm("GET", client.rg_path(rg)).status_code == 200
    client.add_fault(service="arm", method="GET", path=f"/{rg}$", status=500, count=3)
    clock(client, 1)
    assert client.log()
    assert clock(client)["offset"] > 0

    resp = client.admin("POST", "/reset")
    assert (resp.status_code, resp.json()) == (200, {"reset": True})

    assert client.log() == []
    assert clock(client)["offset"] == 0
    resp = client.arm("GET", client.rg_path(rg))
    assert (resp.status_code, error_code(resp)) == (404, "ResourceGroupNotFound")
    assert summary(client.log()) == [("arm", "GET", client.rg_path(rg), 404, False)]

    def vault_closed() -> bool:
        try:
            client.vault(vault_url, vault_token)
        except requests.ConnectionError:
            return True
        return False

    wait_for(vault_closed, timeout=5)
    assert client.add_fault(service="arm", path="^/nothing$", status=500) == {"faults": 1}
    client.admin("DELETE", "/faults")


def test_storage_gate_takes_azurite_away_and_gives_it_back(side: Stack) -> None:
    """``POST /storage``: refused connections while closed, the real Azurite (same port,
    same state) once open again; ``POST /reset`` opens it too."""
    client = Client(side.env)
    port = int(urlsplit(side.env["AZURITE_BLOB_URL"]).port or 0)
    with environment(side.env):
        def fresh_container(name: str) -> ContainerClient:
            """A new client each time: the gate cuts pooled sockets, and with retries off a
            stale socket fails for the client's sake ("aborted"), not the gate's ("refused")."""
            blobs = BlobServiceClient(side.env["AZURITE_BLOB_URL"], DefaultAzureCredential(),
                                      connection_verify=client.ca, retry_total=0)
            return blobs.get_container_client(name)

        name = unique("gate-")
        container = fresh_container(name)
        container.create_container()
        container.upload_blob("kept", b"state")
        try:
            resp = client.admin("POST", "/storage", {"available": False})
            assert resp.status_code == 200 and resp.json()["available"] is False
            assert not answers(port)
            with pytest.raises(ServiceRequestError, match="refused"):
                fresh_container(name).upload_blob("lost", b"x")
            assert client.admin("GET", "/storage").json()["available"] is False
        finally:
            resp = client.admin("POST", "/storage", {"available": True})
        assert resp.status_code == 200 and resp.json()["available"] is True
        container = fresh_container(name)
        assert container.download_blob("kept").readall() == b"state"
        assert [b.name for b in container.list_blobs()] == ["kept"]

    for bad in ({"available": "no"}, {}, ["available"]):
        resp = client.admin("POST", "/storage", bad)
        assert resp.status_code == 400
        assert resp.json() == {"error": "available must be true or false"}
    client.admin("POST", "/storage", {"available": False})
    assert client.admin("POST", "/reset").status_code == 200
    assert client.admin("GET", "/storage").json()["available"] is True
    assert answers(port)


# -- lifecycle ------------------------------------------------------------------------------


def test_stack_env_has_every_setting(side: Stack) -> None:
    written = read_env(side.folder / "stack.env")
    assert written == {**side.env, **app_settings(side.env)}  # the CLI runs as the app does
    # A shell sources it as README says (set -a; . stack.env): every value whole.
    sourced = subprocess.run(
        ["bash", "-c", 'set -a; . "$1"; echo "$RECONCILE_SCHEDULE|$FOLLOW_SCHEDULE"', "-",
         str(side.folder / "stack.env")], capture_output=True, text=True, check=True)
    assert sourced.stderr == ""
    assert sourced.stdout.strip() == f"{written['RECONCILE_SCHEDULE']}|{written['FOLLOW_SCHEDULE']}"
    missing = [key for key in REQUIRED_KEYS if not written.get(key)]
    assert missing == []
    assert written["ARM_ENDPOINT"].startswith("https://127.0.0.1:")
    assert written["AZURITE_BLOB_URL"].startswith("https://127.0.0.1:")
    assert Path(written["STACK_CA_BUNDLE"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
    uuid.UUID(written["AZURE_SUBSCRIPTION_ID"])
    uuid.UUID(written["AZURE_TENANT_ID"])
    # every endpoint answers with the settings it was given
    client = Client(written)
    assert client.token(ARM)
    assert client.arm("GET", f"/subscriptions/{client.sub}/resourcegroups").status_code == 200
    blob = requests.get(written["AZURITE_BLOB_URL"], params={"comp": "list"},
                        verify=client.ca, timeout=10)
    assert blob.status_code in (401, 403)  # reached over TLS; anonymous is refused
    queue = requests.get(written["AZURITE_QUEUE_URL"], params={"comp": "list"},
                         verify=client.ca, timeout=10)
    assert queue.status_code in (401, 403)
    urls = written["FUNCTIONS_URLS"].split(",")
    assert urls[0] == written["FUNCTIONS_URL"] and len(set(urls)) == 2
    for url in urls:
        host = requests.get(url + "/admin/host/status",
                            headers={"x-functions-key": written["FUNCTIONS_MASTER_KEY"]},
                            timeout=10)
        assert (host.status_code, host.json()["state"]) == (200, "Running")
    assert client.admin("GET", "/clock").status_code == 200


def test_two_stacks_side_by_side(stack: LocalStack, side: Stack) -> None:
    session_folder = Path(stack.env["STACK_CA_BUNDLE"]).parent.parent  # {folder}/tls/ca
    ours, theirs = stack_ports(side.folder, side.env), stack_ports(session_folder, stack.env)
    assert not set(ours.values()) & set(theirs.values())
    assert stack.env["AZURE_SUBSCRIPTION_ID"] != side.env["AZURE_SUBSCRIPTION_ID"]
    one, other = Client(stack.env), Client(side.env)
    for client in (one, other):
        assert client.arm("GET", f"/subscriptions/{client.sub}/resourcegroups").status_code == 200
    # each stack signs its own tokens: one's token is no good at the other
    resp = other.arm("GET", f"/subscriptions/{other.sub}/resourcegroups", token=one.token(ARM))
    assert (resp.status_code, error_code(resp)) == (401, "InvalidAuthenticationToken")


def test_up_refuses_a_folder_with_a_running_stack(side: Stack) -> None:
    pids = pids_of(side.folder)
    with pytest.raises(RuntimeError, match="already running"):
        Stack.up(side.folder)
    assert pids_of(side.folder) == pids
    assert Client(side.env).admin("GET", "/clock").status_code == 200


def test_down_leaves_no_process_and_no_listener(side: Stack) -> None:
    pids = pids_of(side.folder)
    ports = stack_ports(side.folder, side.env)
    assert len(pids) == 5  # Azurite's blob and queue services, the emulators, two hosts
    assert all(answers(port) for port in ports.values())
    side.down()
    assert [pid for pid in pids if not process_gone(pid)] == []
    assert {name: port for name, port in ports.items() if answers(port)} == {}
    assert not (side.folder / "pids").exists()
    assert not (side.folder / "stack.env").exists()
    side.down()  # a second stop is harmless


def test_cli_up_and_down_without_printing_secrets(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "emulators.stack", *args,
                               "--dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=False)

    up = cli("up")
    try:
        assert up.returncode == 0, up.stderr
        env = read_env(tmp_path / "stack.env")
        pids = pids_of(tmp_path)
        ports = stack_ports(tmp_path, env)
        assert "local stack up" in up.stdout
        assert f"ARM_ENDPOINT={env['ARM_ENDPOINT']}" in up.stdout
        secrets = {k: v for k, v in env.items() if k == "IDENTITY_HEADER" or k.endswith("_KEY")}
        assert len(secrets) == 4
        for key, value in secrets.items():
            assert value not in up.stdout + up.stderr, key
            assert f"{key}=<hidden>" in up.stdout
        again = cli("up")
        assert again.returncode != 0
        assert "already running" in again.stderr
    finally:
        down = cli("down")
    assert (down.returncode, down.stdout.strip()) == (0, "stack stopped")
    assert [pid for pid in pids if not process_gone(pid)] == []
    assert {name: port for name, port in ports.items() if answers(port)} == {}
    assert cli("down").stdout.strip() == f"no stack running in {tmp_path}"
