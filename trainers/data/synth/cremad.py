"""CREMA-D's layout, filled with synthetic performances.

Why it looks like this:

* CREMA-D is parsed from its file names alone:
  ``<ActorID>_<Sentence>_<Emotion>_<Level>`` (actors 1001..1091, twelve
  sentence codes, six emotions ANG DIS FEA HAP NEU SAD, levels LO MD HI or
  XX "unspecified"). The names here follow it to the letter, so a loader
  that reads these reads the real thing.
* Two layouts. The default writes ``AudioWAV/<name>.wav`` and
  ``VideoMP4/<name>.mp4`` (H.264/AAC, as some mirrors ship), tidy and fast.
  ``realistic=True`` writes what the release repository
  (github.com/CheyneyComputerScience/CREMA-D) holds: ``VideoFlash/<name>.flv``
  (FLV1 video at 480x360, 30 fps, with MP3 audio; see :mod:`flash`),
  ``AudioWAV/<name>.wav`` (16 kHz, 16-bit mono), ``AudioMP3/<name>.mp3`` and
  ``VideoDemographics.csv`` (``"ActorID","Age","Sex","Race","Ethnicity"``,
  strings quoted as R writes them), and no ``VideoMP4/`` folder.
* Until the renderer has a realistic profile, the realistic video is the
  standard 192x144, 15 fps rendering scaled to 480x360 with every frame
  shown twice (30 fps): the sizes, rate and codecs are the release's, the
  detail is not.
* As in the real corpus only the sentence IEO is spoken at graded levels
  (LO, MD, HI for the five emotions, XX for neutral) and every other
  sentence is XX, so NEU is rarer than each other emotion by construction,
  as in the real 1087 NEU vs 1271 per other emotion.
* ``statements`` (1 or 2) picks 2 or 4 sentences; ``repetitions`` (1 or 2)
  gives IEO the levels (LO, HI) or (LO, MD, HI). Actors are numbered from
  1001; odd male, even female, and VideoDemographics.csv says so.
"""

from __future__ import annotations

import csv
import io
import os
import zlib
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from trainers.data.synth import clip as clipmod
from trainers.data.synth import encode, flash
from trainers.data.synth.manifest import Recording
from trainers.data.synth.truth import face_rows

NAME = "crema-d"
LAYOUT_TAG = zlib.crc32(NAME.encode())
SUPPORTS_REALISTIC = True

# CREMA-D's emotion codes in label order, and the drawn emotion each one uses.
CODES: tuple[str, ...] = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "neutral", "sad")
RENDER_AS = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
}
# The twelve sentences of the real corpus (IEO first: the only graded one).
SENTENCES: tuple[str, ...] = (
    "IEO", "DFA", "ITH", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITS", "TSI", "WSI",
)  # fmt: skip
# Level code -> manifest intensity (0 unspecified) and the render gain's intensity.
LEVELS: dict[str, int] = {"XX": 0, "LO": 1, "MD": 2, "HI": 3}
_RENDER_INTENSITY = {"XX": 1, "LO": 1, "MD": 1, "HI": 2}
FIRST_ACTOR = 1001
AUDIO_DIR, VIDEO_DIR = "AudioWAV", "VideoMP4"
# The release's folders (realistic=True) and its demographics table.
FLASH_DIR, MP3_DIR = "VideoFlash", "AudioMP3"
DEMOGRAPHICS = "VideoDemographics.csv"
DEMOGRAPHICS_COLUMNS = ("ActorID", "Age", "Sex", "Race", "Ethnicity")
# VideoDemographics.csv's values; ages span the release's 20..74.
RACES = ("Caucasian", "African American", "Asian", "Unknown")
_RACE_SHARES = (0.67, 0.24, 0.08, 0.01)
ETHNICITIES = ("Not Hispanic", "Hispanic")
FLASH_SIZE = (480, 360)  # width, height of the release's .flv files
FLASH_FPS = 30


# What the realistic files hold, for the manifest: the release's 480x360 at 30 fps
# with 16 kHz wavs (the picture itself is the standard rendering scaled up).
REALISTIC_PROFILE = replace(
    clipmod.STANDARD, name="realistic", frame_size=FLASH_SIZE, fps=Fraction(FLASH_FPS)
)


@dataclass(frozen=True)
class Task:
    """One recording to render and write (JSON-serialisable for the workers)."""

    seed: int
    actor: int  # 1001..
    sentence: int  # index into SENTENCES
    emotion: int  # index into EMOTIONS
    level: str  # LO MD HI XX
    realistic: bool = False  # the release's layout (VideoFlash, AudioMP3, demographics)
    # Non-zero on the corpus's first task only: it also writes VideoDemographics.csv
    # for this many actors (realistic layout).
    demographics_for: int = 0

    @property
    def key(self) -> str:
        return f"{self.actor}_{SENTENCES[self.sentence]}_{CODES[self.emotion]}_{self.level}"


def plan(
    *, actors: int, seed: int, statements: int, repetitions: int, realistic: bool = False
) -> list[Task]:
    """Every recording of the corpus, actor by actor, sentence by sentence."""
    if not 1 <= actors <= 8999:
        raise ValueError(
            f"CREMA-D actor ids have four digits: actors must be 1..8999, not {actors}"
        )
    graded = ("LO", "HI") if repetitions == 1 else ("LO", "MD", "HI")
    tasks = []
    for actor in range(FIRST_ACTOR, FIRST_ACTOR + actors):
        for sentence in range(2 * statements):
            for emotion, code in enumerate(CODES):
                if sentence == 0 and code != "NEU":
                    levels: tuple[str, ...] = graded
                else:
                    levels = ("XX",)
                for level in levels:
                    tasks.append(Task(seed, actor, sentence, emotion, level, realistic))
    if realistic:
        tasks[0] = replace(tasks[0], demographics_for=actors)
    return tasks


def demographics_rows(seed: int, actors: int) -> list[tuple[int, int, str, str, str]]:
    """VideoDemographics.csv's rows: the generator's sexes (odd actor ids male), and an
    age, race and ethnicity drawn per actor from (seed, actor) alone."""
    rows = []
    for actor in range(FIRST_ACTOR, FIRST_ACTOR + actors):
        rng = np.random.default_rng([seed, LAYOUT_TAG, actor, 0xDE40])
        age = int(rng.integers(20, 75))
        race = RACES[int(rng.choice(len(RACES), p=_RACE_SHARES))]
        ethnicity = ETHNICITIES[int(rng.random() < 0.12)]
        rows.append((actor, age, "Female" if actor % 2 == 0 else "Male", race, ethnicity))
    return rows


def demographics_csv(seed: int, actors: int) -> str:
    """The table as the release writes it: strings quoted, numbers bare, LF line ends."""
    buf = io.StringIO()
    csv.writer(buf, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(
        [DEMOGRAPHICS_COLUMNS, *demographics_rows(seed, actors)]
    )
    return buf.getvalue()


def _flash_frames(frames: np.ndarray, fps: int) -> np.ndarray:
    """The standard rendering at the release's 480x360 and 30 fps (each frame repeated)."""
    repeat = FLASH_FPS // fps
    if repeat * fps != FLASH_FPS:
        raise ValueError(f"cannot make {FLASH_FPS} fps from {fps} fps by repeating frames")
    scaled = np.stack([cv2.resize(f, FLASH_SIZE, interpolation=cv2.INTER_CUBIC) for f in frames])
    return np.repeat(scaled, repeat, axis=0)


def write(task: Task, out: Path) -> Recording:
    """Render ``task``; write ``AudioWAV/<key>.wav`` and ``VideoMP4/<key>.mp4``, or in
    the realistic layout ``VideoFlash/<key>.flv``, ``AudioWAV/<key>.wav`` and
    ``AudioMP3/<key>.mp3`` (and VideoDemographics.csv from the first task)."""
    female = task.actor % 2 == 0
    actor = clipmod.make_actor(task.seed, LAYOUT_TAG, task.actor, female)
    seed = clipmod.clip_seed(
        task.seed, LAYOUT_TAG, task.actor, task.sentence, task.emotion, LEVELS[task.level]
    )
    emotion = EMOTIONS[task.emotion]
    statement = task.sentence % 2 + 1  # the voice knows two syllable patterns
    clip = clipmod.render_clip(
        actor, RENDER_AS[emotion], _RENDER_INTENSITY[task.level], statement, seed
    )
    frames = clip.frames
    boxes = clip.face_boxes
    audio = f"{AUDIO_DIR}/{task.key}.wav"
    (out / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    if task.realistic:
        frames = _flash_frames(clip.frames, clip.fps)
        height, width = clip.frames.shape[1:3]
        scale = np.array([FLASH_SIZE[0] / width, FLASH_SIZE[1] / height])
        boxes = np.repeat(clip.face_boxes * np.tile(scale, 2), len(frames) // len(clip.frames), 0)
        video = f"{FLASH_DIR}/{task.key}.flv"
        mp3 = f"{MP3_DIR}/{task.key}.mp3"
        (out / FLASH_DIR).mkdir(parents=True, exist_ok=True)
        (out / MP3_DIR).mkdir(parents=True, exist_ok=True)
        flash.write_flv(out / video, frames, FLASH_FPS, clip.audio, clip.sample_rate)
        flash.write_mp3(out / mp3, clip.audio, clip.sample_rate)
        files: tuple[str, ...] = (video, audio, mp3)
    else:
        video = f"{VIDEO_DIR}/{task.key}.mp4"
        (out / VIDEO_DIR).mkdir(parents=True, exist_ok=True)
        encode.write_mp4(out / video, clip.frames, clip.fps, clip.audio, clip.sample_rate)
        files = (video, audio)
    encode.write_wav(out / audio, clip.audio, clip.sample_rate)
    if task.demographics_for:
        path = out / DEMOGRAPHICS
        tmp = path.with_name(f".{path.name}.partial")
        tmp.write_text(
            demographics_csv(task.seed, task.demographics_for), encoding="utf-8", newline=""
        )
        os.replace(tmp, path)
    return Recording(
        key=task.key,
        files=files,
        emotion=emotion,
        label=task.emotion,
        intensity=LEVELS[task.level],
        statement=task.sentence,
        repetition=1,
        actor=task.actor,
        female=female,
        n_frames=len(frames),
        n_samples=len(clip.audio),
        duration=round(clip.duration, 6),
        faces=face_rows(boxes),
    )
