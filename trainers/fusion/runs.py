"""Reading finished run directories: the inputs of every fusion method.

Late fusion and ensembles need only what a finished run already wrote
(run.json, summary.json, predictions.jsonl); attention fusion also rebuilds
each run's model from its manifest, exactly as ``resume`` does, loads
checkpoints/best.pt and runs ``forward_features`` over its data. Rows of
different runs are matched by (split, sample key), never by position: two
runs may order or filter samples differently, and a silent off-by-one would
fuse one recording's audio with another's video. Anything that does not line
up (classes, keys, labels) is refused with the runs and keys named.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainers.rundir import RunDir
from trainers.session import RunManifestError, config_from_manifest

FUSED_SPLITS = ("val", "test")  # what predictions.jsonl holds
SHOW = 5  # keys named in an error


class FusionError(ValueError):
    """Source runs that cannot be fused as asked; the message names the run and what to do."""


@dataclass(frozen=True)
class FinishedRun:
    """One completed run directory: its manifest, summary and per-sample predictions."""

    run: RunDir
    manifest: dict[str, Any]
    summary: dict[str, Any]
    rows: dict[str, dict[str, dict[str, Any]]]  # split -> key -> predictions.jsonl row

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def id(self) -> str:
        return str(self.manifest.get("id") or self.run.path.name)

    @property
    def model(self) -> str:
        return str(self.manifest.get("model", "?"))

    @property
    def classes(self) -> list[str]:
        return list(self.summary["classes"])

    @property
    def monitor(self) -> str:
        return str(self.summary.get("monitor") or "accuracy")

    def describe(self) -> dict[str, Any]:
        """The source as a fused run's summary names it."""
        return {
            "id": self.id,
            "path": str(self.path),
            "model": self.model,
            "val": {k: self.summary["val"].get(k) for k in _HEADLINE},
            "test": {k: self.summary["test"].get(k) for k in _HEADLINE},
        }


_HEADLINE = ("accuracy", "macro_f1", "weighted_f1", "uar")


def load_run(path: Path | str) -> FinishedRun:
    """A finished run directory, or a :class:`FusionError` saying what is missing."""
    run = RunDir(Path(path).expanduser().resolve())
    if not run.path.is_dir():
        raise FusionError(f"{path}: no such run directory")
    if not run.run_json.exists():
        raise FusionError(f"{path}: not a run directory (no run.json)")
    manifest = run.read_manifest()
    summary = run.read_summary()
    if summary is None or not run.predictions.exists():
        status = manifest.get("status", "unknown")
        raise FusionError(
            f"{path}: the run has not finished (status {status}, no "
            f"{'summary.json' if summary is None else 'predictions.jsonl'}); fuse only "
            f"completed runs, or continue this one with `python -m trainers resume {path}`"
        )
    rows: dict[str, dict[str, dict[str, Any]]] = {split: {} for split in FUSED_SPLITS}
    with open(run.predictions, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            split, key = row.get("split"), row.get("key")
            if split not in rows or key is None:
                continue
            if key in rows[split]:
                raise FusionError(
                    f"{run.predictions}:{line_no}: sample {key!r} appears twice in the {split} "
                    "split; rows cannot be matched by key"
                )
            rows[split][key] = row
    return FinishedRun(run=run, manifest=manifest, summary=summary, rows=rows)


def check_classes(runs: Sequence[Any]) -> list[str]:
    """The classes every run shares, in the same order, or a FusionError naming both."""
    first = runs[0]
    for other in runs[1:]:
        if list(other.classes) != list(first.classes):
            raise FusionError(
                f"the runs predict different classes: {first.path} has {list(first.classes)}, "
                f"{other.path} has {list(other.classes)}; fuse runs trained on the same classes "
                "(same data set and class order)"
            )
    return list(first.classes)


def check_keys(split: str, names: Sequence[str], keys: Sequence[Sequence[str]]) -> None:
    """Every source must hold exactly the same samples of ``split``."""
    reference = set(keys[0])
    for name, other in zip(names[1:], keys[1:], strict=True):
        other_set = set(other)
        if other_set == reference:
            continue
        only_first = sorted(reference - other_set)
        only_other = sorted(other_set - reference)
        parts = []
        if only_first:
            parts.append(
                f"{len(only_first)} only in {names[0]} (e.g. {', '.join(only_first[:SHOW])})"
            )
        if only_other:
            parts.append(f"{len(only_other)} only in {name} (e.g. {', '.join(only_other[:SHOW])})")
        raise FusionError(
            f"the {split} samples of the runs do not match: {'; '.join(parts)}. Fuse runs "
            "evaluated on the same data set and split (data.root, data.split, data.split_seed, "
            "val/test fractions)"
        )


@dataclass
class AlignedPredictions:
    """Val and test predictions of several runs, one row per sample, in the same order."""

    classes: list[str]
    keys: dict[str, list[str]] = field(default_factory=dict)
    actors: dict[str, list[str]] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    probs: dict[str, list[np.ndarray]] = field(default_factory=dict)  # one (N, C) per run


def align_predictions(runs: Sequence[FinishedRun]) -> AlignedPredictions:
    """Match the runs' rows by (split, key); refuse different classes, keys or labels."""
    if len(runs) < 2:
        raise FusionError(f"fusion needs at least two runs, got {len(runs)}")
    paths = [str(r.path) for r in runs]
    if len(set(paths)) != len(paths):
        raise FusionError(f"a run is given twice: {', '.join(paths)}")
    aligned = AlignedPredictions(classes=check_classes(runs))
    for split in FUSED_SPLITS:
        check_keys(split, paths, [list(r.rows[split]) for r in runs])
        keys = list(runs[0].rows[split])  # the first run's order
        labels = np.array([runs[0].rows[split][k]["label"] for k in keys], dtype=np.int64)
        for run in runs[1:]:
            other = np.array([run.rows[split][k]["label"] for k in keys], dtype=np.int64)
            if not np.array_equal(labels, other):
                bad = [k for k, a, b in zip(keys, labels, other, strict=True) if a != b]
                raise FusionError(
                    f"{len(bad)} {split} sample(s) carry different labels in {runs[0].path} and "
                    f"{run.path} (e.g. {', '.join(bad[:SHOW])}): not the same data set"
                )
        aligned.keys[split] = keys
        aligned.labels[split] = labels
        aligned.actors[split] = [str(runs[0].rows[split][k].get("actor", "")) for k in keys]
        aligned.probs[split] = [
            np.array([run.rows[split][k]["probs"] for k in keys], dtype=np.float64).reshape(
                len(keys), len(aligned.classes)
            )
            for run in runs
        ]
    return aligned


# ----------------------------------------------------------------- embeddings from checkpoints


@dataclass
class SplitEmbeddings:
    """``forward_features`` of one source over one split, one row per sample."""

    keys: list[str]
    labels: np.ndarray  # int64 (N,)
    actors: list[str]
    features: np.ndarray  # float32 (N, D)


def rebuild_source(path: Path | str, root: str = "") -> tuple[Any, Any, RunDir]:
    """The registry entry and resolved config of a run, as ``resume`` rebuilds them.

    ``root`` replaces the run's data.root (the data set moved, e.g. the run was
    trained on a GPU host). The run's pretrained file is not needed: best.pt
    overwrites every weight, so it is dropped rather than checked.
    """
    run = RunDir(Path(path).expanduser().resolve())
    if not run.run_json.exists():
        raise FusionError(f"{path}: not a run directory (no run.json)")
    if not run.best_ckpt.exists():
        raise FusionError(f"{path}: no checkpoints/best.pt (did the run finish an epoch?)")
    overrides = {"data.root": root} if root else {}
    try:
        entry, cfg = config_from_manifest(run, {**overrides, "train.pretrained": ""})
    except RunManifestError as exc:
        raise FusionError(f"{path}: cannot rebuild the run's model: {exc}") from None
    return entry, cfg, run


def extract_embeddings(
    path: Path | str,
    root: str,
    device: Any,
    report_bad: Callable[[str, str], None],
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[list[str], dict[str, SplitEmbeddings]]:
    """Classes and per-split embeddings of a finished run's best checkpoint.

    Rows are one per sample: a data set that yields several rows per sample
    (clips, views: rows carry ``"sample"``) has them averaged, as the engine's
    evaluation averages probabilities; one that repeats samples (augmented
    copies of the train split, ``samples()`` following the rows) keeps each
    sample's first row, which is the un-augmented original. Otherwise the train
    split is ``dataset("train")`` as the run trained on it, augmentation
    included where a data module applies it there: the DataModule protocol has
    no un-augmented view of the train split.
    """
    import torch

    from trainers.data.base import SPLITS
    from trainers.engine.checkpoint import load_checkpoint, load_model_state
    from trainers.engine.trainer import to_device

    entry, cfg, run = rebuild_source(path, root)
    data = entry.data(cfg)
    data.setup(report_bad=report_bad, progress=progress)
    classes = list(data.classes)
    ckpt = load_checkpoint(run.best_ckpt, trust_pickle=True)  # a run the user named
    if ckpt.get("classes") is not None and list(ckpt["classes"]) != classes:
        raise FusionError(
            f"{run.best_ckpt} was trained on classes {list(ckpt['classes'])} but the data "
            f"module now gives {classes}: is data.root the same data set?"
        )
    model = entry.build(cfg, len(classes))
    load_model_state(model, ckpt["model"], run.best_ckpt)
    if not callable(getattr(model, "forward_features", None)):
        raise FusionError(
            f"model {entry.name!r} (run {run.path}) has no forward_features(batch): attention "
            "fusion needs each source's penultimate embedding"
        )
    model = model.to(device).eval()
    out: dict[str, SplitEmbeddings] = {}
    batch_size = max(1, int(cfg.train.batch_size))
    with torch.no_grad():
        for split in SPLITS:
            dataset = data.dataset(split)
            set_epoch = getattr(dataset, "set_epoch", None)
            if set_epoch is not None:
                # Epoch-dependent train sets (progressive resizing) as the best epoch saw them.
                set_epoch(int(ckpt.get("epoch") or 1))
            infos = list(data.samples(split))
            grouped = len(dataset) != len(infos)  # several rows per sample
            rows = list(range(len(dataset))) if grouped else first_rows(infos)
            feats, groups = [], []
            for start in range(0, len(rows), batch_size):
                items = [dataset[i] for i in rows[start : start + batch_size]]
                batch = to_device(data.collate(items), device)
                feats.append(model.forward_features(batch).float().cpu().numpy())
                if "sample" in batch:
                    groups.append(batch["sample"].cpu().numpy())
            width = feats[0].shape[1] if feats else 0
            features = np.concatenate(feats) if feats else np.zeros((0, width), np.float32)
            if grouped:
                if sum(len(g) for g in groups) != len(rows):
                    raise FusionError(
                        f"{run.path}: the {split} data set has {len(rows)} rows for "
                        f"{len(infos)} samples and its rows carry no 'sample' id to group them"
                    )
                try:
                    features = mean_per_sample(features, np.concatenate(groups), len(infos))
                except ValueError as exc:
                    raise FusionError(f"{run.path}: {split} split: {exc}") from None
                chosen = infos
            else:
                chosen = [infos[i] for i in rows]
            out[split] = SplitEmbeddings(
                keys=[s.key for s in chosen],
                labels=np.array([s.label for s in chosen], dtype=np.int64),
                actors=[str(s.actor) for s in chosen],
                features=np.ascontiguousarray(features, dtype=np.float32),
            )
    return classes, out


def first_rows(infos: Sequence[Any]) -> list[int]:
    """Each sample's first row, where samples() follows an expanded split (augmented
    copies after the originals): the rest would repeat the sample."""
    seen: set[str] = set()
    rows = []
    for i, info in enumerate(infos):
        if info.key not in seen:
            seen.add(info.key)
            rows.append(i)
    return rows


def mean_per_sample(features: np.ndarray, sample_ids: np.ndarray, n: int) -> np.ndarray:
    """Average the rows of each sample (clips, views); ``sample_ids`` index samples()."""
    if len(np.unique(sample_ids)) != n or sample_ids.min() < 0 or sample_ids.max() >= n:
        raise ValueError(f"'sample' ids do not cover samples() 0..{n - 1} exactly")
    sums = np.zeros((n, features.shape[1]), dtype=np.float64)
    np.add.at(sums, sample_ids, features)
    return sums / np.bincount(sample_ids, minlength=n)[:, None]
