"""A few fixed validation samples, shown with their predictions after every validation.

The same samples every epoch (drawn once from ``train.seed``), so a reader watches
one sample's probabilities move from epoch to epoch instead of a new random handful
each time. Each gets one picture, written once into ``samples/`` of the run
directory: the face crop's middle frame (video models), the image (image models),
or the audio features as a picture (audio-only models).

The picture is made from what the model sees: the split's data set item for that
sample, collated by the data module, so it works for every data module without one
of them knowing about it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

SAMPLES_DIR = "samples"
# Pictures smaller than this (a 24-pixel face crop) are enlarged, pixels kept sharp.
MIN_PICTURE_SIDE = 96


def pick_rows(n: int, k: int, seed: int) -> list[int]:
    """``k`` sample rows of ``n``, a pure function of the seed (sorted)."""
    if k <= 0 or n <= 0:
        return []
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(n, size=min(k, n), replace=False))


def picture_path(split: str, index: int) -> str:
    """Relative to the run directory, as the ``samples`` event names it."""
    return f"{SAMPLES_DIR}/{split}_{index:04d}.png"


def records(
    rows: Sequence[int],
    probs: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    classes: Sequence[str],
    pictures: dict[int, str | None],
) -> list[dict[str, Any]]:
    """The ``samples`` event's list: one dict per row, probabilities in class order."""
    out = []
    for row in rows:
        p = probs[row]
        out.append(
            {
                "index": int(row),
                "name": names[row],
                "label": classes[int(labels[row])],
                "pred": classes[int(np.argmax(p))],
                "probs": [round(float(v), 6) for v in p],
                "image": pictures.get(row),
            }
        )
    return out


def dataset_rows(dataset: Any, samples: Sequence[int], n_samples: int) -> dict[int, list[int]]:
    """The data set rows of each sample: one row each, or several (clips, TTA views).

    Multi-row eval sets here lay a sample's rows out together (``sample * k + view``);
    that layout is checked on the first row, and any other layout falls back to
    reading every row's ``"sample"`` once.
    """
    total = len(dataset)
    if total == n_samples:
        return {s: [s] for s in samples}
    if n_samples and total % n_samples == 0:
        per = total // n_samples
        rows = {s: list(range(s * per, (s + 1) * per)) for s in samples}
        if all(int(dataset[r[0]].get("sample", -1)) == s for s, r in rows.items()):
            return rows
    found: dict[int, list[int]] = {s: [] for s in samples}
    for row in range(total):
        item = dataset[row]
        sample = int(item.get("sample", item.get("index", -1)))
        if sample in found:
            found[sample].append(row)
    return found


def picture(batch: dict[str, Any], normalize: dict[str, Any] | None = None) -> np.ndarray | None:
    """A uint8 picture (H, W) or (H, W, 3) of the first item of a collated batch.

    ``normalize``: the mean and std an image pipeline applied (its inference state),
    undone so the picture shows the image's own colours. None for a batch with no
    video, image or audio input.
    """
    if "video" in batch:
        video = batch["video"][0].float()  # (T, C, S, S) in 0..1
        mask = batch.get("video_mask")
        real = int(mask[0].sum()) if mask is not None else video.shape[0]
        chw = video[(real or video.shape[0]) // 2]
        if batch["video"].dtype == torch.uint8:
            chw = chw / 255.0
        return _to_uint8(chw)
    if "image" in batch:
        chw = batch["image"][0].float()
        if normalize and "mean" in normalize and "std" in normalize:
            mean = torch.tensor(normalize["mean"], dtype=torch.float32)[:, None, None]
            std = torch.tensor(normalize["std"], dtype=torch.float32)[:, None, None]
            chw = chw * std + mean
        elif chw.min() < 0 or chw.max() > 1:
            chw = _stretch(chw)
        return _to_uint8(chw)
    if "audio" in batch:
        audio = batch["audio"][0].float()  # (Ta, F)
        mask = batch.get("audio_mask")
        if mask is not None:
            audio = audio[mask[0].bool()]
        # Time left to right, the first feature (lowest band) at the bottom.
        return _to_uint8(_stretch(audio.T.flip(0))[None])
    return None


def write_pictures(
    run_path: Path,
    split: str,
    rows: Sequence[int],
    dataset: Any,
    collate: Callable[[list[Any]], dict[str, Any]],
    n_samples: int,
    normalize: dict[str, Any] | None,
    log: Callable[[str], None],
) -> dict[int, str | None]:
    """Each row's picture path (relative to the run directory), made once: a picture
    already on disk (a resumed run) is kept as it is. None where there is none."""
    from PIL import Image

    out: dict[int, str | None] = {}
    where = dataset_rows(dataset, rows, n_samples)
    (run_path / SAMPLES_DIR).mkdir(exist_ok=True)
    for row in rows:
        rel = picture_path(split, row)
        if (run_path / rel).exists():
            out[row] = rel
            continue
        found = where.get(row) or []
        if not found:
            out[row] = None
            continue
        first = dataset[found[0]]
        # Clips cover a video in order: the middle one holds its middle frame. TTA views
        # start with the original image, which is the one to show.
        item = dataset[found[len(found) // 2]] if "video" in first and len(found) > 1 else first
        try:
            pixels = picture(collate([item]), normalize)
        except (RuntimeError, ValueError, IndexError, KeyError, TypeError) as exc:
            log(f"samples: no picture for {split} row {row}: {type(exc).__name__}: {exc}")
            pixels = None
        if pixels is None:
            out[row] = None
            continue
        image = Image.fromarray(pixels)
        short = min(image.size)
        if short < MIN_PICTURE_SIDE:
            factor = math.ceil(MIN_PICTURE_SIDE / max(short, 1))
            image = image.resize(
                (image.width * factor, image.height * factor), Image.Resampling.NEAREST
            )
        tmp = run_path / f"{rel}.tmp"
        image.save(tmp, format="PNG")
        tmp.replace(run_path / rel)
        out[row] = rel
    return out


def markdown_table(event: dict[str, Any]) -> str:
    """TensorBoard's text summary of one ``samples`` event."""
    lines = [
        "| index | name | label | pred | p(label) | p(pred) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    classes = list(event["classes"])
    for s in event["samples"]:
        p_label = s["probs"][classes.index(s["label"])]
        p_pred = s["probs"][classes.index(s["pred"])]
        mark = "" if s["label"] == s["pred"] else " ✗"
        lines.append(
            f"| {s['index']} | {s['name']} | {s['label']} | {s['pred']}{mark} "
            f"| {p_label:.3f} | {p_pred:.3f} |"
        )
    return "\n".join(lines)


def _stretch(x: torch.Tensor) -> torch.Tensor:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)


def _to_uint8(chw: torch.Tensor) -> np.ndarray:
    pixels = (chw.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    if pixels.shape[0] == 3:
        return np.ascontiguousarray(pixels.transpose(1, 2, 0))
    return np.ascontiguousarray(pixels[0])
