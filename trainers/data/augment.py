"""Synchronized audio-visual augmentation (design note 001) as a dataset wrapper.

Why it is built this way:

* **One warp factor for both modalities.** A factor ``f`` (drawn per item from
  ``[warp_low, warp_high]``) resamples the audio frames *and* the video frames
  to ``round(f * length)``, so ``f = 1.1`` lengthens both by 10% and a mouth
  movement stays on the sound it makes. Warping one modality alone would teach
  the model that the two streams drift apart.
* **Correlated noise.** One noise level ``s`` is drawn per item and applied to
  both modalities, each scaled to its own range: pixel noise is ``s`` times the
  full intensity range (0..255 for uint8 crops, 0..1 for float crops), feature
  noise is ``s`` times the item's feature standard deviation (audio features,
  or precomputed per-frame embeddings). A "noisy" recording is then noisy in
  both streams, as a real one would be.
* **Augmentation factor.** With ``factor=2.0`` the wrapped data set has twice
  the items: index ``i`` shows base row ``i % n``; the first copy
  (``i < n``) is always the original and every later copy is augmented with
  probability ``probability`` (0.8), else shown unchanged. A non-integer factor
  gives ``round(n * factor)`` items.
* **Reproducible and resume-exact.** Every random draw comes from a numpy
  Generator seeded by ``(seed, epoch, index)``: no shared stream, so the
  engine's resume, any DataLoader worker count and any batch order see the same
  augmented item. The engine calls :meth:`SynchronizedAugmentation.set_epoch`
  before each epoch, so an item differs across epochs.
* **Dynamic padding unchanged.** Items keep their keys and dtypes (uint8 video
  stays uint8, so ``collate_av`` never mixes uint8 and float rows in one batch,
  which it would misread as 0..255 floats); the module's own collate pads per
  batch.
* The base arrays are read-only and shared by every epoch: augmentation always
  works on copies.

Val and test are never augmented: :class:`SyncAugmentDataModule` wraps only the
train split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from trainers.data.base import BadInputReporter, ProgressReporter, SampleInfo

_AUGMENTED_KEYS = ("audio", "video")


@dataclass(frozen=True)
class SyncAugmentSettings:
    """The note's numbers: factor 2.0, probability 0.8; warp and noise ranges are ours."""

    factor: float = 2.0
    probability: float = 0.8
    warp_low: float = 0.8
    warp_high: float = 1.2
    noise_level: float = 0.05  # upper end of the per-item noise level s ~ U(0, noise_level)

    def validate(self) -> None:
        if self.factor < 1.0:
            raise ValueError(f"aug_factor: must be >= 1 (1 = no extra copies), got {self.factor}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"aug_probability: must be in [0, 1], got {self.probability}")
        if not 0.0 < self.warp_low <= self.warp_high:
            raise ValueError(
                f"warp_low: need 0 < warp_low <= warp_high, got {self.warp_low}, {self.warp_high}"
            )
        if self.noise_level < 0.0:
            raise ValueError(f"noise_level: must be >= 0, got {self.noise_level}")


@dataclass(frozen=True)
class AugmentPlan:
    """What one item of one epoch gets; the identity plan for originals."""

    augmented: bool
    warp: float = 1.0
    noise: float = 0.0


def time_warp(array: np.ndarray, factor: float) -> np.ndarray:
    """Resample the first (time) axis to ``max(1, round(factor * T))`` frames.

    Frame stacks (3-D and more) take the nearest frame: blending two face crops
    would make a ghost image no camera produces. Feature sequences (2-D) are
    interpolated linearly. Sample positions are frame centres, so the warp
    neither shifts nor crops the sequence. Always returns a new array.
    """
    length = array.shape[0]
    target = max(1, round(factor * length))
    src = (np.arange(target, dtype=np.float64) + 0.5) * (length / target) - 0.5
    src = np.clip(src, 0.0, length - 1)
    if array.ndim >= 3:
        return array[np.floor(src + 0.5).astype(np.int64)].copy()
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, length - 1)
    w = (src - lo).astype(np.float32).reshape(-1, *([1] * (array.ndim - 1)))
    out = array[lo].astype(np.float32) * (1.0 - w) + array[hi].astype(np.float32) * w
    return out.astype(array.dtype, copy=False)


def add_noise(array: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of ``level`` times the array's range (see the module docstring)."""
    if array.dtype == np.uint8:
        noisy = array.astype(np.float32)
        noisy += rng.standard_normal(array.shape, dtype=np.float32) * np.float32(level * 255.0)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    values = array.astype(np.float32, copy=True)
    if array.ndim >= 3:  # float face crops, 0..1
        values += rng.standard_normal(array.shape, dtype=np.float32) * np.float32(level)
        return np.clip(values, 0.0, 1.0).astype(array.dtype, copy=False)
    scale = np.float32(level * float(values.std()))
    values += rng.standard_normal(array.shape, dtype=np.float32) * scale
    return values.astype(array.dtype, copy=False)


class SynchronizedAugmentation(Dataset):
    """``base`` seen ``factor`` times over, later copies augmented (see the module docstring)."""

    def __init__(self, base: Any, settings: SyncAugmentSettings, seed: int) -> None:
        settings.validate()
        self.base = base
        self.settings = settings
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def base_len(self) -> int:
        return len(self.base)

    def __len__(self) -> int:
        n = self.base_len
        return max(n, round(n * self.settings.factor))

    def base_index(self, index: int) -> int:
        return index % self.base_len

    def _rng(self, index: int) -> np.random.Generator:
        # Masked to 64 bits: SeedSequence refuses negative entropy, a seed may be negative.
        return np.random.default_rng([self.seed & (2**64 - 1), self.epoch, index])

    def _draw(self, index: int, rng: np.random.Generator) -> AugmentPlan:
        s = self.settings
        # Three draws always, in this order, so a plan never depends on which branch ran.
        coin, warp, noise = rng.random(), rng.uniform(s.warp_low, s.warp_high), rng.random()
        if index < self.base_len or coin >= s.probability:
            return AugmentPlan(augmented=False)
        return AugmentPlan(augmented=True, warp=float(warp), noise=float(noise * s.noise_level))

    def plan(self, index: int) -> AugmentPlan:
        """The augmentation item ``index`` gets in the current epoch (for tests and logs)."""
        self._check(index)
        return self._draw(index, self._rng(index))

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        self._check(index)
        item = self.base[self.base_index(index)]
        rng = self._rng(index)
        plan = self._draw(index, rng)
        if not plan.augmented:
            return item
        out = dict(item)
        for key in _AUGMENTED_KEYS:  # fixed order: the noise draws are reproducible
            if key in item:
                warped = time_warp(np.asarray(item[key]), plan.warp)
                out[key] = add_noise(warped, plan.noise, rng)
        return out


class SyncAugmentDataModule:
    """A data module whose train split is :class:`SynchronizedAugmentation` of ``base``'s.

    Everything else (setup, val/test, collate) is ``base``'s. ``labels("train")``
    and ``samples("train")`` follow the augmented rows (row ``i`` is base row
    ``i % n``), so class weights and provenance stay aligned with
    ``dataset("train")``.
    """

    def __init__(self, base: Any, settings: SyncAugmentSettings, seed: int) -> None:
        settings.validate()
        self.base = base
        self.settings = settings
        self.seed = seed
        # The base's collate function itself, not a bound method: a DataLoader worker
        # then pickles a function reference, not this module and every array it holds.
        self.collate = base.collate
        self._train: SynchronizedAugmentation | None = None

    @property
    def classes(self) -> Sequence[str]:
        return self.base.classes

    def setup(self, report_bad: BadInputReporter, progress: ProgressReporter | None = None) -> None:
        self.base.setup(report_bad, progress)
        self._train = None

    def _train_set(self) -> SynchronizedAugmentation:
        # One wrapper per setup: the engine calls set_epoch on the object it got.
        if self._train is None:
            self._train = SynchronizedAugmentation(
                self.base.dataset("train"), self.settings, self.seed
            )
        return self._train

    def dataset(self, split: str) -> Any:
        return self._train_set() if split == "train" else self.base.dataset(split)

    def _rows(self, split: str) -> np.ndarray | None:
        if split != "train":
            return None
        train = self._train_set()
        return np.arange(len(train)) % max(train.base_len, 1)

    def samples(self, split: str) -> list[SampleInfo]:
        base = list(self.base.samples(split))
        rows = self._rows(split)
        return base if rows is None else [base[i] for i in rows]

    def labels(self, split: str) -> np.ndarray:
        base = np.asarray(self.base.labels(split))
        rows = self._rows(split)
        return base if rows is None else base[rows]

    def describe(self) -> dict[str, Any]:
        out = dict(self.base.describe())
        s = self.settings
        out["augmentation"] = {
            "kind": "synchronized (one time warp for audio and video, correlated noise)",
            "factor": s.factor,
            "probability": s.probability,
            "warp": [s.warp_low, s.warp_high],
            "noise_level": s.noise_level,
            "train_items": len(self._train_set()),
        }
        return out

    def __getattr__(self, name: str) -> Any:
        # Anything else (audio_norm, memory_bytes...) is the base's. Guard "base" itself
        # so an unpickled, half-built instance fails cleanly instead of recursing.
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)
