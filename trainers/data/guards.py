"""Checks that set aside an input which decodes but is probably not what its label says.

A decoder error is easy: the file is listed in bad_inputs.jsonl and the next
source is tried. The harder defects of real corpora decode without a word
and would be trained on under their label (CREMA-D's own tracker, issue #8 of
github.com/CheyneyComputerScience/CREMA-D, lists them):

* ``1076_MTI_SAD_XX``: the audio plays but holds no sound, the video is an
  error picture -- *silent audio*, a *still picture*;
* ``1064_IEO_DIS_MD``: 61 s holding every emotion of the sentence -- a
  *duration far above* the corpus's range;
* ``1064_TIE_SAD_XX``: flv and mp3 with no duration, a fraction of a second
  of content beside a normal wav -- a *duration far below* the range, and
  *audio and video of different lengths*.

So every audio-visual recording is measured where it is decoded anyway
(:func:`audio_measures`, :func:`video_measures`: no second decode), the
measures are stored in the feature cache beside the features (an entry
without them is decoded again, so cached entries are guarded on later runs
too), and :func:`suspect_reasons` compares them with :class:`Limits`. A
suspect recording is listed in bad_inputs.jsonl as ``suspect: ...`` and left
out unless ``data.keep_suspect=true``.

The definitions, and why:

* **Silent**: the loudest tenth of the decoded mono signal's 50 ms windows
  stays below ``data.silence_dbfs`` (default -60 dBFS) in RMS. A share of
  windows, not the peak sample or the loudest window, so a few clicks in a
  silent track do not pass it; a tenth, so a take that is mostly pause
  around a short word does not fail it. Speech is recorded with its loud
  windows around -40 to -10 dBFS (the generator's quietest: -44); a
  track with no sound holds digital zeros or a noise floor around -90 to
  -70 dBFS.
* **Duration** (of each decoded modality, not of a container header, which
  is missing in the defects above): outside ``data.min_duration_s`` ..
  ``data.max_duration_s``; 0 means the layout's default
  (:data:`trainers.data.config.DURATION_LIMITS`), chosen around each corpus's
  real range.
* **Audio and video disagree**: their durations differ by more than
  :data:`MISMATCH_S` and :data:`MISMATCH_SHARE` of the longer one: not one take.
* **Still picture**: no sampled frame of the face crops differs from the
  first by more than :data:`STILL_LEVELS` grey levels on average. A filmed
  person moves and a camera adds noise; a frozen error picture does neither.

:func:`placeholder_reason` is the image data's counterpart: a grey "photo
unavailable" picture an image host serves for a deleted photo.

numpy only (and the config): it runs in the decoding workers.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from trainers.data.base import BadInputReporter
from trainers.data.config import DataConfig

log = logging.getLogger(__name__)

SILENCE_WINDOW_S = 0.05
LOUD_SHARE = 0.1
DBFS_FLOOR = -120.0  # what digital silence measures (20 log10 of 1e-6)
MISMATCH_S = 1.0
MISMATCH_SHARE = 0.25
STILL_LEVELS = 0.5

# What each modality's cache entry must hold besides its features for the guards.
MEASURES: dict[str, tuple[str, ...]] = {
    "audio": ("duration_s", "loudest_dbfs"),
    "video": ("duration_s",),
}


@dataclass(frozen=True)
class Limits:
    min_duration_s: float
    max_duration_s: float
    silence_dbfs: float
    layout: str

    @classmethod
    def of(cls, cfg: DataConfig) -> Limits:
        """``cfg``'s limits (the layout's default durations where a key is 0)."""
        low, high = cfg.duration_limits()
        return cls(low, high, cfg.silence_dbfs, cfg.layout)


def dbfs(amplitude: float) -> float:
    """20 log10 of an amplitude relative to full scale (1.0), floored at :data:`DBFS_FLOOR`."""
    return max(DBFS_FLOOR, 20.0 * math.log10(max(amplitude, 1e-12)))


def loudest_window_dbfs(signal: np.ndarray, sample_rate: int) -> float:
    """The RMS (dBFS) that the loudest :data:`LOUD_SHARE` of the signal's
    :data:`SILENCE_WINDOW_S` windows reach: the level of its sound, not of a click."""
    width = max(1, round(sample_rate * SILENCE_WINDOW_S))
    n = len(signal) // width
    if n == 0:
        rms = float(np.sqrt(np.mean(np.square(signal, dtype=np.float64)))) if len(signal) else 0.0
    else:
        windows = signal[: n * width].reshape(n, width).astype(np.float64)
        levels = np.sort(np.sqrt(np.square(windows).mean(axis=1)))
        rms = float(levels[-math.ceil(LOUD_SHARE * n)])  # reached by a tenth of the windows
    return dbfs(rms)


def audio_measures(signal: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    """The guard measures of a decoded mono signal, as arrays for the cache entry."""
    return {
        "duration_s": np.array(len(signal) / sample_rate, dtype=np.float64),
        "loudest_dbfs": np.array(loudest_window_dbfs(signal, sample_rate), dtype=np.float64),
    }


def video_measures(times: np.ndarray, fps: float) -> dict[str, np.ndarray]:
    """The guard measures of a decoded clip from its sample times (seconds from its start).

    When a clip is longer than ``max_frames`` samples the decoder keeps the
    middle ones, so the first and last kept times sit symmetrically inside the
    clip: their sum plus one sample interval is its length either way.
    """
    duration = 0.0 if len(times) == 0 else float(times[0]) + float(times[-1]) + 1.0 / fps
    return {"duration_s": np.array(duration, dtype=np.float64)}


def has_measures(modality: str, entry: dict[str, np.ndarray]) -> bool:
    """Whether a cache entry carries what the guards read (older entries do not)."""
    return all(name in entry for name in MEASURES[modality])


def still_levels(frames: np.ndarray) -> float:
    """Largest mean absolute difference (grey levels) of a sampled frame from the first."""
    if len(frames) < 2:
        return math.inf  # one frame says nothing about motion
    first = frames[0].astype(np.int16)
    return max(float(np.abs(f.astype(np.int16) - first).mean()) for f in frames[1:])


def suspect_reasons(modality: str, arrays: dict[str, np.ndarray], limits: Limits) -> list[str]:
    """Why one decoded source of a recording looks wrong (empty: it looks fine)."""
    reasons = []
    duration = float(arrays["duration_s"])
    if duration < limits.min_duration_s:
        reasons.append(
            f"{modality} lasts {duration:.2f} s, below data.min_duration_s="
            f"{limits.min_duration_s:g} ({limits.layout}): a broken or cut take"
        )
    elif duration > limits.max_duration_s:
        reasons.append(
            f"{modality} lasts {duration:.1f} s, above data.max_duration_s="
            f"{limits.max_duration_s:g} ({limits.layout}): probably more than one take"
        )
    if modality == "audio":
        loudest = float(arrays["loudest_dbfs"])
        if loudest < limits.silence_dbfs:
            reasons.append(
                f"silent audio: its loudest {LOUD_SHARE:.0%} of {SILENCE_WINDOW_S * 1000:.0f} ms "
                f"windows reach {loudest:.1f} dBFS, below data.silence_dbfs="
                f"{limits.silence_dbfs:g}"
            )
    else:
        moved = still_levels(arrays["frames"])
        if moved < STILL_LEVELS:
            reasons.append(
                f"a still picture: no frame differs from the first by {STILL_LEVELS:g} grey "
                f"level on average (at most {moved:.2f}); no one was filmed"
            )
    return reasons


def mismatch_reason(video_s: float, audio_s: float) -> str | None:
    """Why a recording's audio and video are not one take, or None."""
    longer = max(video_s, audio_s)
    if abs(video_s - audio_s) > max(MISMATCH_S, MISMATCH_SHARE * longer):
        return f"video lasts {video_s:.2f} s but audio {audio_s:.2f} s: not one take"
    return None


def admit_suspect(
    key: str,
    files: Sequence[str],
    suspect: Mapping[str, str],
    keep: bool,
    report: BadInputReporter,
) -> bool:
    """Whether a suspect recording is kept (``data.keep_suspect``): logged if so; else
    each of its files is listed, the suspect ones with why, the others as skipped."""
    summary = "; ".join(f"{os.path.basename(p)}: {why}" for p, why in suspect.items())
    if keep:
        log.warning("kept suspect recording %s (data.keep_suspect=true): %s", key, summary)
        return True
    for path, why in suspect.items():
        report(path, f"suspect: {why}; left out (data.keep_suspect=true keeps it)")
    for path in files:
        if path not in suspect:
            report(path, f"skipped: recording {key} is suspect ({summary})")
    return False


# --------------------------------------------------------------------------- images

# A placeholder is colourless (the channels differ by under this many levels on
# average), and mostly one flat grey: PLACEHOLDER_FLAT of a 64 px thumbnail's pixels
# within PLACEHOLDER_TOLERANCE levels of its commonest level, which lies in
# PLACEHOLDER_GREYS (not black or white: a night shot or a white page is not grey).
# Measured (tests/test_fi_data.py): grey cards with a dark icon and the line "This photo
# is no longer available", 100 to 1024 px wide, JPEG and PNG, 87-97% flat; scikit-image's
# 25 sample pictures at most 61% (a white-background silhouette, 50% for a grey one),
# none flagged; the generated FI corpus none.
PLACEHOLDER_CHROMA = 2.0
PLACEHOLDER_FLAT = 0.8
PLACEHOLDER_TOLERANCE = 2
PLACEHOLDER_GREYS = (64, 240)
CHECK_SIZE = 64


def placeholder_reason(image: np.ndarray) -> str | None:
    """Why a decoded RGB uint8 image looks like a "photo unavailable" placeholder, or None.

    Image hosts answer a request for a deleted photo with a grey picture
    (Flickr's says "This photo is no longer available"); a crawl saves it
    under the photo's name, so a corpus of emotions holds the same grey card
    under every label. It is a flat, colourless field of mid-to-light grey
    with a little dark text or an icon; photographs, greyscale ones included,
    are neither that flat nor that grey.
    """
    pixels = image.reshape(-1, image.shape[-1]).astype(np.int16)
    chroma = float((pixels.max(axis=1) - pixels.min(axis=1)).mean())
    if chroma >= PLACEHOLDER_CHROMA:
        return None
    grey = pixels.mean(axis=1)
    counts = np.bincount(np.rint(grey).astype(np.int64), minlength=256)
    level = int(counts.argmax())
    if not PLACEHOLDER_GREYS[0] <= level <= PLACEHOLDER_GREYS[1]:
        return None
    flat = float((np.abs(grey - level) <= PLACEHOLDER_TOLERANCE).mean())
    if flat < PLACEHOLDER_FLAT:
        return None
    return (
        f"suspect: a 'photo unavailable' placeholder, not a photograph ({flat:.0%} of the "
        f"picture is one flat grey, level {level}, with no colour); the host no longer "
        "serves the photo"
    )
