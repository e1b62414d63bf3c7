"""Speech-like audio whose prosody carries the emotion.

Why it looks like this:

* Audio models here see log-mel or MFCC frames, so the signal has to look like
  speech in that view: a harmonic voiced source with formant resonances,
  syllables with onsets and releases, consonant noise, breath and a little
  room noise. Pure tones would be learnable but would teach the features
  nothing about speech.
* The emotion lives in the cues that the acoustics literature measures and
  that survive any speaker: pitch level, pitch range and contour, loudness,
  syllable rate, spectral tilt (brightness), jitter and creak. Each emotion is
  one :class:`Prosody` row, expressed as a *change* from neutral, so
  intensity simply scales that change and a speaker's own voice (pitch,
  formants, timbre, loudness) is added on top without drowning it: an angry
  low-voiced man and an angry high-voiced woman move the same way.
* The statement fixes the syllable pattern (vowels, stress, consonant
  onsets), as the two RAVDESS sentences do; repetitions differ only by small
  random timing and pitch variation.
* Synthesis is additive (harmonics with per-harmonic gains taken from a
  formant envelope at a 250 Hz control rate): exact control of every cue and
  a few milliseconds per clip, with no filters whose state could make results
  depend on chunking.
* The utterance also hands back its articulation envelope so the drawn mouth
  can move with the syllables.
* RAVDESS's song takes sing the same sentences, so singing (``sing=True``) is
  the same machinery with a different contour: one sustained note per
  syllable on a simple melody (major, or minor for sad and fearful), with
  vibrato, legato envelopes and a slower tempo. The emotion's cues (pitch
  level, loudness, tilt, tempo, tremor) apply to the song as to speech.
* The rate is a parameter (16 kHz for the standard corpora, 48 kHz for the
  realistic profile); control tracks keep a 250 Hz rate at any sample rate,
  and at 16 kHz the output is exactly what it was before the parameter
  existed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SAMPLE_RATE = 16000
_CONTROL_HOP = 64  # samples per control frame (250 Hz at 16 kHz)

# Neutral vowel formants (F1, F2, F3) in Hz for an adult male vocal tract.
VOWELS: dict[str, tuple[float, float, float]] = {
    "i": (300.0, 2250.0, 2950.0),
    "I": (400.0, 1900.0, 2550.0),
    "e": (480.0, 1850.0, 2500.0),
    "a": (730.0, 1100.0, 2450.0),
    "O": (570.0, 850.0, 2400.0),
    "o": (450.0, 900.0, 2350.0),
    "u": (320.0, 900.0, 2250.0),
    "@": (500.0, 1500.0, 2500.0),
    "aI": (680.0, 1400.0, 2500.0),
}


@dataclass(frozen=True)
class Syllable:
    vowel: str
    stress: float  # 0 unstressed .. 1 main stress
    onset: str  # "" none, "stop" (k, t, d, g, b), "fric" (s, z, th), "nasal"


@dataclass(frozen=True)
class Statement:
    text: str
    syllables: tuple[Syllable, ...]


# RAVDESS's two sentences, syllabified.
STATEMENTS: dict[int, Statement] = {
    1: Statement(
        "Kids are talking by the door",
        (
            Syllable("I", 0.8, "stop"),  # kids
            Syllable("a", 0.1, ""),  # are
            Syllable("O", 1.0, "stop"),  # talk-
            Syllable("I", 0.2, "stop"),  # -ing
            Syllable("aI", 0.4, "stop"),  # by
            Syllable("@", 0.0, "fric"),  # the
            Syllable("O", 0.9, "stop"),  # door
        ),
    ),
    2: Statement(
        "Dogs are sitting by the door",
        (
            Syllable("O", 0.9, "stop"),  # dogs
            Syllable("a", 0.1, ""),  # are
            Syllable("I", 1.0, "fric"),  # sit-
            Syllable("I", 0.2, "stop"),  # -ting
            Syllable("aI", 0.4, "stop"),  # by
            Syllable("@", 0.0, "fric"),  # the
            Syllable("O", 0.9, "stop"),  # door
        ),
    ),
}


@dataclass(frozen=True)
class Prosody:
    """How an emotion changes speech, relative to the neutral voice."""

    pitch: float = 0.0  # mean f0 change, semitones
    pitch_range: float = 2.0  # size of stress accents, semitones
    slope: float = -2.0  # f0 drift over the utterance, semitones (rise > 0)
    energy_db: float = 0.0  # loudness change
    rate: float = 4.3  # syllables per second
    tilt: float = 0.0  # spectral tilt change; < 0 brighter, > 0 darker
    jitter: float = 0.05  # slow random f0 wobble, semitones
    tremor: float = 0.0  # 6-8 Hz f0 and amplitude tremor, semitones
    creak: float = 0.0  # subharmonic roughness, 0..1
    breath: float = 0.08  # aspiration noise, 0..1


PROSODY: dict[str, Prosody] = {
    "neutral": Prosody(),
    "calm": Prosody(pitch=-0.5, pitch_range=0.8, slope=-0.5, energy_db=-5.0, rate=3.6, tilt=0.25,
                    jitter=0.02, breath=0.25),
    "happy": Prosody(pitch=4.0, pitch_range=5.0, slope=2.0, energy_db=4.0, rate=4.9, tilt=-0.3,
                     jitter=0.1, breath=0.1),
    "sad": Prosody(pitch=-3.0, pitch_range=0.6, slope=-4.0, energy_db=-10.0, rate=2.6, tilt=0.7,
                   jitter=0.1, tremor=0.3, breath=0.4),
    "angry": Prosody(pitch=2.5, pitch_range=4.0, slope=-5.0, energy_db=9.0, rate=5.0, tilt=-0.7,
                     jitter=0.1, creak=0.15, breath=0.05),
    "fearful": Prosody(pitch=6.0, pitch_range=2.0, slope=1.0, energy_db=1.0, rate=5.3, tilt=-0.1,
                       jitter=0.3, tremor=0.9, breath=0.45),
    "disgust": Prosody(pitch=-3.0, pitch_range=2.5, slope=-4.0, energy_db=-2.0, rate=3.0,
                       tilt=0.25, jitter=0.15, creak=0.7, breath=0.15),
    "surprised": Prosody(pitch=3.0, pitch_range=3.0, slope=9.0, energy_db=4.0, rate=4.2,
                         tilt=-0.3, jitter=0.05, breath=0.1),
}  # fmt: skip

NEUTRAL = PROSODY["neutral"]


@dataclass(frozen=True)
class Voice:
    """What makes one speaker recognisable; never touched by emotion."""

    f0: float  # resting pitch, Hz
    formant_scale: float  # vocal tract length: 1.0 adult male, ~1.17 adult female
    tilt: float  # source spectral slope, around 1.2 (higher = darker)
    breath: float  # extra breathiness
    loudness_db: float  # speaking level
    rate_scale: float  # personal tempo
    expressiveness: float  # how far this speaker moves from neutral, around 1


def random_voice(rng: np.random.Generator, female: bool) -> Voice:
    """Draw a speaker's voice."""
    return Voice(
        f0=float((210.0 if female else 112.0) * 2 ** (rng.uniform(-2.5, 2.5) / 12)),
        formant_scale=float((1.17 if female else 1.0) * rng.uniform(0.95, 1.05)),
        tilt=float(rng.uniform(1.0, 1.4)),
        breath=float(rng.uniform(0.0, 0.15)),
        loudness_db=float(rng.uniform(-2.0, 2.0)),
        rate_scale=float(rng.uniform(0.92, 1.08)),
        expressiveness=float(rng.uniform(0.9, 1.1)),
    )


def scaled(emotion: str, gain: float) -> Prosody:
    """The prosody of ``emotion`` with its change from neutral scaled by ``gain``."""
    p = PROSODY[emotion]

    def lin(f: str) -> float:
        return getattr(NEUTRAL, f) + gain * (getattr(p, f) - getattr(NEUTRAL, f))

    return Prosody(
        pitch=lin("pitch"),
        pitch_range=max(0.2, lin("pitch_range")),
        slope=lin("slope"),
        energy_db=lin("energy_db"),
        rate=NEUTRAL.rate * (p.rate / NEUTRAL.rate) ** gain,
        tilt=lin("tilt"),
        jitter=max(0.0, lin("jitter")),
        tremor=max(0.0, lin("tremor")),
        creak=float(np.clip(lin("creak"), 0.0, 1.0)),
        breath=float(np.clip(lin("breath"), 0.0, 1.0)),
    )


@dataclass(frozen=True)
class Timing:
    """Where the speech sits in the clip, in seconds."""

    onset: float  # first syllable starts
    offset: float  # last syllable ends
    bounds: tuple[float, ...]  # syllable boundaries, len = syllables + 1
    duration: float  # whole clip


# Sung notes per syllable, in semitones from the singer's tonic (RAVDESS's song
# takes are short melodies on the same two sentences). Minor for sad and fearful.
MELODY_MAJOR = (0.0, 2.0, 4.0, 5.0, 4.0, 2.0, 0.0)
MELODY_MINOR = (0.0, 2.0, 3.0, 5.0, 3.0, 2.0, 0.0)
MINOR_EMOTIONS = frozenset({"sad", "fearful"})
SUNG_RATE = 0.5  # notes last about twice as long as spoken syllables


def plan_timing(
    prosody: Prosody,
    voice: Voice,
    statement: int,
    rng: np.random.Generator,
    quantum: float,
    *,
    sing: bool = False,
) -> Timing:
    """Lay out syllables; the clip length is rounded up to a multiple of ``quantum``."""
    sylls = STATEMENTS[statement].syllables
    rate = prosody.rate * voice.rate_scale * rng.uniform(0.95, 1.05)
    if sing:
        rate *= SUNG_RATE
    # Sung notes are closer to even lengths than spoken syllables.
    stress_weight = 0.2 if sing else 0.6
    weights = np.array([0.75 + stress_weight * s.stress for s in sylls])
    weights = weights * rng.uniform(0.9, 1.1, len(sylls))
    span = len(sylls) / rate
    durs = weights / weights.sum() * span
    onset = float(rng.uniform(0.18, 0.3))
    bounds = onset + np.concatenate([[0.0], np.cumsum(durs)])
    offset = float(bounds[-1])
    tail = float(rng.uniform(0.2, 0.32))
    duration = math.ceil((offset + tail) / quantum - 1e-9) * quantum
    return Timing(onset, offset, tuple(float(b) for b in bounds), duration)


@dataclass(frozen=True)
class Utterance:
    audio: np.ndarray  # float32 mono in -1..1, SAMPLE_RATE
    articulation: np.ndarray  # float32 0..1 per sample: how open the mouth is


def _smooth_noise(rng: np.random.Generator, n: int, hop: int) -> np.ndarray:
    """Band-limited noise: random knots every ``hop`` samples, linearly joined."""
    knots = rng.standard_normal(n // hop + 2)
    return np.interp(np.arange(n) / hop, np.arange(len(knots)), knots).astype(np.float32)


def _lowpass_noise(white: np.ndarray, cutoff: float) -> np.ndarray:
    """Gently low-passed noise (first-order roll-off above ``cutoff`` cycles/sample)."""
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(len(white))
    spec /= np.sqrt(1.0 + (f / cutoff) ** 2)
    out = np.fft.irfft(spec, n=len(white))
    return (out / (np.sqrt(np.mean(out**2)) + 1e-12)).astype(np.float32)


def synthesize(
    voice: Voice,
    emotion: str,
    gain: float,
    statement: int,
    timing: Timing,
    rng: np.random.Generator,
    *,
    sample_rate: int = SAMPLE_RATE,
    sing: bool = False,
) -> Utterance:
    """Synthesize one utterance laid out by ``timing``, spoken or sung, at ``sample_rate``."""
    p = scaled(emotion, gain * voice.expressiveness)
    sr = sample_rate
    up = sr / SAMPLE_RATE  # control hops, noise grain and harmonic count scale with the rate
    n = round(timing.duration * sr)
    sylls = STATEMENTS[statement].syllables
    hop = round(_CONTROL_HOP * up)
    m = n // hop + 2
    tc = np.arange(m, dtype=np.float64) * hop / sr  # control-frame times

    bounds = np.asarray(timing.bounds)
    idx = np.clip(np.searchsorted(bounds, tc, side="right") - 1, 0, len(sylls) - 1)
    pos = np.clip((tc - bounds[idx]) / (bounds[idx + 1] - bounds[idx]), 0.0, 1.0)
    in_speech = (tc >= timing.onset) & (tc < timing.offset)
    stress = np.array([s.stress for s in sylls])[idx]
    has_onset = np.array([s.onset != "" for s in sylls])[idx]

    # Voicing envelope: each syllable swells and fades; consonant onsets
    # delay voicing a little. A sung note is held: quick attack, long
    # sustain, a short release into the next note (legato).
    start = np.where(has_onset, 0.12 if not sing else 0.06, 0.0)
    local = np.clip((pos - start) / (1.0 - start), 0.0, 1.0)
    if sing:
        held = np.clip(local / 0.12, 0.0, 1.0) * np.clip((1.0 - local) / 0.1, 0.0, 1.0)
        env = np.sqrt(held) * (0.85 + 0.15 * stress)
    else:
        env = np.sin(np.pi * local) ** 0.7 * (0.65 + 0.35 * stress)
    env = np.where(in_speech, env, 0.0)

    # f0 contour in semitones around the speaker's resting pitch.
    u = np.clip((tc - timing.onset) / (timing.offset - timing.onset), 0.0, 1.0)
    accent = np.zeros(m)
    for k, s in enumerate(sylls):
        centre = 0.5 * (bounds[k] + bounds[k + 1])
        width = 0.35 * (bounds[k + 1] - bounds[k])
        size = p.pitch_range * (0.25 + 0.75 * s.stress) * rng.uniform(0.8, 1.2)
        accent += size * np.exp(-0.5 * ((tc - centre) / width) ** 2)
    semis = (
        p.pitch
        + p.slope * (u - 0.5)
        + accent
        - 0.4 * p.pitch_range
        + p.jitter * 2.0 * np.interp(tc, tc[::5], rng.standard_normal(len(tc[::5])))
        + p.tremor * np.sin(2 * np.pi * rng.uniform(6.0, 8.0) * tc + rng.uniform(0, 6.3))
        + rng.normal(0.0, 0.3)
    )
    if sing:
        semis = _sung_contour(p, emotion, tc, bounds, idx, rng)
    f0c = voice.f0 * 2.0 ** (semis / 12.0)

    # Formants per control frame, glided between syllables.
    form = np.array([VOWELS[s.vowel] for s in sylls])[idx] * voice.formant_scale
    form = cv2.GaussianBlur(form.astype(np.float32)[None], (0, 0), sigmaX=4.0)[0]
    bw = np.array([80.0, 110.0, 160.0], dtype=np.float32)
    famp = np.array([1.0, 0.7, 0.35], dtype=np.float32)

    # Per-harmonic gains on the control grid.
    max_f0 = float(f0c.max())
    n_harm = int(min(round(48 * up), (0.45 * sr) // max_f0))
    k = np.arange(1, n_harm + 1, dtype=np.float32)[:, None]
    freqs = k * f0c[None, :].astype(np.float32)  # (K, m)
    tilt = voice.tilt + p.tilt
    source = k ** (-tilt)
    env_f = np.zeros_like(freqs)
    for j in range(3):
        env_f += famp[j] / (1.0 + ((freqs - form[None, :, j]) / bw[j]) ** 2)
    gains = source * (0.08 + env_f)
    gains = np.where(freqs < 0.45 * sr, gains, 0.0).astype(np.float32)

    # Upsample control tracks to audio rate.
    ts = np.arange(n) / hop
    f0 = np.interp(ts, np.arange(m), f0c)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    gains_s = cv2.resize(gains, (m * hop, n_harm), interpolation=cv2.INTER_LINEAR)[:, :n]
    wrapped = np.mod(phase, 2 * np.pi).astype(np.float32)  # exact for integer k
    harm = np.sin(k * wrapped[None, :])
    voiced = np.einsum("kn,kn->n", gains_s, harm)
    if p.creak > 0:
        # Subharmonic roughness: every other glottal pulse weaker.
        voiced *= 1.0 - p.creak * 0.45 * (0.5 + 0.5 * np.cos(phase / 2.0))
    env_s = np.interp(ts, np.arange(m), env).astype(np.float32)
    trem = 1.0 + 0.4 * p.tremor * np.sin(2 * np.pi * 5.5 * ts * hop / sr)
    voiced = voiced / (np.sqrt(np.mean(voiced**2)) + 1e-9) * env_s * trem

    # Aspiration (breath) under the voice, consonant bursts at onsets.
    white = rng.standard_normal(n).astype(np.float32)
    hiss = np.diff(white, prepend=0.0).astype(np.float32)  # brighter noise
    # Aspiration is shaped by the vocal tract: mostly below 2-3 kHz.
    soft = _lowpass_noise(white, 1500.0 / sr)
    breath = (p.breath + voice.breath) * 0.25 * env_s * soft
    onset_s = np.zeros(m)
    for kk, s in enumerate(sylls):
        if s.onset:
            a, b = bounds[kk], bounds[kk] + 0.1 * (bounds[kk + 1] - bounds[kk]) + 0.015
            amp = 0.6 if s.onset == "fric" else 0.9
            onset_s += amp * ((tc >= a) & (tc < b))
    burst = np.interp(ts, np.arange(m), onset_s).astype(np.float32) * hiss * 0.25

    speech = voiced + breath + burst
    level_db = -26.0 + voice.loudness_db + p.energy_db + rng.normal(0.0, 0.7)
    speech *= 10 ** (level_db / 20.0)
    # Soft limiter: only the loudest strong-anger peaks are touched.
    speech = np.tanh(speech * 1.2) / 1.2
    room = _smooth_noise(rng, n, round(2 * up)) * 10 ** (-66 / 20.0)
    audio = (speech + room).astype(np.float32)
    return Utterance(audio=audio, articulation=env_s)


def _sung_contour(
    p: Prosody,
    emotion: str,
    tc: np.ndarray,
    bounds: np.ndarray,
    idx: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The f0 of a sung line, in semitones: held notes joined by short glides, vibrato.

    The emotion moves the key (``p.pitch``), widens or narrows the melody with
    its pitch range, and shakes it with its tremor and jitter, as in speech.
    """
    melody = np.asarray(MELODY_MINOR if emotion in MINOR_EMOTIONS else MELODY_MAJOR)
    spread = float(np.clip(0.4 + 0.15 * p.pitch_range, 0.3, 1.3))
    notes = melody[: len(bounds) - 1][idx] * spread
    # A glide of about 60 ms between notes (a moving average over control frames).
    width = max(1, round(0.06 / (tc[1] - tc[0])))
    glided = np.convolve(np.pad(notes, width, mode="edge"), np.ones(width) / width, "same")
    glided = glided[width:-width]
    vibrato_rate = rng.uniform(5.0, 6.0)
    # Vibrato sets in after the note's attack and grows with the note's age.
    age = np.clip((tc - bounds[idx]) / 0.25, 0.0, 1.0)
    vibrato = 0.35 * age * np.sin(2 * np.pi * vibrato_rate * tc + rng.uniform(0, 2 * np.pi))
    return (
        p.pitch
        - 2.0
        + glided
        + vibrato
        + 0.5 * p.jitter * np.interp(tc, tc[::10], rng.standard_normal(len(tc[::10])))
        + p.tremor * np.sin(2 * np.pi * rng.uniform(6.0, 8.0) * tc + rng.uniform(0, 6.3))
    )


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Quantize float audio in -1..1 to int16 (the one copy both files share)."""
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
