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
  decoding. ``describe`` reads it from the feature cache a ``prepare`` or a
  run left (the video entries of the model's settings; only files whose
  digest the cache's index already holds, so no corpus is read to hash it),
  and decodes the video of at most ``faces_sample`` further recordings,
  spread over the actors, when asked (``--faces N``): by default it stays a
  seconds-long command. The counts are :mod:`trainers.data.face_counts`'s,
  as in summary.json and train.log, over the recordings checked.
* Every unusable input is listed once with its reason, as in bad_inputs.jsonl:
  names that do not parse, CSV rows without a clip, files whose header cannot
  be read. A file whose header reads but whose frames are broken (a truncated
  mp4 keeps its header at the front) is found by ``train``, which decodes.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.data.base import SPLITS, BadInputReporter
from trainers.data.config import DataConfig, DataError
from trainers.data.face_counts import (
    FaceRow,
    detector_name,
    face_warnings,
    log_lines,
    summarize_faces,
)
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

if TYPE_CHECKING:  # the decoding stack is imported only when faces are counted
    from trainers.data.ravdess import Recording

DATASETS: tuple[str, ...] = ("ravdess", "crema-d", "meld", "combined", "fi")
FACES_NOTE = (
    "faces not found is counted when the videos are decoded: see `train` (summary.json, "
    "train.log), `prepare`, or `describe --faces N`"
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


def _sample_evenly(recs: list[Recording], count: int) -> list[Recording]:
    """Up to ``count`` recordings: the actors in turn, and within an actor evenly spaced
    over its recordings (index order groups by emotion and take; deterministic)."""
    if count <= 0:
        return []
    by_actor: dict[str, list[Recording]] = {}
    for rec in recs:
        by_actor.setdefault(rec.actor, []).append(rec)
    per_actor = -(-count // max(1, len(by_actor)))
    queues = []
    for actor in sorted(by_actor):
        mine = by_actor[actor]
        k = min(per_actor, len(mine))
        queues.append([mine[int((i + 0.5) * len(mine) / k)] for i in range(k)])
    picked = [q[depth] for depth in range(per_actor) for q in queues if depth < len(q)]
    return picked[:count]


def face_facts(
    recs: list[Recording], cfg: DataConfig, sample: int, report: BadInputReporter
) -> tuple[dict[str, tuple[bool, float | None]], int]:
    """Per recording key: (face found, share of searched frames with a face), from the
    feature cache under ``cfg``'s video settings, then by decoding up to ``sample`` of
    the rest (their entries are stored, as ``prepare`` would). Returns the facts and
    how many recordings were decoded here."""
    from trainers.data.cache import known_digests, load_digest_index, save_digest_index
    from trainers.data.ravdess import PrepareTask, prepare_recording

    video_only = dataclasses.replace(cfg, modalities=("video",))
    cache_dir = cfg.resolved_cache_dir()
    load_digest_index(cache_dir)
    facts: dict[str, tuple[bool, float | None]] = {}

    def take(rec: Recording, decode: bool) -> None:
        got = prepare_recording(PrepareTask(rec, video_only, str(cache_dir), decode=decode))
        for path, reason in got.bad.items():
            report(path, reason)
        if got.face_found is not None:
            facts[rec.key] = (got.face_found, got.face_frames)

    for rec in recs:
        # Only files the cache's index knows: hashing a whole corpus is not "fast".
        if known_digests(list(rec.sources("video"))):
            take(rec, decode=False)
    todo = _sample_evenly([r for r in recs if r.key not in facts], sample)
    for rec in todo:
        take(rec, decode=True)
    if todo:
        save_digest_index(cache_dir)
    return facts, len(todo)


def _faces(
    recs: list[Recording],
    split_of: list[str],
    cfg: DataConfig,
    sample: int,
    report: BadInputReporter,
) -> dict[str, Any]:
    facts, decoded = face_facts(recs, cfg, sample, report)
    rows = []
    for rec, split in zip(recs, split_of, strict=True):
        found, frames = facts.get(rec.key, (None, None))
        rows.append(FaceRow(split, rec.actor, found, frames))
    faces = summarize_faces(rows, detector_name(cfg), cfg.face_warn_fraction)
    faces["from_cache"] = len(facts) - decoded
    faces["decoded"] = decoded
    faces["cache_dir"] = str(cfg.resolved_cache_dir())
    return faces


def describe(
    dataset: str, root: str, faces_cfg: DataConfig | None = None, faces_sample: int = 0
) -> dict[str, Any]:
    """Class counts, imbalance, actors, durations and the majority floor of ``root``.

    With ``faces_cfg`` (the data settings of the model whose crops are meant),
    faces not found too: from its feature cache, plus ``faces_sample``
    recordings decoded now (see the module docstring)."""
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
    from trainers.data.ravdess import actor_sex, split_actors

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
            [r.actor for r in recs],
            cfg.val_fraction,
            cfg.test_fraction,
            cfg.split_seed,
            sex_of=actor_sex(recs),  # as training splits: by the recorded sex where known
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
    if faces_cfg is not None:
        faces = _faces(recs, split_of, faces_cfg, faces_sample, report)
        out["faces"] = faces
        out["bad_inputs"] = bad  # decoding a sample may have found more
        if faces["checked"]:
            out["faces_not_found"] = faces["without_face"]
            del out["faces_note"]
        else:
            out["faces_note"] = (
                f"nothing in the feature cache {faces['cache_dir']} for these settings: run "
                "`prepare` or `train` first, or decode a sample with --faces N"
            )
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
    faces = info.get("faces")
    if faces and faces["checked"]:
        lines.append(
            f"faces ({faces['from_cache']} recordings from the feature cache "
            f"{faces['cache_dir']}, {faces['decoded']} decoded now; a missed face is cropped "
            f"from the {faces['fallback']}):"
        )
        lines.extend(f"  {line}" for line in log_lines(faces))
        worst = sorted(
            ((a, c) for a, c in faces["actors"].items() if c["fraction"]),
            key=lambda item: (-item[1]["fraction"], item[0]),
        )
        for actor, counts in worst:
            lines.append(
                f"  actor {actor}: {counts['without_face']} of {counts['checked']} recordings "
                "without a face"
            )
        lines.extend(f"warning: {w['message']}" for w in face_warnings(faces))
    lines.append(f"bad inputs: {len(info['bad_inputs'])}")
    lines.extend(f"  {b['path']}: {b['reason']}" for b in info["bad_inputs"])
    return "\n".join(lines)
