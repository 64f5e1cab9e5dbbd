"""The local Functions host (emulators/functions_host.py) against a tiny fixture app.

The host runs as a subprocess, exactly as the launcher runs it; nothing here needs the Azure
stack. The fixture app (tests/stack/fixtures/hostapp) records what its Event Grid and timer
functions received in a JSON-lines file, so each test can check the objects the app saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from emulators.functions_host import (
    OVERRIDE_PREFIX,
    FunctionInError,
    read_host_json,
    resolve_app_settings,
)
from emulators.polling import wait_for
from tests.conftest import LocalStack

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "tests" / "stack" / "fixtures" / "hostapp"
KEYS = {
    "FUNCTIONS_KEY": "function-key-" + uuid.uuid4().hex,
    "FUNCTIONS_MASTER_KEY": "master-key-" + uuid.uuid4().hex,
    "EVENTGRID_WEBHOOK_KEY": "eventgrid-key-" + uuid.uuid4().hex,
}
FUNCTION_KEY = KEYS["FUNCTIONS_KEY"]
MASTER_KEY = KEYS["FUNCTIONS_MASTER_KEY"]
EVENTGRID_KEY = KEYS["EVENTGRID_WEBHOOK_KEY"]
VAULT = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv1"


@dataclass(frozen=True)
class Host:
    url: str
    record: Path
    log: Path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(self.url + path, timeout=10, **kwargs)

    def webhook(
        self, event_type: str | None, body: Any, function: str = "on_event",
        code: str | None = EVENTGRID_KEY,
    ) -> requests.Response:
        params = {"functionName": function} | ({"code": code} if code is not None else {})
        headers = {"aeg-event-type": event_type} if event_type else {}
        data = body if isinstance(body, str) else json.dumps(body)
        return self.post("/runtime/webhooks/eventgrid", params=params, headers=headers,
                         data=data)

    def records(self, key: str, value: Any, count: int = 1) -> list[dict[str, Any]]:
        """Records whose ``key`` equals ``value``; waits up to 3 s for ``count`` of them."""
        deadline = time.monotonic() + 3
        while True:
            lines = self.record.read_text().splitlines() if self.record.exists() else []
            found = [r for r in map(json.loads, lines) if r.get(key) == value]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


def _start(
    app_dir: Path, folder: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    ready, log = folder / "ready.json", folder / "host.log"
    # The session stack's host.json overrides (exported with its settings) are not for
    # these hosts, which test their own host.json.
    env = {k: v for k, v in env.items() if not k.startswith(OVERRIDE_PREFIX)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "emulators.functions_host", "--app-dir", str(app_dir),
             "--port", "0", "--ready", str(ready)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    return proc, ready


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    folder = tmp_path_factory.mktemp("functions_host")
    record = folder / "record.jsonl"
    env = {**os.environ, **KEYS, "HOSTAPP_RECORD": str(record), "HOSTAPP_SETTING": "from-env"}
    proc, ready = _start(APP_DIR, folder, env)
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("host did not start:\n" + (folder / "host.log").read_text())
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        assert info["pid"] == proc.pid
        yield Host(f"http://127.0.0.1:{info['port']}", record, folder / "host.log")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- HTTP triggers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, {}, 401),
        ({}, {"code": "wrong"}, 401),
        ({"x-functions-key": "wrong"}, {}, 401),
        ({}, {"code": EVENTGRID_KEY}, 401),  # a system key is not a function key
        ({"x-functions-key": "wrong"}, {"code": FUNCTION_KEY}, 401),  # the header wins
        ({}, {"code": FUNCTION_KEY}, 200),
        ({"x-functions-key": FUNCTION_KEY}, {}, 200),
        ({}, {"code": MASTER_KEY}, 200),
    ],
)
def test_function_level_keys(
    host: Host, headers: dict[str, str], params: dict[str, str], status: int
) -> None:
    resp = host.get("/api/items/1", headers=headers, params=params)
    assert resp.status_code == status
    if status == 401:
        assert resp.content == b""


def test_http_request_reaches_the_function_and_its_response_comes_back(host: Host) -> None:
    resp = host.post(
        "/API/Items/a%2Fb/?x=1&x=2", headers={"x-functions-key": FUNCTION_KEY,
                                              "Content-Type": "application/json"},
        data=b'{"hello": 1}',
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["x-echo"] == "1"
    echo = resp.json()
    assert echo["method"] == "POST"
    assert echo["route_params"] == {"id": "a/b"}
    assert echo["params"] == {"x": "1,2"}
    assert echo["body"] == '{"hello": 1}'
    assert echo["content_type"] == "application/json"
    assert echo["setting"] == "from-env"  # app settings are the environment
    assert echo["keys_visible"] == []  # host keys are not app settings
    assert Path(echo["cwd"]) == APP_DIR


def test_empty_query_values_are_dropped_before_the_app_sees_them(host: Host) -> None:
    resp = host.get("/api/items/q?a=&b=2&c&b=&d=x", headers={"x-functions-key": FUNCTION_KEY})
    assert resp.status_code == 200
    assert resp.json()["params"] == {"b": "2", "d": "x"}


def test_a_body_reaches_the_app_only_with_a_content_length(host: Host) -> None:
    headers = {"x-functions-key": FUNCTION_KEY, "Content-Type": "application/json"}
    sized = host.post("/api/items/b", headers=headers, data=b'{"n": 1}')
    assert sized.request.headers["Content-Length"] == "8"
    assert sized.json()["body"] == '{"n": 1}'  # positive control
    chunked = host.post("/api/items/b", headers=headers, data=iter([b'{"n": ', b"1}"]))
    assert chunked.request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in chunked.request.headers
    assert chunked.status_code == 200
    assert chunked.json()["body"] == ""  # out of process, a chunked body arrives empty


def test_the_worker_logs_each_invocation_under_azure_functions(host: Host) -> None:
    assert host.get("/api/items/w", params={"code": FUNCTION_KEY}).status_code == 200
    assert host.get("/api/numbers/7").status_code == 200
    log = host.log.read_text()
    assert "azure.functions: Function name: items, Function Type: sync" in log
    assert "azure.functions: Function name: numbers, Function Type: async" in log


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/items/1"),  # known route, other method: the host answers 404
        ("GET", "/api/items"),
        ("GET", "/api/items/1/2"),
        ("GET", "/items/1"),  # no route prefix
        ("GET", "/api/unknown"),
        ("GET", "/api/numbers/abc"),  # {n:int}
    ],
)
def test_unmatched_routes_are_404(host: Host, method: str, path: str) -> None:
    resp = requests.request(method, host.url + path, params={"code": MASTER_KEY}, timeout=10)
    assert resp.status_code == 404


def test_anonymous_async_function_returning_str_and_catch_all_route(host: Host) -> None:
    resp = host.get("/api/numbers/12")
    assert (resp.status_code, resp.text) == (200, "number 12")
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert host.get("/api/files/a/b%20c/d").text == "a/b c/d"


def test_admin_level_needs_the_master_key(host: Host) -> None:
    assert host.get("/api/secret", params={"code": FUNCTION_KEY}).status_code == 401
    resp = host.get("/api/secret", headers={"x-functions-key": MASTER_KEY})
    assert (resp.status_code, resp.text) == (200, "admin only")


def test_failures_are_500_with_details_only_in_the_log(host: Host) -> None:
    resp = host.get("/api/broken")
    assert (resp.status_code, resp.content) == (500, b"")
    resp = host.get("/api/nothing")  # None is not an HTTP response: the worker fails it
    assert (resp.status_code, resp.content) == (500, b"")
    log = host.log.read_text()
    assert "secret detail that must not reach the caller" in log
    assert "Executed 'Functions.broken' (Failed" in log


# --- Event Grid webhook -----------------------------------------------------------------


def _validation_event(code: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()), "topic": VAULT, "subject": "",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2025-06-08T19:52:25.1524887Z", "metadataVersion": "1", "dataVersion": "1",
        "data": {"validationCode": code, "validationUrl": "https://example.invalid/validate"},
    }


def _keyvault_event(event_id: str) -> dict[str, Any]:
    return {
        "id": event_id, "topic": VAULT, "subject": "web-tls",
        "eventType": "Microsoft.KeyVault.CertificateNearExpiry",
        "eventTime": "2025-06-08T19:52:25.1524887Z",
        "data": {"Id": "https://kv1.vault.azure.net/certificates/web-tls/0a1b", "VaultName": "kv1",
                 "ObjectType": "Certificate", "ObjectName": "web-tls", "Version": "0a1b",
                 "NBF": 1749411621, "EXP": 1749418821},
        "dataVersion": "1", "metadataVersion": "1",
    }


@pytest.mark.parametrize(
    ("code", "header_key", "status"),
    [
        (None, None, 401),
        ("wrong", None, 401),
        (FUNCTION_KEY, None, 401),  # the function key is not the eventgrid_extension key
        (MASTER_KEY, None, 200),
        (EVENTGRID_KEY, None, 200),
        (None, EVENTGRID_KEY, 200),
    ],
    # Named, not by value: the keys are random, and every pytest worker must collect the
    # same test ids.
    ids=["none", "wrong", "function-key", "master-key", "eventgrid-key", "eventgrid-header"],
)
def test_webhook_keys(host: Host, code: str | None, header_key: str | None, status: int) -> None:
    params = {"functionName": "on_event"} | ({"code": code} if code else {})
    headers = {"aeg-event-type": "SubscriptionValidation"}
    if header_key:
        headers["x-functions-key"] = header_key
    resp = host.post("/runtime/webhooks/eventgrid", params=params, headers=headers,
                     data=json.dumps([_validation_event("c0de")]))
    assert resp.status_code == status


@pytest.mark.parametrize("function", ["nope", "items", ""])
def test_webhook_for_an_unknown_function_is_404(host: Host, function: str) -> None:
    resp = host.webhook("Notification", [_keyvault_event("x")], function=function)
    assert resp.status_code == 404
    assert resp.text == f"cannot find function: '{function}'"


def test_subscription_validation_with_an_event_grid_array(host: Host) -> None:
    resp = host.webhook("SubscriptionValidation", [_validation_event("512d38b6-c7b8")])
    assert resp.status_code == 200
    assert resp.text == '{"validationResponse":"512d38b6-c7b8"}'
    assert "perform handshake with eventGrid for function: on_event" in host.log.read_text()


@pytest.mark.parametrize(
    "data", [json.dumps({"validationCode": "ce-code"}), {"validationCode": "ce-code"}]
)
def test_subscription_validation_with_a_single_cloudevent(host: Host, data: Any) -> None:
    body = {"id": "v1", "source": VAULT, "specversion": "1.0",
            "type": "Microsoft.EventGrid.SubscriptionValidationEvent", "data": data}
    resp = host.webhook("subscriptionvalidation", body)  # header value: any case
    assert (resp.status_code, json.loads(resp.text)) == (200, {"validationResponse": "ce-code"})


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [("eventgrid.azure.net", "eventgrid.azure.net"), ("eventgrid.azure.us", "eventgrid.azure.us"),
     ("evil.example", "eventgrid.azure.net"), (None, "eventgrid.azure.net")],
)
def test_cloudevents_abuse_protection_options(host: Host, origin: str | None, allowed: str) -> None:
    resp = requests.options(
        host.url + "/runtime/webhooks/EventGrid",
        params={"functionName": "on_event", "code": EVENTGRID_KEY},
        headers={"WebHook-Request-Origin": origin} if origin else {}, timeout=10,
    )
    assert resp.status_code == 200
    assert resp.headers["WebHook-Allowed-Origin"] == allowed


def test_notification_array_invokes_once_per_event(host: Host) -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    resp = host.webhook("Notification", [_keyvault_event(i) for i in ids])
    assert (resp.status_code, resp.content) == (202, b"")
    for event_id in ids:
        [seen] = host.records("id", event_id)
        assert seen["class"] == "EventGridEvent"
        assert seen["type"] == "Microsoft.KeyVault.CertificateNearExpiry"
        assert (seen["topic"], seen["subject"], seen["data_version"]) == (VAULT, "web-tls", "1")
        assert seen["time"] == "2025-06-08T19:52:25.152488+00:00"
        assert seen["data"]["ObjectName"] == "web-tls"


def test_notification_with_a_single_cloudevent_object(host: Host) -> None:
    event_id = str(uuid.uuid4())
    event = {"id": event_id, "source": VAULT, "specversion": "1.0",
             "type": "Microsoft.KeyVault.CertificateNewVersionCreated", "subject": "web-tls",
             "time": "2025-06-08T19:52:25Z", "data": {"ObjectName": "web-tls"}}
    assert host.webhook("Notification", event).status_code == 202
    [seen] = host.records("id", event_id)
    assert seen["class"] == "CloudEvent"  # whatever the annotation says (azure-functions 1.26)
    assert seen["type"] == "Microsoft.KeyVault.CertificateNewVersionCreated"
    assert (seen["source"], seen["subject"]) == (VAULT, "web-tls")
    assert seen["data"] == {"ObjectName": "web-tls"}


def test_a_failing_function_answers_500_so_event_grid_retries(host: Host) -> None:
    event_id = str(uuid.uuid4())
    resp = host.webhook("Notification", [_keyvault_event(event_id)], function="failing_event")
    assert resp.status_code == 500
    assert resp.text == "Exception while executing function: Functions.failing_event"
    assert len(host.records("id", event_id)) == 1


@pytest.mark.parametrize(
    ("event_type", "body", "status"),
    [
        ("Unsubscribe", [], 202),
        ("Bogus", [], 400),
        (None, [], 400),
        ("Notification", "not json", 500),
        ("Notification", "42", 500),
    ],
)
def test_other_event_types_and_bad_bodies(
    host: Host, event_type: str | None, body: Any, status: int
) -> None:
    assert host.webhook(event_type, body).status_code == status


# --- Admin API --------------------------------------------------------------------------


def test_timer_runs_through_the_admin_api(host: Host) -> None:
    body = json.dumps({"input": ""})
    assert host.post("/admin/functions/tick", data=body).status_code == 401
    resp = host.post("/admin/functions/tick", data=body, headers={"x-functions-key": FUNCTION_KEY})
    assert resp.status_code == 401
    assert host.records("function", "tick", count=0) == []
    master = {"x-functions-key": MASTER_KEY}
    assert host.post("/admin/functions/nope", data=body, headers=master).status_code == 404
    assert host.post("/admin/functions/tick", headers=master).status_code == 400  # no body
    assert host.post("/admin/functions/items", data=body, headers=master).status_code == 400
    resp = host.post("/admin/functions/tick", data=body, headers=master)
    assert (resp.status_code, resp.content) == (202, b"")
    assert host.records("function", "tick") == [{"function": "tick", "past_due": False}]


def test_host_status(host: Host) -> None:
    assert host.get("/admin/host/status").status_code == 401
    resp = host.get("/admin/host/status", params={"code": MASTER_KEY})
    assert resp.status_code == 200
    assert resp.json()["state"] == "Running"


def test_the_log_has_invocations_and_no_keys(host: Host) -> None:
    assert host.get("/api/items/logged", params={"code": FUNCTION_KEY}).status_code == 200
    log = host.log.read_text()
    assert "Executed 'Functions.items' (Succeeded, Id=" in log
    assert "items called for logged" in log  # the function's own logging
    assert all(key not in log for key in KEYS.values())


# --- Start-up failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "drop_key", "message"),
    [
        ("@app.route()\ndef f(req: func.HttpRequest, context: func.Context) -> str:\n"
         "    return ''\n", None, "do not match the bindings"),
        ("@app.route()\n@app.blob_output(arg_name='b', path='c/b', connection='c')\n"
         "def f(req: func.HttpRequest, b: func.Out[str]) -> str:\n    return ''\n",
         None, "bindings other than the trigger, the HTTP $return and queue outputs"),
        ("@app.route()\n@app.queue_output(arg_name='q', queue_name='jobs', connection='Jobs')\n"
         "def f(req: func.HttpRequest, q: func.Out[str]) -> str:\n    return ''\n",
         None, "connection 'Jobs': app setting Jobs__queueServiceUri is not set"),
        ("@app.queue_trigger(arg_name='m', queue_name='Bad_Name', connection='c')\n"
         "def f(m: func.QueueMessage) -> None:\n    pass\n",
         None, "queue name 'Bad_Name' is not a valid Azure queue name"),
        ("@app.queue_trigger(arg_name='m', queue_name='jobs', connection='c')\n"
         "def f(m: func.QueueMessage, extra: func.Out[str]) -> None:\n    pass\n",
         None, "do not match the bindings"),
        ("@app.event_grid_trigger(arg_name='e')\ndef f(e: func.HttpRequest) -> None:\n"
         "    pass\n", None, "does not match binding 'eventGridTrigger'"),
        ("@app.route(route='a/{b}.{c}')\ndef f(req: func.HttpRequest) -> str:\n    return ''\n",
         None, "unsupported segment"),
        ("", "FUNCTIONS_MASTER_KEY", "FUNCTIONS_MASTER_KEY"),
    ],
)
def test_the_host_refuses_what_it_cannot_serve(
    tmp_path: Path, source: str, drop_key: str | None, message: str
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(
        "import azure.functions as func\n\napp = func.FunctionApp()\n\n\n" + source
    )
    env = {k: v for k, v in {**os.environ, **KEYS}.items() if k != drop_key}
    proc, ready = _start(app_dir, tmp_path, env)
    assert proc.wait(timeout=20) == 2
    assert not ready.exists()
    assert message in (tmp_path / "host.log").read_text()


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ({"maxPollingInterval": "00:00:00.050"}, "must be at least 00:00:00.100"),
        ({"visibilityTimeout": 30}, "is not a TimeSpan"),
        ({"batchSize": 33}, "batchSize: 33 is not an integer in 1..32"),
        ({"maxDequeueCount": 0}, "maxDequeueCount: 0 is not an integer"),
        ({"messageEncoding": "utf8"}, "messageEncoding must be one of"),
        ({"maxPollingInterval": "00:00:02", "pollMe": 1}, "does not honour ['pollMe']"),
    ],
)
def test_the_host_refuses_queue_settings_it_cannot_honour(
    tmp_path: Path, queues: dict[str, Any], message: str
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text("import azure.functions as func\n\n"
                                             "app = func.FunctionApp()\n")
    (app_dir / "host.json").write_text(json.dumps({"version": "2.0",
                                                   "extensions": {"queues": queues}}))
    proc, ready = _start(app_dir, tmp_path, {**os.environ, **KEYS})
    assert proc.wait(timeout=20) == 2
    assert not ready.exists()
    assert message in (tmp_path / "host.log").read_text()


# --- The product's app in the stack's host ------------------------------------------------


def test_the_product_app_keeps_worker_lines_and_silences_sdk_http_logging(
    stack: LocalStack,
) -> None:
    """``function_app.py`` quiets the SDKs' per-request logging, not ``azure.functions``."""
    log = stack.folder / "logs" / "functions.log"
    start = log.stat().st_size
    mark = stack.request_mark()
    resp = requests.get(stack.env["FUNCTIONS_URL"] + "/api/status",
                        headers={"x-functions-key": stack.env["FUNCTIONS_KEY"]}, timeout=60)
    assert resp.status_code == 200, resp.text
    # Positive control: the function did call Azure through the SDKs (ARM lists).
    assert any(r["service"] == "arm" for r in stack.requests_since(mark))

    def written() -> str:
        with log.open("rb") as handle:
            handle.seek(start)
            return handle.read().decode()

    wait_for(lambda: "Executed 'Functions.status'" in written(), timeout=10)
    lines = written()
    assert "azure.functions: Function name: status, Function Type: sync" in lines
    assert "http_logging_policy" not in lines
    assert "azure.identity" not in lines


def test_app_settings_override_host_json_values(tmp_path: Path) -> None:
    """``AzureFunctionsJobHost__a__b`` replaces host.json's ``a.b``, as on the real host;
    digits become numbers, anything else stays text for the option's own parser."""
    (tmp_path / "host.json").write_text(
        json.dumps({"version": "2.0", "extensions": {"queues": {"batchSize": 4}}})
    )
    env = {
        f"{OVERRIDE_PREFIX}extensions__queues__visibilityTimeout": "00:00:02",
        f"{OVERRIDE_PREFIX}extensions__queues__batchSize": "1",
        "UNRELATED": "x",
    }
    assert read_host_json(tmp_path, env) == {
        "version": "2.0",
        "extensions": {"queues": {"batchSize": 1, "visibilityTimeout": "00:00:02"}},
    }
    assert read_host_json(tmp_path, {}) == {
        "version": "2.0", "extensions": {"queues": {"batchSize": 4}},
    }


# --- App-setting binding expressions ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "resolved"),
    [
        ("0 0 3 * * *", "0 0 3 * * *"),
        ("%TICK%", "0 */5 * * * *"),
        ("jobs-%ENV%-%ENV%", "jobs-dev-dev"),
        ("%EMPTY%", ""),  # set but empty resolves (to what the extension then refuses)
        ("%MISSING%", "'%MISSING%' does not resolve to a value."),
        ("jobs-%ENV", "The '%' at position 5 does not have a closing '%'"),
    ],
)
def test_app_setting_expressions_resolve_as_the_webjobs_name_resolver_does(
    text: str, resolved: str
) -> None:
    settings = {"TICK": "0 */5 * * * *", "ENV": "dev", "EMPTY": ""}
    try:
        assert resolve_app_settings(text, settings) == resolved
    except FunctionInError as exc:
        assert str(exc) == resolved


def test_a_timer_schedule_comes_from_its_app_setting_and_a_missing_one_is_in_error(
    tmp_path: Path,
) -> None:
    """``schedule="%NAME%"`` is resolved from the app settings when the host indexes the app;
    a timer whose setting is missing is in error (logged, not served), the others run."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(
        "import azure.functions as func\n\napp = func.FunctionApp()\n\n\n"
        "@app.timer_trigger(schedule='%TICK_SCHEDULE%', arg_name='t')\n"
        "def tick(t: func.TimerRequest) -> None:\n    pass\n\n\n"
        "@app.timer_trigger(schedule='%MISSING_SCHEDULE%', arg_name='t')\n"
        "def orphan(t: func.TimerRequest) -> None:\n    pass\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MISSING_SCHEDULE"}
    proc, ready = _start(app_dir, tmp_path, {**env, **KEYS, "TICK_SCHEDULE": "0 30 2 * * *"})
    try:
        wait_for(lambda: ready.exists() or proc.poll() is not None, "the host to start")
        assert proc.poll() is None, (tmp_path / "host.log").read_text()
        url = f"http://127.0.0.1:{json.loads(ready.read_text())['port']}"
        master, body = {"x-functions-key": MASTER_KEY}, json.dumps({"input": ""})
        run = requests.post(f"{url}/admin/functions/tick", data=body, headers=master, timeout=10)
        assert run.status_code == 202
        gone = requests.post(f"{url}/admin/functions/orphan", data=body, headers=master,
                             timeout=10)
        assert gone.status_code == 404
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    log = (tmp_path / "host.log").read_text()
    assert "Function 'tick' (timerTrigger) schedule '0 30 2 * * *'" in log
    assert ("The 'orphan' function is in error: '%MISSING_SCHEDULE%' does not resolve to a "
            "value.") in log
