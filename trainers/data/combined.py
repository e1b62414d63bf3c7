"""RAVDESS + CREMA-D as one data set (design note 001's "combined" corpus).

Note 001 reports its accuracies "on the combined RAVDESS and CREMA-D
datasets" without saying how the two label sets were joined, so the choice
is made here, once, in :data:`LABEL_MAP`, and written down in
docs/datasets.md. Why it looks like this:

* **Layout: one folder holding both corpora.** ``data.root`` (``--data``,
  or ``SRC`` for ``describe`` and ``prepare``) is a folder with a
  ``ravdess/`` and a ``crema-d/`` subfolder, each laid out as the real
  download (symbolic links to existing copies work: the walkers follow
  them). One root keeps every command's single ``SRC``/``--data`` argument,
  and the run's resolved config still names exactly what it trained on.
  ``python -m trainers synth --layout combined`` writes this layout.
* **Labels: the six classes both corpora share.** RAVDESS's *calm* and
  *surprised* have no CREMA-D counterpart and are excluded, not merged:
  calm is acted as its own (low-arousal, mildly positive) expression, so
  folding it into neutral would put two different faces and voices under
  one label and make "neutral" mostly RAVDESS; and a class only one corpus
  has lets a model score by recognising the corpus instead of the emotion.
  Excluded recordings are counted per corpus and class
  (:attr:`CombinedIndex.excluded`) and shown by ``describe``, ``prepare``,
  train.log and summary.json's ``data`` — never silently lost. They are not
  listed in bad_inputs.jsonl: the files are fine, the label map leaves them
  out by choice, and a quarter of RAVDESS there would bury the real broken
  files.
* **Actors: prefixed with their corpus** (``ravdess:07``,
  ``crema-d:1001``), so ids can never collide and every prediction row says
  where it came from. :func:`trainers.data.ravdess.split_actors` splits each
  corpus's actors on its own (the same fractions) and joins the parts, so
  every split holds actors of both corpora and no actor is in two splits.
* **Recording keys are left as they are**: RAVDESS keys
  (``01-01-03-02-01-01-07``) and CREMA-D keys (``1001_DFA_ANG_XX``) cannot
  collide, and keeping them keeps the feature cache and embedding files
  shared with single-corpus runs.

No torch here, like the other index modules.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trainers.data import cremad, ravdess
from trainers.data.base import BadInputReporter
from trainers.data.config import DataError
from trainers.data.ravdess import Recording

CLASSES: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fearful", "disgust")
"""The combined label space: the six emotions RAVDESS and CREMA-D share, in RAVDESS's order."""

LABEL_MAP: dict[str, dict[str, str | None]] = {
    "ravdess": {
        "neutral": "neutral",
        "calm": None,
        "happy": "happy",
        "sad": "sad",
        "angry": "angry",
        "fearful": "fearful",
        "disgust": "disgust",
        "surprised": None,
    },
    "crema-d": {
        "anger": "angry",
        "disgust": "disgust",
        "fear": "fearful",
        "happy": "happy",
        "neutral": "neutral",
        "sad": "sad",
    },
}
"""Each corpus's own class name -> its class in :data:`CLASSES`, or None: excluded.

RAVDESS calm and surprised are excluded (no CREMA-D counterpart; see the
module docstring for why calm is not merged into neutral). Every class of
both corpora is listed, so a class missing here is a bug, not a silent drop.
"""

# Corpus -> the subfolder names of data.root accepted for it, first one preferred.
SUBFOLDERS: dict[str, tuple[str, ...]] = {
    "ravdess": ("ravdess", "RAVDESS"),
    "crema-d": ("crema-d", "CREMA-D", "cremad", "CREMA_D", "crema_d"),
}
ACTOR_SEPARATOR = ":"
EXPECTED = (
    "a folder with ravdess/ (MM-VV-EE-II-SS-RR-AA.mp4/.wav files) and crema-d/ "
    "(ActorID_Sentence_Emotion_Level.wav/.mp4/.flv files) subfolders"
)


def _check_label_map() -> dict[str, list[int | None]]:
    """Each corpus's label index -> combined index; fails at import if the map has a gap."""
    own = {"ravdess": ravdess.CLASSES, "crema-d": cremad.CLASSES}
    table: dict[str, list[int | None]] = {}
    for corpus, classes in own.items():
        mapping = LABEL_MAP[corpus]
        if set(mapping) != set(classes):
            raise AssertionError(f"LABEL_MAP[{corpus!r}] must name exactly {classes}")
        table[corpus] = [None if mapping[c] is None else CLASSES.index(mapping[c]) for c in classes]
    return table


_TO_COMBINED = _check_label_map()


def actor_id(corpus: str, actor: str) -> str:
    """``ravdess:07``: the corpus-qualified actor id the combined set uses."""
    return f"{corpus}{ACTOR_SEPARATOR}{actor}"


@dataclass(frozen=True)
class CombinedIndex:
    recordings: list[Recording]  # mapped labels, prefixed actors, sorted by (corpus, key)
    corpus_of: dict[str, str] = field(default_factory=dict)  # recording key -> corpus
    # One row per (corpus, own class) left out by LABEL_MAP:
    # {"corpus", "class", "recordings", "files"}.
    excluded: list[dict[str, Any]] = field(default_factory=list)


def corpus_roots(root: str) -> dict[str, str]:
    """The ``ravdess`` and ``crema-d`` folders under ``root``; DataError names what is missing."""
    if not os.path.isdir(root):
        raise DataError(f"data root {root!r} is not a directory")
    found: dict[str, str] = {}
    for corpus, names in SUBFOLDERS.items():
        for name in names:
            path = os.path.join(root, name)
            if os.path.isdir(path):
                found[corpus] = path
                break
    missing = [SUBFOLDERS[c][0] + "/" for c in SUBFOLDERS if c not in found]
    if missing:
        raise DataError(
            f"combined data root {root!r} has no {' and no '.join(missing)} subfolder: "
            f"expected {EXPECTED} (symbolic links to existing copies work)"
        )
    return found


def refuse_combined_root(root: str, layout: str) -> None:
    """A single-corpus layout pointed at a combined root is a mistake: say so, early.

    Without this, ``--data data/combined`` with the default ``data.layout=ravdess``
    would walk into crema-d/, report every CREMA-D file as a bad RAVDESS name and
    train on RAVDESS alone, quietly.
    """
    if layout not in SUBFOLDERS:
        return
    try:
        corpus_roots(root)
    except DataError:
        return
    raise DataError(
        f"{root!r} holds ravdess/ and crema-d/: that is the combined layout; set "
        f"data.layout=combined (describe/prepare: combined), or point at {root}/{layout} "
        f"for {layout} alone"
    )


def index_combined(
    root: str, report_bad: BadInputReporter, vocal_channels: Sequence[int] = (ravdess.SPEECH,)
) -> CombinedIndex:
    """Both corpora under ``root`` as one list of recordings in the combined label space
    (RAVDESS's takes of ``vocal_channels``: ``data.vocal_channel``).

    Names that do not parse are reported by each corpus's own indexer, as in
    a single-corpus run. Recordings of excluded classes are counted, not
    returned.
    """
    roots = corpus_roots(root)
    found = {
        "ravdess": ravdess.index_ravdess(roots["ravdess"], report_bad, vocal_channels),
        "crema-d": cremad.index_cremad(roots["crema-d"], report_bad),
    }
    own_classes = {"ravdess": ravdess.CLASSES, "crema-d": cremad.CLASSES}
    recordings: list[Recording] = []
    corpus_of: dict[str, str] = {}
    dropped_recordings: Counter[tuple[str, str]] = Counter()
    dropped_files: Counter[tuple[str, str]] = Counter()
    for corpus, recs in found.items():
        for rec in recs:
            label = _TO_COMBINED[corpus][rec.label]
            if label is None:
                name = own_classes[corpus][rec.label]
                dropped_recordings[corpus, name] += 1
                dropped_files[corpus, name] += len(rec.files)
                continue
            recordings.append(
                dataclasses.replace(rec, label=label, actor=actor_id(corpus, rec.actor))
            )
            corpus_of[rec.key] = corpus
    excluded = [
        {
            "corpus": corpus,
            "class": name,
            "recordings": dropped_recordings[corpus, name],
            "files": dropped_files[corpus, name],
        }
        for corpus, classes in own_classes.items()
        for name in classes
        if LABEL_MAP[corpus][name] is None
    ]
    return CombinedIndex(recordings, corpus_of, excluded)


def format_excluded(excluded: list[dict[str, Any]]) -> str:
    """``ravdess calm 8 recordings (24 files), ...``: one line for logs and reports."""
    if not excluded:
        return "none"
    return ", ".join(
        f"{e['corpus']} {e['class']} {e['recordings']} recordings ({e['files']} files)"
        for e in excluded
    )
