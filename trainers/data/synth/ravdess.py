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
* The realistic mode (``plan(..., realistic=True)``) renders with
  :data:`clip.REALISTIC` and adds the song takes the real corpus has beside
  the speech: vocal channel 02, emotions 01-06 only (no disgust, no
  surprised), for every actor but one. In the real corpus Actor_18 has no
  song files; a generated corpus of 18 actors or more leaves out Actor_18 too,
  a smaller one leaves out its last actor (so the gap is there at any size),
  and a one-actor corpus keeps its songs (a song-less corpus could not test
  ``data.vocal_channel=song``). See :func:`songless_actor`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

from trainers.data.synth import clip as clipmod
from trainers.data.synth import encode
from trainers.data.synth.manifest import Recording
from trainers.data.synth.truth import face_rows

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
VOCAL_SPEECH, VOCAL_SONG = 1, 2
SONG_EMOTIONS = range(1, 7)  # neutral, calm, happy, sad, angry, fearful
REAL_SONGLESS_ACTOR = 18  # the real corpus has no song files for Actor_18
SUPPORTS_REALISTIC = True


@dataclass(frozen=True)
class Task:
    """One recording to render and write (picklable for the process pool)."""

    seed: int
    actor: int
    emotion: int  # 1..8
    intensity: int  # 1..2
    statement: int  # 1..2
    repetition: int  # 1..2
    vocal: int = VOCAL_SPEECH  # 1 speech, 2 song (realistic only)
    realistic: bool = False  # render with clip.REALISTIC instead of clip.STANDARD

    def stem(self, modality: int) -> str:
        fields = (
            modality,
            self.vocal,
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


def songless_actor(actors: int) -> int | None:
    """The actor with no song takes in a realistic corpus of ``actors`` actors.

    Actor 18 as in the real corpus when there is one; otherwise the last actor,
    so the gap exists at any size; none in a one-actor corpus, which would
    otherwise hold no song at all.
    """
    if actors >= REAL_SONGLESS_ACTOR:
        return REAL_SONGLESS_ACTOR
    return actors if actors >= 2 else None


def plan(
    *, actors: int, seed: int, statements: int, repetitions: int, realistic: bool = False
) -> list[Task]:
    """Every recording of the corpus, in RAVDESS's own order (per actor: speech, then song)."""
    if not 1 <= actors <= 99:
        raise ValueError(
            f"RAVDESS actor numbers have two digits: actors must be 1..99, not {actors}"
        )
    channels = [(VOCAL_SPEECH, range(1, len(EMOTIONS) + 1))]
    if realistic:
        channels.append((VOCAL_SONG, SONG_EMOTIONS))
    songless = songless_actor(actors)
    tasks = []
    for actor in range(1, actors + 1):
        for vocal, emotions in channels:
            if vocal == VOCAL_SONG and actor == songless:
                continue
            for emotion in emotions:
                for intensity in (1,) if emotion == 1 else (1, 2):
                    for statement in range(1, statements + 1):
                        for repetition in range(1, repetitions + 1):
                            tasks.append(
                                Task(
                                    seed,
                                    actor,
                                    emotion,
                                    intensity,
                                    statement,
                                    repetition,
                                    vocal=vocal,
                                    realistic=realistic,
                                )
                            )
    return tasks


def write(task: Task, out: Path) -> Recording:
    """Render ``task`` and write its three files under ``out``."""
    female = task.actor % 2 == 0
    actor = clipmod.make_actor(task.seed, LAYOUT_TAG, task.actor, female)
    parts = [task.actor, task.emotion, task.intensity, task.statement, task.repetition]
    if task.vocal != VOCAL_SPEECH:  # speech keeps the seeds it had before songs existed
        parts.append(task.vocal)
    seed = clipmod.clip_seed(task.seed, LAYOUT_TAG, *parts)
    emotion = EMOTIONS[task.emotion - 1]
    profile = clipmod.REALISTIC if task.realistic else clipmod.STANDARD
    clip = clipmod.render_clip(
        actor,
        emotion,
        task.intensity,
        task.statement,
        seed,
        profile=profile,
        sing=task.vocal == VOCAL_SONG,
    )

    folder = out / task.folder
    folder.mkdir(parents=True, exist_ok=True)
    av_name = f"{task.stem(MODALITY_AV)}.mp4"
    video_name = f"{task.stem(MODALITY_VIDEO)}.mp4"
    audio_name = f"{task.stem(MODALITY_AUDIO)}.wav"
    encode.write_mp4(
        folder / av_name,
        clip.frames,
        clip.fps,
        clip.audio,
        clip.sample_rate,
        **profile.mp4_options(),
    )
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
        vocal_channel=task.vocal,
        faces=face_rows(clip.face_boxes),
    )
