"""End-to-end: the app in both Key Vault permission models, rotating with exactly the
rights it is given and saying precisely what is missing when a right is taken away.

On the stack the operator and the app share one identity (``APP_PRINCIPAL_ID``), so each
test grants the operator's rights (create the versions) and the app's (read them)
explicitly, takes away only what it means to test, and shows the app's error, which the
real engine gets reading through the real SDK against the vault's real 403. A refusal
while handling an event ends in a stored run record whose services are ``refused`` with
that message (the event is acknowledged: a redelivery would be refused the same way), and
the status page says the same.
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

from emulators.polling import wait_for
from emulators.provision import APP_POLICY, OPERATOR_POLICY, Operator, combined
from shared.domain.events import parse_event
from tests.conftest import LocalStack
from tests.e2e.test_status import status
from tests.e2e.world import (
    CERT,
    NEAR_EXPIRY,
    NEW_VERSION,
    World,
    engine_for,
    event_item,
    version_of,
)

CERTIFICATE_USER = "Key Vault Certificate User"
CERTIFICATES_OFFICER = "Key Vault Certificates Officer"


def rotate(world: World, version: str) -> list[str]:
    """The app handles a NewVersionCreated for ``version``; the services' outcomes."""
    run = engine_for(world).handle_event(parse_event(event_item(world, version)))
    assert run is not None
    return [r.outcome for r in run.results]


def refusal(world: World, version: str) -> str:
    """What the app says when the vault refuses its reading for ``version``: every service
    of the stored run is ``refused`` with the same message."""
    run = engine_for(world).handle_event(parse_event(event_item(world, version)))
    assert run is not None and run.status == "done"
    assert {r.outcome for r in run.results} == {"refused"}
    (message,) = {r.message for r in run.results}
    return message


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
    # 340 days on, the 12-month version is inside its 30-day window (shared.domain.renewal).
    engine.now = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=340)
    run = engine.handle_event(parse_event(item))
    assert run is not None
    assert [(a.kind, a.message) for a in run.actions] == [(
        "renew-refused",
        f"Forbidden: requesting a new version of '{CERT}': no access to vault "
        f"{world.vault_name} (RBAC vault: no role assignment grants the app "
        "'Microsoft.KeyVault/vaults/certificates/create/action')",
    )]
    assert [r.outcome for r in run.results] == ["noop"]  # the services stay on what exists
    assert len(list(world.kv.list_properties_of_certificate_versions(CERT))) == 1


def _status_problem(world: World) -> str:
    """The status page's problem for the world's certificate row of its one service."""
    (service,) = status(world)["services"]
    (row,) = [c for c in service["certificates"] if c["certificate"] == CERT]
    return str(row["problem"])


@pytest.mark.parametrize("rbac", [True, False], ids=["rbac-vault", "access-policy-vault"])
def test_each_vault_model_rotates_through_event_grid_and_refuses_clearly(
    stack: LocalStack, op: Operator, rbac: bool
) -> None:
    """Through the whole path (Key Vault event, Event Grid, the Functions host, the engine):
    the app rotates with exactly its grant; without it, the same event ends in a stored run
    record saying which vault refused which right, is acknowledged rather than redelivered,
    and the status page says the same."""
    if rbac:
        world = World(stack, op, rbac=True, roles=())
        officer = op.grant_role(world.vault_id, CERTIFICATES_OFFICER)  # the operator's steps
        reader = op.grant_role(world.vault_id, CERTIFICATE_USER)  # the app's
    else:
        world = World(stack, op, rbac=False, policy=combined(OPERATOR_POLICY, APP_POLICY))
    svc = world.deploy(world.new_version())
    world.subscribe()
    v2 = world.new_version()  # Key Vault raises NewVersionCreated: the positive control
    wait_for(lambda: [r for r in world.records() if r["status"] == "done"
                      and r["services"][0]["outcome"] == "rotated"], "the rotation's record")
    world.assert_on(svc, v2)

    if rbac:
        op.revoke_role(officer)
        op.revoke_role(reader)
        expected = (f"no access to vault {world.vault_name} (RBAC vault: no role assignment "
                    "grants the app 'Microsoft.KeyVault/vaults/certificates/read')")
    else:
        op.access_policy(world.vault_id, "remove", {"certificates": ["get", "list"]})
        expected = (f"no access to vault {world.vault_name} (access policy missing for the "
                    "app: it needs certificates get permission)")
    event = world.raise_event(NEW_VERSION, version_of(v2))  # e.g. Event Grid redelivering
    record = world.record_for(event)
    assert record["status"] == "done"
    assert [(s["outcome"], s["message"]) for s in record["services"]] == [(
        "refused", f"Forbidden: reading certificate '{CERT}' from {world.vault_url}: {expected}",
    )]
    assert len(world.delivered(event)) == 1  # acknowledged: no redelivery loop
    assert [d["outcome"] for d in world.deliveries() if event in d["event_ids"]] == ["Succeeded"]
    assert expected in _status_problem(world)
