"""Ground-truth face boxes of a generated corpus: written beside it, read by benchmarks.

Why it exists and looks like this:

* A face detector can only be scored against where the faces really are, and
  the generator is the one party that knows: it drew each face itself. So
  every recording's per-frame face box is written to ``synth_faces.jsonl``
  at the corpus root, and :func:`load_face_boxes` reads it back for a
  benchmark (recall at an IoU threshold, mean IoU) on the corpus's videos.
* The box is the axis-aligned extent of the drawn face ellipse (forehead to
  chin, cheek to cheek; hair, ears and neck excluded), rotated with the
  head's roll, in output pixels with edge coordinates: pixel column ``i``
  spans ``[i, i + 1)``, so a detector's ``(x, y, w, h)`` compares as
  ``[x, y, x + w, y + h]``. Boxes are clipped to the frame.
* Frame ``i`` is the ``i``-th frame in presentation order, as PyAV's
  ``decode(video=0)`` yields them (B-frames included), and every video file a
  recording lists (RAVDESS's 01 and 02 mp4) holds those same frames.
* A sidecar rather than the manifest: a corpus of 720 recordings holds about
  60,000 boxes, which would bury the manifest that loader tests and people
  read; JSON lines let a benchmark stream them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainers.data.synth.manifest import Recording

FACES_NAME = "synth_faces.jsonl"
AUDIO_SUFFIXES = frozenset({".wav", ".mp3", ".m4a", ".flac"})

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class FaceTruth:
    """Where the face is in every frame of one recording's video."""

    key: str  # the manifest's recording key
    files: tuple[str, ...]  # the recording's video files, relative to the corpus root
    boxes: np.ndarray  # (T, 4) float32 [x0, y0, x1, y1], edge coordinates, output pixels


def face_rows(boxes: np.ndarray) -> tuple[Box, ...]:
    """``(T, 4)`` boxes as JSON-ready tuples rounded to 1/100 pixel (the same on any machine)."""
    return tuple(
        (round(float(a), 2), round(float(b), 2), round(float(c), 2), round(float(d), 2))
        for a, b, c, d in np.asarray(boxes, np.float64)
    )


def write_face_boxes(root: Path, recordings: Iterable[Recording]) -> Path | None:
    """Write ``root/synth_faces.jsonl`` for the recordings that carry boxes.

    Returns its path, or None (removing a stale file) when no recording has any:
    layouts that do not report boxes (FI's still images) write no sidecar.
    """
    path = Path(root) / FACES_NAME
    lines = []
    for rec in recordings:
        if rec.faces is None:
            continue
        videos = [f for f in rec.files if Path(f).suffix.lower() not in AUDIO_SUFFIXES]
        row = {"key": rec.key, "files": videos, "boxes": [list(b) for b in rec.faces]}
        lines.append(json.dumps(row, separators=(",", ":")) + "\n")
    if not lines:
        path.unlink(missing_ok=True)
        return None
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)
    return path


def load_face_boxes(root: str | Path) -> dict[str, FaceTruth]:
    """Read ``root/synth_faces.jsonl``: recording key -> :class:`FaceTruth`.

    Raises ValueError naming the file and line when a row is not what the
    generator writes.
    """
    path = Path(root) / FACES_NAME
    if not path.is_file():
        raise ValueError(
            f"{path} not found: only corpora written by `python -m trainers synth` "
            "(RAVDESS, CREMA-D and MELD layouts) carry ground-truth face boxes"
        )
    found: dict[str, FaceTruth] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key, files = str(row["key"]), tuple(str(f) for f in row["files"])
            boxes = np.asarray(row["boxes"], np.float32).reshape(-1, 4)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{n}: not a face-box row ({exc})") from None
        if len(boxes) and not (boxes[:, 2:] >= boxes[:, :2]).all():
            raise ValueError(f"{path}:{n}: recording {key}: a box has x1 < x0 or y1 < y0")
        found[key] = FaceTruth(key, files, boxes)
    return found


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x0, y0, x1, y1] boxes (0 when either is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 and math.isfinite(union) else 0.0


__all__ = ["FACES_NAME", "FaceTruth", "face_rows", "iou", "load_face_boxes", "write_face_boxes"]
