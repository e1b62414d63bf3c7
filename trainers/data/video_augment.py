"""Clip-consistent video augmentation (design notes 000 and 004).

Why it is built this way:

* **One draw per clip, not per frame.** A face that jumps to a new angle,
  zoom or colour on every frame is not a video anyone recorded, and a 3D
  CNN would learn the flicker. The spatial transforms are torchvision's
  ``transforms.v2``, applied to the whole clip wrapped as a
  ``tv_tensors.Video`` ``(T, C, H, W)``: v2 draws its parameters once per
  call and applies them to every frame. (``pytorchvideo.transforms`` would
  be the obvious choice but imports a module torchvision removed; see
  DESIGN.md.)
* **Temporal operations are ours**, as index arrays over the real frames:
  ``reverse_frames`` plays the clip backwards; ``drop_frames`` removes frames
  the way a stuttering camera does: a dropped frame is replaced by the last
  frame that was kept (sample and hold), so the clip keeps its length and
  time spacing and never shows a frame that was not in the source. The
  first frame is never dropped (nothing precedes it to hold).
* **Reproducible and resume-exact.** Every random draw of item ``index`` in
  ``epoch`` comes from ``(seed, epoch, index)`` alone: the temporal draws
  from a numpy Generator, the v2 transforms under ``torch.random.fork_rng``
  with ``torch.manual_seed`` of a seed derived from the same triple. Nothing
  reads or advances the global RNG streams, so the engine's resume (which
  restores those streams) and any DataLoader worker count see the same
  augmented clips, and dropout masks are untouched by augmentation.
* **dtype preserved.** uint8 clips stay uint8 (v2 handles uint8 video), so
  batches never mix uint8 and float rows and memory stays at one byte per
  pixel until collation.
* Grayscale clips (one channel) skip saturation and hue, which need colour.
* torch and torchvision are imported where clips are transformed, not at
  import time (see trainers.data.clips: its config reaches decoding workers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Sub-streams of one (seed, epoch, index): which random draw a generator feeds.
STREAM_WINDOW, STREAM_TEMPORAL, STREAM_SPATIAL = 0, 1, 2
_MASK64 = 2**64 - 1


def item_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    """A numpy Generator that depends on ``(seed, epoch, index, stream)`` only."""
    # Masked to 64 bits: SeedSequence refuses negative entropy, and a seed may be negative.
    return np.random.default_rng([seed & _MASK64, epoch, index, stream])


def item_torch_seed(seed: int, epoch: int, index: int) -> int:
    """The torch seed of one item's spatial transforms (63 bits, torch.manual_seed's range)."""
    state = np.random.SeedSequence([seed & _MASK64, epoch, index, STREAM_SPATIAL])
    return int(state.generate_state(1, np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class ClipAugmentSettings:
    """Probabilities (each op applied to a clip with its own chance) and strengths.

    All zero means no augmentation. The notes name the operations, not their
    numbers: every value here is ours, chosen per model in its data config.
    """

    affine_p: float = 0.0
    degrees: float = 10.0  # rotation range +-degrees
    translate: float = 0.1  # share of width/height
    scale_low: float = 0.9
    scale_high: float = 1.1
    flip_p: float = 0.0  # horizontal flip
    jitter_p: float = 0.0
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.05
    erase_p: float = 0.0  # cutout: one rectangle, the same on every frame, filled with 0
    erase_scale_low: float = 0.02  # share of the frame area
    erase_scale_high: float = 0.15
    reverse_p: float = 0.0  # play the clip backwards
    drop_p: float = 0.0  # chance that a clip gets frame dropping at all
    drop_rate: float = 0.1  # then each frame after the first is dropped with this chance

    @property
    def active(self) -> bool:
        probs = (self.affine_p, self.flip_p, self.jitter_p, self.erase_p)
        return any(p > 0 for p in (*probs, self.reverse_p, self.drop_p))

    def validate(self, prefix: str = "aug_") -> None:
        """Raise ValueError naming the field (``prefix`` + name, as the config spells it)."""
        probs = ("affine_p", "flip_p", "jitter_p", "erase_p", "reverse_p", "drop_p", "drop_rate")
        for name in probs:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{prefix}{name}={value}: must be in [0, 1]")
        for name in ("degrees", "translate", "brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{prefix}{name}={getattr(self, name)}: must be >= 0")
        if not 0.0 <= self.translate <= 1.0:
            raise ValueError(f"{prefix}translate={self.translate}: must be in [0, 1]")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"{prefix}hue={self.hue}: must be in [0, 0.5]")
        if not 0.0 < self.scale_low <= self.scale_high:
            raise ValueError(
                f"{prefix}scale_low={self.scale_low}: need 0 < scale_low <= scale_high "
                f"({self.scale_high})"
            )
        if not 0.0 < self.erase_scale_low <= self.erase_scale_high < 1.0:
            raise ValueError(
                f"{prefix}erase_scale_low={self.erase_scale_low}: need 0 < erase_scale_low <= "
                f"erase_scale_high ({self.erase_scale_high}) < 1"
            )


def reverse_frames(n: int) -> np.ndarray:
    """Source frame of each output frame when the clip plays backwards."""
    return np.arange(n - 1, -1, -1, dtype=np.int64)


def drop_frames(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Source frame of each output frame after dropping (see the module docstring).

    Each frame after the first is dropped with probability ``rate`` and replaced
    by the most recent kept frame: the result has length ``n``, never decreases,
    and repeats a kept frame once for each dropped frame after it.
    """
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    dropped = rng.random(n) < rate
    dropped[0] = False
    kept_positions = np.where(~dropped, np.arange(n), 0)
    return np.maximum.accumulate(kept_positions).astype(np.int64)


@dataclass(frozen=True)
class ClipPlan:
    """What one clip gets: temporal source indices and which spatial ops run."""

    order: np.ndarray  # int64 (n,): output frame t shows source frame order[t]
    reversed: bool
    dropped: int  # frames replaced by a held frame
    affine: bool
    flip: bool
    jitter: bool
    erase: bool


def plan_clip(n: int, settings: ClipAugmentSettings, seed: int, epoch: int, index: int) -> ClipPlan:
    """The augmentation of item ``index`` in ``epoch``, for a clip of ``n`` real frames."""
    s = settings
    rng = item_rng(seed, epoch, index, STREAM_TEMPORAL)
    # Every coin is drawn, in this order, whichever ops are on: a plan never depends on
    # which branch ran, so turning one op off leaves the others' draws unchanged.
    coins = rng.random(6)
    order = np.arange(n, dtype=np.int64)
    reverse = bool(coins[0] < s.reverse_p)
    if reverse:
        order = order[reverse_frames(n)]
    dropped = 0
    if coins[1] < s.drop_p and s.drop_rate > 0:
        held = drop_frames(n, s.drop_rate, rng)  # the last draws of this stream
        dropped = int((held != np.arange(n)).sum())
        order = order[held]
    return ClipPlan(
        order=order,
        reversed=reverse,
        dropped=dropped,
        affine=bool(coins[2] < s.affine_p),
        flip=bool(coins[3] < s.flip_p),
        jitter=bool(coins[4] < s.jitter_p),
        erase=bool(coins[5] < s.erase_p),
    )


def _spatial_transforms(plan: ClipPlan, s: ClipAugmentSettings, channels: int) -> list[Any]:
    from torchvision.transforms import v2  # 4 s to import: only where clips are augmented

    ops: list[Any] = []
    if plan.affine:
        ops.append(
            v2.RandomAffine(
                degrees=s.degrees,
                translate=(s.translate, s.translate),
                scale=(s.scale_low, s.scale_high),
            )
        )
    if plan.flip:
        ops.append(v2.RandomHorizontalFlip(p=1.0))
    if plan.jitter:
        colour = channels == 3
        ops.append(
            v2.ColorJitter(
                brightness=s.brightness,
                contrast=s.contrast,
                saturation=s.saturation if colour else 0.0,
                hue=s.hue if colour else 0.0,
            )
        )
    if plan.erase:
        ops.append(v2.RandomErasing(p=1.0, scale=(s.erase_scale_low, s.erase_scale_high), value=0))
    return ops


def augment_clip(
    frames: np.ndarray,
    settings: ClipAugmentSettings,
    seed: int,
    epoch: int,
    index: int,
) -> np.ndarray:
    """Augment real frames ``(T, C, H, W)`` (uint8 or float 0..1); returns a new array.

    The same ``(seed, epoch, index)`` always gives the same output; the global
    RNG streams are neither read nor advanced.
    """
    if frames.ndim != 4:
        raise ValueError(f"expected a clip (T, C, H, W), got shape {frames.shape}")
    plan = plan_clip(len(frames), settings, seed, epoch, index)
    out = np.asarray(frames)[plan.order]  # fancy indexing copies
    ops = _spatial_transforms(plan, settings, frames.shape[1])
    if not ops or len(out) == 0:
        return out
    import torch
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    clip = tv_tensors.Video(torch.from_numpy(np.ascontiguousarray(out)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(item_torch_seed(seed, epoch, index))
        result = v2.Compose(ops)(clip)
    return result.as_subclass(torch.Tensor).numpy()
