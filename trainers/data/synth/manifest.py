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
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
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
    duration: float  # seconds; n_frames / fps == n_samples / sample_rate


@dataclass(frozen=True)
class CorpusManifest:
    """What :func:`trainers.data.synth.write_corpus` wrote."""

    layout: str
    seed: int
    actors: int
    fps: int
    frame_size: tuple[int, int]  # (width, height)
    sample_rate: int
    classes: tuple[str, ...]  # emotion names in label order
    recordings: tuple[Recording, ...]
    root: Path | None = field(default=None, compare=False)  # not serialized

    @property
    def files(self) -> list[Path]:
        """Absolute paths of every written media file (needs ``root``)."""
        if self.root is None:
            raise ValueError("manifest has no root; load it with CorpusManifest.load(path)")
        return [self.root / f for r in self.recordings for f in r.files]

    def to_json(self) -> str:
        data: dict[str, Any] = {"format": FORMAT_VERSION, **asdict(self)}
        data.pop("root")
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
