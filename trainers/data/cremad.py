"""The CREMA-D layout: file names, recordings and actor-disjoint splits.

CREMA-D names every file ``<ActorID>_<Sentence>_<Emotion>_<Level>.<ext>``,
e.g. ``1001_DFA_ANG_XX.wav``: a four-digit actor (1001..1091), one of twelve
sentence codes, an emotion (ANG DIS FEA HAP NEU SAD) and a level (LO MD HI,
or XX unspecified). Why the loader looks like this:

* The release keeps the same take in several folders (``AudioWAV/*.wav``,
  ``AudioMP3/*.mp3``, ``VideoFlash/*.flv``; mirrors add ``VideoMP4/*.mp4``),
  and people also flatten them into one folder. So files are found anywhere
  under the root and grouped by stem, whatever the folders are called: one
  take is one sample, never two. Video comes from the take's video files
  (mp4 before flv), audio from its wav, else its mp3, else a video's track;
  a source that fails is reported and the next is tried (the RAVDESS
  machinery in :mod:`trainers.data.ravdess` does that part).
* A name that does not parse is reported once and skipped; the real corpus
  has a few broken files, which the decoders report the same way.
* Splits are by actor (:func:`trainers.data.ravdess.split_actors`): the same
  person in train and test inflates accuracy.

No torch here, like :mod:`trainers.data.ravdess`.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from trainers.data.base import BadInputReporter
from trainers.data.config import DataError
from trainers.data.files import walk_files
from trainers.data.ravdess import Recording

CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "neutral", "sad")
CODES: tuple[str, ...] = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
SENTENCES = frozenset(
    {"IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI"}
)
LEVELS: dict[str, int] = {"XX": 0, "LO": 1, "MD": 2, "HI": 3}
# Best first: the order sources of one modality are tried in.
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".flv", ".avi", ".mov", ".mkv", ".webm")
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".mp3", ".m4a")
MEDIA_SUFFIXES = frozenset(VIDEO_SUFFIXES + AUDIO_SUFFIXES)
_NAME = re.compile(r"^(\d{4})_([A-Za-z]{3})_([A-Za-z]{3})_([A-Za-z]{2})$")


@dataclass(frozen=True)
class CremaName:
    actor: str  # "1001"
    sentence: str  # "DFA"
    emotion: int  # index into CLASSES
    level: str  # "XX"

    @property
    def key(self) -> str:
        return f"{self.actor}_{self.sentence}_{CODES[self.emotion]}_{self.level}"


def parse_name(filename: str) -> CremaName:
    """Parse ``1001_DFA_ANG_XX.ext``; ValueError says what is wrong."""
    stem, suffix = os.path.splitext(filename)
    if not suffix:
        raise ValueError("no file extension")
    match = _NAME.match(stem)
    if match is None:
        raise ValueError("expected ActorID_Sentence_Emotion_Level, e.g. 1001_DFA_ANG_XX")
    actor, sentence, emotion, level = match.groups()
    sentence, emotion, level = sentence.upper(), emotion.upper(), level.upper()
    if sentence not in SENTENCES:
        raise ValueError(f"sentence {sentence!r} is not one of {', '.join(sorted(SENTENCES))}")
    if emotion not in CODES:
        raise ValueError(f"emotion {emotion!r} is not one of {', '.join(CODES)}")
    if level not in LEVELS:
        raise ValueError(f"level {level!r} is not one of {', '.join(LEVELS)}")
    return CremaName(actor, sentence, CODES.index(emotion), level)


def index_cremad(root: str, report_bad: BadInputReporter) -> list[Recording]:
    """Group the media files under ``root`` into takes, sorted by key."""
    if not os.path.isdir(root):
        raise DataError(f"data root {root!r} is not a directory")
    groups: dict[str, list[str]] = defaultdict(list)
    names: dict[str, CremaName] = {}
    for path in walk_files(root, MEDIA_SUFFIXES):
        try:
            name = parse_name(os.path.basename(path))
        except ValueError as exc:
            report_bad(path, f"not a CREMA-D file name: {exc}")
            continue
        groups[name.key].append(path)
        names.setdefault(name.key, name)

    def rank(path: str, order: tuple[str, ...]) -> int:
        return order.index(Path(path).suffix.lower())

    recordings = []
    for key in sorted(groups):
        files, name = groups[key], names[key]
        video = sorted((p for p in files if Path(p).suffix.lower() in VIDEO_SUFFIXES),
                       key=lambda p: (rank(p, VIDEO_SUFFIXES), p))  # fmt: skip
        audio = sorted((p for p in files if Path(p).suffix.lower() in AUDIO_SUFFIXES),
                       key=lambda p: (rank(p, AUDIO_SUFFIXES), p))  # fmt: skip
        recordings.append(
            Recording(
                key=key,
                label=name.emotion,
                actor=name.actor,
                vocal=1,
                intensity=LEVELS[name.level],
                video_sources=tuple(video),
                audio_sources=(*audio, *video),
            )
        )
    return recordings
