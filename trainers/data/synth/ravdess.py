"""RAVDESS's layout, filled with synthetic performances.

Why it looks like this:

* The real corpus is parsed from its file names alone, so the names and
  folders here follow the RAVDESS convention to the letter
  (``Actor_AA/MM-VV-EE-II-SS-RR-AA.ext``; odd actors male, even female;
  neutral only at normal intensity): a loader that reads these reads the
  real thing.
* RAVDESS ships every performance three times (audio-video, video-only,
  audio-only), so a loader can be written against any of them and tests can
  check that they agree. The video-only file is a stream copy of the
  audio-video file's video, not a second encode, so the two are the same
  recording by construction.
* A layout module only plans work items and writes one of them; the shared
  runner in ``__init__`` does processes, progress and the manifest, so each
  new layout is a small file like this one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from trainers.data.synth import clip as clipmod
from trainers.data.synth import encode
from trainers.data.synth.manifest import Recording

NAME = "ravdess"
LAYOUT_TAG = zlib.crc32(NAME.encode())

# Emotion codes 01..08, in order.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
MODALITY_AV, MODALITY_VIDEO, MODALITY_AUDIO = 1, 2, 3
VOCAL_SPEECH = 1


@dataclass(frozen=True)
class Task:
    """One recording to render and write (picklable for the process pool)."""

    seed: int
    actor: int
    emotion: int  # 1..8
    intensity: int  # 1..2
    statement: int  # 1..2
    repetition: int  # 1..2

    def stem(self, modality: int) -> str:
        fields = (
            modality,
            VOCAL_SPEECH,
            self.emotion,
            self.intensity,
            self.statement,
            self.repetition,
            self.actor,
        )
        return "-".join(f"{f:02d}" for f in fields)

    @property
    def folder(self) -> str:
        return f"Actor_{self.actor:02d}"

    @property
    def key(self) -> str:
        return self.stem(MODALITY_AV)


def plan(*, actors: int, seed: int, statements: int, repetitions: int) -> list[Task]:
    """Every recording of the corpus, in RAVDESS's own order."""
    if not 1 <= actors <= 99:
        raise ValueError(
            f"RAVDESS actor numbers have two digits: actors must be 1..99, not {actors}"
        )
    tasks = []
    for actor in range(1, actors + 1):
        for emotion in range(1, len(EMOTIONS) + 1):
            for intensity in (1,) if emotion == 1 else (1, 2):
                for statement in range(1, statements + 1):
                    for repetition in range(1, repetitions + 1):
                        tasks.append(Task(seed, actor, emotion, intensity, statement, repetition))
    return tasks


def write(task: Task, out: Path) -> Recording:
    """Render ``task`` and write its three files under ``out``."""
    female = task.actor % 2 == 0
    actor = clipmod.make_actor(task.seed, LAYOUT_TAG, task.actor, female)
    seed = clipmod.clip_seed(
        task.seed,
        LAYOUT_TAG,
        task.actor,
        task.emotion,
        task.intensity,
        task.statement,
        task.repetition,
    )
    emotion = EMOTIONS[task.emotion - 1]
    clip = clipmod.render_clip(actor, emotion, task.intensity, task.statement, seed)

    folder = out / task.folder
    folder.mkdir(parents=True, exist_ok=True)
    av_name = f"{task.stem(MODALITY_AV)}.mp4"
    video_name = f"{task.stem(MODALITY_VIDEO)}.mp4"
    audio_name = f"{task.stem(MODALITY_AUDIO)}.wav"
    encode.write_mp4(folder / av_name, clip.frames, clip.fps, clip.audio, clip.sample_rate)
    encode.copy_video(folder / av_name, folder / video_name)
    encode.write_wav(folder / audio_name, clip.audio, clip.sample_rate)
    return Recording(
        key=task.key,
        files=tuple(f"{task.folder}/{n}" for n in (av_name, video_name, audio_name)),
        emotion=emotion,
        label=task.emotion,
        intensity=task.intensity,
        statement=task.statement,
        repetition=task.repetition,
        actor=task.actor,
        female=female,
        n_frames=len(clip.frames),
        n_samples=len(clip.audio),
        duration=round(clip.duration, 6),
    )
