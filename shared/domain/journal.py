"""The per-service journal: what write is in flight on a cloud service, and how to undo it.

An update of a cloud service can outlive the invocation that sent it (the SDK follows it
for minutes; Functions time out, hosts recycle, processes die). So before the PUT the
executor writes an entry into the service's lock blob (under the lease), and adds the
operation's continuation token as soon as Azure accepted the PUT. Whoever next holds the
lease (the next event, the reconcile timer, ``GET /api/rotations/{id}``) finds the entry
and finishes the work: follows the same operation instead of sending a second PUT, walks
the remaining update domains of a ``Manual`` service, verifies, and records the outcome in
the run that started it. An entry without a token means nobody heard Azure accept the PUT
(the process died between sending it and hearing back, or the answer was lost, timed out
or was a 5xx: ``unconfirmed`` says which): the service itself then tells whether the PUT
landed, and only a service shown untouched lets the entry go.

The entry also holds what the service ran before (cscfg and ``osProfile.secrets``), which
is what ``ROTATION_ROLLBACK`` restores.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.domain import cscfg
from shared.domain.errors import PlatformRejected
from shared.domain.model import CloudServiceSnapshot, SecretGroup


@dataclass(frozen=True)
class Pending:
    run_id: str
    kind: str  # update: the rotation; rollback: restoring ``previous_*`` after a failure
    vault_id: str
    certificate: str
    version: str  # the certificate version being rolled out
    package_url: str  # blob URL without SAS; a fresh SAS is minted for every PUT
    expect_thumbprints: tuple[str, ...]  # what the cscfg must hold when the write is done
    expect_secrets: tuple[str, ...]  # secret URLs osProfile must hold when it is done
    previous_configuration: str
    previous_secrets: tuple[SecretGroup, ...]
    submitted: str  # ISO time the PUT was sent
    operation_id: str | None = None
    continuation_token: str | None = None  # of the PUT or of the current domain walk
    walking: int | None = None  # Manual mode: the update domain being walked (token is its)
    next_update_domain: int | None = None  # Manual mode: None until the PUT succeeded
    failure: str | None = None  # rollback: the platform error that caused it
    unconfirmed: str | None = None  # why the PUT has no token: what Azure answered, if anything
    settling_since: str | None = None  # ISO time the model was seen applied: instances settle

    def to_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "kind": self.kind,
            "vault": self.vault_id,
            "certificate": self.certificate,
            "version": self.version,
            "package": self.package_url,
            "expectThumbprints": list(self.expect_thumbprints),
            "expectSecrets": list(self.expect_secrets),
            "previousConfiguration": self.previous_configuration,
            "previousSecrets": [
                {"sourceVault": g.source_vault_id, "certificateUrls": list(g.certificate_urls)}
                for g in self.previous_secrets
            ],
            "submitted": self.submitted,
            "operationId": self.operation_id,
            "continuationToken": self.continuation_token,
            "walking": self.walking,
            "nextUpdateDomain": self.next_update_domain,
            "failure": self.failure,
            "unconfirmed": self.unconfirmed,
            "settlingSince": self.settling_since,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Pending:
        return cls(
            run_id=str(data["runId"]),
            kind=str(data["kind"]),
            vault_id=str(data["vault"]),
            certificate=str(data["certificate"]),
            version=str(data["version"]),
            package_url=str(data["package"]),
            expect_thumbprints=tuple(data["expectThumbprints"]),
            expect_secrets=tuple(data["expectSecrets"]),
            previous_configuration=str(data["previousConfiguration"]),
            previous_secrets=tuple(
                SecretGroup(g["sourceVault"], tuple(g["certificateUrls"]))
                for g in data["previousSecrets"]
            ),
            submitted=str(data["submitted"]),
            operation_id=data.get("operationId"),
            continuation_token=data.get("continuationToken"),
            walking=data.get("walking"),
            next_update_domain=data.get("nextUpdateDomain"),
            failure=data.get("failure"),
            unconfirmed=data.get("unconfirmed"),
            settling_since=data.get("settlingSince"),
        )


# -- the journal's state machine -----------------------------------------------------------
#
# Theory of operation. A journaled write moves through stages; at each the driver
# (shared.rotation.follow) makes one observation with I/O, asks :func:`next_step` what
# that observation means, and does it. Every transition is a row of ``TRANSITIONS``; a
# pair that is not a row is a bug and raises. The driver stops at every COME_BACK: the
# journal keeps the entry and the next holder of the service's lease (a follow look, the
# sweep, the next run) starts again from the stage the entry says (:func:`stage_of`).
#
#   SENT ──(running)──────────────▶ come back        ACCEPTED ──(running)──▶ come back
#     │──(untouched, final look)──▶ let go: re-plan     │──(landed)───────▶ VERIFYING
#     │──(untouched, too soon)────▶ look again          │──(landed, Manual)▶ WALKING
#     │──(landed)─────────────────▶ VERIFYING           └──(failed)───────▶ failure
#     │──(landed, Manual)─────────▶ WALKING
#     └──(failed)─────────────────▶ failure           WALKING ──(running)──▶ come back
#                                                        │──(walked)────────▶ VERIFYING
#   VERIFYING ──(holds)──▶ SETTLING                      └──(failed)────────▶ failure
#     └──(failed)───────▶ failure
#                                                     failure: :func:`on_failure`
#   SETTLING ──(settling)──▶ come back                  (fail, or roll back: a rollback
#     │──(settled | stopped)──▶ finish                   entry starts again at ACCEPTED)
#     │──(slow: budget spent)─▶ finish failed, not rolled back
#     └──(instances failed)───▶ failure


class Stage(StrEnum):
    """Where a journaled write stands."""

    SENT = "sent"  # the PUT went out; nobody heard Azure accept it (no token)
    ACCEPTED = "accepted"  # Azure accepted it: its operation is followed by token
    WALKING = "walking"  # Manual mode: the update domains are walked in order
    VERIFYING = "verifying"  # the operation ended: does the service hold the model?
    SETTLING = "settling"  # it does: the role instances settle


class Seen(StrEnum):
    """What the driver observed at a stage (one observation per step)."""

    RUNNING = "running"  # the operation, walk or settling goes on past this invocation
    LANDED = "landed"  # the operation ended, the service not Failed
    LANDED_MANUAL = "landed-manual"  # ... and its upgrade mode is Manual: walk next
    UNTOUCHED = "untouched"  # no token, ended, and the service does not hold the model
    UNTOUCHED_TOO_SOON = "untouched-too-soon"  # ... right after an unconfirmed answer
    WALKED = "walked"  # every update domain was walked
    HOLDS = "holds"  # the service holds what the write put there
    SETTLED = "settled"  # role instances started
    STOPPED = "stopped"  # role instances stopped: updated, loads when started
    SLOW = "slow"  # the settle budget is spent with instances still unsettled
    FAILED = "failed"  # Azure reports the write failed (or its instances did)


class Step(StrEnum):
    """What the driver does next."""

    COME_BACK = "come-back"  # record ``updating``; the journal stays for the next holder
    LET_GO = "let-go"  # the write never landed: clear the journal, plan again
    LOOK_AGAIN = "look-again"  # it may still land: keep the journal, look again later
    WALK = "walk"  # journal the walk's start, walk the update domains
    VERIFY = "verify"
    SETTLE = "settle"  # journal when the model was first seen applied, judge instances
    FINISH = "finish"  # clear the journal; succeeded (or rolled back)
    FINISH_SLOW = "finish-slow"  # clear it; failed without a rollback: slow is no failure
    FAILURE = "failure"  # see :func:`on_failure`


TRANSITIONS: dict[tuple[Stage, Seen], Step] = {
    (Stage.SENT, Seen.RUNNING): Step.COME_BACK,
    (Stage.SENT, Seen.UNTOUCHED): Step.LET_GO,
    (Stage.SENT, Seen.UNTOUCHED_TOO_SOON): Step.LOOK_AGAIN,
    (Stage.SENT, Seen.LANDED): Step.VERIFY,
    (Stage.SENT, Seen.LANDED_MANUAL): Step.WALK,
    (Stage.SENT, Seen.FAILED): Step.FAILURE,
    (Stage.ACCEPTED, Seen.RUNNING): Step.COME_BACK,
    (Stage.ACCEPTED, Seen.LANDED): Step.VERIFY,
    (Stage.ACCEPTED, Seen.LANDED_MANUAL): Step.WALK,
    (Stage.ACCEPTED, Seen.FAILED): Step.FAILURE,
    (Stage.WALKING, Seen.RUNNING): Step.COME_BACK,
    (Stage.WALKING, Seen.WALKED): Step.VERIFY,
    (Stage.WALKING, Seen.FAILED): Step.FAILURE,
    (Stage.VERIFYING, Seen.HOLDS): Step.SETTLE,
    (Stage.VERIFYING, Seen.FAILED): Step.FAILURE,
    (Stage.SETTLING, Seen.RUNNING): Step.COME_BACK,
    (Stage.SETTLING, Seen.SETTLED): Step.FINISH,
    (Stage.SETTLING, Seen.STOPPED): Step.FINISH,
    (Stage.SETTLING, Seen.SLOW): Step.FINISH_SLOW,
    (Stage.SETTLING, Seen.FAILED): Step.FAILURE,
}

# Where a step leads, for the steps that go on within the invocation.
NEXT_STAGE = {Step.WALK: Stage.WALKING, Step.VERIFY: Stage.VERIFYING, Step.SETTLE: Stage.SETTLING}


def next_step(stage: Stage, seen: Seen) -> Step:
    """The transition table, looked up; an observation a stage cannot make is a bug."""
    try:
        return TRANSITIONS[stage, seen]
    except KeyError:
        raise ValueError(f"no transition from {stage} on {seen}") from None


def stage_of(entry: Pending) -> Stage:
    """The stage a journal entry found by a new holder of the lease is in.

    An entry whose model was seen applied (``settling_since``) is verified again before
    its instances are judged: another write may have come in between.
    """
    if entry.next_update_domain is not None:
        return Stage.WALKING
    return Stage.ACCEPTED if entry.continuation_token else Stage.SENT


class OnFailure(StrEnum):
    """What a failed write leads to (reason constants for the log and the record)."""

    FAIL = "fail"  # rollback off, a rollback failing, or a failure no rollback can mend
    FAIL_BUSY = "fail-busy"  # a rollback would be right, but the service is busy again
    ROLL_BACK = "roll-back"  # put the previous model back, the same way


def on_failure(
    kind: str, rollback_enabled: bool, code: str, no_rollback: frozenset[str], busy: bool
) -> OnFailure:
    """Whether a failed write is rolled back (``ROTATION_ROLLBACK``).

    ``no_rollback``: failure codes where the write succeeded but the service does not hold
    it (someone else's write came after ours; a rollback would undo theirs). ``busy``: the
    service is in an operation again (only asked when it matters: the driver reads the
    service for it last).
    """
    if kind == "rollback" or not rollback_enabled or code in no_rollback:
        return OnFailure.FAIL
    return OnFailure.FAIL_BUSY if busy else OnFailure.ROLL_BACK


def wants_rollback(kind: str, rollback_enabled: bool, code: str, no_rollback: frozenset[str]
                   ) -> bool:
    """Whether :func:`on_failure` could roll back, before the service is read for it."""
    return on_failure(kind, rollback_enabled, code, no_rollback, busy=False) is OnFailure.ROLL_BACK


# -- does the service hold the write? (pure checks on what Azure reports) --------------


def holds(entry: Pending, service: CloudServiceSnapshot) -> bool:
    try:
        verify(entry, service)
    except PlatformRejected:
        return False
    return True


def lacks(entry: Pending, service: CloudServiceSnapshot) -> str | None:
    """What of the write's model the service does not hold (None: it holds all of it)."""
    deployed = set(thumbprints_by_role(service).values())
    missing = set(entry.expect_thumbprints) - deployed
    if missing:
        return f"{service.name} does not hold thumbprint(s) {sorted(missing)}"
    urls = {u.lower() for g in service.secrets for u in g.certificate_urls}
    lacking = [u for u in entry.expect_secrets if u.lower() not in urls]
    if lacking:
        return f"{service.name} osProfile lacks {lacking}"
    return None


def verify(entry: Pending, final: CloudServiceSnapshot) -> None:
    """The service as Azure now reports it must hold what the write put there."""
    if (final.provisioning_state or "").lower() != "succeeded":
        raise PlatformRejected(
            final.provisioning_state or "Unknown",
            f"{final.name} ended in state {final.provisioning_state}",
        )
    lacking = lacks(entry, final)
    if lacking:
        raise PlatformRejected("VerificationFailed", lacking)


def thumbprints_by_role(service: CloudServiceSnapshot) -> dict[str, str]:
    return {
        f"{c.role}/{c.name}": c.thumbprint.upper()
        for c in cscfg.parse(service.configuration).certificates
    }
