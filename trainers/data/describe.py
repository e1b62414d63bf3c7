"""``python -m trainers describe DATASET SRC``: what a data set holds, before training on it.

Why it looks like this:

* Class imbalance, speakers per split and clip lengths decide the loss, the
  sampler and ``max_frames``; the majority-class floor says what "good" means
  (always answering "neutral" already scores about 0.31 weighted F1 on MELD).
  All of it should be known before an hour of decoding, so this reads only
  the index (names, CSVs) and each file's container header: durations come
  from PyAV's metadata, nothing is decoded.
* It indexes with the very functions training uses
  (:data:`trainers.data.av_dataset.LAYOUTS`, :func:`trainers.data.images.index_fi`)
  and splits as training does at the default settings (actor-disjoint with
  ``split_seed=0`` for RAVDESS, CREMA-D and the combined set, MELD's official
  splits, FI's stratified split), so its numbers are the numbers a default
  run sees.
* The combined set's label map leaves some classes out (RAVDESS calm and
  surprised): their recordings are counted under ``excluded``, per corpus
  and class, so a reader sees what was dropped and how much.
* Faces-not-found needs the face detector's output, which only exists after
  decoding; it is reported by ``train`` (summary.json and the data line of
  train.log) and here only noted, to keep ``describe`` a seconds-long command.
* Every unusable input is listed once with its reason, as in bad_inputs.jsonl:
  names that do not parse, CSV rows without a clip, files whose header cannot
  be read. A file whose header reads but whose frames are broken (a truncated
  mp4 keeps its header at the front) is found by ``train``, which decodes.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from trainers.data.base import SPLITS
from trainers.data.config import DataConfig, DataError
from trainers.data.images import (
    FI_CLASSES,
    TEST,
    TRAIN,
    VAL,
    ImageDataConfig,
    assign_splits,
    class_counts,
    imbalance_ratio,
    index_fi,
)
from trainers.engine.metrics import majority_floor

DATASETS: tuple[str, ...] = ("ravdess", "crema-d", "meld", "combined", "fi")
FACES_NOTE = (
    "faces not found is counted when the videos are decoded: see `train` (summary.json, "
    "train.log's data line)"
)


def container_seconds(path: str) -> float:
    """Duration from the container's header (no decoding); ValueError says why not."""
    import av

    if os.path.getsize(path) == 0:
        raise ValueError("zero-byte file")
    try:
        with av.open(path) as container:
            if container.duration is not None and container.duration > 0:
                return container.duration / av.time_base
            for stream in container.streams:
                if stream.duration and stream.time_base:
                    return float(stream.duration * stream.time_base)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot open: {exc}") from None
    raise ValueError("the container states no duration")


def duration_stats(seconds: Sequence[float]) -> dict[str, float] | None:
    if not seconds:
        return None
    return {
        "count": len(seconds),
        "min": round(min(seconds), 3),
        "mean": round(statistics.fmean(seconds), 3),
        "median": round(statistics.median(seconds), 3),
        "max": round(max(seconds), 3),
        "total": round(sum(seconds), 3),
    }


def train_majority_floor(
    classes: Sequence[str], labels: dict[str, list[int]]
) -> dict[str, Any] | None:
    """Always predicting the train majority class, scored on test."""
    train, test = np.asarray(labels["train"]), np.asarray(labels["test"])
    if not len(train) or not len(test):
        return None
    floor = majority_floor(train, test, len(classes))
    return {k: round(v, 4) for k, v in floor.items() if k != "class"} | {
        "class": classes[floor["class"]],
        "on": "test",
    }


def _summary(
    dataset: str,
    root: str,
    classes: Sequence[str],
    split_of: list[str],
    labels_in: list[int],
    actors: list[str] | None,
    seconds: list[float | None] | None,
    bad: list[dict[str, str]],
    split_rule: str,
) -> dict[str, Any]:
    labels: dict[str, list[int]] = {s: [] for s in SPLITS}
    splits: dict[str, Any] = {}
    for split in SPLITS:
        rows = [i for i, s in enumerate(split_of) if s == split]
        labels[split] = [labels_in[i] for i in rows]
        counts = class_counts(labels[split], classes)
        info: dict[str, Any] = {
            "samples": len(rows),
            "per_class": counts,
            "imbalance_ratio": imbalance_ratio(counts),
        }
        if actors is not None:
            names = sorted({actors[i] for i in rows})
            info["actors"] = len(names)
            info["actor_names"] = names
        if seconds is not None:
            info["duration_s"] = duration_stats([s for i in rows if (s := seconds[i]) is not None])
        splits[split] = info
    counts = class_counts(labels_in, classes)
    out: dict[str, Any] = {
        "dataset": dataset,
        "root": root,
        "classes": list(classes),
        "split": split_rule,
        "samples": len(labels_in),
        "per_class": counts,
        "imbalance_ratio": imbalance_ratio(counts),
        "splits": splits,
        "majority_floor": train_majority_floor(classes, labels),
        "bad_inputs": bad,
    }
    if seconds is not None:
        out["duration_s"] = duration_stats([s for s in seconds if s is not None])
        out["faces_not_found"] = None
        out["faces_note"] = FACES_NOTE
    return out


def describe(dataset: str, root: str) -> dict[str, Any]:
    """Class counts, imbalance, actors, durations and the majority floor of ``root``."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
    if not os.path.isdir(root):
        raise DataError(f"{root!r} is not a directory")
    bad: list[dict[str, str]] = []
    seen: set[str] = set()

    def report(path: str, reason: str) -> None:
        if path not in seen:
            seen.add(path)
            bad.append({"path": path, "reason": reason})

    if dataset == "fi":
        cfg = ImageDataConfig(root=root)
        records = index_fi(root, report)
        labels = [r.label for r in records]
        codes = assign_splits(labels, cfg) if records else np.zeros(0, dtype=np.int8)
        names = {TRAIN: "train", VAL: "val", TEST: "test"}
        rule = (
            f"stratified (val {cfg.val_fraction}, test {cfg.test_fraction}, seed {cfg.split_seed})"
        )
        return _summary(
            dataset, root, FI_CLASSES, [names[int(c)] for c in codes], labels, None, None, bad, rule
        )

    from trainers.data.av_dataset import LAYOUTS
    from trainers.data.combined import refuse_combined_root
    from trainers.data.ravdess import split_actors

    refuse_combined_root(root, dataset)

    layout = LAYOUTS[dataset]
    indexed = layout.index(root, report, DataConfig())
    recs = indexed.recordings
    if indexed.split_of is not None:
        split_of = [indexed.split_of[r.key] for r in recs]
        rule = "official (dev as val)"
    else:
        cfg = DataConfig()
        parts = split_actors(
            [r.actor for r in recs], cfg.val_fraction, cfg.test_fraction, cfg.split_seed
        )
        where = {a: s for s, names in parts.items() for a in names}
        split_of = [where[r.actor] for r in recs]
        rule = (
            f"actor-disjoint (val {cfg.val_fraction}, test {cfg.test_fraction}, "
            f"split_seed {cfg.split_seed}: a default run's split)"
        )
    seconds: list[float | None] = []
    for rec in recs:
        value = None
        for path in rec.files:
            try:
                value = container_seconds(path)
                break
            except (ValueError, OSError) as exc:
                report(path, str(exc))
        seconds.append(value)
    out = _summary(
        dataset, root, layout.classes, split_of, [r.label for r in recs],
        [r.actor for r in recs], seconds, bad, rule,
    )  # fmt: skip
    if indexed.excluded:
        # Left out by the label map (combined): counted here, since they are not bad inputs.
        out["excluded"] = indexed.excluded
    return out


def format_text(info: dict[str, Any]) -> str:
    """The human-readable report ``describe`` prints."""
    lines = [
        f"{info['dataset']} at {info['root']}: {info['samples']} samples, "
        f"{len(info['classes'])} classes, split {info['split']}",
        f"imbalance ratio (largest / smallest class): {info['imbalance_ratio']}",
    ]
    width = max(len(c) for c in info["classes"])
    header = f"  {'class':<{width}}  " + "  ".join(f"{s:>6}" for s in SPLITS) + "   total"
    lines.append(header)
    for name in info["classes"]:
        row = "  ".join(f"{info['splits'][s]['per_class'][name]:>6}" for s in SPLITS)
        lines.append(f"  {name:<{width}}  {row}  {info['per_class'][name]:>6}")
    for split in SPLITS:
        s = info["splits"][split]
        parts = [f"{split}: {s['samples']} samples", f"imbalance {s['imbalance_ratio']}"]
        if "actors" in s:
            parts.append(f"{s['actors']} actors/speakers")
        d = s.get("duration_s")
        if d:
            parts.append(
                f"duration {d['min']}-{d['max']} s (mean {d['mean']}, median {d['median']})"
            )
        lines.append("  " + ", ".join(parts))
    floor = info["majority_floor"]
    if floor:
        lines.append(
            f"majority-class floor (always {floor['class']!r}, scored on test): accuracy "
            f"{floor['accuracy']:.4f}, weighted F1 {floor['weighted_f1']:.4f}, macro F1 "
            f"{floor['macro_f1']:.4f}, UAR {floor['uar']:.4f}"
        )
    else:
        lines.append("majority-class floor: needs a train and a test split")
    if "excluded" in info:
        from trainers.data.combined import format_excluded

        lines.append(f"excluded by the label map: {format_excluded(info['excluded'])}")
    if "faces_note" in info:
        lines.append(f"faces not found: not counted ({info['faces_note']})")
    lines.append(f"bad inputs: {len(info['bad_inputs'])}")
    lines.extend(f"  {b['path']}: {b['reason']}" for b in info["bad_inputs"])
    return "\n".join(lines)
