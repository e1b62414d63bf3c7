"""A trained run scored on another corpus or split: ``python -m trainers evaluate``.

How the corpus is read: **the run's own data module**, built from the
checkpoint's config with ``data.root`` and ``data.layout`` replaced, told to
normalise with the checkpoint's stored statistics (``use_fitted``) instead of
fitting them on the new corpus. Not the layout's indexer plus predict's
per-file pipeline, because the data module already is everything the run's
own evaluation was, and each piece would otherwise be rebuilt here:

* the layout's indexer, its label map exclusions (combined) and bad-input
  reporting; the speaker-independent split with the run's ``data.split``,
  fractions and ``split_seed`` (computed over the recordings that decoded, as
  in training; MELD keeps its official splits), so ``--split test`` on the
  run's own corpus is exactly the run's test set;
* decoding through the feature cache and the worker pool (a corpus is
  thousands of recordings, predict decodes one file at a time);
* the evaluation views of the split (several clips per video, TTA) and the
  collate, as ``Trainer._predict`` iterates them, with their probabilities
  averaged by the engine's own ``group_mean``.

The cost: ``setup`` decodes every recording of the corpus, also those of the
splits that are not scored, since the split is made after decoding (the
cache makes a second evaluation cheap). ``--split all`` scores the train, val
and test splits in turn, each through its evaluation views (never the
augmented training set).

Classes across corpora (see docs/datasets.md, "Across corpora"): a class is
named by its emotion, the combined label map's name (CREMA-D ``anger`` is
``angry``, MELD ``joy`` is ``happy``; RAVDESS ``calm`` and ``surprised`` keep
their own names). A corpus class the run never learned has its recordings
excluded and counted; a run class the corpus lacks cannot be a true label,
so the decision is the argmax over the shared classes' probabilities (how
often the unrestricted top class was such a class is counted). Metrics are
computed over the shared classes only.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainers.data.base import SPLITS, ProgressReporter
from trainers.data.combined import LABEL_MAP
from trainers.engine import metrics as M
from trainers.inference.bundle import Bundle
from trainers.rundir import (
    BAD_INPUTS,
    EVALUATION,
    PREDICTIONS,
    BadInputLog,
    RunDir,
    write_json_atomic,
)

EVALUATION_FORMAT = 1
EVAL_SPLITS = ("test", "all")
METRIC_KEYS = ("accuracy", "macro_f1", "weighted_f1", "uar")

# MELD's names for the emotions the combined label map names (docs/datasets.md).
MELD_NAMES: dict[str, str] = {
    "surprise": "surprised",
    "fear": "fearful",
    "sadness": "sad",
    "joy": "happy",
    "anger": "angry",
}


def _emotion_names() -> dict[str, str]:
    names = {own: common for own, common in LABEL_MAP["crema-d"].items() if common is not None}
    return {**names, **MELD_NAMES}


# A corpus's own class name -> the emotion it names; names not listed name themselves.
EMOTION_NAMES: dict[str, str] = _emotion_names()


class EvaluationError(Exception):
    """The evaluation cannot start as asked (bad name, unsupported model): exit 2."""


class NothingScored(Exception):
    """Nothing could be scored (no shared class, an empty split, unusable data): exit 1."""


def emotion(name: str) -> str:
    return EMOTION_NAMES.get(name, name)


@dataclass(frozen=True)
class LabelMapping:
    """The corpus's classes in the run's label space, by emotion name."""

    run_classes: tuple[str, ...]
    corpus_classes: tuple[str, ...]
    to_run: tuple[int | None, ...]  # corpus label index -> run class index, None: not learned

    @classmethod
    def between(cls, run_classes: Sequence[str], corpus_classes: Sequence[str]) -> LabelMapping:
        index: dict[str, int] = {}
        for i, name in enumerate(run_classes):
            if emotion(name) in index:
                raise EvaluationError(
                    f"the run's classes {run_classes[index[emotion(name)]]!r} and {name!r} "
                    "name the same emotion: no unambiguous mapping"
                )
            index[emotion(name)] = i
        to_run = tuple(index.get(emotion(name)) for name in corpus_classes)
        return cls(tuple(run_classes), tuple(corpus_classes), to_run)

    @property
    def shared(self) -> list[int]:
        """Run class indices the corpus has, in the run's order."""
        return sorted({i for i in self.to_run if i is not None})

    @property
    def not_learned(self) -> list[str]:
        """Corpus classes the run has no class for: their recordings are excluded."""
        return [c for c, i in zip(self.corpus_classes, self.to_run, strict=True) if i is None]

    @property
    def not_in_corpus(self) -> list[str]:
        """Run classes the corpus has no recording label for."""
        shared = set(self.shared)
        return [c for i, c in enumerate(self.run_classes) if i not in shared]

    def to_json(self) -> dict[str, str | None]:
        return {
            c: None if i is None else self.run_classes[i]
            for c, i in zip(self.corpus_classes, self.to_run, strict=True)
        }


def default_name(data: Path, layout: str, split: str) -> str:
    """``<corpus folder>-<layout>-<split>``, the layout left out when the folder is named so."""
    folder = data.resolve().name
    parts = [folder] if folder.lower() == layout else [folder, layout]
    return safe_name("-".join([*parts, split]))


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "evaluation"


def check_name(name: str) -> str:
    """An evaluation name given with --out: one folder name, nothing else."""
    if not name or name in (".", "..") or safe_name(name) != name:
        raise EvaluationError(
            f"--out {name!r}: expected a plain folder name (letters, digits, '.', '_', '-')"
        )
    return name


def corpus_config(bundle: Bundle, data: Path, layout: str) -> Any:
    """The run's config with only the corpus changed (root, layout); the feature cache
    is the run's when that folder exists here, else the default one."""
    from trainers.config import ConfigError, set_value

    if bundle.inference is None:
        raise EvaluationError(
            f"{bundle.checkpoint}: no inference state (an older checkpoint): the statistics "
            "fitted on its train split are unknown, and refitting them on the evaluation "
            "data would not be the model's input"
        )
    if not hasattr(bundle.config.data, "layout"):
        raise EvaluationError(
            f"model {bundle.model_name!r} does not read audio-visual recordings: evaluate "
            "scores runs on the ravdess, crema-d, meld and combined layouts"
        )
    if getattr(bundle.config.model, "video_input", "frames") == "embeddings":
        raise EvaluationError(
            f"model {bundle.model_name!r} reads precomputed video embeddings "
            "(model.video_input=embeddings), which exist for its training corpus only"
        )
    cfg = dataclasses.replace(bundle.config)
    cfg.data = dataclasses.replace(bundle.config.data)
    try:
        set_value(cfg, "data.root", str(data.resolve()))
        set_value(cfg, "data.layout", layout)
        if cfg.data.cache_dir and not Path(cfg.data.cache_dir).expanduser().is_dir():
            set_value(cfg, "data.cache_dir", "")
        cfg.data.validate()
    except (ConfigError, ValueError) as exc:
        raise EvaluationError(f"config error: {exc}") from None
    return cfg


def corpus_module(bundle: Bundle, cfg: Any) -> Any:
    """The run's data module on the corpus, normalising with the stored statistics."""
    module = bundle.entry.data(cfg)
    use_fitted = getattr(module, "use_fitted", None)
    if not callable(use_fitted):
        raise EvaluationError(
            f"model {bundle.model_name!r}: its data module cannot take stored statistics"
        )
    use_fitted(bundle.fitted)
    return module


def eval_dataset(module: Any, split: str, preprocessing: dict[str, Any]) -> Any:
    """What the engine evaluates for ``split``; for train (``--split all``) the same
    evaluation views over the unaugmented rows of the innermost module."""
    if split != "train":
        return module.dataset(split)
    base = module
    while getattr(base, "base", None) is not None:
        base = base.base
    rows = base.dataset("train")
    clips = preprocessing.get("clips")
    if clips:
        from trainers.data.clips import ClipEvalSet

        return ClipEvalSet(rows, clips["frames"], clips["eval_clips"])
    return rows


def score_split(
    bundle: Bundle, module: Any, split: str, progress: ProgressReporter | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities (over the run's classes), corpus labels and row indices of ``split``,
    one per sample: batches of ``train.batch_size`` in order, views averaged, as
    ``Trainer._predict`` does (in float32: no autocast)."""
    import torch

    from trainers.engine.trainer import group_mean, to_device

    dataset = eval_dataset(module, split, bundle.preprocessing)
    n = len(dataset)
    size = bundle.config.train.batch_size
    device = torch.device(bundle.device)
    probs, labels, groups = [], [], []
    with torch.no_grad():
        for start in range(0, n, size):
            batch = module.collate([dataset[i] for i in range(start, min(start + size, n))])
            batch = to_device(batch, device)
            logits = bundle.model(batch).float()
            probs.append(torch.softmax(logits, dim=-1).cpu().numpy())
            labels.append(batch["label"].cpu().numpy())
            if "sample" in batch:
                groups.append(batch["sample"].cpu().numpy())
            if progress is not None:
                progress(min(start + size, n), n, f"{split} split")
    if not probs:
        return np.zeros((0, len(bundle.classes))), np.zeros(0, np.int64), np.zeros(0, np.int64)
    all_probs, all_labels = np.concatenate(probs), np.concatenate(labels)
    if groups:
        return group_mean(all_probs, all_labels, np.concatenate(groups))
    return all_probs, all_labels, np.arange(len(all_labels))


def majority_floor(
    train_counts: dict[str, int] | None, mapping: LabelMapping, labels: np.ndarray
) -> dict[str, Any] | None:
    """What always predicting the run's training majority among the shared classes
    scores on ``labels`` (run class indices): summary.json's floor, restricted as the
    decision is. None when the run's train counts are unknown."""
    if not train_counts or not len(labels):
        return None
    shared = mapping.shared
    counts = [int(train_counts.get(mapping.run_classes[i], 0)) for i in shared]
    majority = shared[int(np.argmax(counts))]  # ties: the first in the run's order
    position = {c: k for k, c in enumerate(shared)}
    truth = np.array([position[int(c)] for c in labels], dtype=np.int64)
    cm = M.confusion_matrix(truth, np.full_like(truth, position[majority]), len(shared))
    report = M.classification_report(cm, [mapping.run_classes[i] for i in shared])
    return {k: report[k] for k in METRIC_KEYS} | {
        "class": majority,
        "class_name": mapping.run_classes[majority],
    }


def evaluate(
    bundle: Bundle,
    data: Path,
    layout: str,
    split: str,
    name: str,
    progress: ProgressReporter | None = None,
) -> dict[str, Any]:
    """Score ``bundle`` on the corpus at ``data``; write ``<run>/evaluations/<name>/``
    (evaluation.json, predictions.jsonl, bad_inputs.jsonl) and return evaluation.json.

    Raises EvaluationError before anything is decoded, NothingScored when no sample
    could be scored (DataError from the data module included)."""
    from trainers.data.av_dataset import LAYOUTS
    from trainers.data.config import DataError

    if split not in EVAL_SPLITS:
        raise EvaluationError(f"--split {split!r}: expected one of {', '.join(EVAL_SPLITS)}")
    if layout not in LAYOUTS:
        raise EvaluationError(f"--layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    cfg = corpus_config(bundle, data, layout)
    mapping = LabelMapping.between(bundle.classes, LAYOUTS[layout].classes)
    if not mapping.shared:
        raise NothingScored(
            f"the run's classes ({', '.join(bundle.classes)}) and {layout}'s "
            f"({', '.join(mapping.corpus_classes)}) share no emotion: nothing to score"
        )
    module = corpus_module(bundle, cfg)

    run = RunDir(bundle.path)
    out = run.evaluations / name
    out.mkdir(parents=True, exist_ok=True)
    for stale in (EVALUATION, PREDICTIONS, BAD_INPUTS):  # a finished folder or none at all
        (out / stale).unlink(missing_ok=True)
    bad = BadInputLog(out / BAD_INPUTS)
    started = time.perf_counter()
    try:
        module.setup(report_bad=bad, progress=progress)
    except DataError as exc:
        raise NothingScored(str(exc)) from None

    splits = list(SPLITS) if split == "all" else ["test"]
    shared = mapping.shared
    rows: list[dict[str, Any]] = []
    not_learned: Counter[str] = Counter()
    top_outside: Counter[str] = Counter()
    scored: dict[str, int] = {}
    for part in splits:
        probs, corpus_labels, ids = score_split(bundle, module, part, progress)
        infos = module.samples(part)
        scored[part] = 0
        for p, corpus_label, i in zip(probs, corpus_labels, ids, strict=True):
            label = mapping.to_run[int(corpus_label)]
            if label is None:
                not_learned[mapping.corpus_classes[int(corpus_label)]] += 1
                continue
            top = int(np.argmax(p))
            if top not in shared:
                top_outside[mapping.run_classes[top]] += 1
            pred = shared[int(np.argmax(p[shared]))]
            rows.append(
                {
                    "split": part,
                    "index": int(i),
                    "key": infos[int(i)].key,
                    "actor": infos[int(i)].actor,
                    "label": label,
                    "pred": pred,
                    "probs": [round(float(v), 6) for v in p],
                }
            )
            scored[part] += 1
    if not rows and not not_learned:
        raise NothingScored(
            f"the {' + '.join(splits)} split of {data} is empty (too few speakers for the "
            f"run's split settings?): nothing to score; --split all scores every recording"
        )
    if not rows:
        raise NothingScored(
            f"no recording of the {' + '.join(splits)} split of {data} has a class the run "
            f"learned (not learned: {', '.join(not_learned)})"
        )

    position = {c: k for k, c in enumerate(shared)}
    truth = np.array([position[r["label"]] for r in rows], dtype=np.int64)
    preds = np.array([position[r["pred"]] for r in rows], dtype=np.int64)
    cm = M.confusion_matrix(truth, preds, len(shared))
    metrics = M.classification_report(cm, [mapping.run_classes[i] for i in shared])
    summary = run.read_summary() if run.summary.is_file() else None
    train_counts = (((summary or {}).get("data") or {}).get("splits") or {}).get("train") or {}
    labels = np.array([r["label"] for r in rows], dtype=np.int64)
    described = module.describe()
    evaluation: dict[str, Any] = {
        "format": EVALUATION_FORMAT,
        "name": name,
        "run_id": run.path.name,
        "model": bundle.model_name,
        "checkpoint": bundle.checkpoint.name,
        "data": {
            "root": str(data.resolve()),
            "layout": layout,
            "split": split,
            "splits": splits,
            "split_rule": described.get("split"),
            "val_fraction": cfg.data.val_fraction,
            "test_fraction": cfg.data.test_fraction,
            "split_seed": cfg.data.split_seed,
        },
        "n": len(rows),
        "scored": scored,
        "classes": list(bundle.classes),
        "shared_classes": [mapping.run_classes[i] for i in shared],
        "label_map": mapping.to_json(),
        "metrics_over": "the shared classes only",
        "decision": "argmax over the shared classes' probabilities",
        "metrics": metrics,
        "majority_floor": majority_floor(train_counts.get("per_class"), mapping, labels),
        "excluded": {
            # Corpus classes the run never learned: their recordings were not scored.
            "not_learned": {c: not_learned[c] for c in mapping.not_learned},
            # Run classes the corpus lacks: never a true label, never the decision ...
            "not_in_corpus": mapping.not_in_corpus,
            # ... but the model's unrestricted top class this many times.
            "top_class_not_in_corpus": {c: top_outside[c] for c in mapping.not_in_corpus},
            # Left out by the layout's own label map (combined: RAVDESS calm, surprised).
            "by_layout": described.get("excluded", []),
        },
        "bad_inputs": len(bad),
        "device": bundle.device,
        "eval_s": round(time.perf_counter() - started, 3),
        "created_at": time.time(),
    }
    with open(out / PREDICTIONS, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    write_json_atomic(out / EVALUATION, evaluation)  # last: its presence marks a finished one
    return evaluation


# ---------------------------------------------------------------------------- output


def _cells(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "".join(f" {'-':>11}" for _ in METRIC_KEYS)
    return "".join(f" {float(metrics[k]):>11.4f}" for k in METRIC_KEYS)


def format_table(evaluation: dict[str, Any], run_test: dict[str, Any] | None) -> str:
    """The short stdout table: this data, its floor, the run's own test; then exclusions."""
    header = f"{'':<24} {'n':>6}" + "".join(
        f" {h:>11}" for h in ("accuracy", "macro-F1", "weighted-F1", "UAR")
    )
    n = evaluation["n"]
    lines = [
        f"{evaluation['run_id']} on {evaluation['data']['layout']} "
        f"({evaluation['data']['split']}): metrics over the {len(evaluation['shared_classes'])} "
        f"shared classes only ({', '.join(evaluation['shared_classes'])})",
        header,
        f"{'this data':<24} {n:>6}" + _cells(evaluation["metrics"]),
        f"{'majority-class floor':<24} {n:>6}" + _cells(evaluation["majority_floor"]),
    ]
    if run_test:
        support = sum(sum(row) for row in run_test.get("confusion") or [])
        own = "the run's own test"
        lines.append(f"{own:<24} {support:>6}" + _cells(run_test))
    excluded = evaluation["excluded"]
    not_learned = excluded["not_learned"]
    lines.append(
        "excluded, classes the run never learned: "
        + (
            ", ".join(f"{c} ({k} recordings)" for c, k in not_learned.items())
            if not_learned
            else "none"
        )
    )
    outside = excluded["top_class_not_in_corpus"]
    lines.append(
        "excluded, run classes the corpus lacks: "
        + (
            ", ".join(f"{c} (top class of {k} of {n})" for c, k in outside.items())
            if outside
            else "none"
        )
    )
    for row in excluded["by_layout"]:
        lines.append(
            f"excluded by the {evaluation['data']['layout']} label map: {row['corpus']} "
            f"{row['class']} ({row['recordings']} recordings)"
        )
    if evaluation["bad_inputs"]:
        lines.append(f"{evaluation['bad_inputs']} unusable input files (bad_inputs.jsonl)")
    return "\n".join(lines)
