"""The local host's queue settings and polling backoff (emulators/queue_trigger.py): the
extension's defaults, as ``QueuesOptions``, ``QueuePollingIntervals`` and
``RandomizedExponentialBackoffStrategy`` in azure-sdk-for-net define them."""

from __future__ import annotations

import itertools
import os

import pytest

from emulators.queue_trigger import Backoff, QueueConfigError, QueuesOptions, parse_timespan


def test_defaults_are_the_extensions() -> None:
    options = QueuesOptions.from_host_json({"version": "2.0"})
    assert options == QueuesOptions(
        max_polling_interval=60.0, visibility_timeout=0.0, batch_size=16,
        new_batch_threshold=8 * (os.cpu_count() or 1), max_dequeue_count=5,
        message_encoding="base64",
    )


def test_new_batch_threshold_follows_the_batch_size_unless_set() -> None:
    cpus = os.cpu_count() or 1
    assert QueuesOptions.from_host_json(
        {"extensions": {"queues": {"batchSize": 5}}}).new_batch_threshold == 2 * cpus
    assert QueuesOptions.from_host_json(
        {"extensions": {"queues": {"batchSize": 5, "newBatchThreshold": 0}}}
    ).new_batch_threshold == 0


@pytest.mark.parametrize(("text", "seconds"), [
    ("00:01:00", 60.0), ("00:00:00.100", 0.1), ("1.02:00:30", 93630.0), ("00:00:00.5", 0.5),
])
def test_timespans(text: str, seconds: float) -> None:
    assert parse_timespan(text, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["60", "1:00", 2000, "00:00:00,5"])
def test_bad_timespans_are_refused(bad: object) -> None:
    with pytest.raises(QueueConfigError, match="is not a TimeSpan"):
        parse_timespan(bad, "maxPollingInterval")


def test_base64_round_trip_and_refusal() -> None:
    options = QueuesOptions()
    assert options.decode(options.encode(b'{"a": 1}')) == b'{"a": 1}'
    with pytest.raises(ValueError, match="not base64"):
        options.decode("not base64!")
    plain = QueuesOptions(message_encoding="none")
    assert plain.encode(b"text") == "text" and plain.decode("text") == b"text"


def test_backoff_grows_about_twofold_to_the_maximum_and_resets_on_a_message() -> None:
    backoff = Backoff(2.0)
    delays = [backoff.next(False) for _ in range(8)]
    assert delays[0] == pytest.approx(0.1)  # minimum: the first empty poll
    for previous, current in itertools.pairwise(delays[1:5]):
        assert 1.3 < (current - 0.1) / (previous - 0.1) < 3.0  # x2 with +-20 % jitter
    assert delays[-1] == 2.0 == max(delays)
    assert backoff.next(True) == pytest.approx(0.1)  # a message found: minimum again
    assert 0.1 < backoff.next(False) < 0.25
