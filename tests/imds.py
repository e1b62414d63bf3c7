"""A loopback stand-in for the EC2 instance metadata service (IMDSv2).

The real service exists only on EC2 (169.254.169.254); this one serves the parts
the guard and boto3 use, with IMDSv2's rules, on 127.0.0.1:

- ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` (1..21600)
  answers a token; every GET without a valid token gets 401, as on an instance
  launched with ``HttpTokens=required``;
- ``/latest/meta-data/spot/instance-action``: 404 until :meth:`ImdsStandIn.announce`
  sets a notice, then ``{"action": ..., "time": ISO8601}``;
- ``/latest/meta-data/events/maintenance/scheduled``: a JSON list (empty by default);
- ``/latest/meta-data/iam/security-credentials/`` and ``.../<role>``: the instance
  role's temporary credentials, which botocore's InstanceMetadataProvider reads when
  ``AWS_EC2_METADATA_SERVICE_ENDPOINT`` points here.

It is a stand-in, not an emulator: no other path answers (404), tokens never expire
here unless a test drops them (:meth:`ImdsStandIn.expire_tokens`).

    pytest_plugins = ["tests.imds"]   # then ask for the ``imds`` fixture
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

ROLE = "emoconsole-test-role"
ACCESS_KEY = "ASIASTANDINIMDS00001"
SECRET_KEY = "stand-in-secret-key-not-a-real-one"
SESSION_TOKEN = "stand-in-session-token"


def iso8601(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def maintenance_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%d %b %Y %H:%M:%S GMT")


class ImdsStandIn:
    """The server and its settable state; ``url`` is its base (``http://127.0.0.1:PORT``)."""

    role = ROLE
    access_key = ACCESS_KEY

    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.instance_action: dict[str, str] | None = None
        self.maintenance: list[dict[str, str]] = []
        self.refused: list[str] = []  # paths of GETs answered 401 (no or a bad token)
        self.requests: list[tuple[str, str]] = []  # (method, path), in order
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # close() waits for one poll
            name="imds-stand-in",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ImdsStandIn:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what a test sets ---------------------------------------------------------------

    def announce(self, action: str = "terminate", in_s: float = 120.0) -> float:
        """A spot interruption ``in_s`` seconds from now (AWS gives two minutes); its time."""
        at = time.time() + in_s
        with self._lock:
            self.instance_action = {"action": action, "time": iso8601(at)}
        return at

    def schedule(self, code: str, in_s: float, state: str = "active") -> float:
        """A scheduled maintenance event ``in_s`` seconds from now; its time."""
        at = time.time() + in_s
        with self._lock:
            self.maintenance.append(
                {
                    "NotBefore": maintenance_time(at),
                    "NotAfter": maintenance_time(at + 3600),
                    "Code": code,
                    "Description": f"stand-in {code}",
                    "EventId": f"instance-event-{secrets.token_hex(8)}",
                    "State": state,
                }
            )
        return at

    def clear(self) -> None:
        """No notice and no scheduled event (the service of a fresh instance)."""
        with self._lock:
            self.instance_action = None
            self.maintenance = []

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    # -- the HTTP side ------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: pytest shows failures, not every poll

            def _answer(self, status: int, body: bytes | str = b"", kind: str = "text/plain"):
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                stand_in.requests.append(("PUT", self.path))
                if self.path != "/latest/api/token":
                    return self._answer(404)
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return self._answer(400, "missing or invalid token TTL")
                token = secrets.token_urlsafe(24)
                with stand_in._lock:
                    stand_in.tokens.add(token)
                self.send_response(200)
                self.send_header("X-aws-ec2-metadata-token-ttl-seconds", ttl)
                self.send_header("Content-Length", str(len(token)))
                self.end_headers()
                self.wfile.write(token.encode())
                return None

            def do_GET(self) -> None:
                stand_in.requests.append(("GET", self.path))
                token = self.headers.get("X-aws-ec2-metadata-token")
                with stand_in._lock:
                    valid = token in stand_in.tokens
                if not valid:
                    stand_in.refused.append(self.path)
                    return self._answer(401)
                body = stand_in._get(self.path)
                if body is None:
                    return self._answer(404, "Not Found")
                return self._answer(200, body, "application/json")

        return Handler

    def _get(self, path: str) -> str | None:
        creds = "/latest/meta-data/iam/security-credentials/"
        with self._lock:
            if path == "/latest/meta-data/spot/instance-action":
                return json.dumps(self.instance_action) if self.instance_action else None
            if path == "/latest/meta-data/events/maintenance/scheduled":
                return json.dumps(self.maintenance)
        if path == creds:
            return ROLE
        if path == creds + ROLE:
            return json.dumps(
                {
                    "Code": "Success",
                    "LastUpdated": iso8601(time.time()),
                    "Type": "AWS-HMAC",
                    "AccessKeyId": ACCESS_KEY,
                    "SecretAccessKey": SECRET_KEY,
                    "Token": SESSION_TOKEN,
                    "Expiration": iso8601(time.time() + 6 * 3600),
                }
            )
        return None


@pytest.fixture
def imds() -> Iterator[ImdsStandIn]:
    """A fresh IMDSv2 stand-in on loopback for one test."""
    server = ImdsStandIn().start()
    yield server
    server.close()
