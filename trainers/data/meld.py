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
* Real quirks are met, not fixed by hand: UTF-8 with a possible BOM, LF or
  CRLF line ends, typographic quotes or MELD.Raw's cp1252 punctuation stored
  as C1 control characters (U+0092 for an apostrophe; a speaker name is
  mapped back to the cp1252 character, :func:`fix_c1`), a file in cp1252
  proper when it is no UTF-8, ``Sr No.`` with gaps (only ever quoted in
  messages), times with one- or two-digit hours and two-digit milliseconds
  (:func:`parse_time`) and zero-duration rows (their clip is what counts),
  rows whose clip is missing (reported with the CSV row and skipped), rows
  that do not parse and files in a clip folder that are no ``dia_utt`` name
  (reported and skipped). Corrupt clips are reported by the decoders, like
  every other layout's.
* MELD's known defects (github.com/declare-lab/MELD issues) are named in
  their reports: ``dev_splits_complete/dia110_utt7.mp4`` is missing (#22,
  #27) and ``train_splits/dia125_utt3.mp4`` does not play (#39, #52); the
  latter is probed at indexing (one clip) so it is reported once, with the
  issue, and a repaired copy is used. The ``final_videos_test<dia_utt>.mp4``
  files of the test folder (about 130) are extra copies no CSV row names;
  the maintainers say to ignore them (#22), so they are left out and
  summed up in one bad_inputs line per folder instead of one each.
* There is no audio-only file in MELD: audio comes from the clip's track.

No torch here, like :mod:`trainers.data.ravdess`.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field

from trainers.data.base import BadInputReporter
from trainers.data.config import DataError, DecodeError
from trainers.data.ravdess import Recording
from trainers.data.video import decode_frames

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
# Unannotated copies in MELD.Raw's test folder, e.g. final_videos_testdia101_utt0.mp4.
FINAL_VIDEOS_PREFIX = "final_videos_test"
# (MELD split, clip stem) -> what is known to be wrong with the clip MELD.Raw ships.
KNOWN_DEFECTS: dict[tuple[str, str], str] = {
    ("train", "dia125_utt3"): "a known MELD.Raw defect, see github.com/declare-lab/MELD/issues/39",
    ("dev", "dia110_utt7"): "a known MELD.Raw defect, see github.com/declare-lab/MELD/issues/27",
}
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2}):(\d{2})(?:[,.](\d{1,3}))?\s*$")
_SEARCH_DEPTH = 3


def parse_time(text: str) -> float:
    """Seconds of ``H:MM:SS,mmm`` or ``HH:MM:SS,mmm`` (``.`` also accepted); ValueError.

    A fraction of fewer than three digits is a decimal fraction (``,28`` is 280 ms),
    as MELD's few two-digit times read."""
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


def fix_c1(text: str) -> str:
    """``text`` with C1 control characters (U+0080..U+009F) read as the cp1252 bytes
    they once were: MELD.Raw's CSVs store an apostrophe as U+0092."""
    if not any("\x80" <= ch <= "\x9f" for ch in text):
        return text
    return "".join(
        bytes([ord(ch)]).decode("cp1252", errors="replace") if "\x80" <= ch <= "\x9f" else ch
        for ch in text
    )


def _csv_text(csv_path: str) -> str:
    """The CSV's text: UTF-8 (BOM allowed) as MELD ships it, else cp1252, the encoding
    its punctuation came from (a copy re-saved by a spreadsheet on Windows)."""
    with open(csv_path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _unplayable(clip: str) -> str | None:
    """Why ``clip`` cannot be decoded (the decoders' own check, one frame), or None."""
    try:
        decode_frames(clip, fps=1.0, max_frames=1, threads=1)
    except DecodeError as exc:
        return str(exc)
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
    with io.StringIO(_csv_text(csv_path), newline="") as f:
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
            known = KNOWN_DEFECTS.get((split, stem))
            if not os.path.isfile(clip):
                row_id = (row.get("Sr No.") or "").strip() or "?"
                reason = f"listed in {CSV_NAMES[split]} (Sr No. {row_id}) but missing"
                report_bad(clip, f"{reason} ({known})" if known else reason)
                continue
            if known and (why := _unplayable(clip)) is not None:
                report_bad(clip, f"unplayable: {why} ({known})")
                continue
            seconds = _csv_seconds(row)
            index.bad_times += seconds is None
            speaker = fix_c1((row.get("Speaker") or "").strip()) or "unknown"
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
    """Media files in a clip folder whose names are no ``dia{D}_utt{U}`` clip; MELD's
    ``final_videos_test`` copies are summed up in one line (see the module docstring)."""
    extra_copies = 0
    for name in sorted(os.listdir(folder)):
        stem, suffix = os.path.splitext(name)
        if name.startswith(".") or suffix.lower() not in CLIP_SUFFIXES:
            continue
        if stem.startswith(FINAL_VIDEOS_PREFIX) and _CLIP_NAME.match(
            stem[len(FINAL_VIDEOS_PREFIX) :]
        ):
            extra_copies += 1
        elif _CLIP_NAME.match(stem) is None:
            report_bad(os.path.join(folder, name), "not a MELD clip name (dia{D}_utt{U}.mp4)")
    if extra_copies:
        report_bad(
            os.path.join(folder, FINAL_VIDEOS_PREFIX + "*.mp4"),
            f"{extra_copies} file(s) ignored: unannotated extra copies MELD.Raw ships in its "
            "test folder, named by no CSV row (the maintainers say to ignore them, "
            "github.com/declare-lab/MELD/issues/22)",
        )
