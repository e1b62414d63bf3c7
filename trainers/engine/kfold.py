"""Stratified k-fold cross-validation (design note 003) on the one training loop.

Why it looks like this:

* A fold is an ordinary run: ``RUN/fold-<i>/`` is a complete run directory
  (run.json, events, checkpoints, predictions.jsonl, summary.json) trained by
  :class:`~trainers.engine.trainer.Trainer` with ``data.folds = k`` and
  ``data.fold = i``. The data module does the splitting (for FI: fold ``i``
  is the test split, val is carved from the other folds, see
  ``trainers.data.images``), so this driver knows no data set.
* ``RUN/kfold.json`` holds one row per fold (val and test accuracy, macro-F1,
  weighted-F1, best epoch) and their mean and standard deviation (numpy's
  default population std, as the note prints ``np.std``); ``RUN/summary.json``
  holds the same plus the *pooled out-of-fold* report: each image's
  prediction from the fold that held it out, scored once over the whole
  corpus, which is steadier than a mean of k small test sets.
* Restartable: a fold whose ``summary.json`` exists is kept, a fold that
  started and did not finish is resumed from its last checkpoint, so a killed
  k-fold job continues where it stopped.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from trainers.config import ConfigError, validate
from trainers.engine import metrics as M
from trainers.registry import ModelEntry
from trainers.rundir import SUMMARY, RunDir, write_json_atomic

KFOLD_JSON = "kfold.json"
METRICS = ("accuracy", "macro_f1", "weighted_f1")


def fold_config(cfg: Any, folds: int, fold: int) -> Any:
    """A copy of ``cfg`` that trains fold ``fold`` of ``folds``."""
    data = getattr(cfg, "data", None)
    if data is None or not hasattr(data, "folds") or not hasattr(data, "fold"):
        raise ConfigError(
            "data.folds",
            "this model's data section has no folds/fold settings: k-fold needs a data "
            "module that can split into folds (audio-visual corpora by actor, FI images)",
        )
    out = copy.deepcopy(cfg)
    out.data.folds = folds
    out.data.fold = fold
    validate(out)
    return out


def _fold_row(fold: int, run: RunDir, summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "fold": fold,
        "run": run.path.name,
        "best_epoch": summary.get("best_epoch"),
        "epochs_run": summary.get("epochs_run"),
        **{
            split: {m: summary[split][m] for m in METRICS}
            for split in ("val", "test")
            if split in summary
        },
    }


def _mean_std(rows: list[dict[str, Any]], split: str) -> tuple[dict[str, float], dict[str, float]]:
    mean, std = {}, {}
    for m in METRICS:
        values = np.array([row[split][m] for row in rows], dtype=np.float64)
        mean[m] = float(values.mean())
        std[m] = float(values.std())  # ddof=0, numpy's default, as the note's np.std
    return mean, std


def _out_of_fold(runs: list[RunDir], classes: list[str]) -> dict[str, Any]:
    """One report over every image, each predicted by the fold that held it out."""
    labels, preds, keys = [], [], set()
    for run in runs:
        for line in run.predictions.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row["split"] != "test":
                continue
            if row["key"] in keys:
                raise RuntimeError(
                    f"{row['key']} is in the test split of two folds: the folds are not disjoint"
                )
            keys.add(row["key"])
            labels.append(row["label"])
            preds.append(row["pred"])
    cm = M.confusion_matrix(np.array(labels), np.array(preds), len(classes))
    return {"samples": len(labels), **M.classification_report(cm, classes)}


def run_kfold(
    entry: ModelEntry,
    cfg: Any,
    run_dir: Path,
    folds: int,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Train ``folds`` runs into ``run_dir/fold-<i>/`` and write the k-fold summary.

    Returns the summary (also written to ``run_dir/summary.json``; the per-fold
    table and mean/std to ``run_dir/kfold.json``). Re-running on the same
    ``run_dir`` keeps finished folds and resumes unfinished ones.
    """
    from trainers.engine.trainer import Trainer, new_manifest

    if folds < 2:
        raise ConfigError("data.folds", f"k-fold needs at least 2 folds, got {folds}")
    run_dir = Path(run_dir)
    configs = [fold_config(cfg, folds, i) for i in range(folds)]  # all checked up front
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    rows, runs, summaries = [], [], []
    for i, fold_cfg in enumerate(configs):
        run = RunDir(run_dir / f"fold-{i}")
        summary = run.read_summary() if run.path.exists() else None
        if summary is None:
            resume = run.run_json.exists() and run.last_ckpt.exists()
            if not resume:
                if run.path.exists():  # created but never checkpointed: start it over
                    _clear(run)
                run.create()
                run.write_manifest(new_manifest(run, entry, fold_cfg, argv or sys.argv))
            summary = Trainer(entry, fold_cfg, run).fit(resume=resume)
        rows.append(_fold_row(i, run, summary))
        runs.append(run)
        summaries.append(summary)

    classes = list(summaries[0]["classes"])
    table: dict[str, Any] = {"model": entry.name, "folds": folds, "per_fold": rows}
    for split in ("val", "test"):
        mean, std = _mean_std(rows, split)
        table.setdefault("mean", {})[split] = mean
        table.setdefault("std", {})[split] = std
    write_json_atomic(run_dir / KFOLD_JSON, table)
    summary = {
        "kind": "kfold",
        **table,
        "classes": classes,
        "split_seed": getattr(cfg.data, "split_seed", None),
        "out_of_fold": _out_of_fold(runs, classes),
        "runs": [run.path.name for run in runs],
        "wall_s": round(time.time() - started, 3),
    }
    write_json_atomic(run_dir / SUMMARY, summary)
    return summary


def _clear(run: RunDir) -> None:
    """Remove a fold directory that holds no checkpoint (nothing worth keeping)."""
    shutil.rmtree(run.path)
