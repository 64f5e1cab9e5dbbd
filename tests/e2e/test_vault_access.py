"""End-to-end: the app in both Key Vault permission models, rotating with exactly the
rights it is given and saying precisely what is missing when a right is taken away.

On the stack the operator and the app share one identity (``APP_PRINCIPAL_ID``), so each
test grants the operator's rights (create the versions) and the app's (read them)
explicitly, takes away only what it means to test, and shows the app's error, which is
raised by the real engine reading through the real SDK against the vault's real 403.
"""

from __future__ import annotations

import datetime as dt

import pytest
from azure.keyvault.certificates import (
    CertificateContentType,
    CertificatePolicy,
    CertificatePolicyAction,
    LifetimeAction,
)

from emulators.provision import APP_POLICY, OPERATOR_POLICY, Operator, combined
from shared.errors import PlatformRejected
from shared.events import parse_event
from tests.conftest import LocalStack
from tests.e2e.world import CERT, NEAR_EXPIRY, World, engine_for, event_item, version_of

CERTIFICATE_USER = "Key Vault Certificate User"
CERTIFICATES_OFFICER = "Key Vault Certificates Officer"


def rotate(world: World, version: str) -> list[str]:
    """The app handles a NewVersionCreated for ``version``; the services' outcomes."""
    run = engine_for(world).handle_event(parse_event(event_item(world, version)))
    assert run is not None
    return [r.outcome for r in run.results]


def refusal(world: World, version: str) -> str:
    """What the app says when the vault refuses its reading for ``version``."""
    with pytest.raises(PlatformRejected) as refused:
        rotate(world, version)
    return str(refused.value)


def reading(world: World) -> str:
    return f"Forbidden: reading certificate '{CERT}' from {world.vault_url}: no access to vault"


def test_access_policy_vault_rotates_and_names_the_missing_permission(
    stack: LocalStack, op: Operator
) -> None:
    world = World(stack, op, rbac=False, policy=combined(OPERATOR_POLICY, APP_POLICY))
    svc = world.deploy(world.new_version())
    v2 = world.new_version()
    assert rotate(world, version_of(v2)) == ["rotated"]  # the positive control
    world.assert_on(svc, v2)

    # The app lists the certificate's versions: take away exactly that right.
    left = op.access_policy(world.vault_id, "remove", {"certificates": ["list"]})
    assert [p["permissions"]["certificates"] for p in left] == [
        [p for p in combined(OPERATOR_POLICY, APP_POLICY)["certificates"] if p != "list"]
    ]
    v3 = world.new_version()
    assert refusal(world, version_of(v3)) == (
        f"{reading(world)} {world.vault_name} (access policy missing for the app: it needs "
        "certificates list permission)"
    )
    assert len(world.puts(svc)) == 1  # nothing was written for v3

    op.access_policy(world.vault_id, "add", {"certificates": ["list"]})
    assert rotate(world, version_of(v3)) == ["rotated"]
    world.assert_on(svc, v3)


def test_rbac_vault_rotates_with_the_reader_role_and_names_the_missing_action(
    stack: LocalStack, op: Operator
) -> None:
    world = World(stack, op, rbac=True, roles=())
    officer = op.grant_role(world.vault_id, CERTIFICATES_OFFICER)  # the operator's steps
    reader = op.grant_role(world.vault_id, CERTIFICATE_USER)  # the app's
    svc = world.deploy(world.new_version())
    v2 = world.new_version()
    op.revoke_role(officer)
    assert rotate(world, version_of(v2)) == ["rotated"]  # the app needs no more than that
    world.assert_on(svc, v2)

    officer = op.grant_role(world.vault_id, CERTIFICATES_OFFICER)
    v3 = world.new_version()
    op.revoke_role(officer)
    op.revoke_role(reader)
    assert refusal(world, version_of(v3)) == (
        f"{reading(world)} {world.vault_name} (RBAC vault: no role assignment grants the app "
        "'Microsoft.KeyVault/vaults/certificates/read')"
    )
    assert len(world.puts(svc)) == 1

    op.grant_role(world.rg, CERTIFICATE_USER)  # at a parent scope: the resource group
    assert rotate(world, version_of(v3)) == ["rotated"]
    world.assert_on(svc, v3)


def test_renewal_needs_the_create_right(stack: LocalStack, op: Operator) -> None:
    """NearExpiry of a self-signed certificate: the app asks for a new version, which the
    read-only role does not allow; the error names the create action."""
    world = World(stack, op, rbac=True, roles=())
    officer = op.grant_role(world.vault_id, CERTIFICATES_OFFICER)
    op.grant_role(world.vault_id, CERTIFICATE_USER)
    policy = CertificatePolicy(
        issuer_name="Self",
        subject="CN=e2e-renew-right",
        validity_in_months=12,
        content_type=CertificateContentType.pkcs12,
        lifetime_actions=[
            LifetimeAction(action=CertificatePolicyAction.email_contacts, days_before_expiry=30)
        ],
    )
    v1 = world.new_version(policy)
    world.deploy(v1)
    op.revoke_role(officer)
    item = event_item(world, version_of(v1))
    item["eventType"] = NEAR_EXPIRY
    engine = engine_for(world, RENEW_ON_NEAR_EXPIRY="true")
    # 340 days on, the 12-month version is inside its 30-day window (shared.renewal).
    engine.now = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=340)
    with pytest.raises(PlatformRejected) as refused:
        engine.handle_event(parse_event(item))
    assert str(refused.value) == (
        f"Forbidden: requesting a new version of '{CERT}': no access to vault "
        f"{world.vault_name} (RBAC vault: no role assignment grants the app "
        "'Microsoft.KeyVault/vaults/certificates/create/action')"
    )
    assert len(list(world.kv.list_properties_of_certificate_versions(CERT))) == 1
