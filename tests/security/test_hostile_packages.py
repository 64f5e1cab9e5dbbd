"""A person who can only write tags cannot redirect the app's token or deploy a package.

Every hostile ``cert-rotation-package`` tag sits on its own service of one run, next to a
well-tagged service: each hostile one is refused with the rule it breaks, the good one
rotates, no PUT carries a foreign package, and a loopback listener that several tags point
at is never connected to at all (proven against a positive control: the test's own
connection is counted).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from azure.mgmt.compute.models import CloudServiceUpdate

from emulators.polling import wait_for
from emulators.stack import PACKAGE_CONTAINER
from shared.domain.destinations import UntrustedDestination
from shared.domain.packages import ContainerRef, PackageRef, PackageRule
from tests.e2e.world import CERT, Service, World, api, ended_run, engine_for
from tests.trap import Trap


@pytest.fixture
def listener() -> Iterator[Trap]:
    found = Trap()
    yield found
    found.close()


@dataclass(frozen=True)
class Hostile:
    name: str
    tag: Callable[[str, int, str], str]  # (blob base URL, listener port, service name)
    reason: str


def _host(base: str) -> str:
    return base.split("://", 1)[1].split("/", 1)[0]


CASES = [
    Hostile("foreign-host", lambda b, p, n: f"https://evil.example/devstoreaccount1/"
            f"{PACKAGE_CONTAINER}/{n}.cspkg", PackageRule.CONTAINER.value),
    Hostile("loopback-listener", lambda b, p, n: f"https://127.0.0.1:{p}/devstoreaccount1/"
            f"{PACKAGE_CONTAINER}/{n}.cspkg", PackageRule.CONTAINER.value),
    Hostile("localhost", lambda b, p, n: f"https://localhost:{p}/devstoreaccount1/"
            f"{PACKAGE_CONTAINER}/{n}.cspkg", PackageRule.CONTAINER.value),
    Hostile("legit-at-evil", lambda b, p, n: f"https://{_host(b)}@127.0.0.1:{p}/"
            f"devstoreaccount1/{PACKAGE_CONTAINER}/{n}.cspkg", PackageRule.USERINFO.value),
    Hostile("password", lambda b, p, n: b.replace("https://", "https://user:pa55@")
            + f"/{PACKAGE_CONTAINER}/{n}.cspkg", PackageRule.USERINFO.value),
    Hostile("other-port", lambda b, p, n: f"https://127.0.0.1/devstoreaccount1/"
            f"{PACKAGE_CONTAINER}/{n}.cspkg", PackageRule.CONTAINER.value),
    Hostile("encoded-query", lambda b, p, n: f"{b}/{PACKAGE_CONTAINER}/{n}.cspkg%3Fsv=1",
            PackageRule.ENCODED.value),
    Hostile("fragment", lambda b, p, n: f"{b}/{PACKAGE_CONTAINER}/{n}.cspkg#x",
            PackageRule.FRAGMENT.value),
    Hostile("dot-dot", lambda b, p, n: f"{b}/{PACKAGE_CONTAINER}/../otherteam/team.cspkg",
            PackageRule.SEGMENTS.value),
    Hostile("container-only", lambda b, p, n: f"{b}/{PACKAGE_CONTAINER}",
            PackageRule.BLOB.value),
    Hostile("http", lambda b, p, n: b.replace("https://", "http://")
            + f"/{PACKAGE_CONTAINER}/{n}.cspkg", PackageRule.HTTPS.value),
    Hostile("other-team-container", lambda b, p, n: f"{b}/otherteam/team.cspkg",
            PackageRule.CONTAINER.value),
    Hostile("intruder-blob-stale-md5", lambda b, p, n: f"{b}/{PACKAGE_CONTAINER}/intruder.cspkg",
            "package changed since it was tagged"),
]


def retag(world: World, svc: Service, tag: str) -> None:
    cs = world.op.compute.cloud_services.get(svc.rg, svc.name)
    tags = dict(cs.tags or {})
    tags["cert-rotation-package"] = tag
    world.op.compute.cloud_services.begin_update(
        svc.rg, svc.name, CloudServiceUpdate(tags=tags)
    ).result()


def test_hostile_package_tags_are_refused_per_service_and_never_contacted(
    world: World, listener: Trap
) -> None:
    base = world.stack.env["AZURITE_BLOB_URL"]
    # Another team's package in the same account, and an intruder's blob in our container.
    world.op.package("otherteam", "team.cspkg", b"PK\x03\x04" + b"t" * 512)
    world.op.package(PACKAGE_CONTAINER, "intruder.cspkg", b"PK\x03\x04" + b"i" * 512)
    v1 = world.new_version()
    good = world.deploy(v1)
    hostile = {case.name: world.deploy(v1) for case in CASES}
    for case in CASES:
        svc = hostile[case.name]
        retag(world, svc, case.tag(base, listener.port, svc.name))
    world.subscribe()

    v2 = world.new_version()
    world.wait_delivered()

    # 14 services: the hint's run takes SERVICES_PER_MESSAGE (10), a batch run the rest.
    records = world.records()
    assert sorted(len(r["services"]) for r in records) == [4, 10]
    assert {r["status"] for r in records} == {"done"}
    outcomes = {e["cloudService"]: e for r in records for e in r["services"]}
    assert outcomes[good.id]["outcome"] == "rotated"
    assert outcomes[good.id]["package"]["url"] == f"{base}/{PACKAGE_CONTAINER}/{good.name}.cspkg"
    assert outcomes[good.id]["package"]["md5"] and outcomes[good.id]["package"]["etag"]
    world.assert_on(good, v2)
    for case in CASES:
        entry = outcomes[hostile[case.name].id]
        assert entry["outcome"] == "refused", (case.name, entry)
        assert case.reason in entry["message"], (case.name, entry["message"])
        assert world.puts(hostile[case.name], succeeded=False) == [], case.name
    text = str(records) + api(world.stack, "GET", "/api/status").text
    assert "pa55" not in text and "user:" not in text
    logs = (world.stack.folder / "logs" / "functions.log").read_text(errors="replace")
    assert "pa55" not in logs

    assert listener.connections == 0
    socket.create_connection(("127.0.0.1", listener.port), timeout=5).close()  # control
    wait_for(lambda: listener.connections == 1, "the control connection to be counted")


def test_a_malformed_tag_stops_only_its_service_over_http_too(world: World) -> None:
    v1 = world.new_version()
    good, bad = world.deploy(v1), world.deploy(v1)
    retag(world, bad, f"{world.stack.env['AZURITE_BLOB_URL']}/{PACKAGE_CONTAINER}")
    world.new_version()

    body = {"vault": world.vault_id, "certificate": CERT}
    resp = api(world.stack, "POST", "/api/rotations", body)

    record = ended_run(world, resp)
    by_service = {s["cloudService"]: s["outcome"] for s in record["services"]}
    assert by_service == {good.id: "rotated", bad.id: "refused"}
    assert record["status"] == "done"
    (refused,) = [s for s in record["services"] if s["cloudService"] == bad.id]
    assert PackageRule.BLOB.value in refused["message"]


def test_the_sdk_clients_refuse_any_other_host_before_connecting(
    world: World, listener: Trap
) -> None:
    """The backstop under every caller: a secret URL or a package built without the parser
    (as a bug would) still never reaches the wire."""
    engine = engine_for(world)
    hostile = f"https://127.0.0.1:{listener.port}"
    with pytest.raises(UntrustedDestination, match=f"127.0.0.1:{listener.port}"):
        engine.keyvault.thumbprint(f"{hostile}/secrets/{CERT}/{'a' * 32}")
    forged = PackageRef(
        ContainerRef(f"127.0.0.1:{listener.port}", "devstoreaccount1/packages",
                     "devstoreaccount1", "packages"),
        "x.cspkg",
    )
    with pytest.raises(UntrustedDestination):
        engine.storage.package_facts(forged)
    with pytest.raises(UntrustedDestination):
        engine.storage.package_sas(forged, 1.0, datetime.now(UTC))
    assert listener.connections == 0
    # Control: the same clients do reach the stack's own vault.
    assert engine.keyvault.thumbprint(str(world.new_version().secret_id))
