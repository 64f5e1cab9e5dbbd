"""Smoke test of ``make bench``: every measurement runs on the session's stack with tiny
sizes and yields the JSON shape docs/benchmarks.md documents. Figures are not asserted: the bench
reports them, and this machine is shared."""

from __future__ import annotations

import json

from emulators import bench
from tests.conftest import LocalStack

SUMMARY = {"median", "p95", "min", "max"}


def test_bench_runs_every_scenario_with_tiny_sizes(stack: LocalStack) -> None:
    options = bench.Options(
        rotations=2, latency_ms=1, sizes=(3,), cold_starts=1, fanout=(2,), duplicates=1,
        hosts=(1,),  # more instances would take the session's messages (and their logs)
    )
    result = bench.run(stack.env, stack.folder, options, page_size=2)  # conftest's page size

    json.dumps(result)  # plain JSON all the way down
    assert set(result) == {
        "machine",
        "settings",
        "rotation",
        "cold_start",
        "scale",
        "fanout",
        "memory",
        "total_s",
    }
    assert set(result["rotation"]) == {"first_event", "latency_0ms", "latency_1ms"}
    for phase in ("latency_0ms", "latency_1ms"):
        rotations = result["rotation"][phase]
        assert rotations["rotations"] == 2
        for figure in (
            "event_to_ack_s", "event_to_put_s", "event_to_succeeded_s", "event_to_done_s"
        ):
            assert set(rotations[figure]) == SUMMARY
        calls = rotations["calls_per_rotation"]
        assert calls["arm PUT cloud service"]["median"] == 1  # one PUT per rotation
        assert all({"median", "max", "minimum", "why"} <= set(c) for c in calls.values())

    [fan] = result["fanout"]
    assert set(fan) == {"services", "in_delivery", "queue_1_hosts"}
    assert fan["services"] == 2
    assert fan["in_delivery"]["outcomes"] == {"rotated": 2}
    queued = fan["queue_1_hosts"]
    assert set(queued["ack_s"]) == SUMMARY
    assert queued["deliveries"] == 2  # the event and its duplicate
    assert queued["puts"] == 2 and queued["outcomes"] == {"rotated": 2}
    assert queued["runs"] == 1  # two services fit in one message

    [scale] = result["scale"]
    assert scale["services"] == 3
    assert scale["discovery"]["matched"] == 1  # cert0 of the scale vault: service 0 only
    assert scale["discovery"]["minimum"] == {"arm GET list cloud services": 2}
    assert set(scale["reconcile"]) == {"seconds", "outcomes", "calls", "minimum"}
    assert scale["engine_peak_rss_mb"] > 0

    cold = result["cold_start"]
    assert cold["import_function_app"]["runs"] == 1
    assert {"host_ready_s", "first_http_s", "second_http_s", "peak_rss_mb"} <= set(
        cold["fresh_host"]
    )
    assert result["memory"]["functions_host_rotations"] == 5
    assert "calls per rotation" in bench.table(result)
    assert "in the delivery (old)" in bench.table(result)
