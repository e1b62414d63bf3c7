"""The EC2 instance metadata service (IMDSv2), for the notices that end an instance.

Two of its answers matter to a run: ``spot/instance-action`` (a spot interruption:
AWS gives about two minutes between this answer appearing and the action) and
``events/maintenance/scheduled`` (a reboot, stop or retirement AWS has scheduled,
usually days ahead). :class:`ImdsClient` asks for both the IMDSv2 way: a session
token from ``PUT /latest/api/token`` sent with every GET (instances launched with
``HttpTokens=required`` refuse a GET without it), cached and fetched again a
minute before its TTL runs out.

Standard library only, like everything in :mod:`remote.onhost`. The base URL is
configurable because outside EC2 there is no metadata service: the tests run a
loopback stand-in (tests/imds.py) at that address.

Why the short timeouts and no proxies: 169.254.169.254 answers in a millisecond on
EC2 and never at all elsewhere; a poll that waits longer than the notice lasts, or
that an ``http_proxy`` variable sends off the machine, is worse than none.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

DEFAULT_IMDS = "http://169.254.169.254"
TOKEN_PATH = "/latest/api/token"
INSTANCE_ACTION_PATH = "/latest/meta-data/spot/instance-action"
MAINTENANCE_PATH = "/latest/meta-data/events/maintenance/scheduled"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
# A token lives 6 hours (the most IMDS grants); it is fetched again a minute before that.
TOKEN_TTL_S = 21600
TOKEN_REFRESH_MARGIN_S = 60.0
TIMEOUT_S = 1.5
# How soon before a scheduled maintenance event the run is stopped, unless the caller
# says otherwise (the guard passes its --shutdown-lead).
MAINTENANCE_LEAD_S = 300.0


class ImdsError(Exception):
    """The metadata service could not be asked (unreachable, refused, or nonsense)."""


@dataclass(frozen=True)
class Notice:
    """Why the instance is about to go, and when.

    ``source``: ``spot`` (an interruption), ``maintenance`` (a scheduled event) or
    ``max_hours`` (the profile's own shutdown timer). ``action``: what will happen
    (``terminate``, ``stop``, ``hibernate``; a maintenance event's code such as
    ``system-reboot``; ``shutdown`` for max_hours). ``time``: when it happens, Unix
    seconds.
    """

    source: str
    action: str
    time: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_iso8601(text: str) -> float:
    """``2017-09-18T08:22:00Z`` (instance-action's format) as Unix seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def parse_maintenance_time(text: str) -> float:
    """``21 Jan 2019 09:00:43 GMT`` (the scheduled events' format) as Unix seconds."""
    return datetime.strptime(text, "%d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC).timestamp()


class ImdsClient:
    """IMDSv2 at ``base`` (default the real one): the spot and maintenance notices.

    ``clock`` is monotonic seconds (a test may pass its own to check the token's
    refresh without waiting six hours).
    """

    def __init__(
        self,
        base: str = DEFAULT_IMDS,
        *,
        timeout: float = TIMEOUT_S,
        token_ttl: int = TOKEN_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.token_ttl = token_ttl
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self.tokens_fetched = 0
        # No proxies: an http_proxy variable must not send metadata requests off the host.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # -- the protocol ---------------------------------------------------------------------

    def token(self) -> str:
        """The session token, fetched again a minute before its TTL runs out."""
        margin = min(TOKEN_REFRESH_MARGIN_S, self.token_ttl / 10)
        if self._token is None or self._clock() >= self._token_expires - margin:
            request = urllib.request.Request(
                self.base + TOKEN_PATH,
                method="PUT",
                headers={TOKEN_TTL_HEADER: str(self.token_ttl)},
            )
            status, body = self._send(request)
            if status != 200 or not body:
                raise ImdsError(f"{self.base}{TOKEN_PATH}: PUT answered {status}, not a token")
            self._token = body.decode("ascii", "replace").strip()
            self._token_expires = self._clock() + self.token_ttl
            self.tokens_fetched += 1
        return self._token

    def get(self, path: str) -> bytes | None:
        """The body at ``path``; None when IMDS answers 404 (nothing there). A 401 (the
        token expired early, e.g. the service restarted) gets one more try with a new one."""
        for attempt in range(2):
            request = urllib.request.Request(self.base + path, headers={TOKEN_HEADER: self.token()})
            status, body = self._send(request)
            if status == 200:
                return body
            if status == 404:
                return None
            if status == 401 and attempt == 0:
                self._token = None
                continue
            raise ImdsError(f"{self.base}{path}: GET answered {status}")
        raise AssertionError("unreachable")

    def _send(self, request: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
            reason = getattr(exc, "reason", exc)
            raise ImdsError(f"{request.full_url}: {reason}") from None

    # -- the notices ----------------------------------------------------------------------

    def spot_notice(self) -> Notice | None:
        """The spot interruption notice, or None while there is none (IMDS answers 404)."""
        body = self.get(INSTANCE_ACTION_PATH)
        if body is None:
            return None
        try:
            data = json.loads(body)
            return Notice("spot", str(data["action"]), parse_iso8601(str(data["time"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ImdsError(
                f"{self.base}{INSTANCE_ACTION_PATH}: not an instance action ({body[:200]!r}: {exc})"
            ) from None

    def maintenance_notice(
        self, lead: float = MAINTENANCE_LEAD_S, now: float | None = None
    ) -> Notice | None:
        """The earliest active scheduled event that starts within ``lead`` seconds.

        Events are scheduled days ahead; one further off than ``lead`` is no reason
        to stop a run yet, and a completed or canceled one none at all.
        """
        body = self.get(MAINTENANCE_PATH)
        if body is None or not body.strip():
            return None
        try:
            events = json.loads(body)
            due = [
                Notice("maintenance", str(e["Code"]), parse_maintenance_time(str(e["NotBefore"])))
                for e in events
                if e.get("State", "active") == "active"
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ImdsError(
                f"{self.base}{MAINTENANCE_PATH}: not a list of scheduled events "
                f"({body[:200]!r}: {exc})"
            ) from None
        now = time.time() if now is None else now
        due = [n for n in due if n.time - lead <= now]
        return min(due, key=lambda n: n.time) if due else None

    def notice(self, lead: float = MAINTENANCE_LEAD_S) -> Notice | None:
        """A spot interruption first (it is the sooner and the surer), else maintenance."""
        return self.spot_notice() or self.maintenance_notice(lead)


class NoticePoller:
    """Asks :class:`ImdsClient` for a notice on each :meth:`poll`, never raising.

    An unreachable service is reported once through ``report`` (and once again when
    it answers again), not on every poll: a guard polling every 5 s on a host
    without IMDS would otherwise fill its log with the same line.
    """

    def __init__(
        self,
        client: ImdsClient,
        report: Callable[[str], None],
        lead: float = MAINTENANCE_LEAD_S,
    ) -> None:
        self.client = client
        self.report = report
        self.lead = lead
        self.failing: str | None = None  # the error being reported, while it lasts
        self.failures = 0

    def poll(self) -> Notice | None:
        try:
            notice = self.client.notice(self.lead)
        except ImdsError as exc:
            self.failures += 1
            if self.failing is None:
                self.report(f"instance metadata unreachable: {exc} (reported once; still polling)")
            self.failing = str(exc)
            return None
        if self.failing is not None:
            self.report(f"instance metadata answers again after {self.failures} failed polls")
            self.failing = None
            self.failures = 0
        return notice
