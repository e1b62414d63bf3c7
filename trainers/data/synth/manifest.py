"""The record of what a synthetic corpus holds, written beside it.

Why it looks like this:

* Loader tests need ground truth that does not come from parsing file names
  (that is the very thing under test), so the generator writes down, per
  recording, the labels it rendered and the files it wrote.
* Paths are relative to the corpus root and nothing machine- or
  time-dependent is stored, so the manifest is byte-identical for the same
  arguments like every other file, and a corpus can be moved or copied to a
  remote host and still be checked.
* It is plain JSON from frozen dataclasses: readable by the console and by
  hand, with no pickle and no torch.
* Frame rates are exact fractions (the realistic profile's 30000/1001): a
  whole rate is written as a number, any other as the string ``"30000/1001"``,
  and both (and a float, written by hand) read back as a
  :class:`~fractions.Fraction`. Fields added after format 1 (the profile, a
  recording's vocal channel) are written only when they differ from their
  default, so a standard corpus's manifest is the same bytes as before they
  existed and older manifests read unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

MANIFEST_NAME = "synth_manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Recording:
    """One performance and every file it was written to."""

    key: str  # stable id, e.g. RAVDESS "01-01-03-02-01-01-07" (the audio-video file's stem)
    files: tuple[str, ...]  # relative to the corpus root, POSIX separators
    emotion: str  # canonical name, e.g. "happy"
    label: int  # the data set's own code for the emotion, e.g. RAVDESS 3 for happy
    intensity: int  # 1 normal, 2 strong
    statement: int
    repetition: int
    actor: int
    female: bool
    n_frames: int
    n_samples: int
    # seconds: n_samples / sample_rate; the video's n_frames / fps is within half a
    # frame of it (equal in the standard profile, whose rates share a grid)
    duration: float
    vocal_channel: int = 1  # RAVDESS's VV field: 1 speech, 2 song (1 for other corpora)
    # Per-frame face boxes, on their way from a worker to truth.write_face_boxes;
    # never in the manifest (see trainers.data.synth.truth).
    faces: tuple[tuple[float, float, float, float], ...] | None = field(
        default=None, compare=False, repr=False
    )


# Fields written only when they differ from these defaults (see the module docstring).
_RECORDING_DEFAULTS = {"vocal_channel": 1}
_MANIFEST_DEFAULTS = {"profile": "standard"}


def _fps_to_json(fps: Fraction) -> int | str:
    return fps.numerator if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"


def _fps_from_json(value: object) -> Fraction:
    """A manifest's fps: 15, "30000/1001", or a float written by hand (29.97)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"fps {value!r} is not a number or a fraction string")
    try:
        fps = Fraction(value) if not isinstance(value, float) else Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"fps {value!r} is not a number or a fraction string") from None
    if fps <= 0:
        raise ValueError(f"fps {value!r} must be positive")
    return fps


@dataclass(frozen=True)
class CorpusManifest:
    """What :func:`trainers.data.synth.write_corpus` wrote."""

    layout: str
    seed: int
    actors: int
    fps: Fraction  # exact: 15, or 30000/1001 in the realistic profile
    frame_size: tuple[int, int]  # (width, height)
    sample_rate: int
    classes: tuple[str, ...]  # emotion names in label order
    recordings: tuple[Recording, ...]
    root: Path | None = field(default=None, compare=False)  # not serialized
    profile: str = "standard"  # the render profile: standard or realistic

    @property
    def files(self) -> list[Path]:
        """Absolute paths of every written media file (needs ``root``)."""
        if self.root is None:
            raise ValueError("manifest has no root; load it with CorpusManifest.load(path)")
        return [self.root / f for r in self.recordings for f in r.files]

    def to_json(self) -> str:
        data: dict[str, Any] = {"format": FORMAT_VERSION, **asdict(self)}
        data.pop("root")
        data["fps"] = _fps_to_json(Fraction(self.fps))
        _drop_defaults(data, _MANIFEST_DEFAULTS)
        for rec in data["recordings"]:
            rec.pop("faces")
            _drop_defaults(rec, _RECORDING_DEFAULTS)
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    def save(self, root: Path) -> Path:
        path = root / MANIFEST_NAME
        tmp = path.with_name(path.name + ".partial")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def from_json(cls, text: str, root: Path | None = None) -> CorpusManifest:
        data = json.loads(text)
        if data.pop("format", None) != FORMAT_VERSION:
            raise ValueError(f"unsupported synth manifest format (expected {FORMAT_VERSION})")
        recs = tuple(Recording(**{**r, "files": tuple(r["files"])}) for r in data.pop("recordings"))
        return cls(
            **{
                **data,
                "fps": _fps_from_json(data["fps"]),
                "frame_size": tuple(data["frame_size"]),
                "classes": tuple(data["classes"]),
            },
            recordings=recs,
            root=root,
        )

    @classmethod
    def load(cls, root: Path) -> CorpusManifest:
        """Read ``root/synth_manifest.json``."""
        root = Path(root)
        return cls.from_json((root / MANIFEST_NAME).read_text(encoding="utf-8"), root=root)


def _drop_defaults(data: dict[str, Any], defaults: dict[str, Any]) -> None:
    for key, default in defaults.items():
        if data.get(key) == default:
            data.pop(key)


def is_generated(root: str | Path) -> bool | None:
    """Whether ``root`` is the generator's output (its manifest lies there, or in a
    corpus folder under a combined root); None when ``root`` is not on this machine.

    Asked by the data modules when a run describes its data, so summary.json says it
    for as long as the run exists, not only while the data root does."""
    if not root or not Path(root).is_dir():
        return None
    root = Path(root)
    if (root / MANIFEST_NAME).is_file():
        return True
    return any((sub / MANIFEST_NAME).is_file() for sub in root.iterdir() if sub.is_dir())
