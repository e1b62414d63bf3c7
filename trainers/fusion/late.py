"""Late fusion and the image ensemble: averaging finished runs' probabilities.

Both are one operation, a weighted mean of aligned per-sample probabilities,
and share one path: read and align the runs (:mod:`trainers.fusion.runs`),
pick the weights, write a new run directory in the engine's format.

* ``late-fusion`` (note 000, "Next Steps"): ``w * p_a + (1 - w) * p_b`` for a
  visual and an audio run. ``w`` is chosen on the validation split over a grid
  (0.00, 0.05, ..., 1.00) by the runs' monitor metric; the test split is only
  ever scored with the chosen ``w``. Because 0 and 1 are in the grid, the fused
  validation score is never below either run's own.
* ``image-ensemble`` (note 003, "Ensemble Methods"): equal weights over N
  runs (resnet50, efficientnet_b0, vit_b_16), nothing tuned.

The result is an ordinary run directory (run.json, events.jsonl, train.log,
summary.json, predictions.jsonl), so the console and every reader of runs
see a fused run like any trained one. numpy only: no model is loaded.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import trainers
from trainers.engine import metrics as M
from trainers.engine.sinks import RunLogger, TextLogSink
from trainers.events import EventType, RunStatus
from trainers.fusion.runs import (
    AlignedPredictions,
    FinishedRun,
    FusionError,
    align_predictions,
    load_run,
)
from trainers.rundir import RunDir, new_run_id, write_json_atomic

METRICS = ("accuracy", "macro_f1", "weighted_f1", "uar", "loss")
DEFAULT_STEP = 0.05


@dataclass
class FusionResult:
    run: RunDir
    summary: dict[str, Any]
    weights: list[float]


def weighted_average(probs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Rows stay distributions: the weights are normalised to sum to 1."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) != len(probs) or (w < 0).any() or w.sum() <= 0:
        raise FusionError(f"weights {list(weights)} do not fit {len(probs)} runs")
    w = w / w.sum()
    return sum(wi * p for wi, p in zip(w, probs, strict=True))


def report(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """The engine's val/test report for fused probabilities.

    ``loss`` is the negative log-likelihood of the fused probabilities: the
    sources' own losses (focal, class-weighted) cannot be combined.
    """
    preds = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    cm = M.confusion_matrix(labels, preds, len(classes))
    return {"loss": nll(probs, labels), **M.classification_report(cm, list(classes))}


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    if not len(labels):
        return float("nan")
    picked = probs[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


def score(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str], metric: str) -> float:
    return float(report(probs, labels, classes)[metric])


def weight_grid(step: float) -> list[float]:
    if not 0.0 < step <= 1.0:
        raise FusionError(f"--step {step}: must be in (0, 1]")
    n = round(1.0 / step)
    if abs(n * step - 1.0) > 1e-9:
        raise FusionError(f"--step {step}: must divide 1 (e.g. 0.05, 0.1, 0.25)")
    return [round(i * step, 10) for i in range(n + 1)]


def tune_weight(
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    metric: str,
    step: float = DEFAULT_STEP,
) -> tuple[float, list[tuple[float, float]]]:
    """The weight of run A that scores best on validation, and the whole curve.

    Ties (common on small validation sets) go to the weight nearest 0.5: with no
    evidence for one run over the other, trust both equally.
    """
    curve = [
        (w, score(weighted_average([probs_a, probs_b], [w, 1 - w]), labels, classes, metric))
        for w in weight_grid(step)
    ]
    sign = -1.0 if metric == "loss" else 1.0
    best = max(curve, key=lambda item: (sign * item[1], -abs(item[0] - 0.5)))
    return best[0], curve


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise FusionError(f"metric {metric!r}: expected one of {', '.join(METRICS)}")
    return metric


def late_fusion(
    run_a: Path | str,
    run_b: Path | str,
    out: Path | str,
    run_id: str | None = None,
    metric: str | None = None,
    step: float = DEFAULT_STEP,
    argv: list[str] | None = None,
) -> FusionResult:
    """Fuse two finished runs with a validation-tuned weight; write a new run directory."""
    runs = [load_run(run_a), load_run(run_b)]
    aligned = align_predictions(runs)
    metric = _check_metric(metric or runs[0].monitor)
    w, curve = tune_weight(
        *aligned.probs["val"], aligned.labels["val"], aligned.classes, metric, step
    )
    info = {
        "weight": w,
        "metric": metric,
        "grid_step": step,
        "val_curve": [[round(x, 4), y] for x, y in curve],
    }
    return write_fused_run(
        "late-fusion", runs, aligned, [w, 1.0 - w], info, metric, out, run_id, argv
    )


def image_ensemble(
    run_paths: Sequence[Path | str],
    out: Path | str,
    run_id: str | None = None,
    argv: list[str] | None = None,
) -> FusionResult:
    """Average N finished runs with equal weights; write a new run directory."""
    runs = [load_run(p) for p in run_paths]
    aligned = align_predictions(runs)
    weights = [1.0 / len(runs)] * len(runs)
    metric = _check_metric(runs[0].monitor)
    return write_fused_run("image-ensemble", runs, aligned, weights, {}, metric, out, run_id, argv)


def write_fused_run(
    method: str,
    runs: Sequence[FinishedRun],
    aligned: AlignedPredictions,
    weights: Sequence[float],
    info: dict[str, Any],
    monitor: str,
    out: Path | str,
    run_id: str | None,
    argv: list[str] | None,
) -> FusionResult:
    """The one writer: a run directory in the engine's format for fused probabilities."""
    t0 = time.perf_counter()
    run = RunDir(Path(out) / (run_id or new_run_id(method)))
    if run.path.exists():
        raise FusionError(f"{run.path} already exists: pick another --run-id")
    classes = aligned.classes
    fused = {s: weighted_average(aligned.probs[s], weights) for s in aligned.probs}
    results = {s: report(fused[s], aligned.labels[s], classes) for s in fused}
    sources = [r.describe() | {"weight": float(w)} for r, w in zip(runs, weights, strict=True)]
    config = {
        "method": method,
        "runs": [str(r.path) for r in runs],
        "weights": [float(w) for w in weights],
        **{k: v for k, v in info.items() if k in ("metric", "grid_step")},
    }
    run.create()
    run.write_manifest(
        {
            "id": run.path.name,
            "model": method,
            "config": config,
            "sources": sources,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "argv": argv if argv is not None else sys.argv,
            "version": trainers.__version__,
            "python": platform.python_version(),
            "started_at": time.time(),
            "status": RunStatus.RUNNING,
            "cwd": str(Path.cwd()),
        }
    )
    logger = RunLogger(run.events, [TextLogSink(run.train_log, echo=None)])
    try:
        logger.emit(EventType.STATUS, status=RunStatus.STARTING, pid=os.getpid())
        logger.emit(EventType.STATUS, status=RunStatus.RUNNING, device="cpu")
        for source in sources:
            logger.log(f"source {source['id']} ({source['model']}): weight {source['weight']:.3f}")
        best_value = results["val"][monitor]
        for split in ("val", "test"):
            extra = {"is_best": True, "monitor": monitor, "best": best_value, "best_epoch": 0}
            logger.emit(
                EventType.VAL,
                epoch=0,
                split=split,
                global_step=0,
                weights=[float(w) for w in weights],
                **(extra if split == "val" else {}),
                **results[split],
            )
        with open(run.predictions, "w", encoding="utf-8") as fh:
            for split in ("val", "test"):
                for i, key in enumerate(aligned.keys[split]):
                    probs = fused[split][i]
                    row = {
                        "split": split,
                        "index": i,
                        "key": key,
                        "actor": aligned.actors[split][i],
                        "label": int(aligned.labels[split][i]),
                        "pred": int(probs.argmax()),
                        "probs": [round(float(p), 6) for p in probs],
                    }
                    fh.write(json.dumps(row) + "\n")
        test_labels = aligned.labels["test"]
        summary = {
            "run_id": run.path.name,
            "model": method,
            "classes": classes,
            "monitor": monitor,
            "best_epoch": 0,  # nothing is trained: one evaluation, "epoch 0"
            "best_value": best_value,
            "epochs_run": 0,
            "stop_reason": "fused",
            "val": results["val"],
            "test": results["test"],
            "majority_floor": _majority_floor(runs, test_labels, len(classes)),
            "data": {
                "dataset": f"{method} of {len(runs)} runs",
                "splits": {s: {"samples": len(aligned.keys[s])} for s in aligned.keys},
            },
            "bad_inputs": 0,
            "grad_norm_nonfinite": 0,  # nothing is trained: the engine's key, for readers
            "timings": {
                "total_s": time.perf_counter() - t0,
                "prepare_s": 0.0,
                "train_s": 0.0,
                "epoch_mean_s": 0.0,
                "eval_s": time.perf_counter() - t0,
            },
            "device": "cpu",
            "amp": "off",
            "world_size": 1,
            "fusion": {"method": method, "weights": [float(w) for w in weights], **info}
            | {"sources": sources},
        }
        write_json_atomic(run.summary, summary)
    except BaseException as exc:
        logger.emit(EventType.ERROR, message=f"{type(exc).__name__}: {exc}")
        logger.emit(EventType.STATUS, status=RunStatus.FAILED)
        run.update_manifest(status=RunStatus.FAILED, ended_at=time.time())
        logger.close()
        raise
    logger.emit(EventType.STATUS, status=RunStatus.COMPLETED, reason="fused")
    run.update_manifest(status=RunStatus.COMPLETED, ended_at=time.time())
    logger.close()
    return FusionResult(run=run, summary=summary, weights=[float(w) for w in weights])


def _majority_floor(
    runs: Sequence[FinishedRun], test_labels: np.ndarray, num_classes: int
) -> dict[str, Any] | None:
    """The sources' training-majority class scored on the fused test rows.

    The train split is not in predictions.jsonl; its majority class is, in each
    source's own floor. Sources trained on one data set agree on it.
    """
    floor = runs[0].summary.get("majority_floor") or {}
    if "class" not in floor or not len(test_labels):
        return None
    return M.majority_floor(np.array([int(floor["class"])]), test_labels, num_classes)
