"""Following a run from the console: the client side of :mod:`remote.onhost.watcher`.

``follow`` starts the watcher on the host through ``host.stream`` (a
subprocess locally, one exec channel over SSH) and turns its JSON lines into
typed items. The connection is the unreliable part, so the client owns the
resume point: the last event seq (and the events.jsonl byte offset just after
it, so the new watcher seeks there instead of reading the file again) and the
train.log byte offset it has handed out. When the stream drops (a transport
error, an end without the watcher's ``end`` line, or silence, not even a
heartbeat, for ``silence_intervals`` intervals) it reconnects with capped
exponential backoff and asks again from that point, so every event is yielded
exactly once. Problems a retry cannot fix (authentication, host keys, a watcher
that cannot start) are raised at once.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from remote.errors import (
    AuthenticationError,
    CommandError,
    ConfigError,
    HostKeyError,
    StreamSilentError,
    TransportError,
    WatchError,
)
from remote.host import Command, Host
from remote.layout import python_module
from trainers.events import EventType, RunStatus

try:  # 4x json.loads: at 100,000 events/s, decoding is most of the client's time
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency; the stdlib still works
    _loads = json.loads

# -- what a follower yields ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventItem:
    """One events.jsonl line (see docs/run-directory.md)."""

    event: dict[str, Any]
    kind: Literal["event"] = "event"

    @property
    def seq(self) -> int:
        return int(self.event["seq"])

    @property
    def type(self) -> str:
        return str(self.event.get("type"))

    @property
    def status(self) -> RunStatus | None:
        if self.type != EventType.STATUS:
            return None
        try:
            return RunStatus(self.event.get("status"))
        except ValueError:
            return None


@dataclass(frozen=True)
class LogItem:
    """New train.log text; ``offset`` is the byte offset just after it."""

    offset: int
    text: str
    kind: Literal["log"] = "log"


@dataclass(frozen=True)
class SysItem:
    """A system sample from the host: cpu_percent, ram_*, disk_*, alive, gpus, ..."""

    sample: dict[str, Any]
    kind: Literal["sys"] = "sys"


@dataclass(frozen=True)
class HeartbeatItem:
    time: float
    kind: Literal["heartbeat"] = "heartbeat"


@dataclass(frozen=True)
class CrashedItem:
    """The process is gone without a terminal status; the run's last log lines."""

    last_log: list[str]
    kind: Literal["crashed"] = "crashed"
    status: RunStatus = RunStatus.CRASHED


@dataclass(frozen=True)
class ConnectionItem:
    """The link to the host: ``lost`` once when it drops, ``retrying`` before each
    attempt (after ``delay`` seconds), ``restored`` when the watcher speaks again.

    ``reason`` is a few words for a person ("silent for 6 s", "connection closed");
    ``detail`` the whole error (it may quote the shell command), for a log."""

    state: Literal["lost", "retrying", "restored"]
    attempt: int
    reason: str = ""
    delay: float = 0.0
    detail: str = ""
    kind: Literal["connection"] = "connection"


WatchItem = EventItem | LogItem | SysItem | HeartbeatItem | CrashedItem | ConnectionItem


# -- reconnecting --------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnection attempts: ``initial`` doubling up to ``cap``.
    Gives up after ``max_attempts`` attempts or ``max_downtime`` seconds without
    a connection, whichever comes first (None: no such limit)."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 10.0
    max_attempts: int | None = None
    max_downtime: float | None = 300.0

    def delay(self, attempt: int) -> float:
        return min(self.cap, self.initial * self.factor ** max(0, attempt - 1))


@dataclass
class ResumePoint:
    """What the client holds; a new watcher starts right after it."""

    seq: int = 0
    log_offset: int = 0
    finished: bool = field(default=False)  # a terminal status or a crash was yielded
    # events.jsonl's byte offset just after the line with ``seq`` (0: not known).
    events_offset: int = 0


def watcher_command(
    host: Host,
    run_dir: str,
    point: ResumePoint,
    interval: float,
    poll: float | None = None,
    offsets: bool = True,
) -> Command:
    """``offsets=False``: without ``--events-offset``, for a watcher shipped before it."""
    args = [
        str(run_dir),
        "--after-seq",
        str(point.seq),
        *(["--events-offset", str(point.events_offset)] if offsets and point.events_offset else []),
        "--log-offset",
        str(point.log_offset),
        "--interval",
        repr(float(interval)),
    ]
    if poll is not None:
        args += ["--poll", repr(float(poll))]
    return python_module(host, "remote.watcher", args)


def _parse(line: str) -> dict[str, Any] | None:
    """A watcher line, or None for anything else (a login banner a shell rc file
    prints on stdout, say), which is skipped rather than fatal."""
    if not line.startswith("{"):
        return None
    try:
        msg = _loads(line)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) and "kind" in msg else None


def follow(
    host: Host,
    run_dir: str | PurePosixPath,
    after_seq: int = 0,
    log_offset: int = 0,
    interval: float = 2.0,
    *,
    events_offset: int = 0,
    backoff: Backoff | None = None,
    silence_intervals: float = 3.0,
    poll: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[WatchItem]:
    """Yield a run's items until it ends (terminal status or crash), surviving drops.

    ``run_dir`` is a path on the host (relative paths are relative to the host's
    workdir, or its home over SSH). ``after_seq`` / ``log_offset`` resume a
    follow that an earlier process started; ``events_offset``, events.jsonl's byte
    offset just after the line with ``after_seq``, lets the watcher start there
    (it checks that line, and reads the whole file when it does not match).
    """
    backoff = backoff or Backoff()
    point = ResumePoint(seq=after_seq, log_offset=log_offset, events_offset=events_offset)
    attempt = 0
    down_since: float | None = None
    reason = detail = ""
    offsets = True  # until a watcher says it has no --events-offset
    while True:
        if attempt:
            elapsed = time.monotonic() - (down_since or time.monotonic())
            if (backoff.max_attempts is not None and attempt > backoff.max_attempts) or (
                backoff.max_downtime is not None and elapsed > backoff.max_downtime
            ):
                raise TransportError(
                    f"{host.name}: gave up reconnecting after {attempt - 1} attempts "
                    f"and {elapsed:.0f} s: {reason}"
                )
            delay = backoff.delay(attempt)
            yield ConnectionItem("retrying", attempt, reason, delay, detail)
            sleep(delay)
        command = watcher_command(host, str(run_dir), point, interval, poll, offsets)
        heard = False
        last_line = time.monotonic()
        try:
            with host.stream(command, idle_timeout=interval * silence_intervals) as lines:
                for line in lines:
                    last_line = time.monotonic()
                    msg = _parse(line)
                    if msg is None:
                        continue
                    if not heard:
                        heard = True
                        if attempt:
                            yield ConnectionItem("restored", attempt)
                            attempt, down_since = 0, None
                    kind = msg["kind"]
                    if kind == "end":
                        return
                    if kind == "error":
                        raise WatchError(f"{host.name}: {msg.get('message')}")
                    yield from _items(msg, point)
                code = lines.wait_exit(2.0)
                if (
                    code not in (None, 0)
                    and offsets
                    and "--events-offset" in (lines.stderr_tail or "")
                ):
                    offsets = False  # code shipped before the option: ask again without it
                    continue
                if code not in (None, 0):
                    # The watcher itself failed (no such interpreter, module missing,
                    # a bug): the same command would fail again, so say why now.
                    raise CommandError(_describe(command), code, lines.stderr_tail or "(no output)")
                reason = detail = "the watcher's stream ended early"
        except (AuthenticationError, HostKeyError, ConfigError):
            raise
        except TransportError as exc:
            reason, detail = _why(exc, time.monotonic() - last_line), str(exc)
        if point.finished:
            # The run is over and everything up to its end was yielded; only trailing
            # log lines could be missing, not worth waiting for a dead link.
            return
        if attempt == 0:
            down_since = time.monotonic()
            yield ConnectionItem("lost", 0, reason, detail=detail)
        attempt += 1


def _why(exc: TransportError, silent_for: float) -> str:
    """A few words on why a link dropped, without the shell command the error quotes."""
    if isinstance(exc, StreamSilentError):
        return f"silent for {silent_for:.0f} s"
    cause = str(exc.__cause__ or "").strip()
    # Else the message's last part: "gpu1: running '<command>': connection closed".
    return cause or str(exc).rsplit(": ", 1)[-1]


def _describe(command: Command) -> str:
    return command if isinstance(command, str) else shlex.join(command)


def _new_event(event: dict[str, Any], point: ResumePoint) -> EventItem | None:
    """The item for an event not yielded yet, or None for one that was (before a
    reconnect): never twice. A terminal status marks the follow finished."""
    if event["seq"] <= point.seq:
        return None
    point.seq = event["seq"]
    item = EventItem(event)
    if event.get("type") == EventType.STATUS and item.status and item.status.is_terminal():
        point.finished = True
    return item


def _items(msg: dict[str, Any], point: ResumePoint) -> Iterator[WatchItem]:
    kind = msg["kind"]
    if kind == "events":
        events = msg["events"]
        for event in events:
            if (item := _new_event(event, point)) is not None:
                yield item
        # Where the next watcher may start: only when the batch ends on the seq held.
        offset = msg.get("offset")
        if isinstance(offset, int) and events and events[-1].get("seq") == point.seq:
            point.events_offset = offset
    elif kind == "event":  # one per line, from a watcher older than batches
        if (item := _new_event(msg["event"], point)) is not None:
            yield item
    elif kind == "log":
        if msg["offset"] <= point.log_offset:
            return
        point.log_offset = msg["offset"]
        yield LogItem(msg["offset"], msg["text"])
    elif kind == "sys":
        yield SysItem({k: v for k, v in msg.items() if k != "kind"})
    elif kind == "heartbeat":
        yield HeartbeatItem(msg.get("time", time.time()))
    elif kind == "crashed":
        point.finished = True
        yield CrashedItem(list(msg.get("last_log", [])))
    # Unknown kinds come from a newer watcher; an older client ignores them.
