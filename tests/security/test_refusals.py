"""Certificates CSES cannot install, and hostile service configurations: refused with the
reason, never written.

PEM secrets and non-exportable keys run end to end: a real version created with such a
policy, its event delivered, the run record read back, no PUT. A cscfg carrying a DTD
(XXE, entity bombs) or over the size limit cannot be staged on the stack, because the
cloud-services emulator refuses to store one (the first test shows it), so those are
tested where the product reads them: the planner, which the engine calls for every
service and whose InvalidInput it records as ``refused``.
"""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.keyvault.certificates import CertificateContentType, CertificatePolicy, KeyType

from emulators.provision import cscfg, thumbprint
from shared.domain.cscfg import MAX_CSCFG_CHARS
from shared.domain.errors import InvalidInput
from shared.domain.planner import plan_rotation
from tests.e2e.world import ROLES, World, secret_of, unique
from tests.unit.test_cscfg import BILLION_LAUGHS, EXTERNAL_DTD, PARAMETER_ENTITY, XXE
from tests.unit.test_planner import (
    API_URL,
    CLIENT_URL,
    NOW,
    TP1,
    V1,
    V2,
    WEB1,
    certificate,
    kv1,
    kv2,
    observed,
    service,
)
from tests.unit.test_planner import cscfg as planner_cscfg

UNINSTALLABLE = [
    pytest.param(
        CertificatePolicy(
            issuer_name="Self",
            subject="CN=pem.contoso.com",
            content_type=CertificateContentType.pem,
            validity_in_months=12,
        ),
        "stores its secret as 'application/x-pem-file'; cloud services can install only PFX",
        id="pem-secret",
    ),
    pytest.param(
        # The SDK drops key_props when exportable=False is the only key setting.
        CertificatePolicy(
            issuer_name="Self",
            subject="CN=sealed.contoso.com",
            exportable=False,
            key_type=KeyType.rsa,
            validity_in_months=12,
        ),
        "has a non-exportable key; cloud services need the private key in the secret",
        id="non-exportable-key",
    ),
]


@pytest.mark.parametrize(("policy", "reason"), UNINSTALLABLE)
def test_version_cses_cannot_install_is_refused_with_the_reason(
    world: World, policy: CertificatePolicy, reason: str
) -> None:
    v1 = world.new_version()
    svc = world.deploy(v1)
    world.subscribe()

    world.new_version(policy)
    world.wait_delivered()

    (record,) = world.records()
    (result,) = record["services"]
    assert result["outcome"] == "refused", result
    assert reason in result["message"]
    assert world.puts(svc, succeeded=False) == []
    assert world.read(svc).thumbprints == {role: [thumbprint(v1)] for role in ROLES}


def test_the_stack_refuses_to_store_a_cscfg_with_a_dtd(world: World) -> None:
    v1 = world.new_version()
    name = unique("cs")
    package, _ = world.op.package("packages", f"{name}.cspkg", b"PK\x03\x04" + b"x" * 64)
    hostile = cscfg(name, {"WebRole1": {"SslCert": thumbprint(v1)}}).replace(
        "<ServiceConfiguration",
        '<!DOCTYPE ServiceConfiguration [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        "<ServiceConfiguration",
        1,
    )
    with pytest.raises(HttpResponseError) as caught:
        world.op.cloud_service(
            world.rg, name, hostile, ["WebRole1"], world.vault_id, [secret_of(v1)], package
        )
    assert caught.value.status_code == 400


HOSTILE_CSCFG = [
    pytest.param(XXE, "DOCTYPE/DTD, entity declarations and external references", id="xxe"),
    pytest.param(BILLION_LAUGHS, "DOCTYPE/DTD", id="billion-laughs"),
    pytest.param(EXTERNAL_DTD, "DOCTYPE/DTD", id="external-dtd"),
    pytest.param(PARAMETER_ENTITY, "DOCTYPE/DTD", id="parameter-entity"),
    pytest.param(
        planner_cscfg() + " " * MAX_CSCFG_CHARS,
        f"is more than the limit of {MAX_CSCFG_CHARS}",
        id="oversized",
    ),
    pytest.param(
        planner_cscfg().replace('thumbprintAlgorithm="sha1"', 'thumbprintAlgorithm="sha256"', 1),
        "thumbprintAlgorithm 'sha256' is not supported (only sha1)",
        id="sha256",
    ),
    pytest.param(
        planner_cscfg(web=TP1[:-1]),
        f"thumbprint '{TP1[:-1]}' is not exactly 40 hexadecimal digits",
        id="39-hex-digits",
    ),
    pytest.param(
        planner_cscfg(web="Z" * 40), "is not exactly 40 hexadecimal digits", id="not-hex"
    ),
]


@pytest.mark.parametrize(("configuration", "reason"), HOSTILE_CSCFG)
def test_hostile_cscfg_is_refused_before_anything_is_planned(
    configuration: str, reason: str
) -> None:
    snapshot = service(configuration, kv1(WEB1, CLIENT_URL), kv2(API_URL))

    with pytest.raises(InvalidInput) as caught:
        plan_rotation(snapshot, certificate(V1, V2), observed(snapshot), NOW)

    assert caught.value.field == "configuration"
    assert reason in caught.value.detail
    assert "root:" not in str(caught.value)  # nothing of /etc/passwd was read
