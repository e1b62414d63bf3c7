"""Settings of the audio-visual data pipeline, and the data errors.

The fields stay plain (int, float, bool, str, Literal, tuple[str, ...]) because
the generic config system exposes each one as ``data.<field>`` for ``--set``
overrides and reads the annotations to parse the values. Derived numbers the
models need (feature width, channels) are properties, not fields, so they can
never disagree with the fields they come from.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MODALITIES = ("audio", "video")
# The audio-visual layouts the data module can index (trainers.data.av_dataset.LAYOUTS).
AV_LAYOUTS = ("ravdess", "crema-d", "meld", "combined")


class DataError(Exception):
    """A data set cannot be used as configured (wrong root, too many bad files...)."""


class DecodeError(DataError):
    """One input file cannot be decoded; the loader reports it and tries another source."""


VOCAL_CHANNELS = {"speech": (1,), "song": (2,), "both": (1, 2)}  # RAVDESS's VV field
# data.face_detector values: trainers.data.face_detectors.DETECTORS, listed here so that
# reading a config never loads OpenCV (a test keeps the two equal).
FACE_DETECTORS = ("haar", "mtcnn")

# Field metadata: the value a config saved before the field existed (run.json, a
# checkpoint, an export) meant, e.g. field(default="new", metadata={SAVED_DEFAULT: "old"}),
# so that an old run still rebuilds the model it trained and predicts with the inputs it
# was trained on. See trainers.config.apply_saved.
SAVED_DEFAULT = "saved_default"

# data.layout -> (shortest, longest) plausible recording in seconds, where
# data.min_duration_s / data.max_duration_s are 0 (trainers.data.guards). RAVDESS's takes
# run about 3-5 s (song takes up to about 6 s), CREMA-D's 1-5 s; its known broken takes
# last 61 s (every emotion in one file) and 0.6 s (18 frames), and video durations are
# measured to one sample at data.fps. MELD's utterances are cut from TV episodes and run
# from a single word to over 30 s.
DURATION_LIMITS: dict[str, tuple[float, float]] = {
    "ravdess": (0.75, 10.0),
    "crema-d": (0.75, 10.0),
    "combined": (0.75, 10.0),
    "meld": (0.1, 60.0),
}


@dataclass
class DataConfig:
    # Data directory; set by the CLI's --data. For layout=combined: a folder holding
    # ravdess/ and crema-d/ subfolders (see docs/datasets.md).
    root: str = ""
    # Which data set layout to read under root: ravdess, crema-d, meld, or combined
    # (RAVDESS + CREMA-D in their six shared classes, trainers.data.combined).
    layout: Literal["ravdess", "crema-d", "meld", "combined"] = "ravdess"
    # RAVDESS takes read (also the RAVDESS part of combined): its speech takes, its song
    # takes (vocal channel 02: emotions 1-6, not every actor sang), or both. Files of the
    # channel not read are skipped silently: a choice, not bad inputs.
    vocal_channel: Literal["speech", "song", "both"] = "speech"
    # Inputs each sample carries; a recording without a working source for one is dropped.
    modalities: tuple[str, ...] = ("audio", "video")
    # "actor": no actor in two splits. "random" leaks actors and inflates accuracy.
    # MELD keeps its official train/dev/test splits: split and the fractions are unused.
    split: Literal["actor", "random"] = "actor"
    # Share of actors (or recordings, for split="random") held out for validation.
    val_fraction: float = 0.15
    # Share held out for the final test.
    test_fraction: float = 0.15
    # Seeds the split only, so changing the training seed keeps the same split.
    split_seed: int = 0
    # Speaker-independent k-fold (trainers.data.folds): folds > 1 deals the actors into
    # that many folds (balanced by sex where the corpus says it) and makes fold `fold`'s
    # actors the test split, val_fraction of the other actors val; folds = number of actors
    # is leave-one-actor-out. 0 = off (val_fraction/test_fraction split). Not for MELD,
    # whose official splits are fixed.
    folds: int = 0
    fold: int = 0
    # What a fold holds out: whole actors (the only grouping: a speaker's recordings never
    # straddle train and test).
    fold_group: Literal["actor"] = "actor"
    # Frames sampled per second of video, by timestamp (independent of the source fps).
    fps: float = 10.0
    # Longest frame sequence kept; longer clips keep their middle.
    max_frames: int = 48
    # Side of the square face crop, in pixels.
    face_size: int = 64
    # One channel (True) or RGB (False) face crops.
    grayscale: bool = True
    # Run the face detector on every k-th sampled frame; boxes in between are interpolated.
    # 6 (1.7 detections a second at fps 10): the smoothed track matched 3's against the
    # generator's true boxes (docs/datasets.md, Faces) at half the detector's time.
    detect_every: int = 6
    # Face detector: mtcnn (facenet-pytorch's MTCNN, weights in its wheel) or haar (OpenCV's
    # cascade; misses a third of faces at 720p, bench/faces.py). Configs saved before this
    # key existed mean haar.
    face_detector: Literal["haar", "mtcnn"] = dataclasses.field(
        default="mtcnn", metadata={SAVED_DEFAULT: "haar"}
    )
    # Audio is mixed to mono and resampled to this rate (Hz).
    sample_rate: int = 16000
    # Mel bands of the log-mel spectrogram (MFCCs are computed from it too).
    n_mels: int = 64
    # Cepstral coefficients kept when audio_features="mfcc".
    n_mfcc: int = 40
    # Hop between audio feature frames, in milliseconds.
    hop_ms: float = 10.0
    # Analysis window length, in milliseconds.
    win_ms: float = 25.0
    # Per-frame audio features handed to the model.
    audio_features: Literal["logmel", "mfcc"] = "mfcc"
    # Longest audio feature sequence kept; longer clips keep their middle.
    max_audio_frames: int = 400
    # Audio feature normalisation: "train" uses the train split's per-feature mean and
    # std for every recording; "speaker" uses each actor's own statistics (over all of
    # that actor's recordings, labels unused), removing pitch and loudness differences
    # between speakers. Actors with fewer than 8 recordings fall back to "train".
    audio_norm: Literal["train", "speaker"] = "train"
    # Cut leading and trailing silence before computing features.
    trim_silence: bool = False
    # Level below the peak (dB) that counts as silence when trimming.
    top_db: float = 30.0
    # Feature cache; empty means $EMOCONSOLE_CACHE, else ~/.cache/emoconsole/features.
    cache_dir: str = ""
    # Processes decoding in parallel during setup; 0 means one per CPU core.
    prepare_workers: int = 0
    # Setup fails when more than this share of recordings cannot be used.
    max_bad_fraction: float = 0.5
    # Warn (train.log, a warning event the console shows) when the face detector finds no
    # face in more than this share of a split's recordings, or of one actor's there.
    face_warn_fraction: float = 0.05
    # Recordings that decode but look wrong (trainers.data.guards: silent audio, a still
    # picture, a duration outside min/max_duration_s, audio and video of different
    # lengths) are listed in bad_inputs.jsonl as "suspect" and left out; true keeps them.
    keep_suspect: bool = False
    # Shortest and longest plausible recording, in seconds; 0 means the layout's default
    # (ravdess, crema-d, combined: 0.75-10 s; meld: 0.1-60 s).
    min_duration_s: float = 0.0
    max_duration_s: float = 0.0
    # Audio whose loudest 50 ms window is quieter than this (dBFS) is silent.
    silence_dbfs: float = -60.0

    @property
    def audio_dim(self) -> int:
        """Width F of the ``(T, F)`` audio features, for building the audio branch."""
        return self.n_mfcc if self.audio_features == "mfcc" else self.n_mels

    @property
    def video_channels(self) -> int:
        """Channels C of the ``(T, C, S, S)`` face crops."""
        return 1 if self.grayscale else 3

    def resolved_cache_dir(self) -> Path:
        """Where features are cached; shared by every run on this machine on purpose."""
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        env = os.environ.get("EMOCONSOLE_CACHE")
        if env:
            return Path(env).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "emoconsole" / "features"

    def resolved_workers(self) -> int:
        return self.prepare_workers if self.prepare_workers > 0 else (os.cpu_count() or 1)

    def duration_limits(self) -> tuple[float, float]:
        """(shortest, longest) plausible recording: the keys, or the layout's defaults."""
        low, high = DURATION_LIMITS.get(self.layout, DURATION_LIMITS["ravdess"])
        return self.min_duration_s or low, self.max_duration_s or high

    def validate(self) -> None:
        """Fail before any decoding starts, naming the field that is wrong."""

        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"data.{field}={getattr(self, field)!r}: {why}")

        if self.layout not in AV_LAYOUTS:
            raise bad("layout", f"must be one of {', '.join(AV_LAYOUTS)}")
        if not self.modalities:
            raise bad("modalities", "needs at least one of " + ", ".join(MODALITIES))
        for modality in self.modalities:
            if modality not in MODALITIES:
                raise bad("modalities", f"unknown modality {modality!r}; known: {MODALITIES}")
        if len(set(self.modalities)) != len(self.modalities):
            raise bad("modalities", "lists a modality twice")
        if self.face_detector not in FACE_DETECTORS:
            raise bad("face_detector", f"must be one of {', '.join(FACE_DETECTORS)}")
        if self.split not in ("actor", "random"):
            raise bad("split", "must be 'actor' or 'random'")
        for field in ("val_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, field) < 1.0:
                raise bad(field, "must be in [0, 1)")
        if not self.folds and self.val_fraction + self.test_fraction >= 1.0:
            raise bad("test_fraction", "val_fraction + test_fraction must leave a training split")
        if self.folds == 1 or self.folds < 0:
            raise bad("folds", "must be 0 (off) or >= 2 (actor k-fold)")
        if self.folds and not 0 <= self.fold < self.folds:
            raise bad("fold", f"must be in 0..{self.folds - 1} (data.folds={self.folds})")
        if self.folds and self.layout == "meld":
            raise bad(
                "folds",
                "MELD has fixed official train/dev/test splits (speakers recur across "
                "episodes): actor k-fold is for ravdess, crema-d and combined; use data.folds=0",
            )
        if self.folds and self.split != "actor":
            raise bad("folds", "k-fold deals whole actors into folds: needs data.split=actor")
        if self.fold_group != "actor":
            raise bad("fold_group", "must be 'actor' (folds hold out whole actors)")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise bad("max_bad_fraction", "must be in [0, 1]")
        if not 0.0 <= self.face_warn_fraction <= 1.0:
            raise bad("face_warn_fraction", "must be in [0, 1] (0 warns about any missed face)")
        positive = {
            "fps": self.fps,
            "max_frames": self.max_frames,
            "detect_every": self.detect_every,
            "sample_rate": self.sample_rate,
            "n_mels": self.n_mels,
            "n_mfcc": self.n_mfcc,
            "hop_ms": self.hop_ms,
            "win_ms": self.win_ms,
            "max_audio_frames": self.max_audio_frames,
            "top_db": self.top_db,
        }
        for field, value in positive.items():
            if not value > 0:
                raise bad(field, "must be > 0")
        if self.face_size < 16:
            raise bad("face_size", "must be >= 16 pixels")
        if self.n_mfcc > self.n_mels:
            raise bad("n_mfcc", f"cannot exceed n_mels ({self.n_mels}): MFCCs come from the mels")
        if self.win_ms < self.hop_ms:
            raise bad("win_ms", f"must be >= hop_ms ({self.hop_ms}) or samples are skipped")
        if self.sample_rate < 4000:
            raise bad("sample_rate", "must be >= 4000 Hz")
        if self.audio_norm not in ("train", "speaker"):
            raise bad("audio_norm", "must be 'train' or 'speaker'")
        if self.audio_features not in ("logmel", "mfcc"):
            raise bad("audio_features", "must be 'logmel' or 'mfcc'")
        if self.prepare_workers < 0:
            raise bad("prepare_workers", "must be >= 0 (0 means one per CPU core)")
        for field in ("min_duration_s", "max_duration_s"):
            if not getattr(self, field) >= 0:
                raise bad(field, "must be >= 0 seconds (0 means the layout's default)")
        low, high = self.duration_limits()
        if low >= high:
            raise bad("min_duration_s", f"must be below the longest allowed, {high} s")
        if not -120.0 < self.silence_dbfs < 0.0:
            raise bad("silence_dbfs", "must be between -120 and 0 dBFS (full scale is 0)")
