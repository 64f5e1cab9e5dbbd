"""Table-driven tests for the bench's pure parts: how request-log entries are classified,
how samples are summarised, and which arguments are refused (and why)."""

from __future__ import annotations

from typing import Any

import pytest

from emulators.bench import Options, call_kind, parse_args, summary

SUB = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/cloudServices"
CALLS: dict[str, tuple[dict[str, Any], str]] = {
    "list": ({"service": "arm", "method": "GET", "path": SUB}, "arm GET list cloud services"),
    "list, next page": (
        {"service": "arm", "method": "GET", "path": SUB, "query": "$skiptoken=100"},
        "arm GET list cloud services",
    ),
    "read": ({"service": "arm", "method": "GET", "path": f"{SUB}/cs"}, "arm GET cloud service"),
    "update": ({"service": "arm", "method": "PUT", "path": f"{SUB}/cs"}, "arm PUT cloud service"),
    "busy": (
        {"service": "arm", "method": "PUT", "path": f"{SUB}/cs", "status": 409},
        "arm PUT cloud service -> 409",
    ),
    "instance view": (
        {"service": "arm", "method": "GET", "path": f"{SUB}/cs/instanceView"},
        "arm GET instanceview",
    ),
    "operation": (
        {
            "service": "arm",
            "method": "GET",
            "path": "/subscriptions/s/providers/Microsoft.Compute/locations/westus/CsOperations/1",
        },
        "arm GET operation",
    ),
    "certificate": (
        {"service": "keyvault", "method": "GET", "path": "/certificates/web-tls/"},
        "kv GET certificate",
    ),
    "versions": (
        {"service": "keyvault", "method": "GET", "path": "/certificates/web-tls/versions"},
        "kv GET versions",
    ),
    "one version": (
        {"service": "keyvault", "method": "GET", "path": "/certificates/web-tls/0a1b"},
        "kv GET certificate version",
    ),
    "a version's secret": (
        {"service": "keyvault", "method": "GET", "path": "/secrets/web-tls/0a1b"},
        "kv GET secrets",
    ),
    "challenge": (
        {"service": "keyvault", "method": "GET", "path": "/certificates/x/", "status": 401},
        "kv 401 challenge",
    ),
    "token": (
        {
            "service": "identity",
            "method": "GET",
            "path": "/msi/token",
            "query": "api-version=2019-08-01&resource=https://vault.azure.net",
        },
        "identity token for vault.azure.net",
    ),
}


@pytest.mark.parametrize(("call", "kind"), CALLS.values(), ids=CALLS.keys())
def test_call_kind(call: dict[str, Any], kind: str) -> None:
    assert call_kind({"status": 200, "query": "", **call}) == kind


SUMMARIES = {
    "one sample": ([0.5], {"median": 0.5, "p95": 0.5, "min": 0.5, "max": 0.5}),
    "p95 is the nearest rank": (
        [float(i) for i in range(1, 21)],
        {"median": 10.5, "p95": 19.0, "min": 1.0, "max": 20.0},
    ),
    "order does not matter": ([3.0, 1.0, 2.0], {"median": 2.0, "p95": 3.0, "min": 1.0, "max": 3.0}),
}


@pytest.mark.parametrize(("values", "expected"), SUMMARIES.values(), ids=SUMMARIES.keys())
def test_summary(values: list[float], expected: dict[str, float]) -> None:
    assert summary(values) == expected


def test_defaults() -> None:
    assert parse_args([]) == Options(30, 50, (10, 100, 1000), 5, None)


BAD_ARGS = {
    "sizes not numbers": (["--sizes", "10,many"], "--sizes must be comma-separated integers"),
    "size zero": (["--sizes", "0,10"], "--sizes must be integers >= 1"),
    "no rotations": (["--rotations", "0"], "0 is below 1"),
    "negative latency": (["--latency-ms", "-5"], "-5 is below 0"),
    "latency not a number": (["--latency-ms", "fast"], "'fast' is not an integer"),
}


@pytest.mark.parametrize(("argv", "message"), BAD_ARGS.values(), ids=BAD_ARGS.keys())
def test_bad_arguments_are_named(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
