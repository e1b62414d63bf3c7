"""The event schema of ``events.jsonl``: the one contract the console reads.

Stdlib only on purpose: the console, the on-host watcher and the engine all
import this module, and only the engine has torch. docs/run-directory.md is the
prose version of this file; change both together.

Every line is one JSON object with at least ``seq`` (strictly increasing over
the whole file, across resumes), ``type`` (one of :class:`EventType`) and
``time`` (Unix seconds). Lines are written whole and flushed one by one, so a
reader that sees a line without its trailing newline is looking at a write in
progress and must wait for it rather than parse it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

SCHEMA_VERSION = 1


class EventType(StrEnum):
    STATUS = "status"  # run lifecycle: see RunStatus
    EPOCH_START = "epoch_start"  # epoch, epochs, steps (per epoch), lr
    # epoch, step, global_step, loss, lr, data_s, compute_s, samples, grad_norm (float, or
    # null when not finite); every train.log_grad_norms_every steps grad_norms {group: norm}
    STEP = "step"
    VAL = "val"  # epoch, split, loss, accuracy, macro_f1, weighted_f1, uar, per_class, confusion
    CHECKPOINT = "checkpoint"  # epoch, path, kind ("last" | "best"), metric, value
    SYS = "sys"  # system samples (written by the watcher, not the engine)
    ERROR = "error"  # message, exception, traceback
    WARNING = "warning"  # kind, message, and the numbers behind it (kind-specific)
    # After each validation: epoch, global_step, split ("val"), classes, samples: the same
    # few rows every epoch, each {index, name, label, pred (class names), probs (in
    # classes' order), image (a picture's path relative to the run directory, or null)}
    SAMPLES = "samples"


class RunStatus(StrEnum):
    """A run's lifecycle. ``crashed`` is never written by the run itself: the
    watcher infers it when the process is gone without a terminal status, and
    the torchrun launcher writes it when a rank was killed (trainers.launch)."""

    # Waiting in its host's run queue for GPU slots (remote.onhost.queue): listed by
    # ``hostctl list`` only, never written by a run (it has no directory yet).
    QUEUED = "queued"
    STARTING = "starting"
    PREPARING = "preparing"  # indexing/decoding data before the first epoch
    RUNNING = "running"
    RESUMED = "resumed"  # written once on resume, then RUNNING again
    COMPLETED = "completed"  # reached max epochs or early stopping
    STOPPED = "stopped"  # asked to stop (SIGTERM/SIGINT); checkpoint saved
    # Stopped like ``stopped`` because the instance is going away (the guard wrote
    # notice.json first): source, action, notice_time, noticed_at say why and when.
    PREEMPTED = "preempted"
    FAILED = "failed"  # an exception ended the run; see the error event
    CRASHED = "crashed"

    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {
    RunStatus.COMPLETED,
    RunStatus.STOPPED,
    RunStatus.PREEMPTED,
    RunStatus.FAILED,
    RunStatus.CRASHED,
}

# Written by the run's guard (remote.onhost.guard) before it stops the run on a notice:
# {"source": "spot"|"maintenance"|"max_hours", "action", "time" (when the instance goes,
# Unix seconds), "noticed_at", "pid"}, then "signalled_at" (just before its SIGTERM),
# then stopped_at, signal, status, checkpoint_at, and with storage pushed, pushed_at.
NOTICE_FILE = "notice.json"


def read_notice(run_dir: Path, since: float = 0.0) -> dict[str, Any] | None:
    """The guard's notice for a process that started at ``since`` (Unix seconds).

    A notice signalled before then belongs to an earlier process of the same run (the
    one preempted before this resume); it must not turn this one's plain stop into
    another preemption. None when there is no such notice or it cannot be read.
    """
    try:
        notice = json.loads((Path(run_dir) / NOTICE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(notice, dict):
        return None
    # The guard stamps signalled_at just before its SIGTERM, once the trainer is up;
    # noticed_at (earlier: it may precede a trainer still starting) if it has not yet.
    stamp = notice.get("signalled_at", notice.get("noticed_at"))
    if not isinstance(stamp, int | float) or stamp < since:
        return None
    return notice


def stop_status(run_dir: Path, since: float = 0.0) -> tuple[RunStatus, dict[str, Any]]:
    """The status a run asked to stop records: ``preempted`` with the notice's source,
    action, notice_time and noticed_at when the guard gave notice (:func:`read_notice`),
    else ``stopped``. One rule for the engine and the torchrun launcher."""
    notice = read_notice(run_dir, since)
    if notice is None:
        return RunStatus.STOPPED, {}
    return RunStatus.PREEMPTED, {
        "source": notice.get("source"),
        "action": notice.get("action"),
        "notice_time": notice.get("time"),
        "noticed_at": notice.get("noticed_at"),
    }


# The fields each engine-written event type always carries (beyond seq/type/time).
REQUIRED_FIELDS: dict[EventType, tuple[str, ...]] = {
    EventType.STATUS: ("status",),
    EventType.EPOCH_START: ("epoch", "epochs", "steps"),
    EventType.STEP: ("epoch", "step", "global_step", "loss", "lr", "data_s", "compute_s"),
    EventType.VAL: ("epoch", "split", "loss", "accuracy", "macro_f1", "weighted_f1", "uar"),
    EventType.CHECKPOINT: ("epoch", "path", "kind"),
    EventType.SYS: (),
    EventType.ERROR: ("message",),
    EventType.WARNING: ("kind", "message"),
    EventType.SAMPLES: ("epoch", "split", "classes", "samples"),
}


class SchemaError(ValueError):
    """An events.jsonl line that breaks the schema (names the line number)."""


def validate_event(event: dict[str, Any], line_no: int | None = None) -> EventType:
    where = f"events.jsonl line {line_no}: " if line_no is not None else ""
    for key in ("seq", "type", "time"):
        if key not in event:
            raise SchemaError(f"{where}missing {key!r}")
    try:
        etype = EventType(event["type"])
    except ValueError:
        known = ", ".join(t.value for t in EventType)
        raise SchemaError(f"{where}unknown type {event['type']!r} (known: {known})") from None
    missing = [f for f in REQUIRED_FIELDS[etype] if f not in event]
    if missing:
        raise SchemaError(f"{where}{etype.value} event lacks {', '.join(missing)}")
    return etype


class EventWriter:
    """Appends events with a strictly increasing ``seq``.

    Opening an existing file continues after its last complete line, which is
    what makes ``resume`` keep one unbroken sequence. A torn last line (the
    process was killed mid-write) is truncated away first so the next line
    starts on a clean boundary.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._seq = _repair_and_last_seq(self.path)
        self._fh: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    @property
    def last_seq(self) -> int:
        return self._seq

    def write(self, etype: EventType | str, **fields: Any) -> dict[str, Any]:
        self._seq += 1
        event = {"seq": self._seq, "type": str(EventType(etype)), "time": time.time(), **fields}
        self._fh.write(json.dumps(event, separators=(",", ":"), default=_jsonable) + "\n")
        self._fh.flush()
        return event

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonable(value: Any) -> Any:
    """numpy scalars/arrays and paths reach events from metric code."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _repair_and_last_seq(path: Path) -> int:
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as fh:
        data = fh.read()
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            fh.truncate(cut)
            data = data[:cut]
    last = 0
    for line in data.splitlines():
        if line.strip():
            last = json.loads(line)["seq"]
    return last


@dataclass
class EventCursor:
    """Where a reader stands in events.jsonl: byte offset of the next unread
    line and the last seq seen. Resuming from a cursor never repeats or skips."""

    offset: int = 0
    seq: int = 0


def read_new_events(path: Path, cursor: EventCursor) -> list[dict[str, Any]]:
    """Complete lines after ``cursor``; advances it. Safe while the file grows."""
    return [event for event, _ in read_new_lines(path, cursor)]


_SEQ_PREFIX = re.compile(rb'\{"seq":\s*(\d+),')


def read_new_raw(path: Path, cursor: EventCursor, max_bytes: int = -1) -> list[tuple[int, bytes]]:
    """(seq, line as written) after ``cursor``, without decoding the JSON: the
    writer puts ``seq`` first, so a watcher forwarding 100,000 events/s reads it
    off the line's start (any other line is decoded). ``max_bytes`` (>0) reads
    at most that much, so a long file is forwarded in pieces while the client
    is already decoding the first ones; a longer line is still read whole."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size < cursor.offset:
            cursor.offset = 0
        fh.seek(cursor.offset)
        chunk = fh.read(max_bytes)
        if max_bytes > 0 and len(chunk) == max_bytes and b"\n" not in chunk:
            chunk += fh.readline()  # one line longer than max_bytes
    end = chunk.rfind(b"\n") + 1
    out = []
    for line in chunk[:end].splitlines():
        if not line.strip():
            continue
        match = _SEQ_PREFIX.match(line)
        seq = int(match.group(1)) if match else int(json.loads(line)["seq"])
        if seq > cursor.seq:
            out.append((seq, line))
            cursor.seq = seq
    cursor.offset += end
    return out


def cursor_at(path: Path, offset: int, seq: int) -> EventCursor | None:
    """A cursor just after the line that ends at byte ``offset``, when that line's seq
    is ``seq``: a reader that held the file up to there resumes without reading it
    again. None when it is not so (another file, a cut or torn line, no such offset),
    and the reader must scan from the start as :class:`EventCursor` () does."""
    if offset <= 0 or seq <= 0:
        return None
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size < offset:
                return None
            back = 4096
            while True:  # the line before offset, however long (a val with a big confusion)
                start = max(0, offset - back)
                fh.seek(start)
                data = fh.read(offset - start)
                begin = data.rfind(b"\n", 0, len(data) - 1)
                if begin >= 0 or start == 0:
                    break
                back *= 4
    except OSError:
        return None
    if not data.endswith(b"\n"):
        return None
    line = data[begin + 1 :]
    match = _SEQ_PREFIX.match(line)
    try:
        found = int(match.group(1)) if match else int(json.loads(line)["seq"])
    except (ValueError, KeyError, TypeError):
        return None
    return EventCursor(offset=offset, seq=seq) if found == seq else None


def read_new_lines(path: Path, cursor: EventCursor) -> list[tuple[dict[str, Any], bytes]]:
    """Like :func:`read_new_events`, each event with its line as written (a watcher
    forwards the bytes instead of encoding the event again)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size < cursor.offset:
            cursor.offset = 0  # the file was replaced; seq filter below prevents repeats
        fh.seek(cursor.offset)
        chunk = fh.read()
    end = chunk.rfind(b"\n") + 1
    events = []
    for line in chunk[:end].splitlines():
        if not line.strip():
            continue
        event = json.loads(line)
        if event["seq"] > cursor.seq:
            events.append((event, line))
            cursor.seq = event["seq"]
    cursor.offset += end
    return events


def read_events(path: Path, after_seq: int = 0) -> list[dict[str, Any]]:
    cursor = EventCursor(seq=after_seq)
    return read_new_events(path, cursor)


def follow_events(
    path: Path, cursor: EventCursor | None = None, poll_s: float = 0.2
) -> Iterator[dict[str, Any]]:
    """Yield events as they are written; ends after a terminal status."""
    cursor = cursor or EventCursor()
    while True:
        for event in read_new_events(path, cursor):
            yield event
            if event["type"] == EventType.STATUS and RunStatus(event["status"]).is_terminal():
                return
        time.sleep(poll_s)
