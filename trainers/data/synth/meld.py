"""MELD's layout (MELD.Raw), filled with synthetic utterances.

Why it looks like this:

* MELD is read from its three CSVs, ``train_sent_emo.csv``,
  ``dev_sent_emo.csv`` and ``test_sent_emo.csv`` (columns ``Sr No.,
  Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season,
  Episode, StartTime, EndTime``), and one clip per row named
  ``dia{Dialogue_ID}_utt{Utterance_ID}.mp4`` in the split's folder. The real
  MELD.Raw archives unpack to ``train_splits/``, ``dev_splits_complete/`` and
  ``output_repeated_splits_test/``; this layout writes those three folders
  and the CSVs side by side under the root. Dialogue ids restart at 0 in
  every split, as in MELD, so a clip is identified by (split, dialogue,
  utterance).
* The CSVs carry MELD's quirks: UTF-8 with typographic quotes and dashes in
  ``Utterance``, and times like ``0:00:01,234`` next to ``00:00:01,234``
  (one- or two-digit hours). Times are nominal (the clip lengths are what
  the clips say), as MELD's own are approximate.
* Seven emotions with neutral dominant, in MELD's train proportions
  (:data:`SHARES`); every class occurs at least once in a split of 7 or more
  utterances, so a small corpus still trains on all of them. MELD has no
  audio-only files: audio comes from the mp4's track.
* Utterances differ in length: each clip holds its last frame and falls
  silent for a random 0..1 s after the speech (in 0.2 s steps, so frame and
  sample counts stay aligned), which makes padding and masks matter.
* Speakers are the actors: ``actors`` is the size of the speaker pool
  (Chandler, Joey, ...); every dialogue draws two or three of them.
  ``statements`` (1 or 2) scales the dialogue count (train 3, dev 1, test 1
  per statement) and ``repetitions`` (1 or 2) the utterances per dialogue
  (6 or 8).
* Manifest fields: ``key`` is ``<split>/dia{D}_utt{U}``, ``statement`` the
  dialogue id, ``repetition`` the utterance id, ``actor`` the 1-based index
  into :func:`speaker_name`'s pool, ``intensity`` always 1.
"""

from __future__ import annotations

import csv
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainers.data.synth import clip as clipmod
from trainers.data.synth import encode
from trainers.data.synth.manifest import Recording

NAME = "meld"
LAYOUT_TAG = zlib.crc32(NAME.encode())

# MELD's emotions in label order, and the drawn emotion each one uses.
EMOTIONS: tuple[str, ...] = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
RENDER_AS = {
    "neutral": "neutral",
    "surprise": "surprised",
    "fear": "fearful",
    "sadness": "sad",
    "joy": "happy",
    "disgust": "disgust",
    "anger": "angry",
}
# MELD train counts (4710 neutral ... 268 fear) as shares.
SHARES: dict[str, float] = {
    "neutral": 0.4715,
    "surprise": 0.1206,
    "fear": 0.0268,
    "sadness": 0.0684,
    "joy": 0.1745,
    "disgust": 0.0271,
    "anger": 0.1110,
}
SPLITS: tuple[str, ...] = ("train", "dev", "test")
FOLDERS: dict[str, str] = {
    "train": "train_splits",
    "dev": "dev_splits_complete",
    "test": "output_repeated_splits_test",
}
CSV_NAMES: dict[str, str] = {s: f"{s}_sent_emo.csv" for s in SPLITS}
COLUMNS: tuple[str, ...] = (
    "Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
    "Season", "Episode", "StartTime", "EndTime",
)  # fmt: skip
_MAIN = ("Chandler", "Joey", "Monica", "Phoebe", "Rachel", "Ross")
_FEMALE = {"Monica", "Phoebe", "Rachel", "Janice", "Carol"}
_EXTRA = ("Gunther", "Janice", "Mike", "Carol")
_LINES = (
    "Oh my God, you’re kidding!",
    "I said “no”, okay?",
    "Wait — what’s going on here?",
    "That’s… that’s just great.",
    "He’s been gone for, like, an hour",
    "Could this “be” any weirder?",
    "We were on a break!",
    "It’s fine. It’s totally fine…",
)
_DIALOGUES_PER_STATEMENT = {"train": 3, "dev": 1, "test": 1}
_MAX_PAD_QUANTA = 5  # up to 1 s of held frame and silence after the speech


def speaker_name(index: int) -> str:
    """The name of speaker ``index`` (1-based) of the pool."""
    pool = _MAIN + _EXTRA
    return pool[index - 1] if index <= len(pool) else f"Speaker {index}"


@dataclass(frozen=True)
class Task:
    """One utterance to render and write (JSON-serialisable for the workers)."""

    seed: int
    split: str
    dialogue: int
    utterance: int
    speaker: int  # 1-based into the pool
    emotion: int  # index into EMOTIONS
    statement: int  # 1..2: which syllable pattern the voice speaks
    pad: int  # quanta of silence appended
    # The split's shape, so the task writing the CSV can rebuild every row.
    actors: int
    statements: int
    repetitions: int

    @property
    def stem(self) -> str:
        return f"dia{self.dialogue}_utt{self.utterance}"

    @property
    def key(self) -> str:
        return f"{self.split}/{self.stem}"


def _allocate(n: int, rng: np.random.Generator) -> list[int]:
    """Labels for ``n`` utterances in MELD's proportions (each class once when n >= 7)."""
    shares = np.array([SHARES[e] for e in EMOTIONS])
    floor = 1 if n >= len(EMOTIONS) else 0
    rest = n - floor * len(EMOTIONS)
    exact = shares / shares.sum() * rest
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: rest - counts.sum()]:
        counts[i] += 1
    counts += floor
    labels = np.repeat(np.arange(len(EMOTIONS)), counts)
    return [int(x) for x in labels[rng.permutation(n)]]


def _plan_split(split: str, *, actors: int, seed: int, statements: int, repetitions: int):
    rng = np.random.default_rng([seed, LAYOUT_TAG, SPLITS.index(split)])
    n_dialogues = _DIALOGUES_PER_STATEMENT[split] * statements
    per_dialogue = 4 + 2 * repetitions
    labels = _allocate(n_dialogues * per_dialogue, rng)
    tasks = []
    for d in range(n_dialogues):
        cast = rng.choice(actors, size=min(actors, int(rng.integers(2, 4))), replace=False) + 1
        for u in range(per_dialogue):
            tasks.append(
                Task(
                    seed=seed,
                    split=split,
                    dialogue=d,
                    utterance=u,
                    speaker=int(cast[u % len(cast)] if u < len(cast) else rng.choice(cast)),
                    emotion=labels[d * per_dialogue + u],
                    statement=int(rng.integers(1, 3)),
                    pad=int(rng.integers(0, _MAX_PAD_QUANTA + 1)),
                    actors=actors,
                    statements=statements,
                    repetitions=repetitions,
                )
            )
    return tasks


def plan(*, actors: int, seed: int, statements: int, repetitions: int) -> list[Task]:
    """Every utterance: train, then dev, then test, dialogue by dialogue."""
    if not 2 <= actors <= 999:
        raise ValueError(f"a MELD dialogue needs speakers: actors must be 2..999, not {actors}")
    shape = {"actors": actors, "seed": seed, "statements": statements, "repetitions": repetitions}
    return [t for split in SPLITS for t in _plan_split(split, **shape)]


def format_time(seconds: float, two_digit_hours: bool) -> str:
    """``H:MM:SS,mmm`` or ``HH:MM:SS,mmm``, MELD's two spellings."""
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    hours = f"{h:02d}" if two_digit_hours else str(h)
    return f"{hours}:{m:02d}:{s:02d},{ms:03d}"


def _sentiment(emotion: str, task: Task) -> str:
    if emotion == "neutral":
        return "neutral"
    if emotion == "joy" or (emotion == "surprise" and task.utterance % 2 == 0):
        return "positive"
    return "negative"


def csv_text(tasks: list[Task]) -> str:
    """The CSV of one split's tasks, as MELD writes it."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    clock = 0.0
    for row, t in enumerate(tasks, start=1):
        if t.utterance == 0:
            clock = 60.0 * (7 + 13 * t.dialogue) + 0.537 * t.dialogue
        length = 1.6 + 0.2 * t.pad
        emotion = EMOTIONS[t.emotion]
        writer.writerow(
            (
                row,
                _LINES[(t.dialogue * 3 + t.utterance) % len(_LINES)],
                speaker_name(t.speaker),
                emotion,
                _sentiment(emotion, t),
                t.dialogue,
                t.utterance,
                1 + t.dialogue % 10,
                1 + (t.dialogue * 7 + 3) % 24,
                format_time(clock, (t.dialogue + t.utterance) % 2 == 0),
                format_time(clock + length, t.utterance % 3 != 1),
            )
        )
        clock += length + 0.25
    return buf.getvalue()


def write(task: Task, out: Path) -> Recording:
    """Render ``task`` to ``<split folder>/dia{D}_utt{U}.mp4``; the split's first task
    also writes the split's CSV (every row is known from the plan)."""
    name = speaker_name(task.speaker)
    female = name in _FEMALE or (name.startswith("Speaker") and task.speaker % 2 == 0)
    actor = clipmod.make_actor(task.seed, LAYOUT_TAG, task.speaker, female)
    seed = clipmod.clip_seed(
        task.seed, LAYOUT_TAG, SPLITS.index(task.split), task.dialogue, task.utterance
    )
    emotion = EMOTIONS[task.emotion]
    clip = clipmod.render_clip(actor, RENDER_AS[emotion], 1, task.statement, seed)
    frames, audio = clip.frames, clip.audio
    if task.pad:
        n_f = round(task.pad * clipmod.QUANTUM * clip.fps)
        n_s = n_f * clip.sample_rate // clip.fps
        frames = np.concatenate([frames, np.repeat(frames[-1:], n_f, axis=0)])
        audio = np.concatenate([audio, np.zeros(n_s, dtype=audio.dtype)])

    folder = out / FOLDERS[task.split]
    folder.mkdir(parents=True, exist_ok=True)
    rel = f"{FOLDERS[task.split]}/{task.stem}.mp4"
    encode.write_mp4(out / rel, frames, clip.fps, audio, clip.sample_rate)
    if task.dialogue == 0 and task.utterance == 0:
        rows = _plan_split(
            task.split,
            actors=task.actors,
            seed=task.seed,
            statements=task.statements,
            repetitions=task.repetitions,
        )
        path = out / CSV_NAMES[task.split]
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_text(csv_text(rows), encoding="utf-8", newline="")
        os.replace(tmp, path)
    return Recording(
        key=task.key,
        files=(rel,),
        emotion=emotion,
        label=task.emotion,
        intensity=1,
        statement=task.dialogue,
        repetition=task.utterance,
        actor=task.speaker,
        female=female,
        n_frames=len(frames),
        n_samples=len(audio),
        duration=round(len(frames) / clip.fps, 6),
    )
