"""A loopback Event Grid webhook for tests: answers the validation handshake, records
notifications (Event Grid schema), so tests can see what the stack delivered."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Webhook:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                reply = b""
                if self.headers.get("aeg-event-type") == "SubscriptionValidation":
                    code = body[0]["data"]["validationCode"]
                    reply = json.dumps({"validationResponse": code}).encode()
                else:
                    with hook.lock:
                        hook.events.extend(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/events"

    def of(self, event_type: str, subject: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["eventType"] == event_type
                    and (subject is None or e["subject"] == subject)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
