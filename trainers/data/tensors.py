"""An in-memory data module of random tensors shaped like audio-visual batches.

For the engine benchmark and engine tests: it isolates the loop's own cost
from decoding, and its labels are planted in the inputs (a class-dependent
offset) so a model can actually learn it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainers.data.av_dataset import collate_av
from trainers.data.base import SampleInfo


class TensorDataModule:
    def __init__(
        self,
        n: int = 240,
        num_classes: int = 8,
        audio_len: int = 200,
        audio_dim: int = 40,
        frames: int = 24,
        face_size: int = 48,
        seed: int = 0,
    ) -> None:
        self.classes = [f"class{i}" for i in range(num_classes)]
        rng = np.random.default_rng(seed)
        self._splits: dict[str, list[dict[str, Any]]] = {}
        for split, count in (("train", n), ("val", n // 4), ("test", n // 4)):
            items = []
            for i in range(count):
                label = i % num_classes
                ta = int(audio_len * rng.uniform(0.7, 1.0))
                tv = int(frames * rng.uniform(0.7, 1.0))
                audio = rng.normal(size=(ta, audio_dim)).astype(np.float32)
                audio[:, label] += 1.5
                video = rng.random((tv, 1, face_size, face_size), dtype=np.float32) * 0.5
                video[:, :, : face_size * (label + 1) // num_classes] += 0.3
                items.append({"audio": audio, "video": video, "label": label, "index": i})
            self._splits[split] = items

    def setup(self, report_bad: Any, progress: Any = None) -> None:
        if progress is not None:
            progress(1, 1, "in memory")

    def dataset(self, split: str) -> list[dict[str, Any]]:
        return self._splits[split]

    def samples(self, split: str) -> list[SampleInfo]:
        return [
            SampleInfo(key=f"{split}-{it['index']}", label=it["label"], actor="0", sources=())
            for it in self._splits[split]
        ]

    def labels(self, split: str) -> np.ndarray:
        return np.array([it["label"] for it in self._splits[split]], dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        return {split: len(items) for split, items in self._splits.items()}

    @staticmethod
    def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return collate_av(items)
