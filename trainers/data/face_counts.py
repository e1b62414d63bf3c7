"""Faces not found: counted per recording, summed per split and per actor, warned about.

Why this exists:

* A clip where the detector never finds a face is not a bad input: the crop
  falls back to the centre square of the frame (``faces.center_box``) and
  the recording trains like any other. On a real-resolution corpus the Haar
  cascade missed 17% of the recordings (35% of one 1280x720 actor), and
  nothing said so. So the count travels with every description of a run's
  data: summary.json (``data.faces``), train.log (one line per split), a
  ``warning`` event the console shows, ``prepare`` and ``describe``.
* The facts come from the video cache entry (``face_found`` and
  ``detections``, stored since the cache's first version), so a warm run
  counts without decoding anything.
* Per actor as well as per split: a detector fails by camera, lighting and
  resolution, which an actor's recordings share, so one actor can lose most
  faces while the split's share still looks small. A split warns when its
  share, or any of its actors' share, is above ``data.face_warn_fraction``.

Stdlib only: the engine and ``describe`` read it without the decoding stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# What the crop uses when no face is ever found in a clip (trainers.data.faces.center_box).
FALLBACK = "centre square of the frame"
# The ``kind`` of the warning event (trainers.events.EventType.WARNING).
WARNING_KIND = "faces_not_found"
# The detector before ``data.face_detector`` existed.
DEFAULT_DETECTOR = "haar"
# Actors named in one warning message; the event's ``actors`` field has them all.
_NAMED_ACTORS = 6
_SPLITS = ("train", "val", "test")  # trainers.data.base.SPLITS, without its imports


@dataclass(frozen=True)
class FaceRow:
    """One recording's face facts; ``found`` is None when they are not known (describe
    without a cache entry or a decoded sample)."""

    split: str
    actor: str
    found: bool | None
    frames_with_face: float | None = None  # share of the detector's sampled frames


def frames_with_face(detections: int, frames: int, detect_every: int) -> float | None:
    """Share of the frames the detector ran on that held a face.

    The detector runs on every ``detect_every``-th sampled frame (the frames
    in between are interpolated), so a clip of ``frames`` crops had
    ``ceil(frames / detect_every)`` detector calls.
    """
    calls = math.ceil(frames / max(1, detect_every))
    if calls <= 0:
        return None
    return min(1.0, detections / calls)


def detector_name(cfg: object) -> str:
    """The configured detector (``data.face_detector``), or the one there was before it."""
    return str(getattr(cfg, "face_detector", DEFAULT_DETECTOR))


def _count(rows: Sequence[FaceRow]) -> dict[str, Any]:
    checked = [r for r in rows if r.found is not None]
    missed = sum(1 for r in checked if not r.found)
    shares = [r.frames_with_face for r in checked if r.frames_with_face is not None]
    return {
        "recordings": len(rows),
        "checked": len(checked),
        "without_face": missed,
        "fraction": round(missed / len(checked), 4) if checked else None,
        "frames_with_face": round(sum(shares) / len(shares), 4) if shares else None,
    }


def _by_actor(rows: Sequence[FaceRow]) -> dict[str, dict[str, Any]]:
    actors: dict[str, list[FaceRow]] = {}
    for row in rows:
        actors.setdefault(row.actor, []).append(row)
    return {actor: _count(actors[actor]) for actor in sorted(actors)}


def summarize_faces(rows: Sequence[FaceRow], detector: str, warn_fraction: float) -> dict[str, Any]:
    """The ``faces`` section of a data description (summary.json's ``data.faces``).

    Totals, ``splits`` (each with ``actors_over``: the split's actors whose
    share is above ``warn_fraction``, and that share) and ``actors`` (over
    every split: an actor is in several under ``data.split=random``).
    """
    splits: dict[str, Any] = {}
    for split in _SPLITS:
        in_split = [r for r in rows if r.split == split]
        info = _count(in_split)
        info["actors_over"] = {
            actor: counts["fraction"]
            for actor, counts in _by_actor(in_split).items()
            if counts["fraction"] is not None and counts["fraction"] > warn_fraction
        }
        splits[split] = info
    return {
        "detector": detector,
        "fallback": FALLBACK,
        "warn_fraction": warn_fraction,
        **_count(rows),
        "splits": splits,
        "actors": _by_actor(rows),
    }


def _pct(fraction: float) -> str:
    """12%, 4.5%: whole percents unless that would round a small share away."""
    text = f"{fraction:.0%}" if fraction >= 0.1 else f"{fraction:.1%}"
    return text.replace(".0%", "%")


def _actor_list(actors: dict[str, float]) -> str:
    worst = sorted(actors.items(), key=lambda item: (-item[1], item[0]))
    named = ", ".join(f"{actor} {_pct(share)}" for actor, share in worst[:_NAMED_ACTORS])
    more = len(worst) - _NAMED_ACTORS
    return named + (f" and {more} more" if more > 0 else "")


def log_lines(faces: dict[str, Any] | None) -> list[str]:
    """One human line per split, for train.log, ``prepare`` and ``describe``."""
    if not faces:
        return []
    lines = []
    for split, info in faces["splits"].items():
        if not info["recordings"]:
            lines.append(f"faces not found in {split}: no recordings")
            continue
        if not info["checked"]:
            lines.append(f"faces not found in {split}: not known ({info['recordings']} recordings)")
            continue
        text = (
            f"faces not found in {split}: {info['without_face']} of {info['checked']} "
            f"recordings ({_pct(info['fraction'])})"
        )
        if info["checked"] < info["recordings"]:
            text += f", {info['recordings'] - info['checked']} more not checked"
        if info["frames_with_face"] is not None:
            text += f"; a face on {_pct(info['frames_with_face'])} of the frames searched"
        if info["actors_over"]:
            text += f"; actors over {_pct(faces['warn_fraction'])}: "
            text += _actor_list(info["actors_over"])
        lines.append(f"{text} ({faces['detector']} detector)")
    return lines


def face_warnings(faces: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The fields of one ``warning`` event per split over the threshold (see the module doc).

    ``message`` is the sentence the console shows; the numbers beside it are
    there for whoever wants more than the sentence.
    """
    if not faces:
        return []
    out = []
    threshold = faces["warn_fraction"]
    for split, info in faces["splits"].items():
        fraction = info["fraction"]
        if fraction is None or not (fraction > threshold or info["actors_over"]):
            continue
        message = f"faces not found in {_pct(fraction)} of {split} recordings "
        message += f"({info['without_face']} of {info['checked']}"
        if info["actors_over"]:
            message += f"; actors {_actor_list(info['actors_over'])}"
        message += f"): crops fell back to the {FALLBACK} ({faces['detector']} detector)"
        out.append(
            {
                "kind": WARNING_KIND,
                "message": message,
                "split": split,
                "recordings": info["checked"],
                "without_face": info["without_face"],
                "fraction": fraction,
                "threshold": threshold,
                "actors": info["actors_over"],
                "fallback": FALLBACK,
                "detector": faces["detector"],
            }
        )
    return out
