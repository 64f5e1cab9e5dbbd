"""Settings: defaults, and every refusal names the setting (table-driven, no I/O)."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.domain.errors import ConfigError

SUB = "00000000-0000-0000-0000-000000000001"
BASE = {"ROTATION_SUBSCRIPTIONS": SUB, "ROTATION_STORAGE_URL": "https://st.blob.core.windows.net/"}


def test_defaults_are_the_production_ones() -> None:
    s = Settings.from_env(BASE)
    assert s.subscriptions == (SUB,)
    assert s.storage_url == "https://st.blob.core.windows.net"
    assert (s.operation_wait_seconds, s.event_wait_seconds) == (900.0, 0.0)
    assert (s.wait_seconds, s.follow_seconds) == (30.0, 30.0)
    assert s.verify_challenge_resource and s.renew_on_near_expiry and not s.rollback


@pytest.mark.parametrize(
    ("extra", "value"),
    [
        ({"EVENT_WAIT_SECONDS": "20"}, ("event_wait_seconds", 20.0)),
        ({"FOLLOW_POLL_SECONDS": "1"}, ("follow_seconds", 1.0)),
        ({"EVENT_WAIT_SECONDS": "1500"}, ("event_wait_seconds", 1500.0)),
        ({"OPERATION_WAIT_SECONDS": "1500"}, ("operation_wait_seconds", 1500.0)),
        ({"ROTATION_ROLLBACK": "yes"}, ("rollback", True)),
        ({"SERVICES_PER_MESSAGE": "1"}, ("services_per_message", 1)),
        ({"SERVICES_PER_MESSAGE": "100"}, ("services_per_message", 100)),
        ({"WEBSITE_OWNER_NAME": f"{SUB}+rg-westeuropewebspace", "ROTATION_SUBSCRIPTIONS": ""},
         ("subscriptions", (SUB,))),
    ],
)
def test_accepted(extra: dict[str, str], value: tuple[str, object]) -> None:
    assert getattr(Settings.from_env({**BASE, **extra}), value[0]) == value[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # Under host.json's 30 min functionTimeout, like OPERATION_WAIT_SECONDS.
        ({"EVENT_WAIT_SECONDS": "1501"}, "EVENT_WAIT_SECONDS=1501 is out of range [0.0, 1500.0]"),
        # A batch message holds at most 100 service ids (shared.domain.messages.MAX_SERVICES).
        ({"SERVICES_PER_MESSAGE": "0"}, "SERVICES_PER_MESSAGE=0 is out of range [1, 100]"),
        ({"SERVICES_PER_MESSAGE": "101"}, "SERVICES_PER_MESSAGE=101 is out of range [1, 100]"),
        ({"SERVICES_PER_MESSAGE": "2.5"}, "SERVICES_PER_MESSAGE=2.5 is not a whole number"),
        # host.json functionTimeout is 30 min: following longer would be killed mid-way.
        ({"OPERATION_WAIT_SECONDS": "3600"},
         "OPERATION_WAIT_SECONDS=3600 is out of range [0.0, 1500.0]"),
        ({"EVENT_WAIT_SECONDS": "soon"}, "EVENT_WAIT_SECONDS='soon' is not a number"),
        ({"ROTATION_ROLLBACK": "maybe"}, "ROTATION_ROLLBACK='maybe' is not a boolean"),
        ({"ROTATION_SUBSCRIPTIONS": ""}, "ROTATION_SUBSCRIPTIONS is not set"),
        ({"ROTATION_SUBSCRIPTIONS": "prod"}, "ROTATION_SUBSCRIPTIONS holds non-GUID values: prod"),
        ({"ROTATION_STORAGE_URL": "http://st"}, "ROTATION_STORAGE_URL (or AzureWebJobsStorage"),
        ({"NOTIFY_WEBHOOK_FORMAT": "irc"}, "NOTIFY_WEBHOOK_FORMAT='irc' is not supported"),
        ({"NOTIFY_WEBHOOK_URL": "http://hooks"}, "NOTIFY_WEBHOOK_URL must be an https URL"),
        # The host reads the schedules (%SETTING% expressions); their shape is checked here.
        ({"RECONCILE_SCHEDULE": "hourly"},
         "RECONCILE_SCHEDULE='hourly' is not an NCRONTAB schedule (six fields"),
        ({"FOLLOW_SCHEDULE": "*/5 * * * *"},  # five-field cron: NCRONTAB starts with seconds
         "FOLLOW_SCHEDULE='*/5 * * * *' is not an NCRONTAB schedule"),
    ],
)
def test_refused_with_the_setting_named(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**BASE, **extra})
    assert str(err.value).startswith(message), str(err.value)
