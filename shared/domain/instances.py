"""What a cloud service's role-instance statuses mean for a rotation that Azure applied.

The instance view's ``roleInstance.statusesSummary`` counts instances per status code.
Azure's recordings and the spec's examples show a healthy service as
``ProvisioningState/succeeded``, ``PowerState/started`` and ``RoleState/RoleStateStarted``.
The other role states come from the CSES states page (``cloud-services-extended-support/
states.md``: Started, Stopping, Stopped, Unknown, Starting, Busy, Destroyed), written in the
recorded ``RoleState/RoleState<State>`` form. The page defines Busy as "isn't responding",
but instances report it while they start.

Role instances keep moving after the operation has succeeded: they are Busy or Starting for
a while after an update. So the verdict is one of:

* ``RUNNING``: every instance is provisioned and started;
* ``STOPPED``: the service is powered off (``PowerState/stopped``, ``RoleStateStopped``).
  The model is updated and the certificate loads when the instances start. This is not a
  failure;
* ``WAITING``: something is still moving (Busy, Starting, Unknown, Stopping, an instance
  still ``ProvisioningState/updating``, or a code this module does not know). It is not a
  failure until the caller's settle budget ends, and even then it is never a reason to roll
  back: slowness is not failure;
* ``FAILED``: an instance reports a failure state (``ProvisioningState/failed…``, or
  ``RoleStateDestroyed``). This is the only verdict, besides a platform ``Failed``, that
  may lead to a rollback.

Pure: the executor reads the instance view and decides what to do with the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum


class Settle(Enum):
    RUNNING = "running"
    STOPPED = "stopped"
    WAITING = "waiting"
    FAILED = "failed"


HEALTHY = frozenset(
    {"provisioningstate/succeeded", "powerstate/started", "rolestate/rolestatestarted"}
)
STOPPED = frozenset({"powerstate/stopped", "rolestate/rolestatestopped"})
FAILED_ROLE_STATES = frozenset({"rolestate/rolestatedestroyed"})


@dataclass(frozen=True)
class Verdict:
    settle: Settle
    codes: Mapping[str, int]  # the codes that decided it, with their counts (empty: running)

    def describe(self) -> str:
        """``RoleState/RoleStateBusy: 2, …``: the deciding codes and counts, for messages."""
        return ", ".join(f"{code}: {count}" for code, count in self.codes.items())


def judge(summary: Mapping[str, int]) -> Verdict:
    """The verdict on ``statusesSummary`` (code -> count), in the order of the rules above."""
    counted = {code: count for code, count in summary.items() if count}
    failed = {c: n for c, n in counted.items() if _failed(c.lower())}
    if failed:
        return Verdict(Settle.FAILED, failed)
    moving = {c: n for c, n in counted.items() if c.lower() not in HEALTHY | STOPPED}
    if moving:
        return Verdict(Settle.WAITING, moving)
    stopped = {c: n for c, n in counted.items() if c.lower() in STOPPED}
    if stopped:
        return Verdict(Settle.STOPPED, stopped)
    return Verdict(Settle.RUNNING, {})


def _failed(code: str) -> bool:
    return code.startswith("provisioningstate/failed") or code in FAILED_ROLE_STATES
