"""What every tracker sink shares: its own thread, one warning, run.json's record.

A tracker talks to a network service (or a local process, for W&B offline),
which may be slow or gone. The engine must not wait on it, so a tracker sink
only queues events in ``handle`` and a worker thread makes the calls. The
worker never touches the engine's state: it leaves two things for the
engine's thread to do at its next ``handle`` — the warning event when the
tracker failed (then the worker stops and the sink drops every later event),
and the tracker's ids for run.json (read-modify-write of run.json from two
threads could lose the other's update).

At the run's terminal status the engine's thread waits for the worker to
finish the tracker run (final artifacts) — up to ``FINAL_WAIT_S`` after
``completed``, ``STOP_WAIT_S`` otherwise, since a stopped or failing process
should go away promptly. A failure in that last stretch is a warning event
written after the terminal status; one after ``close`` cannot be an event and
goes unreported beyond the tracker's own logs.
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainers.config import flatten, to_dict
from trainers.events import EventType, RunStatus
from trainers.rundir import RunDir

# Environment variables whose values must never reach an event, even inside an error
# message a tracker's library wrote.
SECRET_ENV = (
    "WANDB_API_KEY",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
)

FINAL_WAIT_S = 300.0
STOP_WAIT_S = 30.0

_END = object()

# warn(kind=..., tracker=..., message=...): emits a warning event (the engine's thread).
Warn = Callable[..., Any]


def scrub(text: str) -> str:
    """``text`` with the values of :data:`SECRET_ENV` replaced by ``***``."""
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def flat_config(cfg: Any) -> dict[str, Any]:
    """The resolved config as ``section.key`` -> value (what trackers call params)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in flatten(to_dict(cfg)).items()}


def class_names(event: dict[str, Any]) -> list[str]:
    """A val event's classes in matrix order (per_class keeps the classes' order)."""
    return list(event.get("per_class") or {}) or [
        str(i) for i in range(len(event.get("confusion") or []))
    ]


def val_metrics(event: dict[str, Any]) -> dict[str, float]:
    """A val event's scalars under TensorBoardSink's names, plus per-class F1."""
    from trainers.engine.sinks import VAL_SCALARS

    split = event["split"]
    out = {f"{split}/{key}": float(event[key]) for key in VAL_SCALARS if event.get(key) is not None}
    for name, stats in (event.get("per_class") or {}).items():
        out[f"{split}_recall/{name}"] = float(stats["recall"])
        out[f"{split}_f1/{name}"] = float(stats["f1"])
    if event.get("train_loss") is not None:
        out["train/epoch_loss"] = float(event["train_loss"])
    return out


def step_metrics(event: dict[str, Any]) -> dict[str, float]:
    """A step event's scalars under TensorBoardSink's names (grad norms when present)."""
    out = {
        "train/loss": float(event["loss"]),
        "train/lr": float(event["lr"]),
        "perf/data_s": float(event["data_s"]),
        "perf/compute_s": float(event["compute_s"]),
    }
    if event.get("grad_norm") is not None:
        out["train/grad_norm"] = float(event["grad_norm"])
    for group, value in (event.get("grad_norms") or {}).items():
        if value is not None:
            out[f"grad_norm/{group}"] = float(value)
    return out


_export_lock = threading.Lock()
_exports: dict[Path, tuple[Path | None, str | None]] = {}


def export_bundle(run: RunDir) -> tuple[Path | None, str | None]:
    """(the run's export bundle, why there is none): safetensors, config.json and model
    card from best.pt, built once per run in a temporary folder both trackers upload
    from, removed when the process exits (the uploads have copied it by then). No
    best.pt is (None, None); an export that fails is (None, its error), and the
    trackers still upload best.pt and summary.json."""
    with _export_lock:
        if run.path in _exports:
            return _exports[run.path]
        if not run.best_ckpt.exists():
            return None, None
        from trainers.inference.export import export_model

        tmp = Path(tempfile.mkdtemp(prefix="emoconsole-export-"))
        atexit.register(shutil.rmtree, tmp, True)
        try:
            # The run's own checkpoint, written by this process: trusted.
            export_model(run.path, tmp / "export", "safetensors", "best", trust_pickle=True)
            result: tuple[Path | None, str | None] = (tmp / "export", None)
        except Exception as exc:
            result = (None, f"{type(exc).__name__}: {exc}")
        _exports[run.path] = result
        return result


class TrackerSink:
    """Base of the tracker sinks. Subclasses implement, all called on the worker:
    ``start`` (open or continue the tracker's run, :meth:`set_record` its ids),
    ``process(event)``, ``flush`` (when the queue runs dry) and ``end(status)`` (the
    run's terminal status, or "" when the engine closed without one)."""

    name = "tracker"
    label = "tracker"

    def __init__(self, cfg: Any, run: RunDir, warn: Warn, resume: bool) -> None:
        self.cfg = cfg
        self.run = run
        self.warn = warn
        self.resume = resume
        try:
            trackers = run.read_manifest().get("trackers") or {}
        except (OSError, ValueError):
            trackers = {}
        self.saved: dict[str, Any] = trackers.get(self.name) or {}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._failure: str | None = None
        self._warned = False
        self._record: dict[str, Any] | None = None
        self._notes: list[str] = []
        self._status = ""
        self._ended = False
        self._thread = threading.Thread(target=self._work, name=f"tracker-{self.name}", daemon=True)
        self._thread.start()

    # -- the engine's thread ---------------------------------------------------------------

    def handle(self, event: dict[str, Any]) -> None:
        self._report()
        if self._ended:
            return
        if self._failure is None:
            self._queue.put(dict(event))
        if event["type"] == EventType.STATUS and RunStatus(event["status"]).is_terminal():
            self._ended = True
            wait = FINAL_WAIT_S if event["status"] == RunStatus.COMPLETED else STOP_WAIT_S
            self._queue.put(_END)
            self._thread.join(wait)
            if self._thread.is_alive():
                self._fail(f"did not finish within {wait:.0f} s (final metrics or artifacts)")
            self._report()

    def close(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put(_END)
            self._thread.join(STOP_WAIT_S)

    def _report(self) -> None:
        with self._lock:
            record, self._record = self._record, None
            notes, self._notes = self._notes, []
            message = self._failure if not self._warned else None
            if message is not None:
                self._warned = True
        if record is not None:
            trackers = dict(self.run.read_manifest().get("trackers") or {})
            trackers[self.name] = record
            self.run.update_manifest(trackers=trackers)
        for note in notes:
            self.warn(kind="tracker", tracker=self.name, message=f"{self.label}: {note}")
        if message is not None:
            # Emitting re-enters handle(): _warned is already set, so it returns quietly.
            self.warn(
                kind="tracker",
                tracker=self.name,
                message=f"{self.label} failed, the run goes on without it: {message}",
            )

    # -- the worker ------------------------------------------------------------------------

    def set_record(self, record: dict[str, Any]) -> None:
        """The tracker's ids for run.json's ``trackers`` (written by the engine's thread)."""
        with self._lock:
            self._record = record

    def note(self, message: str) -> None:
        """A warning that does not stop the tracker (e.g. the export bundle is missing)."""
        with self._lock:
            self._notes.append(scrub(message))

    def _fail(self, message: str) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = scrub(message)

    def _work(self) -> None:
        try:
            self.start()
            while True:
                item = self._queue.get()
                if item is _END:
                    self.end(self._status)
                    return
                if item["type"] == EventType.STATUS and RunStatus(item["status"]).is_terminal():
                    self._status = item["status"]
                self.process(item)
                if self._queue.empty():
                    self.flush()
        except Exception as exc:
            detail = str(exc).strip().splitlines()
            self._fail(f"{type(exc).__name__}: {detail[0] if detail else ''}".rstrip(": "))
            self._debug(traceback.format_exc())
            self.abandon()

    def _debug(self, text: str) -> None:
        if os.environ.get("EMOCONSOLE_TRACKER_DEBUG"):
            print(scrub(text), flush=True)

    # -- for subclasses --------------------------------------------------------------------

    def start(self) -> None:
        raise NotImplementedError

    def process(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Send what ``process`` batched (called when the queue is empty)."""

    def end(self, status: str) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        """Release what a failed tracker holds; must not raise (best effort)."""
