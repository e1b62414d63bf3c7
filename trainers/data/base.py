"""The contract between a data module and the engine.

The engine never knows which data set it trains on: it asks the model entry
for a data module, calls :meth:`DataModule.setup` once (which indexes, decodes
and caches), then iterates the split data sets with the module's collate.

A batch is a plain ``dict[str, Tensor]``. Every batch carries ``"label"``
(LongTensor, shape ``(B,)``) and ``"index"`` (LongTensor, the sample's row in
its split, so predictions can be traced back to files). The remaining keys are
the model's inputs; for audio-visual data sets they are:

``"audio"``        float32 ``(B, Ta, F)`` per-frame audio features
``"audio_mask"``   bool ``(B, Ta)``, True where a frame is real, not padding
``"video"``        float32 ``(B, Tv, C, S, S)`` face crops scaled to 0..1
``"video_mask"``   bool ``(B, Tv)``

Batches are padded to the longest item in the batch (dynamic padding), never
to a global maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# Called once per input file that cannot be used: (path, reason).
BadInputReporter = Callable[[str, str], None]
# Called while preparing: (done, total, what is being done).
ProgressReporter = Callable[[int, int, str], None]

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SampleInfo:
    """Where one sample came from, for predictions and per-actor analysis."""

    key: str  # stable id of the recording, e.g. "01-01-03-02-01-01-07"
    label: int
    actor: str
    sources: tuple[str, ...]  # the files actually decoded for it


class DataModule(Protocol):
    classes: Sequence[str]

    def setup(
        self,
        report_bad: BadInputReporter,
        progress: ProgressReporter | None = None,
    ) -> None:
        """Index, decode (or load from cache) and split. Called once per run."""

    def dataset(self, split: str) -> Any:
        """A map-style torch Dataset for ``split`` (one of :data:`SPLITS`)."""

    def samples(self, split: str) -> Sequence[SampleInfo]:
        """Per-row provenance for ``split``, aligned with ``dataset(split)``."""

    def labels(self, split: str) -> Any:
        """Integer labels of ``split`` as a numpy array (class weights, floors)."""

    def collate(self, items: list[Any]) -> dict[str, Any]:
        """Turn dataset items into one padded batch (see module docstring)."""

    def describe(self) -> dict[str, Any]:
        """Counts per split and class, actors per split, bad and no-face counts."""

    def inference_state(self) -> dict[str, Any]:
        """What turning a media file into the model's input needs, saved in every
        checkpoint (called after setup). JSON-serialisable::

            {"format": INFERENCE_FORMAT,
             "preprocessing": {"kind": ..., ...},  # the decode settings and eval views
             "fitted": {...}}                       # statistics learned from the train split

        ``kind`` names the input pipeline (``audio-visual``, ``video-clips``,
        ``image``). The settings duplicate part of the run's ``config["data"]`` on
        purpose: an exported model carries them without the whole training config.
        Optional: the engine stores None for a module without it."""


# Version of the dict DataModule.inference_state returns; readers refuse newer ones.
INFERENCE_FORMAT = 1
