"""The run directory layout (DESIGN.md): one place that knows its file names.

Stdlib only, like :mod:`trainers.events`, so the console can read a run
directory without the training stack.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_JSON = "run.json"
EVENTS = "events.jsonl"
TRAIN_LOG = "train.log"
TB_DIR = "tb"
CHECKPOINTS = "checkpoints"
SUMMARY = "summary.json"
BAD_INPUTS = "bad_inputs.jsonl"
PREDICTIONS = "predictions.jsonl"
RANKS_DIR = "ranks"
EVALUATIONS = "evaluations"  # evaluations/<name>/: `python -m trainers evaluate`
EVALUATION = "evaluation.json"
# An experiment directory (trainers.engine.sweep): its runs are ordinary run directories inside.
EXPERIMENT_JSON = "experiment.json"
EXPERIMENT_FORMAT = "emoconsole-experiment/1"


def new_run_id(model: str) -> str:
    """Sortable by start time, unique without coordination between hosts."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{model}-{secrets.token_hex(2)}"


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_default) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def events(self) -> Path:
        return self.path / EVENTS

    @property
    def train_log(self) -> Path:
        return self.path / TRAIN_LOG

    @property
    def tb(self) -> Path:
        return self.path / TB_DIR

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last_ckpt(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_ckpt(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def bad_inputs(self) -> Path:
        return self.path / BAD_INPUTS

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def ranks(self) -> Path:
        """Under torchrun: each rank's own log (rank 0 also writes train.log)."""
        return self.path / RANKS_DIR

    def rank_log(self, rank: int) -> Path:
        return self.ranks / f"rank{rank}.log"

    @property
    def evaluations(self) -> Path:
        """One folder per evaluation on other data: evaluation.json, predictions.jsonl."""
        return self.path / EVALUATIONS

    def read_evaluations(self) -> list[tuple[str, dict[str, Any]]]:
        """``(name, evaluation.json)`` of every finished evaluation, by name; a folder
        without a readable evaluation.json (one still being written) is left out."""
        if not self.evaluations.is_dir():
            return []
        found = []
        for folder in sorted(self.evaluations.iterdir()):
            try:
                data = json.loads((folder / EVALUATION).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                found.append((folder.name, data))
        return found

    def create(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=False)
        self.tb.mkdir()
        self.checkpoints.mkdir()
        self.bad_inputs.touch()
        return self

    def read_manifest(self) -> dict[str, Any]:
        return json.loads(self.run_json.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json_atomic(self.run_json, manifest)

    def update_manifest(self, **fields: Any) -> dict[str, Any]:
        manifest = self.read_manifest()
        manifest.update(fields)
        self.write_manifest(manifest)
        return manifest

    def read_summary(self) -> dict[str, Any] | None:
        if not self.summary.exists():
            return None
        return json.loads(self.summary.read_text(encoding="utf-8"))

    def read_bad_inputs(self) -> list[dict[str, Any]]:
        if not self.bad_inputs.exists():
            return []
        lines = self.bad_inputs.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def tail_lines(path: Path, n: int, max_bytes: int = 256 * 1024) -> list[str]:
    """The last ``n`` lines of a log, reading at most its last ``max_bytes``."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first line is probably cut
    return lines[-n:]


class BadInputLog:
    """bad_inputs.jsonl: every skipped input once, with its reason."""

    def __init__(self, path: Path | None) -> None:
        """``path=None`` counts without writing (torchrun ranks other than 0)."""
        self.path = path
        self._seen: set[str] = (
            {row["path"] for row in RunDir(path.parent).read_bad_inputs()} if path else set()
        )

    def __call__(self, path: str, reason: str) -> None:
        if path in self._seen:
            return
        self._seen.add(path)
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"path": path, "reason": reason, "time": time.time()}) + "\n")

    def __len__(self) -> int:
        return len(self._seen)
