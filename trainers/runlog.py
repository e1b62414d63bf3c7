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

A resumed run repeats the epochs after its checkpoint: ``status: resumed`` drops
what is held for epochs after ``from_epoch`` (and the killed process's final
evaluation, which the resumed run does again), and a repeated epoch's later
``val`` event replaces the earlier one. ``rewrites`` counts both, so a view that
paints rows incrementally knows when to paint them all again. The held
``epoch_start`` stays: the resumed run writes a new one before anything else.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from trainers.events import EventType, RunStatus, read_events


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

    @classmethod
    def from_events(cls, events: Iterable[dict[str, Any]]) -> RunLog:
        log = cls()
        log.extend(events)
        return log

    @classmethod
    def read(cls, path: Path) -> RunLog:
        """The whole of an events.jsonl (its complete lines); empty when there is none."""
        return cls.from_events(read_events(Path(path)))

    def extend(self, events: Iterable[dict[str, Any]]) -> bool:
        """Feed a batch; True when the rows changed."""
        changed = False
        for event in events:
            changed = self.add(event) or changed
        return changed

    def add(self, event: dict[str, Any]) -> bool:
        """Feed one event; True when the rows changed."""
        etype = event.get("type")
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
