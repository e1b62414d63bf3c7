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
* How a clip is rendered (frame size, frame rate, sample rate, codec
  settings) is a :class:`RenderProfile`. :data:`STANDARD` is the small, tidy
  corpus every test was tuned on (and renders exactly as it did before
  profiles existed); :data:`REALISTIC` imitates the real RAVDESS download:
  1280x720 at 30000/1001 fps, 48 kHz, H.264 with B-frames. At 29.97 fps and
  48 kHz frames and samples share no grid, so there the audio has the
  performance's length and the video the nearest whole number of frames
  (within half a frame of it), as a camera and a recorder started together
  would.
* Drawing a face costs in proportion to its pixels, so the realistic profile
  draws at a quarter of the output's pixels (640x360) and upscales: measured
  on one core, that makes a 720p recording cost about as much to draw as to
  encode (see ``docs/datasets.md`` for the figures).
* The renderer knows where it drew the face, so every clip carries the
  ground truth of it per frame (:attr:`Clip.face_boxes`), for scoring face
  detectors on the corpus (:mod:`trainers.data.synth.truth`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

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
_GRAIN_PAD = 16  # how far (pixels) a clip's noise field shifts between frames


@dataclass(frozen=True)
class RenderProfile:
    """How clips are rendered and encoded: one per kind of corpus imitated."""

    name: str
    frame_size: tuple[int, int]  # (width, height) of the written video
    fps: Fraction
    sample_rate: int
    quantum: float  # clip lengths are whole multiples of this many seconds
    render_size: tuple[int, int]  # (width, height) the face is drawn at, then resized
    bframes: bool  # H.264 with B-frames (decoders must reorder) or zero-latency
    # Sensor noise drawn afresh for every frame, or one field per clip shifted by a
    # few pixels each frame: drawing 700,000 normals per frame was most of a 720p
    # frame's cost (20 of 45 ms), and a shifted field looks the same to a model.
    fresh_noise: bool
    audio_channels: int  # in the mp4's AAC track (the wav is always mono)
    audio_bitrate: int  # AAC bits per second
    opencv_yuv: bool  # RGB -> yuv420p by OpenCV (fast) or swscale (see encode.write_mp4)

    def mp4_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`encode.write_mp4` this profile asks for."""
        return {
            "audio_bitrate": self.audio_bitrate,
            "bframes": self.bframes,
            "audio_channels": self.audio_channels,
            "opencv_yuv": self.opencv_yuv,
        }

    @property
    def clip_fps(self) -> int | Fraction:
        """The rate as :attr:`Clip.fps` holds it: whole rates stay ``int`` so that
        callers' arithmetic on them (``round(n / fps, 6)``) stays plain numbers."""
        return int(self.fps) if self.fps.denominator == 1 else self.fps


STANDARD = RenderProfile(
    name="standard",
    frame_size=(FRAME_W, FRAME_H),
    fps=Fraction(FPS),
    sample_rate=SAMPLE_RATE,
    quantum=QUANTUM,
    render_size=(FRAME_W, FRAME_H),
    bframes=False,
    fresh_noise=True,
    audio_channels=1,
    audio_bitrate=48000,
    opencv_yuv=False,
)
# The real RAVDESS download: "720p H.264, AAC 48kHz" video and "16bit, 48kHz"
# wav (its Zenodo record, 10.5281/zenodo.1188976), at NTSC's 30000/1001 fps.
REALISTIC = RenderProfile(
    name="realistic",
    frame_size=(1280, 720),
    fps=Fraction(30000, 1001),
    sample_rate=48000,
    quantum=0.01,  # off any frame grid: lengths fall between frames, as recorded ones do
    render_size=(640, 360),
    bframes=True,
    fresh_noise=False,
    audio_channels=2,
    audio_bitrate=128000,
    opencv_yuv=True,
)
PROFILES: dict[str, RenderProfile] = {p.name: p for p in (STANDARD, REALISTIC)}


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
    audio: np.ndarray  # (N,) int16 mono; N / sample_rate within half a frame of T / fps
    fps: int | Fraction
    sample_rate: int
    # (T, 4) float32: per frame, [x0, y0, x1, y1] of the face ellipse's extent in
    # output pixels (pixel i spans [i, i + 1)), clipped to the frame.
    face_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    profile: RenderProfile = STANDARD

    @property
    def duration(self) -> float:
        """Seconds of the recording: its audio (the video ends within half a frame)."""
        return len(self.audio) / self.sample_rate


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _wander(rng: np.random.Generator, t: np.ndarray, period: float) -> np.ndarray:
    """Smooth random motion in -1..1 with features about ``period`` seconds long."""
    knots_t = np.arange(-period, t[-1] + 2 * period, period)
    knots = rng.uniform(-1.0, 1.0, len(knots_t))
    return np.interp(t, knots_t, knots)


def render_clip(
    actor: Actor,
    emotion: str,
    intensity: int,
    statement: int,
    seed: int,
    *,
    profile: RenderProfile = STANDARD,
    sing: bool = False,
) -> Clip:
    """Render one performance; ``seed`` fixes every random choice in it.

    ``sing`` renders a sung take (RAVDESS's vocal channel 02) of the statement.
    """
    rng = np.random.default_rng(seed)
    gain = INTENSITY_GAIN[intensity]
    prosody = voice.scaled(emotion, gain * actor.voice.expressiveness)
    timing = voice.plan_timing(prosody, actor.voice, statement, rng, profile.quantum, sing=sing)
    utt = voice.synthesize(
        actor.voice,
        emotion,
        gain,
        statement,
        timing,
        rng,
        sample_rate=profile.sample_rate,
        sing=sing,
    )
    n_frames = round(timing.duration * float(profile.fps))
    n_samples = round(timing.duration * profile.sample_rate)
    audio = voice.to_int16(utt.audio[:n_samples])

    frames, boxes = _render_video(
        actor, emotion, gain, timing, utt.articulation, n_frames, rng, profile
    )
    return Clip(
        frames=frames,
        audio=audio,
        fps=profile.clip_fps,
        sample_rate=profile.sample_rate,
        face_boxes=boxes,
        profile=profile,
    )


def _face_extent(
    cx: float, cy: float, face_w: float, face_h: float, roll: float
) -> tuple[float, float, float, float]:
    """The axis-aligned extent of the face ellipse that :func:`faces.draw_face` draws.

    ``cx, cy`` in OpenCV's drawing convention (pixel centres at whole numbers);
    the result in pixel-edge coordinates (pixel i spans [i, i + 1)), the form
    a detector's (x, y, w, h) box compares with as [x, y, x + w, y + h].
    """
    a, b = face_w / 2.0, face_h / 2.0
    r = math.radians(roll)
    half_w = math.hypot(a * math.cos(r), b * math.sin(r))
    half_h = math.hypot(a * math.sin(r), b * math.cos(r))
    x, y = cx + 0.5, cy + 0.5
    return (x - half_w, y - half_h, x + half_w, y + half_h)


def _render_video(
    actor: Actor,
    emotion: str,
    gain: float,
    timing: voice.Timing,
    articulation: np.ndarray,
    n_frames: int,
    rng: np.random.Generator,
    profile: RenderProfile,
) -> tuple[np.ndarray, np.ndarray]:
    """The frames (T, H, W, 3) RGB at ``profile.frame_size`` and the face boxes (T, 4)."""
    look = actor.look
    W, H = profile.render_size
    out_w, out_h = profile.frame_size
    sx, sy = out_w / W, out_h / H
    t = (np.arange(n_frames) + 0.5) / float(profile.fps)

    # Expression over time: neutral, ramp to the apex just before speech,
    # hold, then relax part of the way back after the last syllable.
    apex = faces.pose(look, emotion, gain)
    rise = 0.3 + 0.15 * rng.random()
    start = timing.onset - 0.12
    amount = _smoothstep((t - start) / rise)
    after = np.clip(t - timing.offset, 0.0, None)
    amount = amount * (1.0 - 0.45 * (1.0 - np.exp(-after / 0.3)))
    amount = amount * (1.0 + 0.06 * _wander(rng, t, 0.4))
    idx = np.clip((t * profile.sample_rate).astype(int), 0, len(articulation) - 1)
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
    grain = None
    if not profile.fresh_noise:
        pad = _GRAIN_PAD
        grain = rng.standard_normal((H + pad, W + pad, 3), dtype=np.float32) * noise_sigma
    frames = np.empty((n_frames, out_h, out_w, 3), np.uint8)
    boxes = np.empty((n_frames, 4), np.float32)
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
        x0, y0, x1, y1 = _face_extent(
            float(cx), float(cy), float(face_w * scale), float(face_h * scale), float(roll[i])
        )
        boxes[i] = (
            min(max(x0 * sx, 0.0), out_w),
            min(max(y0 * sy, 0.0), out_h),
            min(max(x1 * sx, 0.0), out_w),
            min(max(y1 * sy, 0.0), out_h),
        )
        canvas = cv2.GaussianBlur(canvas, (3, 3), 0.7)
        canvas *= brightness * flicker[i]
        if grain is None:
            canvas += rng.standard_normal(canvas.shape, dtype=np.float32) * noise_sigma
        else:
            dy, dx = rng.integers(0, _GRAIN_PAD + 1, 2)
            canvas += grain[dy : dy + H, dx : dx + W]
        canvas *= 255.0
        canvas += 0.5
        np.clip(canvas, 0.0, 255.0, out=canvas)
        rgb = cv2.cvtColor(canvas.astype(np.uint8), cv2.COLOR_BGR2RGB)
        if (out_w, out_h) != (W, H):
            # Edge coordinates scale linearly under cv2.resize, hence sx, sy above.
            rgb = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        frames[i] = rgb
    return frames, boxes


def clip_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts (stable across processes and runs)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> 1)


__all__ = [
    "FPS",
    "FRAME_H",
    "FRAME_W",
    "INTENSITY_GAIN",
    "PROFILES",
    "QUANTUM",
    "REALISTIC",
    "SAMPLE_RATE",
    "STANDARD",
    "Actor",
    "Clip",
    "RenderProfile",
    "clip_seed",
    "make_actor",
    "render_clip",
]
