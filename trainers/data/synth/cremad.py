"""CREMA-D's layout, filled with synthetic performances.

Why it looks like this:

* CREMA-D is parsed from its file names alone:
  ``<ActorID>_<Sentence>_<Emotion>_<Level>`` (actors 1001..1091, twelve
  sentence codes, six emotions ANG DIS FEA HAP NEU SAD, levels LO MD HI or
  XX "unspecified"). The names here follow it to the letter, so a loader
  that reads these reads the real thing.
* The real release keeps audio and video in separate folders
  (``AudioWAV/<name>.wav`` and ``VideoFlash/<name>.flv``; some mirrors ship
  ``VideoMP4/<name>.mp4``). This layout writes ``AudioWAV/`` and
  ``VideoMP4/`` (PyAV's x264 writer makes mp4, not Flash video); the loader
  pairs files by stem in any folder and accepts ``.flv`` too, so the real
  ``VideoFlash/`` layout and a flat folder of both read the same.
* As in the real corpus only the sentence IEO is spoken at graded levels
  (LO, MD, HI for the five emotions, XX for neutral) and every other
  sentence is XX, so NEU is rarer than each other emotion by construction,
  as in the real 1087 NEU vs 1271 per other emotion.
* ``statements`` (1 or 2) picks 2 or 4 sentences; ``repetitions`` (1 or 2)
  gives IEO the levels (LO, HI) or (LO, MD, HI). Actors are numbered from
  1001; odd male, even female (the real sexes are in VideoDemographics.csv,
  which no loader needs).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from trainers.data.synth import clip as clipmod
from trainers.data.synth import encode
from trainers.data.synth.manifest import Recording

NAME = "crema-d"
LAYOUT_TAG = zlib.crc32(NAME.encode())

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


@dataclass(frozen=True)
class Task:
    """One recording to render and write (JSON-serialisable for the workers)."""

    seed: int
    actor: int  # 1001..
    sentence: int  # index into SENTENCES
    emotion: int  # index into EMOTIONS
    level: str  # LO MD HI XX

    @property
    def key(self) -> str:
        return f"{self.actor}_{SENTENCES[self.sentence]}_{CODES[self.emotion]}_{self.level}"


def plan(*, actors: int, seed: int, statements: int, repetitions: int) -> list[Task]:
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
                    tasks.append(Task(seed, actor, sentence, emotion, level))
    return tasks


def write(task: Task, out: Path) -> Recording:
    """Render ``task``; write ``AudioWAV/<key>.wav`` and ``VideoMP4/<key>.mp4``."""
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
    (out / AUDIO_DIR).mkdir(parents=True, exist_ok=True)
    (out / VIDEO_DIR).mkdir(parents=True, exist_ok=True)
    video = f"{VIDEO_DIR}/{task.key}.mp4"
    audio = f"{AUDIO_DIR}/{task.key}.wav"
    encode.write_mp4(out / video, clip.frames, clip.fps, clip.audio, clip.sample_rate)
    encode.write_wav(out / audio, clip.audio, clip.sample_rate)
    return Recording(
        key=task.key,
        files=(video, audio),
        emotion=emotion,
        label=task.emotion,
        intensity=LEVELS[task.level],
        statement=task.sentence,
        repetition=1,
        actor=task.actor,
        female=female,
        n_frames=len(clip.frames),
        n_samples=len(clip.audio),
        duration=round(clip.duration, 6),
    )
