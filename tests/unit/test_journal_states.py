"""The journal's state machine, without I/O: one test per transition, the ones that do
not exist, where a found entry starts, and the rollback decision.

The expected rows are written out here rather than read from the table, so a change to
``TRANSITIONS`` has to change this specification too.
"""

from __future__ import annotations

import itertools

import pytest

from shared.domain.errors import PlatformRejected
from shared.domain.journal import (
    NEXT_STAGE,
    TRANSITIONS,
    OnFailure,
    Pending,
    Seen,
    Stage,
    Step,
    holds,
    lacks,
    next_step,
    on_failure,
    stage_of,
    verify,
)
from shared.domain.model import CloudServiceSnapshot, SecretGroup

TP, OTHER = "AB" * 20, "CD" * 20

SPEC = [
    # stage, what was seen, what is done: why
    (Stage.SENT, Seen.RUNNING, Step.COME_BACK),  # no token, the service still updating
    (Stage.SENT, Seen.UNTOUCHED, Step.LET_GO),  # the PUT never landed: plan again
    (Stage.SENT, Seen.UNTOUCHED_TOO_SOON, Step.LOOK_AGAIN),  # Azure may still take it
    (Stage.SENT, Seen.LANDED, Step.VERIFY),  # an ambiguous PUT adopted by the state it left
    (Stage.SENT, Seen.LANDED_MANUAL, Step.WALK),
    (Stage.SENT, Seen.FAILED, Step.FAILURE),
    (Stage.ACCEPTED, Seen.RUNNING, Step.COME_BACK),  # a follow look: asked again later
    (Stage.ACCEPTED, Seen.LANDED, Step.VERIFY),
    (Stage.ACCEPTED, Seen.LANDED_MANUAL, Step.WALK),  # Manual mode: walk the domains
    (Stage.ACCEPTED, Seen.FAILED, Step.FAILURE),
    (Stage.WALKING, Seen.RUNNING, Step.COME_BACK),  # the journal says where to go on
    (Stage.WALKING, Seen.WALKED, Step.VERIFY),
    (Stage.WALKING, Seen.FAILED, Step.FAILURE),  # the walk stops at the failed domain
    (Stage.VERIFYING, Seen.HOLDS, Step.SETTLE),
    (Stage.VERIFYING, Seen.FAILED, Step.FAILURE),  # ended Failed, or lacks the model
    (Stage.SETTLING, Seen.RUNNING, Step.COME_BACK),  # instances looked at again later
    (Stage.SETTLING, Seen.SETTLED, Step.FINISH),
    (Stage.SETTLING, Seen.STOPPED, Step.FINISH),  # updated; loads when started
    (Stage.SETTLING, Seen.SLOW, Step.FINISH_SLOW),  # reported, never rolled back
    (Stage.SETTLING, Seen.FAILED, Step.FAILURE),  # instances failed
]


@pytest.mark.parametrize(("stage", "seen", "step"), SPEC, ids=lambda v: str(v))
def test_transition(stage: Stage, seen: Seen, step: Step) -> None:
    assert next_step(stage, seen) is step


def test_the_table_is_exactly_the_specification() -> None:
    assert {(stage, seen): step for stage, seen, step in SPEC} == TRANSITIONS


IMPOSSIBLE = sorted(set(itertools.product(Stage, Seen)) - {(s, o) for s, o, _ in SPEC})


@pytest.mark.parametrize(("stage", "seen"), IMPOSSIBLE, ids=lambda v: str(v))
def test_an_observation_a_stage_cannot_make_is_a_bug(stage: Stage, seen: Seen) -> None:
    with pytest.raises(ValueError, match=f"no transition from {stage} on {seen}"):
        next_step(stage, seen)


def test_every_step_either_ends_the_follow_or_leads_to_a_stage() -> None:
    going_on = {Step.WALK: Stage.WALKING, Step.VERIFY: Stage.VERIFYING,
                Step.SETTLE: Stage.SETTLING}
    assert going_on == NEXT_STAGE
    ending = {Step.COME_BACK, Step.LET_GO, Step.LOOK_AGAIN, Step.FINISH, Step.FINISH_SLOW,
              Step.FAILURE}
    assert ending | set(going_on) == set(Step) and not ending & set(going_on)


def test_every_stage_can_end_or_go_on() -> None:
    """No stage is a trap: each has a way out on every path the driver can take."""
    for stage in Stage:
        steps = {step for (s, _), step in TRANSITIONS.items() if s is stage}
        assert Step.FAILURE in steps
        assert steps - {Step.FAILURE}


def entry(**changes: object) -> Pending:
    base = Pending(
        run_id="r1", kind="update", vault_id="kv", certificate="web-tls", version="v2",
        package_url="https://sa/c/p.cspkg", expect_thumbprints=(TP,),
        expect_secrets=("https://kv.vault.azure.net/secrets/web-tls/v2",),
        previous_configuration="<x/>", previous_secrets=(), submitted="2026-12-03T00:00:00",
    )
    return Pending(**{**base.__dict__, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "stage"),
    [
        ({}, Stage.SENT),  # the sender died before Azure answered, or the answer was lost
        ({"unconfirmed": "500 after 44 s"}, Stage.SENT),
        ({"continuation_token": "t"}, Stage.ACCEPTED),
        ({"continuation_token": "t", "settling_since": "2026-12-03T00:01:00"},
         Stage.ACCEPTED),  # verified again before its instances are judged
        ({"next_update_domain": 0}, Stage.WALKING),
        ({"next_update_domain": 2, "walking": 2, "continuation_token": "w"}, Stage.WALKING),
        ({"next_update_domain": 3, "settling_since": "2026-12-03T00:01:00"}, Stage.WALKING),
    ],
)
def test_where_a_found_entry_starts(fields: dict[str, object], stage: Stage) -> None:
    assert stage_of(entry(**fields)) is stage


@pytest.mark.parametrize(
    ("kind", "enabled", "code", "busy", "decision"),
    [
        ("update", True, "Failed", False, OnFailure.ROLL_BACK),
        ("update", True, "RoleInstancesFailed", False, OnFailure.ROLL_BACK),
        ("update", True, "Failed", True, OnFailure.FAIL_BUSY),  # someone else's operation
        ("update", False, "Failed", False, OnFailure.FAIL),  # ROTATION_ROLLBACK off
        ("update", True, "VerificationFailed", False, OnFailure.FAIL),  # would undo theirs
        ("rollback", True, "Failed", False, OnFailure.FAIL),  # never roll back a rollback
    ],
)
def test_what_a_failed_write_leads_to(
    kind: str, enabled: bool, code: str, busy: bool, decision: OnFailure
) -> None:
    assert on_failure(kind, enabled, code, frozenset({"VerificationFailed"}), busy) is decision


CSCFG = (
    '<ServiceConfiguration xmlns="http://schemas.microsoft.com/ServiceHosting/2008/10/'
    'ServiceConfiguration"><Role name="Web"><Instances count="1"/><Certificates>'
    '<Certificate name="SslCert" thumbprint="{tp}" thumbprintAlgorithm="sha1"/>'
    "</Certificates></Role></ServiceConfiguration>"
)


def snapshot(tp: str, state: str = "Succeeded", secret_version: str = "v2") -> CloudServiceSnapshot:
    url = f"https://kv.vault.azure.net/secrets/web-tls/{secret_version}"
    return CloudServiceSnapshot(
        id="/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/cloudServices/cs1",
        name="cs1", location="westeurope", configuration=CSCFG.format(tp=tp),
        secrets=(SecretGroup("kv", (url,)),), tags={}, provisioning_state=state,
        upgrade_mode="Auto",
    )


@pytest.mark.parametrize(
    ("service", "missing"),
    [
        (snapshot(TP.lower()), None),  # thumbprints compare upper-cased
        (snapshot(OTHER), f"does not hold thumbprint(s) ['{TP}']"),
        (snapshot(TP, secret_version="v1"), "osProfile lacks"),
    ],
)
def test_whether_a_service_holds_a_write(service: CloudServiceSnapshot, missing: str | None
                                         ) -> None:
    found = lacks(entry(), service)
    assert (found is None) if missing is None else (missing in (found or ""))
    assert holds(entry(), service) is (missing is None)


def test_a_service_that_ended_failed_does_not_verify_even_holding_the_model() -> None:
    with pytest.raises(PlatformRejected) as failed:
        verify(entry(), snapshot(TP, state="Failed"))
    assert failed.value.code == "Failed"
    with pytest.raises(PlatformRejected) as lacking:
        verify(entry(), snapshot(OTHER))
    assert lacking.value.code == "VerificationFailed"
