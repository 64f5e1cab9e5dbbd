"""The order of the one write: SAS, then journal, then PUT (in-memory fakes, no I/O).

A failure before the PUT (the SAS step: storage, a refused container) must leave no
journal entry, or a later invocation would "finish" a write that never existed and
overwrite the service's true outcome with "the update never reached Azure". A PUT that
may have landed (a 5xx, a lost answer) must keep it; one refused with an answer must not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from shared.config import Settings
from shared.domain.errors import PlatformRejected, TransientError, Unconfirmed
from shared.domain.journal import Pending
from shared.domain.packages import PackageRef
from shared.domain.runs import Execution
from shared.rotation.writing import Context, submit
from tests.unit.test_planner import NOW, SUB, cscfg, kv1, service

SETTINGS = Settings.from_env(
    {
        "ROTATION_SUBSCRIPTIONS": SUB,
        "ROTATION_STORAGE_URL": "https://app.blob.core.windows.net",
        "PACKAGE_CONTAINERS": "https://pkgs.blob.core.windows.net/packages",
    }
)
SERVICE = service(cscfg(), kv1())


@dataclass
class Steps:
    """Records every step the executor takes, in order, across the fakes."""

    taken: list[str] = field(default_factory=list)
    sas_fails: bool = False
    put_fails: Exception | None = None


@dataclass
class FakeStorage:
    steps: Steps

    def package_sas(self, package: PackageRef, hours: float, now: datetime) -> tuple[str, Any]:
        self.steps.taken.append(f"sas {package.url}")
        if self.steps.sas_fails:
            raise TransientError("getting a user delegation key: connection failed")
        return f"{package.url}?sig=x", now + timedelta(hours=hours)


@dataclass
class FakeLease:
    steps: Steps
    pending: Pending | None = None

    def write(self, entry: Pending | None) -> None:
        self.steps.taken.append("journal" if entry is not None else "journal cleared")
        self.pending = entry

    def renew(self) -> None:
        pass


@dataclass
class FakePoller:
    def continuation_token(self) -> str:
        return "token"

    def polling_method(self) -> Any:
        raise AttributeError


@dataclass
class FakeCompute:
    steps: Steps

    def begin_update(self, *_: Any, poll: bool = True) -> FakePoller:
        self.steps.taken.append("put")
        if self.steps.put_fails is not None:
            raise self.steps.put_fails
        return FakePoller()


def context(steps: Steps, lease: FakeLease) -> Context:
    return Context(
        SERVICE.id, SERVICE.name, "Auto", FakeCompute(steps), FakeStorage(steps),  # type: ignore[arg-type]
        SETTINGS, lambda: NOW, lease, 0.0,  # type: ignore[arg-type]
    )


def entry() -> Pending:
    return Pending(
        run_id="run", kind="update", vault_id="kv", certificate="web-tls", version="v2",
        package_url=str(SERVICE.package_url), expect_thumbprints=(), expect_secrets=(),
        previous_configuration=SERVICE.configuration, previous_secrets=SERVICE.secrets,
        submitted=NOW.isoformat(),
    )


def test_the_sas_is_minted_before_the_intent_is_journaled_and_the_put_sent() -> None:
    steps = Steps()
    lease = FakeLease(steps)
    written, _ = submit(context(steps, lease), SERVICE, entry(), "cfg", (), Execution())
    assert steps.taken == [f"sas {SERVICE.package_url}", "journal", "put", "journal"]
    assert written.continuation_token == "token"
    assert "sig=" not in str(written.to_json())  # the SAS is never journaled


def test_a_failed_sas_step_leaves_no_journal_and_keeps_its_reason() -> None:
    steps = Steps(sas_fails=True)
    lease = FakeLease(steps)
    with pytest.raises(TransientError, match="user delegation key"):
        submit(context(steps, lease), SERVICE, entry(), "cfg", (), Execution())
    assert steps.taken == [f"sas {SERVICE.package_url}"]
    assert lease.pending is None


def test_a_put_that_may_have_landed_keeps_the_journal_with_what_azure_answered() -> None:
    answer = "updating cloud service cs1: Azure answered 500 InternalOperationError: The " \
        "operation has timed out.; it may have been applied"
    steps = Steps(put_fails=Unconfirmed(answer))
    lease = FakeLease(steps)
    run = Execution()
    written, poller = submit(context(steps, lease), SERVICE, entry(), "cfg", (), run)
    assert poller is None  # followed by the service's state, not by a token
    assert steps.taken == [f"sas {SERVICE.package_url}", "journal", "put", "journal"]
    assert lease.pending == written
    assert written.continuation_token is None and written.unconfirmed == answer
    assert run.status == "updating"


@pytest.mark.parametrize(
    "refusal",
    [
        PlatformRejected("InvalidParameter", "The value of parameter packageUrl is invalid."),
        TransientError("updating cloud service cs1: 409 Conflict: another operation"),
    ],
)
def test_a_put_refused_with_an_answer_clears_the_journal(refusal: Exception) -> None:
    steps = Steps(put_fails=refusal)
    lease = FakeLease(steps)
    with pytest.raises(type(refusal)):
        submit(context(steps, lease), SERVICE, entry(), "cfg", (), Execution())
    assert steps.taken[-2:] == ["put", "journal cleared"]
    assert lease.pending is None
