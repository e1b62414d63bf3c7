"""One performed recording: an actor saying a statement with an emotion.

Why it looks like this:

* Every layout (RAVDESS today; CREMA-D, MELD later) is "actors perform
  sentences with emotions", only named and foldered differently, so the
  performance itself is rendered here once and layouts only decide names,
  folders and which files to write.
* Audio is planned first and the video follows it: the clip length comes
  from the speech (tempo is an emotion cue), the face's expression ramps up
  just before the first syllable, holds and relaxes after the last, and the
  mouth opens with each syllable. Audio and video therefore agree in time,
  as in a real recording, and a fused model can use either.
* Clip lengths are whole multiples of :data:`QUANTUM` seconds, so the frame
  count and the sample count describe exactly the same duration (15 fps and
  16 kHz share a 0.2 s grid) and no loader has to guess how to align them.
* Actors are derived from (seed, layout, actor number) only, and each
  recording from its own seed sequence, so any recording can be rendered in
  any process in any order with the same result: that is what makes the
  output independent of the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

# The sibling modules by their own names: ``from trainers.data.synth import ...`` would
# make this module depend on the package's __init__, which imports this module.
import trainers.data.synth.faces as faces
import trainers.data.synth.voice as voice

FPS = 15
FRAME_W = 192
FRAME_H = 144
SAMPLE_RATE = voice.SAMPLE_RATE
QUANTUM = 0.2  # seconds; 3 frames and 3200 samples
INTENSITY_GAIN = {1: 1.0, 2: 1.6}  # normal, strong: how far from neutral


@dataclass(frozen=True)
class Actor:
    number: int
    female: bool
    look: faces.Look
    voice: voice.Voice


def make_actor(seed: int, layout_tag: int, number: int, female: bool) -> Actor:
    """The actor ``number`` of a corpus; the same arguments give the same actor."""
    ss = np.random.SeedSequence([seed, layout_tag, number, 0xAC7])
    look_ss, voice_ss = ss.spawn(2)
    return Actor(
        number=number,
        female=female,
        look=faces.random_look(np.random.default_rng(look_ss), female),
        voice=voice.random_voice(np.random.default_rng(voice_ss), female),
    )


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    audio: np.ndarray  # (N,) int16 mono, N = T * SAMPLE_RATE / FPS
    fps: int
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _wander(rng: np.random.Generator, t: np.ndarray, period: float) -> np.ndarray:
    """Smooth random motion in -1..1 with features about ``period`` seconds long."""
    knots_t = np.arange(-period, t[-1] + 2 * period, period)
    knots = rng.uniform(-1.0, 1.0, len(knots_t))
    return np.interp(t, knots_t, knots)


def render_clip(actor: Actor, emotion: str, intensity: int, statement: int, seed: int) -> Clip:
    """Render one performance; ``seed`` fixes every random choice in it."""
    rng = np.random.default_rng(seed)
    gain = INTENSITY_GAIN[intensity]
    prosody = voice.scaled(emotion, gain * actor.voice.expressiveness)
    timing = voice.plan_timing(prosody, actor.voice, statement, rng, QUANTUM)
    utt = voice.synthesize(actor.voice, emotion, gain, statement, timing, rng)
    n_frames = round(timing.duration * FPS)
    n_samples = n_frames * SAMPLE_RATE // FPS
    audio = voice.to_int16(utt.audio[:n_samples])

    frames = _render_video(actor, emotion, gain, timing, utt.articulation, n_frames, rng)
    return Clip(frames=frames, audio=audio, fps=FPS, sample_rate=SAMPLE_RATE)


def _render_video(
    actor: Actor,
    emotion: str,
    gain: float,
    timing: voice.Timing,
    articulation: np.ndarray,
    n_frames: int,
    rng: np.random.Generator,
) -> np.ndarray:
    look = actor.look
    W, H = FRAME_W, FRAME_H
    t = (np.arange(n_frames) + 0.5) / FPS

    # Expression over time: neutral, ramp to the apex just before speech,
    # hold, then relax part of the way back after the last syllable.
    apex = faces.pose(look, emotion, gain)
    rise = 0.3 + 0.15 * rng.random()
    start = timing.onset - 0.12
    amount = _smoothstep((t - start) / rise)
    after = np.clip(t - timing.offset, 0.0, None)
    amount = amount * (1.0 - 0.45 * (1.0 - np.exp(-after / 0.3)))
    amount = amount * (1.0 + 0.06 * _wander(rng, t, 0.4))
    idx = np.clip((t * SAMPLE_RATE).astype(int), 0, len(articulation) - 1)
    talk = articulation[idx]

    # Placement: each clip frames the head differently; it drifts during the clip.
    face_h = H * rng.uniform(0.46, 0.66)
    face_w = face_h * look.aspect
    margin_x = face_w * 0.62
    cx0 = rng.uniform(margin_x, W - margin_x)
    cy0 = rng.uniform(face_h * 0.62, H - face_h * 0.58)  # chin stays in frame
    drift = rng.uniform(-1.0, 1.0, 3) * np.array([0.04 * W, 0.03 * H, 0.04])
    progress = t / t[-1] if n_frames > 1 else t * 0.0

    # Head motion energy follows the emotion (agitated vs still).
    energy = np.clip(apex.motion, 0.05, 1.5) * amount + look.rest.motion * (1.0 - amount)
    sway_x = _wander(rng, t, 0.5) * face_h * 0.035
    nod = np.sin(2 * np.pi * rng.uniform(1.5, 3.0) * t + rng.uniform(0, 2 * np.pi))
    roll = _wander(rng, t, 0.6) * 6.0 * energy

    light_side = rng.uniform(-1.0, 1.0)
    brightness = rng.uniform(0.85, 1.12)
    flicker = 1.0 + 0.025 * _wander(rng, t, 0.3)
    noise_sigma = rng.uniform(0.008, 0.02)

    bg = faces.background(look, H, W)
    frames = np.empty((n_frames, H, W, 3), np.uint8)
    for i in range(n_frames):
        expr = look.rest.mix(apex, float(amount[i]))
        expr = replace(expr, mouth_open=expr.mouth_open + 0.28 * float(talk[i]))
        scale = 1.0 + drift[2] * progress[i]
        cx = cx0 + drift[0] * progress[i] + sway_x[i] * energy[i]
        cy = cy0 + drift[1] * progress[i] + nod[i] * face_h * 0.025 * energy[i]
        canvas = bg.copy()
        faces.draw_face(
            canvas,
            look,
            (float(cx), float(cy)),
            float(face_h * scale),
            expr,
            roll=float(roll[i]),
            light=light_side,
        )
        canvas = cv2.GaussianBlur(canvas, (3, 3), 0.7)
        canvas *= brightness * flicker[i]
        canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * noise_sigma
        np.clip(canvas * 255.0 + 0.5, 0.0, 255.0, out=canvas)
        frames[i] = cv2.cvtColor(canvas.astype(np.uint8), cv2.COLOR_BGR2RGB)
    return frames


def clip_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts (stable across processes and runs)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> 1)


__all__ = [
    "FPS",
    "FRAME_H",
    "FRAME_W",
    "INTENSITY_GAIN",
    "QUANTUM",
    "SAMPLE_RATE",
    "Actor",
    "Clip",
    "clip_seed",
    "make_actor",
    "render_clip",
]
