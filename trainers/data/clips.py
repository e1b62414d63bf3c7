"""Fixed-length clips of face-crop videos, several per video (design notes 000, 004).

Why it is built this way:

* **Wraps the RAVDESS module, decodes nothing itself.** The base module
  (:class:`trainers.data.av_dataset.RavdessDataModule`) decodes each video
  once at ``data.fps`` (by timestamp), keeps at most ``data.max_frames`` from
  the middle and holds them in memory as uint8. This module only cuts
  windows of ``data.clip_frames`` out of those arrays, so drawing new clips
  every epoch costs an index lookup.
* **Training: ``k`` clips per video per epoch** (``data.clips_per_video_train``).
  Row ``i`` is clip ``j = i % k`` of video ``i // k``. Its window start is
  drawn from ``(seed, epoch, i)`` within the ``j``-th of ``k`` equal parts of
  the possible starts, so the ``k`` clips of a video cover different parts of
  it (note 000's "different temporal segments") and every epoch sees new
  windows. ``item_labels`` gives each row's label for the weighted sampler.
* **Evaluation: ``E`` evenly spaced clips per video** (``data.eval_clips``),
  first at the start, last at the end (one clip: the middle). Each row
  carries ``"sample"`` (the video's row in its split), so the engine averages
  the clips' probabilities into one prediction per video
  (``Trainer._predict`` / ``group_mean``): predictions.jsonl has one row per
  video, never per clip.
* **Short videos are padded, not stretched.** A video with fewer real frames
  than ``clip_frames`` yields its frames followed by zero frames, and the
  batch's ``"video_mask"`` is False on them; the video models zero padded
  frames after normalization and pool only over real time steps.
* Batches are what ``collate_av`` makes (``"video"`` float32
  ``(B, T, C, S, S)`` in 0..1, ``"label"``, ``"index"``, ``"sample"``) with
  ``T = clip_frames`` always and the mask set from each clip's real length.
* Augmentation (trainers.data.video_augment) runs on the train split only,
  on the real frames of each clip, seeded by ``(seed, epoch, row)``.
* No torch at import time: the config class travels to the decoding worker
  processes (inside each task), which would otherwise import torch just to
  unpickle it. The data sets are plain map-style classes (``__len__`` and
  ``__getitem__`` are all a DataLoader needs).

Frame rates: the synthetic corpus renders 15 fps clips of 1.6 to 4.8 s (mean
2.5 s); real RAVDESS is 29.97 fps, about 3 to 5 s. Each model's data
defaults choose ``fps``/``max_frames`` so that its clip length exists in
both (see the model entries in trainers.models.video3d).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from trainers.data.base import BadInputReporter, ProgressReporter, SampleInfo
from trainers.data.config import DataConfig
from trainers.data.video_augment import (
    STREAM_WINDOW,
    ClipAugmentSettings,
    augment_clip,
    item_rng,
)

if TYPE_CHECKING:
    import torch


@dataclass
class ClipDataConfig(DataConfig):
    """DataConfig plus clip sampling and clip augmentation (``data.<field>`` keys)."""

    # Video models read face crops only; decoding audio would be wasted.
    modalities: tuple[str, ...] = ("video",)
    # RGB 112 px face crops, the notes' input.
    face_size: int = 112
    grayscale: bool = False
    # Frames per clip handed to the model (T).
    clip_frames: int = 16
    # Clips drawn from each training video per epoch, from different parts of it.
    clips_per_video_train: int = 1
    # Evenly spaced clips per val/test video whose predictions are averaged.
    eval_clips: int = 1
    # Clip-consistent augmentation of the train split (see trainers.data.video_augment).
    aug_affine_p: float = 0.0
    aug_degrees: float = 10.0
    aug_translate: float = 0.1
    aug_scale_low: float = 0.9
    aug_scale_high: float = 1.1
    aug_flip_p: float = 0.0
    aug_jitter_p: float = 0.0
    aug_brightness: float = 0.4
    aug_contrast: float = 0.4
    aug_saturation: float = 0.4
    aug_hue: float = 0.05
    aug_erase_p: float = 0.0
    aug_erase_scale_low: float = 0.02
    aug_erase_scale_high: float = 0.15
    aug_reverse_p: float = 0.0
    aug_drop_p: float = 0.0
    aug_drop_rate: float = 0.1

    def augment_settings(self) -> ClipAugmentSettings:
        return ClipAugmentSettings(
            **{f.name: getattr(self, f"aug_{f.name}") for f in fields(ClipAugmentSettings)}
        )

    def validate(self) -> None:
        super().validate()
        if tuple(self.modalities) != ("video",):
            raise ValueError(
                f"data.modalities={self.modalities!r}: the video models read face crops only; "
                "set data.modalities=video"
            )
        for name in ("clip_frames", "clips_per_video_train", "eval_clips"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name}={getattr(self, name)}: must be >= 1")
        if self.clip_frames > self.max_frames:
            raise ValueError(
                f"data.clip_frames={self.clip_frames}: exceeds data.max_frames="
                f"{self.max_frames}, so every clip would be mostly padding; raise max_frames "
                "or lower clip_frames"
            )
        self.augment_settings().validate(prefix="data.aug_")


def _pad_clip(frames: np.ndarray, length: int) -> np.ndarray:
    """``frames`` followed by zero frames up to ``length`` (a new array)."""
    out = np.zeros((length, *frames.shape[1:]), dtype=frames.dtype)
    out[: len(frames)] = frames
    return out


def _item(
    base_item: dict[str, Any], frames: np.ndarray, length: int, **extra: int
) -> dict[str, Any]:
    return {
        "index": int(base_item["index"]),
        "label": int(base_item["label"]),
        "video": _pad_clip(frames, length),
        "frames": len(frames),
        **extra,
    }


def _video_of(item: dict[str, Any]) -> np.ndarray:
    if "video" not in item:
        raise KeyError("the base data set has no 'video': set data.modalities=video")
    return np.asarray(item["video"])


class ClipTrainSet:
    """``k`` random clips per video per epoch (see the module docstring)."""

    def __init__(
        self,
        base: Any,
        labels: np.ndarray,
        clip_frames: int,
        clips_per_video: int,
        augment: ClipAugmentSettings,
        seed: int,
    ) -> None:
        self.base = base
        self.clip_frames = int(clip_frames)
        self.k = int(clips_per_video)
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        self.item_labels = np.repeat(np.asarray(labels, dtype=np.int64), self.k)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base) * self.k

    def window(self, index: int, n_frames: int) -> tuple[int, int]:
        """(start, real frames) of row ``index``'s clip in a video of ``n_frames`` frames."""
        if n_frames <= self.clip_frames:
            return 0, n_frames
        starts = n_frames - self.clip_frames + 1  # possible start positions
        part = index % self.k
        lo = part * starts // self.k
        hi = max(lo + 1, (part + 1) * starts // self.k)  # exclusive
        rng = item_rng(self.seed, self.epoch, index, STREAM_WINDOW)
        return int(rng.integers(lo, hi)), self.clip_frames

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        item = self.base[index // self.k]
        video = _video_of(item)
        start, n = self.window(index, len(video))
        clip = video[start : start + n]
        if self.augment.active:
            clip = augment_clip(clip, self.augment, self.seed, self.epoch, index)
        return _item(item, clip, self.clip_frames, clip=index % self.k, start=start)


class ClipEvalSet:
    """``E`` evenly spaced clips per video, each row naming its video as ``"sample"``."""

    def __init__(self, base: Any, clip_frames: int, clips_per_video: int) -> None:
        self.base = base
        self.clip_frames = int(clip_frames)
        self.k = int(clips_per_video)

    def __len__(self) -> int:
        return len(self.base) * self.k

    def window(self, index: int, n_frames: int) -> tuple[int, int]:
        if n_frames <= self.clip_frames:
            return 0, n_frames
        span = n_frames - self.clip_frames
        part = index % self.k
        start = span // 2 if self.k == 1 else round(part * span / (self.k - 1))
        return start, self.clip_frames

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        video_row = index // self.k
        item = self.base[video_row]
        video = _video_of(item)
        start, n = self.window(index, len(video))
        clip = video[start : start + n]
        return _item(
            item, clip, self.clip_frames, sample=video_row, clip=index % self.k, start=start
        )


def collate_clips(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """``collate_av``'s batch with ``"video_mask"`` from each clip's real length."""
    import torch

    from trainers.data.av_dataset import collate_av

    batch = collate_av(items)
    lengths = torch.tensor([int(item["frames"]) for item in items], dtype=torch.long)
    steps = batch["video"].shape[1]
    batch["video_mask"] = torch.arange(steps).unsqueeze(0) < lengths.unsqueeze(1)
    return batch


class ClipDataModule:
    """A data module whose splits are clips of ``base``'s videos.

    ``samples`` and ``labels`` are ``base``'s (one per video): eval rows carry
    ``"sample"``, so the engine's per-video averages line up with them, and
    class weights count videos, not clips.
    """

    collate = staticmethod(collate_clips)

    def __init__(self, base: Any, cfg: ClipDataConfig, seed: int) -> None:
        if not isinstance(cfg, ClipDataConfig):
            raise TypeError(
                f"ClipDataModule needs a ClipDataConfig (clip_frames, eval_clips...), got "
                f"{type(cfg).__name__}"
            )
        self.base = base
        self.cfg = cfg
        self.seed = int(seed)
        self._train: ClipTrainSet | None = None

    @property
    def classes(self) -> Sequence[str]:
        return self.base.classes

    def setup(self, report_bad: BadInputReporter, progress: ProgressReporter | None = None) -> None:
        self.cfg.validate()
        self.base.setup(report_bad, progress)
        self._train = None

    def dataset(self, split: str) -> ClipTrainSet | ClipEvalSet:
        cfg = self.cfg
        if split == "train":
            # One object per setup: the engine calls set_epoch on the one it got.
            if self._train is None:
                self._train = ClipTrainSet(
                    self.base.dataset("train"),
                    self.base.labels("train"),
                    cfg.clip_frames,
                    cfg.clips_per_video_train,
                    cfg.augment_settings(),
                    self.seed,
                )
            return self._train
        return ClipEvalSet(self.base.dataset(split), cfg.clip_frames, cfg.eval_clips)

    def samples(self, split: str) -> list[SampleInfo]:
        return list(self.base.samples(split))

    def labels(self, split: str) -> np.ndarray:
        return np.asarray(self.base.labels(split))

    def describe(self) -> dict[str, Any]:
        cfg = self.cfg
        out = dict(self.base.describe())
        out["clips"] = {
            "frames": cfg.clip_frames,
            "seconds": round(cfg.clip_frames / cfg.fps, 3),
            "train_per_video": cfg.clips_per_video_train,
            "eval_per_video": cfg.eval_clips,
            "augment": {
                k: v for k, v in vars(cfg.augment_settings()).items() if k.endswith("_p") and v
            },
        }
        return out

    def inference_state(self) -> dict[str, Any]:
        """The base's face-crop settings, plus how evaluation cuts clips from a video."""
        state = self.base.inference_state()
        state["preprocessing"]["kind"] = "video-clips"
        state["preprocessing"]["clips"] = {
            "frames": self.cfg.clip_frames,
            "eval_clips": self.cfg.eval_clips,
            "placement": "evenly spaced, first at the start and last at the end; one: middle",
            "average": "probabilities",
        }
        return state

    def __getattr__(self, name: str) -> Any:
        # audio_norm, memory_bytes... are the base's. Guard "base" itself so a half-built
        # (unpickled) instance fails cleanly instead of recursing.
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)


def clip_data_module(cfg: Any) -> ClipDataModule:
    """The registry's ``data=`` for the video models: RAVDESS layout, clips on top."""
    from trainers.data.av_dataset import RavdessDataModule

    return ClipDataModule(
        RavdessDataModule(cfg.data, seed=cfg.train.seed), cfg.data, cfg.train.seed
    )
