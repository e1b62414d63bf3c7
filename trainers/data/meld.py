"""The MELD layout (MELD.Raw): the three CSVs, their clips and the official splits.

MELD lists every utterance in ``train_sent_emo.csv``, ``dev_sent_emo.csv``
and ``test_sent_emo.csv`` (``Sr No., Utterance, Speaker, Emotion, Sentiment,
Dialogue_ID, Utterance_ID, Season, Episode, StartTime, EndTime``); the clip
of a row is ``dia{Dialogue_ID}_utt{Utterance_ID}.mp4`` in the split's folder.
Why the loader looks like this:

* The CSVs are the truth (labels and speakers are nowhere else), so indexing
  reads them, not the folders. Clip folders are found by name anywhere under
  the root (depth 3): the archives unpack to ``train_splits/``,
  ``dev_splits_complete/`` and ``output_repeated_splits_test/``, possibly
  inside ``train/``, ``dev/``, ``test/`` or ``MELD.Raw/``.
* The official splits are kept (train, dev as val, test): papers report on
  them, and dialogues must not straddle splits. Speakers play the part of
  actors in sample info and ``describe``.
* Real quirks are met, not fixed by hand: UTF-8 with a possible BOM and
  typographic quotes (read as UTF-8, undecodable bytes replaced), times with
  one- or two-digit hours (:func:`parse_time`), rows whose clip is missing
  (reported with the CSV row and skipped), rows that do not parse and files
  in a clip folder that are no ``dia_utt`` name (reported and skipped).
  Corrupt clips are reported by the decoders, like every other layout's.
* There is no audio-only file in MELD: audio comes from the clip's track.

No torch here, like :mod:`trainers.data.ravdess`.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field

from trainers.data.base import BadInputReporter
from trainers.data.config import DataError
from trainers.data.ravdess import Recording

CLASSES: tuple[str, ...] = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
MELD_SPLITS: tuple[str, ...] = ("train", "dev", "test")
# MELD's split -> the engine's split name.
SPLIT_OF: dict[str, str] = {"train": "train", "dev": "val", "test": "test"}
CSV_NAMES: dict[str, str] = {s: f"{s}_sent_emo.csv" for s in MELD_SPLITS}
# Clip folder names per split, the MELD.Raw ones first.
FOLDER_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train_splits", "train_splits_complete"),
    "dev": ("dev_splits_complete", "dev_splits"),
    "test": ("output_repeated_splits_test", "test_splits_complete", "test_splits"),
}
REQUIRED_COLUMNS: tuple[str, ...] = (
    "Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID",
)  # fmt: skip
CLIP_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm"})
_CLIP_NAME = re.compile(r"^dia(\d+)_utt(\d+)$")
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2}):(\d{2})(?:[,.](\d{1,3}))?\s*$")
_SEARCH_DEPTH = 3


def parse_time(text: str) -> float:
    """Seconds of ``H:MM:SS,mmm`` or ``HH:MM:SS,mmm`` (``.`` also accepted); ValueError."""
    match = _TIME.match(text or "")
    if match is None:
        raise ValueError(f"not a time like 0:00:01,234: {text!r}")
    h, m, s, frac = match.groups()
    if int(m) > 59 or int(s) > 59:
        raise ValueError(f"minutes and seconds must be < 60: {text!r}")
    return int(h) * 3600 + int(m) * 60 + int(s) + (int(frac.ljust(3, "0")) / 1000 if frac else 0.0)


@dataclass(frozen=True)
class MeldRow:
    split: str  # MELD's: train, dev, test
    dialogue: int
    utterance: int
    label: int
    speaker: str
    csv_seconds: float | None  # EndTime - StartTime, None when either does not parse


@dataclass
class MeldIndex:
    """What indexing found: recordings, their official split, and the CSV rows behind them."""

    recordings: list[Recording]
    split_of: dict[str, str]  # recording key -> train / val / test
    rows: dict[str, MeldRow]  # recording key -> its CSV row
    csvs: dict[str, str] = field(default_factory=dict)  # MELD split -> CSV path
    bad_times: int = 0  # rows whose StartTime or EndTime does not parse


def _find(root: str, wanted: set[str], dirs: bool) -> dict[str, list[str]]:
    """Paths under ``root`` (depth <= 3) whose name is in ``wanted``, shallowest first."""
    found: dict[str, list[str]] = {}
    base = root.rstrip(os.sep).count(os.sep)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        depth = dirpath.rstrip(os.sep).count(os.sep) - base
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in dirnames if dirs else sorted(filenames):
            if name in wanted:
                found.setdefault(name, []).append(os.path.join(dirpath, name))
        if depth >= _SEARCH_DEPTH:
            dirnames[:] = []
    return found


def _clip_folder(root: str, split: str, folders: dict[str, list[str]]) -> str:
    for name in FOLDER_NAMES[split]:
        if name in folders:
            return folders[name][0]
    raise DataError(
        f"no clip folder for MELD's {split} split under {root!r}: expected a folder named "
        f"{' or '.join(FOLDER_NAMES[split])} (unpack MELD.Raw's {split}.tar.gz there)"
    )


def _int(row: dict[str, str], column: str) -> int:
    value = (row.get(column) or "").strip()
    if not value.isdigit():
        raise ValueError(f"{column} {value!r} is not a non-negative integer")
    return int(value)


def _csv_seconds(row: dict[str, str]) -> float | None:
    try:
        return round(parse_time(row.get("EndTime", "")) - parse_time(row.get("StartTime", "")), 3)
    except ValueError:
        return None


def index_meld(root: str, report_bad: BadInputReporter) -> MeldIndex:
    """Read the CSVs under ``root`` and pair every row with its clip (see module docstring)."""
    if not os.path.isdir(root):
        raise DataError(f"data root {root!r} is not a directory")
    csv_paths = _find(root, set(CSV_NAMES.values()), dirs=False)
    if not csv_paths:
        raise DataError(
            f"no MELD CSVs under {root!r}: expected {', '.join(CSV_NAMES.values())} "
            "(MELD.Raw's folder, with the clip folders beside them)"
        )
    folder_paths = _find(root, {n for names in FOLDER_NAMES.values() for n in names}, dirs=True)
    index = MeldIndex(recordings=[], split_of={}, rows={})
    for split in MELD_SPLITS:
        if CSV_NAMES[split] not in csv_paths:
            raise DataError(f"{CSV_NAMES[split]} not found under {root!r}: MELD needs all three")
        csv_path = csv_paths[CSV_NAMES[split]][0]
        index.csvs[split] = csv_path
        folder = _clip_folder(root, split, folder_paths)
        _read_csv(csv_path, split, folder, index, report_bad)
        _report_strays(folder, report_bad)
    index.recordings.sort(key=lambda r: (MELD_SPLITS.index(r.key.split("/")[0]), r.key))
    return index


def _read_csv(
    csv_path: str, split: str, folder: str, index: MeldIndex, report_bad: BadInputReporter
) -> set[str]:
    """Add the split's rows to ``index``; return the clip stems the CSV lists."""
    listed: set[str] = set()
    with open(csv_path, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{csv_path}: missing column(s) {', '.join(missing)}; MELD's CSVs have "
                f"{', '.join(REQUIRED_COLUMNS)} among others"
            )
        for row in reader:
            where = f"{csv_path}:{reader.line_num}"
            try:
                dialogue, utterance = _int(row, "Dialogue_ID"), _int(row, "Utterance_ID")
                emotion = (row.get("Emotion") or "").strip().lower()
                if emotion not in CLASSES:
                    raise ValueError(f"emotion {emotion!r} is not one of {', '.join(CLASSES)}")
            except ValueError as exc:
                report_bad(where, f"unusable {CSV_NAMES[split]} row: {exc}")
                continue
            stem = f"dia{dialogue}_utt{utterance}"
            key = f"{split}/{stem}"
            if stem in listed:
                report_bad(where, f"{stem} is listed twice in {CSV_NAMES[split]}; first row kept")
                continue
            listed.add(stem)
            clip = os.path.join(folder, stem + ".mp4")
            if not os.path.isfile(clip):
                row_id = (row.get("Sr No.") or "").strip() or "?"
                report_bad(clip, f"listed in {CSV_NAMES[split]} (Sr No. {row_id}) but missing")
                continue
            seconds = _csv_seconds(row)
            index.bad_times += seconds is None
            speaker = (row.get("Speaker") or "").strip() or "unknown"
            index.rows[key] = MeldRow(
                split, dialogue, utterance, CLASSES.index(emotion), speaker, seconds
            )
            index.split_of[key] = SPLIT_OF[split]
            index.recordings.append(
                Recording(
                    key=key,
                    label=CLASSES.index(emotion),
                    actor=speaker,
                    vocal=1,
                    intensity=0,
                    video_sources=(clip,),
                    audio_sources=(clip,),
                )
            )


def _report_strays(folder: str, report_bad: BadInputReporter) -> None:
    """Media files in a clip folder whose names are no ``dia{D}_utt{U}`` clip."""
    for name in sorted(os.listdir(folder)):
        stem, suffix = os.path.splitext(name)
        if name.startswith(".") or suffix.lower() not in CLIP_SUFFIXES:
            continue
        if _CLIP_NAME.match(stem) is None:
            report_bad(os.path.join(folder, name), "not a MELD clip name (dia{D}_utt{U}.mp4)")
