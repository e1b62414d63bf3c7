"""One reader of a run's events: folds ``events.jsonl`` into what every view shows.

Stdlib only, like :mod:`trainers.events` beside it: the on-host ``hostctl list``
runs it where torch may not be installed, and the console never imports torch.

    log = RunLog.read(run_dir / "events.jsonl")  # a whole file
    log = RunLog(); log.add(event); log.extend(batch)  # a live stream, in any batches

It keeps, as the run ended up (docs/run-directory.md, "Resume and repeated epochs"):

* ``rows``: one per-epoch ``val`` event (split ``val``) per epoch, in epoch order,
  whole (train_loss, loss, accuracy, macro_f1, weighted_f1, uar, per_class,
  confusion, is_best, monitor, best, best_epoch, epoch_s, ...);
* ``status``: the last ``status`` event's status;
* ``epoch_start``: the last ``epoch_start`` event;
* ``test``: the final evaluation's ``val`` event (split ``test``);
* ``best``, ``best_epoch``, ``monitor``: the running best as the last kept epoch
  reported it (the engine's early-stopping state, restored with the checkpoint);
* ``warnings``: the ``warning`` events, the latest per ``kind`` and ``split``
  (a resumed run prepares its data again and warns again: that replaces, not
  repeats), in the order each was first seen.

``progress()`` is the small record a listing needs (epoch, epochs, best,
best_epoch, monitor, seq); the engine keeps it current in run.json
(:class:`ProgressRecord`, written at each epoch start, val and resume, never per
step), so ``hostctl list`` costs the same whatever a run's length, and
:meth:`RunLog.read_tail` rebuilds it from the end of the file for runs without it.

A resumed run repeats the epochs after its checkpoint: ``status: resumed`` drops
what is held for epochs after ``from_epoch`` (and the killed process's final
evaluation, which the resumed run does again), and a repeated epoch's later
``val`` event replaces the earlier one. ``rewrites`` counts both, so a view that
paints rows incrementally knows when to paint them all again. The held
``epoch_start`` stays: the resumed run writes a new one before anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trainers.events import EventType, RunStatus, read_events
from trainers.rundir import RunDir

PROGRESS = "progress"  # run.json's key for the record (docs/run-directory.md)
# RunLog.read_tail: the first read of a file's end, and the most it reads back.
TAIL_BYTES = 64 * 1024
TAIL_MAX_BYTES = 4 * 1024 * 1024


class RunLog:
    """Per-epoch rows, status, epoch in progress and best of one run; feed it events."""

    def __init__(self) -> None:
        self._rows: dict[int, dict[str, Any]] = {}
        self._sorted: list[dict[str, Any]] | None = None
        self.status: str | None = None
        self.epoch_start: dict[str, Any] | None = None
        self.test: dict[str, Any] | None = None
        self._warnings: dict[tuple[str, str | None], dict[str, Any]] = {}
        self.resumes = 0
        self.rewrites = 0  # times held rows were dropped or replaced
        self.seq: int | None = None  # the last event's

    @classmethod
    def from_events(cls, events: Iterable[dict[str, Any]]) -> RunLog:
        log = cls()
        log.extend(events)
        return log

    @classmethod
    def read(cls, path: Path) -> RunLog:
        """The whole of an events.jsonl (its complete lines); empty when there is none."""
        return cls.from_events(read_events(Path(path)))

    @classmethod
    def read_tail(
        cls, path: Path, max_bytes: int = TAIL_BYTES, limit: int = TAIL_MAX_BYTES
    ) -> RunLog:
        """The end of an events.jsonl: its last ``max_bytes``, read further back (up to
        ``limit`` bytes) until they hold an epoch start and a val row, so a long run
        costs what a short one does. For runs without a progress record in run.json
        (older engines, fused runs); what happened before the part read is unknown
        (a resume there cannot drop rows it never held)."""
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            while True:
                start = max(0, size - max_bytes)
                fh.seek(max(0, start - 1))  # the byte before: does a line start at start?
                data = fh.read(size - start + (start > 0))
                if start:
                    data = data[data.find(b"\n") + 1 :]  # up to the first line start
                log = cls.from_events(_complete_lines(data))
                if start == 0 or max_bytes >= limit or (log.rows and log.epoch_start):
                    return log
                max_bytes = min(limit, max_bytes * 4)

    def extend(self, events: Iterable[dict[str, Any]]) -> bool:
        """Feed a batch; True when the rows changed."""
        changed = False
        for event in events:
            changed = self.add(event) or changed
        return changed

    def add(self, event: dict[str, Any]) -> bool:
        """Feed one event; True when the rows changed."""
        etype = event.get("type")
        self.seq = event.get("seq", self.seq)
        if etype == EventType.STATUS:
            self.status = str(event.get("status"))
            if event.get("status") == RunStatus.RESUMED:
                return self._resumed(int(event.get("from_epoch") or 0))
        elif etype == EventType.EPOCH_START:
            self.epoch_start = event
        elif etype == EventType.VAL:
            split = event.get("split", "val")
            if split == "val":
                return self._val(event)
            if split == "test":
                self.test = event
        elif etype == EventType.WARNING:
            self._warnings[(str(event.get("kind")), event.get("split"))] = event
        return False

    def _val(self, event: dict[str, Any]) -> bool:
        try:
            epoch = int(event["epoch"])
        except (KeyError, TypeError, ValueError):
            return False
        if epoch in self._rows:
            self.rewrites += 1
        self._rows[epoch] = event
        self._sorted = None
        return True

    def _resumed(self, from_epoch: int) -> bool:
        self.resumes += 1
        self.test = None
        dropped = [e for e in self._rows if e > from_epoch]
        for epoch in dropped:
            del self._rows[epoch]
        if dropped:
            self.rewrites += 1
            self._sorted = None
        return bool(dropped)

    # -- what the views read ------------------------------------------------------------------

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The kept per-epoch val events, in epoch order (a fresh list after each change)."""
        if self._sorted is None:
            self._sorted = [self._rows[e] for e in sorted(self._rows)]
        return self._sorted

    @property
    def warnings(self) -> list[dict[str, Any]]:
        """The warning events, the latest per (kind, split), in order of first appearance."""
        return list(self._warnings.values())

    @property
    def last(self) -> dict[str, Any] | None:
        rows = self.rows
        return rows[-1] if rows else None

    @property
    def best(self) -> Any:
        return (self.last or {}).get("best")

    @property
    def best_epoch(self) -> Any:
        return (self.last or {}).get("best_epoch")

    @property
    def monitor(self) -> Any:
        return (self.last or {}).get("monitor")

    @property
    def epoch(self) -> int | None:
        """The epoch in progress (or last begun): the last epoch_start's."""
        return None if self.epoch_start is None else self.epoch_start.get("epoch")

    def progress(self) -> dict[str, Any]:
        """What a runs listing shows: ``{"epoch", "epochs", "best", "best_epoch",
        "monitor", "seq"}`` (run.json's ``progress`` less ``updated_at``)."""
        return {
            "epoch": self.epoch,
            "epochs": None if self.epoch_start is None else self.epoch_start.get("epochs"),
            "best": self.best,
            "best_epoch": self.best_epoch,
            "monitor": self.monitor,
            "seq": self.seq,
        }


# What RunLog keeps, as EventWriter writes it (compact JSON) or any other writer (a
# space after the colon: json.dumps' default); every other line (steps, checkpoints:
# most of a tail) is left undecoded. Inside a string value the text is escaped and
# cannot match; in a nested object it only costs that line's decoding.
_KEPT = re.compile(rb'"type"\s*:\s*"(?:status|epoch_start|val|warning)"')


def _complete_lines(data: bytes) -> Iterable[dict[str, Any]]:
    """The events RunLog keeps among ``data``'s complete lines, in order, and the last
    line (whose seq :meth:`RunLog.progress` reports); a line being written is left out.
    Lines are found by a search of the bytes, so a tail of steps costs no decoding."""
    data = data[: data.rfind(b"\n") + 1]
    if not data:
        return
    last = data.rfind(b"\n", 0, len(data) - 1) + 1
    starts = {data.rfind(b"\n", 0, m.start()) + 1 for m in _KEPT.finditer(data)}
    starts.add(last)
    for begin in sorted(starts):
        line = data[begin : data.index(b"\n", begin)]
        if line.strip():
            yield json.loads(line)


class ProgressRecord:
    """The engine's sink that keeps run.json's ``progress`` current: fed every event,
    it rewrites run.json (atomically, with the rest of the manifest) only when an
    epoch starts, an epoch's val event lands or a run resumes, never per step.

    It folds the events with a :class:`RunLog`, so the record says exactly what
    ``RunLog.read`` of the whole file would (a resume's repeated epochs included);
    on a resume it starts from the file as it is."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        try:
            self.log = RunLog.read(run.events)
        except (OSError, ValueError, KeyError):
            # A line the writer will refuse anyway; the record must never stop a run.
            self.log = RunLog()

    def handle(self, event: dict[str, Any]) -> None:
        etype = event.get("type")
        self.log.add(event)
        if not (
            etype == EventType.EPOCH_START
            or (etype == EventType.VAL and event.get("split", "val") == "val")
            or (etype == EventType.STATUS and event.get("status") == RunStatus.RESUMED)
        ):
            return
        record = {**self.log.progress(), "updated_at": time.time()}
        # No run.json (a bare writer), one being replaced, a value JSON cannot hold:
        # the next record lands; a listing is never worth a training run.
        with contextlib.suppress(OSError, ValueError, TypeError):
            self.run.update_manifest(**{PROGRESS: record})

    def close(self) -> None:
        pass


def read_progress(run_dir: Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's progress record: run.json's ``progress`` when the engine keeps one,
    else :meth:`RunLog.read_tail`'s (empty when there is no events file)."""
    if manifest is None:
        try:
            manifest = RunDir(Path(run_dir)).read_manifest()
        except (OSError, ValueError):
            manifest = {}
    record = manifest.get(PROGRESS)
    if isinstance(record, dict):
        return record
    try:
        return RunLog.read_tail(RunDir(Path(run_dir)).events).progress()
    except (OSError, ValueError, KeyError):
        return {}
