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
* ``realistic=True`` imitates the copies users actually download, quirks and
  known defects included (each looked up in github.com/declare-lab/MELD):

  - folders as in the widely used unpacked copy: ``train/train_splits`` with
    ``train/train_sent_emo.csv``, ``dev/dev_splits_complete``,
    ``test/output_repeated_splits_test``, each CSV beside its clip folder;
  - train and dev CSVs as MELD.Raw ships them: cp1252 punctuation stored as
    C1 control characters (U+0092 for an apostrophe, UTF-8 encoded), LF line
    ends; the test CSV as the fixed GitHub copy (declare-lab/MELD#28):
    typographic quotes and CRLF line ends;
  - ``Sr No.`` with gaps (the real test CSV jumps from 3 to 19), hours
    spelled ``0:`` in some dialogues and ``00:`` in others, one time with
    two-digit milliseconds (``00:06:47,28``), and one zero-duration row
    (StartTime == EndTime, as test Sr No. 1508, dia155_utt3);
  - ``train_splits/dia125_utt3.mp4`` unplayable (declare-lab/MELD#39, #52),
    ``dev_splits_complete/dia110_utt7.mp4`` missing while its row stays in
    the CSV (#22, #27), and ``final_videos_test<dia{D}_utt{U}>.mp4`` copies
    beside some test clips: unannotated duplicates no CSV row names, which
    the maintainers say to ignore (#22). The corpus is small, so the
    dialogues carrying these defects get the real ids (train 125, dev 110,
    test 155) whatever their position.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from trainers.data.synth import clip as clipmod
from trainers.data.synth import encode
from trainers.data.synth.manifest import Recording
from trainers.data.synth.truth import face_rows

NAME = "meld"
LAYOUT_TAG = zlib.crc32(NAME.encode())
SUPPORTS_REALISTIC = True

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

# The realistic layout (see the module docstring): a folder per split holding the CSV
# and the clip folder, and MELD's known defects at their real names.
REALISTIC_DIRS: dict[str, str] = {s: s for s in SPLITS}
UNPLAYABLE = ("train", 125, 3)  # declare-lab/MELD#39, #52
MISSING = ("dev", 110, 7)  # declare-lab/MELD#22, #27 (Sr No. 1153)
ZERO_DURATION = ("test", 155, 3)  # test Sr No. 1508: StartTime == EndTime
# The last dialogue of each split takes the id of the defect it carries.
_DEFECT_DIALOGUE = {"train": UNPLAYABLE[1], "dev": MISSING[1], "test": ZERO_DURATION[1]}
FINAL_VIDEOS_PREFIX = "final_videos_test"  # unannotated test copies (#22)
# cp1252 punctuation as MELD.Raw's CSVs store it: the C1 control of the cp1252 byte.
C1_PUNCTUATION = {"’": "\x92", "‘": "\x91", "“": "\x93", "”": "\x94", "—": "\x97", "…": "\x85"}


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
    realistic: bool = False

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


def dialogue_ids(split: str, statements: int, realistic: bool) -> list[int]:
    """The split's dialogue ids: 0, 1, ...; realistic corpora give the last one the id
    of the defect it carries (train 125, dev 110, test 155)."""
    ids = list(range(_DIALOGUES_PER_STATEMENT[split] * statements))
    if realistic:
        ids[-1] = _DEFECT_DIALOGUE[split]
    return ids


def _rows(
    split: str, *, actors: int, seed: int, statements: int, repetitions: int, realistic: bool
) -> list[Task]:
    """Every CSV row of the split, as tasks (the missing clip's row included)."""
    rng = np.random.default_rng([seed, LAYOUT_TAG, SPLITS.index(split)])
    ids = dialogue_ids(split, statements, realistic)
    per_dialogue = 4 + 2 * repetitions
    # The missing clip is utterance 7: its dialogue needs at least 8 utterances.
    grown = max(per_dialogue, MISSING[2] + 1)
    sizes = [grown if realistic and (split, d) == MISSING[:2] else per_dialogue for d in ids]
    labels = _allocate(sum(sizes), rng)
    tasks = []
    first = 0
    for d, size in zip(ids, sizes, strict=True):
        cast = rng.choice(actors, size=min(actors, int(rng.integers(2, 4))), replace=False) + 1
        for u in range(size):
            tasks.append(
                Task(
                    seed=seed,
                    split=split,
                    dialogue=d,
                    utterance=u,
                    speaker=int(cast[u % len(cast)] if u < len(cast) else rng.choice(cast)),
                    emotion=labels[first + u],
                    statement=int(rng.integers(1, 3)),
                    pad=int(rng.integers(0, _MAX_PAD_QUANTA + 1)),
                    actors=actors,
                    statements=statements,
                    repetitions=repetitions,
                    realistic=realistic,
                )
            )
        first += size
    return tasks


def plan(
    *, actors: int, seed: int, statements: int, repetitions: int, realistic: bool = False
) -> list[Task]:
    """Every utterance with a clip: train, then dev, then test, dialogue by dialogue."""
    if not 2 <= actors <= 999:
        raise ValueError(f"a MELD dialogue needs speakers: actors must be 2..999, not {actors}")
    shape = {
        "actors": actors,
        "seed": seed,
        "statements": statements,
        "repetitions": repetitions,
        "realistic": realistic,
    }
    return [
        t
        for split in SPLITS
        for t in _rows(split, **shape)
        if not (realistic and (t.split, t.dialogue, t.utterance) == MISSING)
    ]


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


def _serial_numbers(n: int, realistic: bool) -> list[int]:
    """``Sr No.`` of ``n`` rows: 1..n, or with MELD's gaps (3 -> 19, then one number
    skipped every fifth row) in the realistic layout."""
    if not realistic:
        return list(range(1, n + 1))
    numbers, value = [], 1
    for row in range(n):
        numbers.append(value)
        value += 16 if row == 2 else 2 if row % 5 == 4 else 1
    return numbers


def csv_text(tasks: list[Task]) -> str:
    """The CSV of one split's tasks (every row), as MELD writes it."""
    realistic = bool(tasks) and tasks[0].realistic
    split = tasks[0].split if tasks else ""
    buf = io.StringIO()
    # MELD.Raw's train and dev CSVs end lines with LF; the fixed test CSV with CRLF.
    crlf = realistic and split == "test"
    writer = csv.writer(buf, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(COLUMNS)
    clock = 0.0
    for row, (serial, t) in enumerate(
        zip(_serial_numbers(len(tasks), realistic), tasks, strict=True)
    ):
        if t.utterance == 0:
            minute = 7 + 13 * t.dialogue
            if realistic:  # within an episode, whatever the dialogue id
                minute %= 50
            clock = 60.0 * minute + 0.537 * t.dialogue
        length = 1.6 + 0.2 * t.pad
        emotion = EMOTIONS[t.emotion]
        text = _LINES[(t.dialogue * 3 + t.utterance) % len(_LINES)]
        if realistic:
            # One hour spelling per dialogue (as in MELD's CSVs), both across the split.
            long_start = long_end = t.dialogue % 2 == 0
            if not crlf:
                text = "".join(C1_PUNCTUATION.get(ch, ch) for ch in text)
        else:
            long_start, long_end = (t.dialogue + t.utterance) % 2 == 0, t.utterance % 3 != 1
        start = format_time(clock, long_start)
        end = format_time(clock + length, long_end)
        if realistic and (t.split, t.dialogue, t.utterance) == ZERO_DURATION:
            end = start
        if realistic and row == 1:
            end = end[:-1]  # two-digit milliseconds, as train's 00:06:47,28
        writer.writerow(
            (
                serial,
                text,
                speaker_name(t.speaker),
                emotion,
                _sentiment(emotion, t),
                t.dialogue,
                t.utterance,
                1 + t.dialogue % 10,
                1 + (t.dialogue * 7 + 3) % 24,
                start,
                end,
            )
        )
        clock += length + 0.25
    return buf.getvalue()


def clip_folder(split: str, realistic: bool) -> str:
    """The split's clip folder relative to the corpus root."""
    return f"{REALISTIC_DIRS[split]}/{FOLDERS[split]}" if realistic else FOLDERS[split]


def csv_path(split: str, realistic: bool) -> str:
    """The split's CSV relative to the corpus root (beside its clip folder)."""
    return f"{REALISTIC_DIRS[split]}/{CSV_NAMES[split]}" if realistic else CSV_NAMES[split]


def _spoil(path: Path, seed: int) -> None:
    """Make the mp4 at ``path`` unplayable, as MELD's dia125_utt3: its ``ftyp`` box stays
    (it still looks like an mp4), everything after it is noise of the same length."""
    data = path.read_bytes()
    head = int.from_bytes(data[:4], "big")  # the ftyp box's size
    noise = np.random.default_rng(seed).integers(0, 256, len(data) - head, dtype=np.uint8)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data[:head] + noise.tobytes())
    os.replace(tmp, path)


# The realistic layout changes folders and CSVs, not the pictures: the manifest says so.
REALISTIC_PROFILE = replace(clipmod.STANDARD, name="realistic")


def write(task: Task, out: Path) -> Recording:
    """Render ``task`` to ``<split folder>/dia{D}_utt{U}.mp4``; the split's first task
    also writes the split's CSV (every row is known from the plan). In the realistic
    layout dia125_utt3 is spoiled and each test dialogue's first clip gets a
    ``final_videos_test`` copy."""
    name = speaker_name(task.speaker)
    female = name in _FEMALE or (name.startswith("Speaker") and task.speaker % 2 == 0)
    actor = clipmod.make_actor(task.seed, LAYOUT_TAG, task.speaker, female)
    seed = clipmod.clip_seed(
        task.seed, LAYOUT_TAG, SPLITS.index(task.split), task.dialogue, task.utterance
    )
    emotion = EMOTIONS[task.emotion]
    clip = clipmod.render_clip(actor, RENDER_AS[emotion], 1, task.statement, seed)
    frames, audio, boxes = clip.frames, clip.audio, clip.face_boxes
    if task.pad:
        n_f = round(task.pad * clipmod.QUANTUM * clip.fps)
        n_s = n_f * clip.sample_rate // clip.fps
        frames = np.concatenate([frames, np.repeat(frames[-1:], n_f, axis=0)])
        audio = np.concatenate([audio, np.zeros(n_s, dtype=audio.dtype)])
        boxes = np.concatenate([boxes, np.repeat(boxes[-1:], n_f, axis=0)])

    folder = clip_folder(task.split, task.realistic)
    (out / folder).mkdir(parents=True, exist_ok=True)
    rel = f"{folder}/{task.stem}.mp4"
    files = [rel]
    encode.write_mp4(out / rel, frames, clip.fps, audio, clip.sample_rate)
    if task.realistic and (task.split, task.dialogue, task.utterance) == UNPLAYABLE:
        _spoil(out / rel, seed)
    if task.realistic and task.split == "test" and task.utterance == 0:
        copy = f"{folder}/{FINAL_VIDEOS_PREFIX}{task.stem}.mp4"
        shutil.copyfile(out / rel, out / copy)
        files.append(copy)
    first = dialogue_ids(task.split, task.statements, task.realistic)[0]
    if task.dialogue == first and task.utterance == 0:
        rows = _rows(
            task.split,
            actors=task.actors,
            seed=task.seed,
            statements=task.statements,
            repetitions=task.repetitions,
            realistic=task.realistic,
        )
        path = out / csv_path(task.split, task.realistic)
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_text(csv_text(rows), encoding="utf-8", newline="")
        os.replace(tmp, path)
    return Recording(
        key=task.key,
        files=tuple(files),
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
        faces=face_rows(boxes),
    )
