"""Image augmentation (design note 003) and its 8 test-time views, seeded per item.

Why it looks like this:

* The training pipeline is the note's list, transform for transform, in
  ``torchvision.transforms.v2`` (the maintained API that works on tensors):
  Resize, RandomHorizontalFlip(0.5), RandomRotation(15), ColorJitter(0.3, 0.3,
  0.3, 0.1), RandomAffine(translate 0.1, scale 0.9-1.1), RandomPerspective(0.2,
  p=0.3), AutoAugment(IMAGENET), to float + ImageNet Normalize, RandomErasing(p
  0.25, scale 0.02-0.2, ratio 0.3-3.3). The note's ``ToTensor`` becomes
  ``ToDtype(float32, scale=True)`` because images are already uint8 tensors in
  memory (decoded once, see ``trainers.data.images``); the result is the same.
* v2 transforms draw from torch's global RNG and accept no generator, so each
  call runs inside :func:`seeded`, which forks the global RNG, seeds it from
  ``(seed, epoch, index)`` and restores it afterwards: an item's augmentation
  is a pure function of those three numbers (exact resume, any worker count),
  and dropout's random stream is left exactly where it was.
* The 8 TTA views are the note's list: original, horizontal flip, rotation -5
  and +5 degrees, scale 95% (zoom out) and 105% (zoom in), a colour jitter and
  a crop. The jitter and the crop are "random" in the note; here they are drawn
  from a seed derived from the image's key, so they are fixed per image: the
  same in every epoch, every run and every ensemble member.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TTA_VIEWS: tuple[str, ...] = (
    "original",
    "hflip",
    "rotate-5",
    "rotate+5",
    "scale95",
    "scale105",
    "color_jitter",
    "crop",
)
TTA_CROP = 0.9  # side of the crop view, relative to the stored image


def item_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts, e.g. ``(seed, epoch, index)``; stable everywhere."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def key_seed(key: str) -> int:
    """The fixed seed of an image's TTA jitter and crop: a function of its key alone."""
    return zlib.crc32(key.encode("utf-8"))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block on torch's global CPU RNG seeded with ``seed``, then restore it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _normalize() -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def train_transform(size: int) -> v2.Compose:
    """The note's training pipeline at ``size`` x ``size`` (uint8 CHW tensor in)."""
    return v2.Compose(
        [
            v2.Resize((size, size), antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
            v2.RandomRotation(degrees=15),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1),
            v2.RandomAffine(degrees=0, translate=(0.1, 0.1), scale=(0.9, 1.1)),
            v2.RandomPerspective(distortion_scale=0.2, p=0.3),
            v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
            *_normalize(),
            v2.RandomErasing(p=0.25, scale=(0.02, 0.2), ratio=(0.3, 3.3)),
        ]
    )


def eval_transform(size: int) -> v2.Compose:
    """Resize and normalize only: validation and test without TTA."""
    return v2.Compose([v2.Resize((size, size), antialias=True), *_normalize()])


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_subclass(torch.Tensor)


class TrainAugment:
    """The training pipeline, one compiled ``Compose`` per size (progressive resizing)."""

    def __init__(self, augment: bool = True) -> None:
        self.augment = augment
        self._pipelines: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}

    def __call__(self, image: torch.Tensor, size: int, seed: int) -> torch.Tensor:
        pipeline = self._pipelines.get(size)
        if pipeline is None:
            pipeline = train_transform(size) if self.augment else eval_transform(size)
            self._pipelines[size] = pipeline
        with seeded(seed):
            return _plain(pipeline(tv_tensors.Image(image)))


class EvalViews:
    """Eval images: one plain view, or the note's 8 TTA views."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._plain = eval_transform(size)
        self._norm = v2.Compose(_normalize())
        self._jitter = v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)

    def plain(self, image: torch.Tensor) -> torch.Tensor:
        return _plain(self._plain(tv_tensors.Image(image)))

    def view(self, image: torch.Tensor, view: int, seed: int) -> torch.Tensor:
        """TTA view number ``view`` (see :data:`TTA_VIEWS`) of a uint8 CHW image."""
        name = TTA_VIEWS[view]
        size = self.size
        img = tv_tensors.Image(image)
        if name == "crop":
            _, h, w = image.shape
            ch, cw = max(1, round(TTA_CROP * h)), max(1, round(TTA_CROP * w))
            gen = torch.Generator().manual_seed(seed)
            top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            x = TF.resized_crop(img, top, left, ch, cw, [size, size], antialias=True)
            return _plain(self._norm(x))
        x = TF.resize(img, [size, size], antialias=True)
        bilinear = InterpolationMode.BILINEAR
        if name == "hflip":
            x = TF.horizontal_flip(x)
        elif name in ("rotate-5", "rotate+5"):
            x = TF.rotate(x, -5.0 if name == "rotate-5" else 5.0, interpolation=bilinear)
        elif name in ("scale95", "scale105"):
            scale = 0.95 if name == "scale95" else 1.05
            x = TF.affine(
                x,
                angle=0.0,
                translate=[0, 0],
                scale=scale,
                shear=[0.0, 0.0],
                interpolation=bilinear,
            )
        elif name == "color_jitter":
            with seeded(seed):
                x = self._jitter(x)
        elif name != "original":
            raise ValueError(f"unknown TTA view {name!r}")
        return _plain(self._norm(x))
