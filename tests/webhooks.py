"""A loopback stand-in for Slack's incoming webhooks: records each POST's JSON body.

Slack answers a good POST with ``200 ok`` (text/plain) and a bad body with 400
``invalid_payload``; this does the same, and can fail the first N posts with 500
to exercise a sender's retries.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class WebhookStandIn:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []  # {"path", "body"} per accepted POST
        self.fail_next = 0
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with stand_in._lock:
                    if stand_in.fail_next:
                        stand_in.fail_next -= 1
                        self._answer(500, b"internal_error")
                        return
                try:
                    body = json.loads(raw)
                    ok = isinstance(body, dict) and isinstance(body.get("text"), str)
                except ValueError:
                    ok = False
                if not ok or self.headers.get("Content-Type") != "application/json":
                    self._answer(400, b"invalid_payload")
                    return
                with stand_in._lock:
                    stand_in.posts.append({"path": self.path, "body": body})
                self._answer(200, b"ok")

            def _answer(self, code: int, text: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        # The secret part of the path, as a Slack webhook URL has one.
        self.secret = "T0000SECRET/B0000SECRET/XXXXsecrettokenXXXX"
        self.url = f"http://127.0.0.1:{self.port}/services/{self.secret}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_posts(self, n: int, timeout: float = 120.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.posts)} webhook POSTs, expected {n}")
            time.sleep(0.1)
        return [p["body"] for p in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookStandIn]:
    stand_in = WebhookStandIn()
    yield stand_in
    stand_in.close()
