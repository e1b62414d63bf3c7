"""The CREMA-D layout: file names, recordings, demographics and actor-disjoint splits.

CREMA-D names every file ``<ActorID>_<Sentence>_<Emotion>_<Level>.<ext>``,
e.g. ``1001_DFA_ANG_XX.wav``: a four-digit actor (1001..1091), one of twelve
sentence codes, an emotion (ANG DIS FEA HAP NEU SAD) and a level (LO MD HI,
or XX unspecified). Why the loader looks like this:

* The release (github.com/CheyneyComputerScience/CREMA-D) keeps the same take
  in three folders: ``VideoFlash/*.flv`` (the clips shown to raters, FLV with
  an mp3 track), ``AudioMP3/*.mp3`` (that audio again, for the audio-only
  ratings) and ``AudioWAV/*.wav`` (16 kHz mono, "converted from the original
  video ... for computational audio processing"); mirrors add
  ``VideoMP4/*.mp4``, and people also flatten them into one folder. So files
  are found anywhere under the root and grouped by stem, whatever the folders
  are called: one take is one sample, never two or three. Video comes from
  the take's video files (mp4 before flv), audio from its wav, else its mp3,
  else a video's track: the maintainers answer reports of blank mp3s (issue
  #13) with "use the .WAV files". A source that fails is reported and the
  next is tried (the RAVDESS machinery in :mod:`trainers.data.ravdess` does
  that part), so an flv without an audio track costs nothing while its wav
  works.
* ``VideoDemographics.csv`` (ActorID, Age, Sex, Race, Ethnicity) gives each
  actor's sex, which the actor split balances (CREMA-D's actor numbers, unlike
  RAVDESS's, say nothing about it). A row it cannot read is reported, never
  guessed.
* A name that does not parse is reported once and skipped, with what it
  probably is where that is clear: older copies hold ``1040_ITH_SAD_X.wav``
  (issue #6, renamed to ``..._XX`` in 2022), which is not read under a guessed
  label. The real corpus's other known defects decode without error and are
  caught by :mod:`trainers.data.guards`.
* Splits are by actor (:func:`trainers.data.ravdess.split_actors`): the same
  person in train and test inflates accuracy.

No torch here, like :mod:`trainers.data.ravdess`.
"""

from __future__ import annotations

import csv
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
# The level is matched loosely so that a truncated one gets a precise message.
_NAME = re.compile(r"^(\d{4})_([A-Za-z]{3})_([A-Za-z]{3})_([A-Za-z]{1,3})$")
DEMOGRAPHICS = "VideoDemographics.csv"
SEXES = {"male": "male", "female": "female"}  # the Sex column's values, lower-cased


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
        why = f"level {level!r} is not one of {', '.join(LEVELS)}"
        likely = [known for known in LEVELS if known.startswith(level)]
        if len(likely) == 1:
            fixed = f"{actor}_{sentence}_{emotion}_{likely[0]}{suffix}"
            why += f"; probably a cut {likely[0]!r}: rename the file to {fixed} to use it"
        raise ValueError(why)
    return CremaName(actor, sentence, CODES.index(emotion), level)


@dataclass(frozen=True)
class Actor:
    """One row of VideoDemographics.csv."""

    actor: str  # "1001"
    sex: str  # "male" / "female"
    age: int | None
    race: str
    ethnicity: str


def read_demographics(path: str, report_bad: BadInputReporter) -> dict[str, Actor]:
    """The actors ``path`` describes; unreadable rows are reported (once, for the file)
    and left out, so those actors' splits fall back to no known sex."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        report_bad(path, f"cannot read the demographics: {exc}")
        return {}
    missing = [c for c in ("ActorID", "Sex") if c not in columns]
    if missing:
        report_bad(
            path,
            f"no {' or '.join(missing)} column (columns: {', '.join(columns) or 'none'}): "
            "actor sexes unknown, splits not balanced by sex",
        )
        return {}
    actors: dict[str, Actor] = {}
    problems = []
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        actor, sex = row["ActorID"], SEXES.get(row["Sex"].lower())
        if not re.fullmatch(r"\d{4}", actor):
            problems.append(f"line {line}: ActorID {actor!r} is not four digits")
        elif sex is None:
            problems.append(
                f"line {line}: Sex {row['Sex']!r} of actor {actor} is not Male or Female"
            )
        elif actor in actors:
            problems.append(f"line {line}: actor {actor} listed twice")
        else:
            age = row.get("Age", "")
            actors[actor] = Actor(
                actor, sex, int(age) if age.isdigit() else None,
                row.get("Race", ""), row.get("Ethnicity", ""),
            )  # fmt: skip
    if problems:
        report_bad(path, "; ".join(problems) + " (those actors' sexes are unknown)")
    return actors


def index_cremad(root: str, report_bad: BadInputReporter) -> list[Recording]:
    """Group the media files under ``root`` into takes, sorted by key."""
    if not os.path.isdir(root):
        raise DataError(f"data root {root!r} is not a directory")
    groups: dict[str, list[str]] = defaultdict(list)
    names: dict[str, CremaName] = {}
    found = walk_files(root, MEDIA_SUFFIXES | {".csv"})
    tables = [p for p in found if os.path.basename(p).lower() == DEMOGRAPHICS.lower()]
    # The release keeps it at the top; the shallowest copy wins.
    tables.sort(key=lambda p: (p.count(os.sep), p))
    actors = read_demographics(tables[0], report_bad) if tables else {}
    for path in found:
        if Path(path).suffix.lower() == ".csv":
            continue
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
                sex=actors[name.actor].sex if name.actor in actors else None,
            )
        )
    return recordings
