"""The branched family (design note 001): five registry entries, one model, switches.

The note reports each improvement on its own against the baseline ("Branched
Regularization only", "Synchronized Augmentation only", "Branched Optimizer
only") and then the combination with a TCN video branch, so the entries are
one-switch ablations plus the combined model:

==========================  =======  =====  =======  ========  ======
entry                       video    l2     l2 conv  sync aug  lr
==========================  =======  =====  =======  ========  ======
branched-baseline           bilstm   0      no       no        5e-4
branched-regularization     bilstm   0.001  no       no        5e-4
branched-sync-aug           bilstm   0      no       yes       5e-4
branched-optimizer          bilstm   0      no       no        1e-3
branched-tcn                tcn      0.001  yes      yes       1e-3
==========================  =======  =====  =======  ========  ======

Every entry trains with Adam and ReduceLROnPlateau: the note calls the latter
"the existing learning rate scheduler", i.e. the baseline already had it.

Architecture (the note's diagram; widths it does not give are ours, marked in
:class:`BranchedParams`):

* Audio: mask -> Conv1D -> BN -> MaxPool -> Conv1D -> BN -> MaxPool -> BiLSTM
  -> Dropout -> BiLSTM (final states) -> Dense(128) -> Dropout.
* Video: per-frame input -> TCN (dilations 1, 2, 4, 8; causal, residual) or
  BiLSTM -> global average pooling over real frames -> Dense(256) -> Dropout.
  The per-frame input is :class:`FrameEncoder` on the real face crops
  (``video_input="frames"``), or precomputed embeddings read from
  ``<embeddings_dir>/<recording key>.npy``, each ``(T, D)`` float, D =
  ``embedding_dim`` (``video_input="embeddings"``; see
  :class:`EmbeddingVideoDataModule`).
* Fusion: concatenate -> Dense(256) -> BN -> Dropout -> Dense(128) -> BN ->
  Dropout -> Dense(classes). Dense layers apply ReLU before BN, as the note's
  Keras layers (``activation='relu'``) do.

Padding never changes an output: convolutions see zeros past each item's end,
max-pooling sees -inf there, LSTMs run on packed sequences, pooling averages
real frames only, the frame encoder runs on real frames only, and every
sequence BatchNorm takes its training statistics from real frames
(:class:`MaskedBatchNorm1d`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from trainers.config import ExperimentConfig, TrainConfig
from trainers.data.augment import SyncAugmentDataModule, SyncAugmentSettings
from trainers.data.base import BadInputReporter, ProgressReporter, SampleInfo
from trainers.data.config import DataConfig, DataError
from trainers.models.blocks import (
    TCN,
    FrameEncoder,
    MaskedBatchNorm1d,
    downsample_mask,
    encode_frames,
    exporting,
    masked_mean,
    max_pool_ceil,
)
from trainers.registry import register_model

SEED_NOTE = "001_e12522b59f9f4028.txt"


@dataclass
class BranchedParams:
    """One model, five recipes: the switches come first, the sizes after."""

    # Video temporal model: the family's BiLSTM, or the note's residual causal TCN.
    video_branch: Literal["bilstm", "tcn"] = "bilstm"
    # Keras-style L2 on every dense kernel: l2 * sum(W**2) added to the loss (0 = off).
    l2: float = 0.0
    # Also put the l2 penalty on the TCN's conv kernels (the note's TCN blocks have it).
    l2_conv: bool = False
    # Synchronized audio-video augmentation of the train split (trainers.data.augment).
    sync_aug: bool = False
    aug_factor: float = 2.0  # the train split is seen this many times per epoch
    aug_probability: float = 0.8  # chance that a copy beyond the first is augmented
    warp_low: float = 0.8  # time-warp factor range, one factor for both modalities (ours)
    warp_high: float = 1.2
    noise_level: float = 0.05  # per-item noise level drawn from U(0, noise_level) (ours)
    # Per-frame video input: FrameEncoder on the face crops, or precomputed .npy embeddings.
    video_input: Literal["frames", "embeddings"] = "frames"
    embeddings_dir: str = ""  # holds <recording key>.npy, each (T, embedding_dim)
    embedding_dim: int = 128
    # Sizes the note does not give are ours; Dense(128) audio and Dense(256) video/fusion are.
    frame_width: int = 16  # FrameEncoder base width
    frame_dim: int = 128  # FrameEncoder output per frame
    audio_conv_channels: tuple[int, ...] = (64, 128)  # one Conv1D-BN-MaxPool stage each
    audio_kernel: int = 3
    audio_lstm: int = 128  # hidden units per direction, both audio BiLSTMs
    audio_dense: int = 128
    video_lstm: int = 128  # hidden units per direction (video_branch="bilstm")
    tcn_channels: int = 128
    tcn_kernel: int = 3
    tcn_dilations: tuple[int, ...] = (1, 2, 4, 8)
    tcn_dropout: float = 0.2
    video_dense: int = 256
    fusion_dims: tuple[int, ...] = (256, 128)
    dropout: float = 0.3  # every Dropout outside the TCN (the note gives no rate)

    def augment_settings(self) -> SyncAugmentSettings:
        return SyncAugmentSettings(
            factor=self.aug_factor,
            probability=self.aug_probability,
            warp_low=self.warp_low,
            warp_high=self.warp_high,
            noise_level=self.noise_level,
        )

    def validate(self) -> None:
        if self.video_input == "embeddings" and not self.embeddings_dir:
            raise ValueError(
                "embeddings_dir: video_input='embeddings' needs the directory of <key>.npy files"
            )
        if self.l2 < 0:
            raise ValueError(f"l2: must be >= 0, got {self.l2}")
        if not self.audio_conv_channels or min(self.audio_conv_channels) < 1:
            raise ValueError(
                f"audio_conv_channels: must be positive, got {self.audio_conv_channels}"
            )
        if not self.tcn_dilations or min(self.tcn_dilations) < 1:
            raise ValueError(f"tcn_dilations: must be positive, got {self.tcn_dilations}")
        if min(self.fusion_dims, default=1) < 1:
            raise ValueError(f"fusion_dims: must be positive, got {self.fusion_dims}")
        for name in ("dropout", "tcn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: must be in [0, 1), got {getattr(self, name)}")
        self.augment_settings().validate()


def _train_defaults(lr: float) -> TrainConfig:
    return TrainConfig(
        # Batch 24, 50 epochs, patience 10: the family's "same training parameters" that
        # hybrid-attention (note 002) inherited; note 001 itself gives no numbers.
        epochs=50,
        batch_size=24,
        lr=lr,
        optimizer="adam",
        scheduler="plateau",
        # The note's Keras model names no loss or class weights: plain cross-entropy.
        loss="ce",
        class_weights="none",
        patience=10,
        monitor="accuracy",  # the note reports validation accuracy
    )


def _data_defaults() -> DataConfig:
    # 48x48 grayscale crops keep the per-frame encoder cheap (and share hybrid-attention's
    # feature cache).
    return DataConfig(face_size=48, grayscale=True)


@dataclass
class BranchedConfig(ExperimentConfig):
    """branched-baseline: BiLSTM video branch, no L2, no augmentation, lr 5e-4."""

    model: BranchedParams = field(default_factory=BranchedParams)
    train: TrainConfig = field(default_factory=lambda: _train_defaults(5e-4))
    data: DataConfig = field(default_factory=_data_defaults)


@dataclass
class BranchedRegularizationConfig(BranchedConfig):
    model: BranchedParams = field(default_factory=lambda: BranchedParams(l2=0.001))


@dataclass
class BranchedSyncAugConfig(BranchedConfig):
    model: BranchedParams = field(default_factory=lambda: BranchedParams(sync_aug=True))


@dataclass
class BranchedOptimizerConfig(BranchedConfig):
    train: TrainConfig = field(default_factory=lambda: _train_defaults(1e-3))


@dataclass
class BranchedTCNConfig(BranchedConfig):
    model: BranchedParams = field(
        default_factory=lambda: BranchedParams(
            video_branch="tcn", l2=0.001, l2_conv=True, sync_aug=True
        )
    )
    train: TrainConfig = field(default_factory=lambda: _train_defaults(1e-3))


# ------------------------------------------------------------------------------ the model


def _lengths(mask: torch.Tensor) -> torch.Tensor:
    # pack_padded_sequence wants CPU int64 lengths >= 1; an empty item runs on one zero frame.
    return mask.sum(1).clamp_min(1).cpu()


def bilstm_unpacked(
    lstm: nn.LSTM, x: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A one-layer bidirectional ``lstm`` over the real steps of ``x`` (B, T, D), without
    packing: ``(B, T, 2H)`` outputs (zero past each item's end, as pad_packed_sequence
    leaves them) and ``(B, 2H)`` final states (forward at the last real step, backward
    at step 0), what the packed path gives.

    pack_padded_sequence has data-dependent shapes, which torch.export (ONNX) cannot
    trace; this is the export path (see blocks.exporting). The backward direction reads
    each item reversed within its own length, so padding never enters it.
    """
    lengths = mask.sum(1).clamp_min(1)  # as _lengths: an empty item runs on one step
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    real = steps < lengths.unsqueeze(1)
    reverse = torch.where(real, lengths.unsqueeze(1) - 1 - steps, steps)  # its own inverse
    fwd = _one_direction(lstm, x, "")
    bwd = _one_direction(lstm, x.gather(1, _expand(reverse, x)), "_reverse")
    bwd = bwd.gather(1, _expand(reverse, bwd))
    out = torch.cat([fwd, bwd], dim=-1) * real.unsqueeze(-1).to(x.dtype)
    last = fwd.gather(1, _expand((lengths - 1).unsqueeze(1), fwd)).squeeze(1)
    return out, torch.cat([last, bwd[:, 0]], dim=-1)


def _expand(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return index.unsqueeze(-1).expand(-1, -1, like.shape[-1])


def _one_direction(lstm: nn.LSTM, x: torch.Tensor, suffix: str) -> torch.Tensor:
    weights = [
        getattr(lstm, f"{name}_l0{suffix}")
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]
    h0 = x.new_zeros(1, x.shape[0], lstm.hidden_size)
    # torch.lstm is the op nn.LSTM calls; here on one direction's weights.
    return torch.lstm(x, (h0, h0), weights, True, 1, 0.0, False, False, True)[0]


class AudioBranch(nn.Module):
    """The note's audio branch; ``forward`` returns one ``dense``-wide vector per item."""

    def __init__(
        self,
        in_dim: int,
        channels: Sequence[int],
        kernel: int,
        lstm: int,
        dense: int,
        dropout: float,
    ) -> None:
        super().__init__()
        widths = [in_dim, *channels]
        self.convs = nn.ModuleList(
            nn.Conv1d(widths[i], widths[i + 1], kernel, padding=kernel // 2)
            for i in range(len(channels))
        )
        self.norms = nn.ModuleList(MaskedBatchNorm1d(c) for c in channels)
        self.lstm1 = nn.LSTM(channels[-1], lstm, batch_first=True, bidirectional=True)
        self.lstm2 = nn.LSTM(2 * lstm, lstm, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)
        self.dense = nn.Linear(2 * lstm, dense)

    def sequence(
        self, audio: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The conv stages: ``(B, T, F)`` -> ``(B, ceil(T/4), C)`` and the pooled mask."""
        x = audio.transpose(1, 2)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            # Zeros past the end: a "same" conv then sees what it sees on an unpadded item.
            x = x * mask.unsqueeze(1).to(x.dtype)
            x = norm(F.relu(conv(x)), mask)
            # -inf past the end: a pooling window that straddles it keeps the real value.
            x = x.masked_fill(~mask.unsqueeze(1), float("-inf"))
            x = max_pool_ceil(x, 2)
            mask = downsample_mask(mask, 2, x.shape[-1])
            x = x.masked_fill(~mask.unsqueeze(1), 0.0)
        return x.transpose(1, 2), mask

    def forward(self, audio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, mask = self.sequence(audio, mask)
        if exporting():
            h, _ = bilstm_unpacked(self.lstm1, x, mask)
            _, x = bilstm_unpacked(self.lstm2, self.drop(h), mask)
            return self.drop(F.relu(self.dense(x)))
        lengths = _lengths(mask)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm1(packed)[0], batch_first=True)
        h = self.drop(h)
        packed = pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
        _, (last, _) = self.lstm2(packed)  # final states: forward at the real end, backward at 0
        x = torch.cat([last[-2], last[-1]], dim=-1)
        return self.drop(F.relu(self.dense(x)))


class VideoBranch(nn.Module):
    """Per-frame vectors -> TCN or BiLSTM -> masked average -> ``dense``-wide vector."""

    def __init__(self, p: BranchedParams, in_dim: int) -> None:
        super().__init__()
        self.kind = p.video_branch
        self.tcn: TCN | None = None
        self.lstm: nn.LSTM | None = None
        if p.video_branch == "tcn":
            self.tcn = TCN(
                in_dim,
                p.tcn_channels,
                p.tcn_dilations,
                p.tcn_kernel,
                p.tcn_dropout,
                causal=True,
                masked_norm=True,
            )
            width = p.tcn_channels
        else:
            self.lstm = nn.LSTM(in_dim, p.video_lstm, batch_first=True, bidirectional=True)
            width = 2 * p.video_lstm
        self.dense = nn.Linear(width, p.video_dense)
        self.drop = nn.Dropout(p.dropout)

    def sequence(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, T, W)``; with the TCN, step t depends on steps <= t only."""
        if self.tcn is not None:
            return self.tcn(x.transpose(1, 2), mask).transpose(1, 2)
        assert self.lstm is not None
        if exporting():
            return bilstm_unpacked(self.lstm, x, mask)[0]
        packed = pack_padded_sequence(x, _lengths(mask), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(
            self.lstm(packed)[0], batch_first=True, total_length=x.shape[1]
        )
        return out

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = masked_mean(self.sequence(x, mask), mask)
        return self.drop(F.relu(self.dense(pooled)))


class BranchedModel(nn.Module):
    """Audio branch + video branch, concatenated, through the note's fusion MLP."""

    def __init__(
        self, p: BranchedParams, audio_dim: int, video_channels: int, num_classes: int
    ) -> None:
        super().__init__()
        self.params = p
        self.audio = AudioBranch(
            audio_dim, p.audio_conv_channels, p.audio_kernel, p.audio_lstm, p.audio_dense, p.dropout
        )
        self.frames: FrameEncoder | None = None
        if p.video_input == "frames":
            self.frames = FrameEncoder(video_channels, p.frame_width, p.frame_dim)
            frame_dim = p.frame_dim
        else:
            frame_dim = p.embedding_dim
        self.video = VideoBranch(p, frame_dim)
        layers: list[nn.Module] = []
        width = p.audio_dense + p.video_dense
        for out in p.fusion_dims:
            layers += [nn.Linear(width, out), nn.ReLU(), nn.BatchNorm1d(out), nn.Dropout(p.dropout)]
            width = out
        self.fusion = nn.Sequential(*layers)
        self.out = nn.Linear(width, num_classes)

    def per_frame(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` per-frame vectors, zero at padded frames.

        Crops go through the encoder only where the mask is set: padded frames cost
        nothing and never enter the encoder's BatchNorm statistics.
        """
        if self.frames is None:
            if video.dim() != 3:
                raise ValueError(
                    f"video_input='embeddings' expects video (B, T, D), got {tuple(video.shape)}"
                )
            return video * mask.unsqueeze(-1).to(video.dtype)
        return encode_frames(self.frames, video, mask)

    def encode_video(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.video(self.per_frame(video, mask), mask)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fusion MLP's ``(B, fusion_dims[-1])`` output, before the classifier."""
        audio = self.audio(batch["audio"], batch["audio_mask"])
        video = self.encode_video(batch["video"], batch["video_mask"])
        return self.fusion(torch.cat([audio, video], dim=-1))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.out(self.forward_features(batch))

    def regularized_weights(self) -> list[nn.Parameter]:
        """The kernels the note puts ``kernel_regularizer=l2(...)`` on.

        Dense: the audio and video branch Dense layers, every fusion Dense and the
        output layer. With ``l2_conv`` also every TCN convolution, the residual 1x1
        ones included. Biases never (Keras regularizes kernels only); nor the audio
        Conv1D, LSTMs or frame encoder, which the note leaves unregularized.
        """
        weights = [self.audio.dense.weight, self.video.dense.weight]
        weights += [m.weight for m in self.fusion if isinstance(m, nn.Linear)]
        weights.append(self.out.weight)
        if self.params.l2_conv and self.video.tcn is not None:
            for block in self.video.tcn.blocks:
                weights += [block.conv1.weight, block.conv2.weight]
                if isinstance(block.residual, nn.Conv1d):
                    weights.append(block.residual.weight)
        return weights

    def regularization_loss(self) -> torch.Tensor:
        """Keras-style L2: ``l2 * sum(W**2)`` over :meth:`regularized_weights`.

        Added to the loss by the engine, not applied as weight decay: Adam rescales a
        decay term per parameter, so the two are not the same recipe, and Keras's
        ``l2(x)`` is ``x * sum(W**2)`` (no factor 1/2), giving gradients ``2 * x * W``.
        """
        l2 = self.params.l2
        if l2 == 0.0:
            return self.out.weight.new_zeros(())
        return l2 * sum(w.pow(2).sum() for w in self.regularized_weights())


# ------------------------------------------------------------------------------- the data


class EmbeddingVideoDataset:
    """``base``'s items with ``"video"`` replaced by the row's precomputed ``(T, D)`` array."""

    def __init__(self, base: Any, video: list[np.ndarray]) -> None:
        if len(base) != len(video):
            raise ValueError(f"{len(base)} items but {len(video)} embedding arrays")
        self.base = base
        self.video = video

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.base[index])
        item["video"] = self.video[index]
        return item


class EmbeddingVideoDataModule:
    """Wraps a data module so the video input is ``<directory>/<recording key>.npy``.

    Why a wrapper: the base module stays the only place that parses layouts and
    splits; this one only needs each row's recording key, which
    ``base.samples(split)[row].key`` gives. Each file holds a float array of
    shape ``(T, dim)``, one row per video frame in time order (any frame rate:
    the model only needs the order). Arrays are loaded once at setup, checked,
    stored as read-only float32, and a missing or misshapen file stops setup
    with every offending path named. The base should not decode video at all
    (:func:`branched_data` drops "video" from its modalities).
    """

    def __init__(self, base: Any, directory: Path, dim: int) -> None:
        self.base = base
        self.directory = Path(directory)
        self.dim = dim
        self.collate = base.collate  # a function reference, see SyncAugmentDataModule
        self._video: dict[str, list[np.ndarray]] = {}

    @property
    def classes(self) -> Sequence[str]:
        return self.base.classes

    def setup(self, report_bad: BadInputReporter, progress: ProgressReporter | None = None) -> None:
        self.base.setup(report_bad, progress)
        if not self.directory.is_dir():
            raise DataError(f"model.embeddings_dir {str(self.directory)!r} is not a directory")
        problems: list[str] = []
        self._video = {}
        for split in ("train", "val", "test"):
            arrays = []
            for info in self.base.samples(split):
                path = self.directory / f"{info.key}.npy"
                try:
                    array = np.load(path, allow_pickle=False)
                except (OSError, ValueError) as exc:
                    problems.append(f"{path}: {exc.__class__.__name__}: {exc}")
                    continue
                if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != self.dim:
                    problems.append(f"{path}: shape {array.shape}, expected (T>=1, {self.dim})")
                    continue
                array = np.ascontiguousarray(array, dtype=np.float32)
                array.flags.writeable = False
                arrays.append(array)
            self._video[split] = arrays
        if problems:
            shown = "\n  ".join(problems[:10])
            more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise DataError(
                f"{len(problems)} embedding file(s) under {str(self.directory)!r} are missing or "
                f"unusable (model.video_input='embeddings', embedding_dim={self.dim}):\n  "
                f"{shown}{more}"
            )

    def dataset(self, split: str) -> EmbeddingVideoDataset:
        if split not in self._video:
            raise RuntimeError("EmbeddingVideoDataModule.setup() has not been called")
        return EmbeddingVideoDataset(self.base.dataset(split), self._video[split])

    def samples(self, split: str) -> list[SampleInfo]:
        return list(self.base.samples(split))

    def labels(self, split: str) -> np.ndarray:
        return np.asarray(self.base.labels(split))

    def describe(self) -> dict[str, Any]:
        out = dict(self.base.describe())
        out["modalities"] = [*out.get("modalities", []), "video"]
        out["video"] = {"source": "embeddings", "dir": str(self.directory), "dim": self.dim}
        return out

    def inference_state(self) -> dict[str, Any]:
        """The base's audio settings; video comes from precomputed embeddings, which a
        media file alone cannot give (predict needs the embeddings' own extractor)."""
        state = self.base.inference_state()
        pre = state["preprocessing"]
        pre["modalities"] = [*pre["modalities"], "video"]
        pre["video"] = {"source": "embeddings", "dim": self.dim}
        return state

    def __getattr__(self, name: str) -> Any:
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)


def branched_data(cfg: BranchedConfig) -> Any:
    """RAVDESS, with embeddings for video and synchronized augmentation when switched on."""
    from trainers.data.av_dataset import RavdessDataModule

    p = cfg.model
    if set(cfg.data.modalities) != {"audio", "video"}:
        raise DataError(
            f"data.modalities={cfg.data.modalities!r}: the branched models need audio and video"
        )
    data_cfg = cfg.data
    if p.video_input == "embeddings":
        # The face crops would be decoded only to be thrown away.
        data_cfg = dataclasses.replace(cfg.data, modalities=("audio",))
    module: Any = RavdessDataModule(data_cfg, seed=cfg.train.seed)
    if p.video_input == "embeddings":
        module = EmbeddingVideoDataModule(module, Path(p.embeddings_dir), p.embedding_dim)
    if p.sync_aug:
        module = SyncAugmentDataModule(module, p.augment_settings(), seed=cfg.train.seed)
    return module


def build_branched(cfg: BranchedConfig, num_classes: int) -> BranchedModel:
    return BranchedModel(cfg.model, cfg.data.audio_dim, cfg.data.video_channels, num_classes)


_ENTRIES: tuple[tuple[str, type, str], ...] = (
    (
        "branched-baseline",
        BranchedConfig,
        "Conv1D+BiLSTM audio, BiLSTM video, dense fusion (note 001's baseline)",
    ),
    (
        "branched-regularization",
        BranchedRegularizationConfig,
        "branched baseline + Keras-style L2 0.001 on every dense kernel",
    ),
    (
        "branched-sync-aug",
        BranchedSyncAugConfig,
        "branched baseline + synchronized audio-video augmentation (x2, p 0.8)",
    ),
    (
        "branched-optimizer",
        BranchedOptimizerConfig,
        "branched baseline + lr 1e-3 with ReduceLROnPlateau",
    ),
    (
        "branched-tcn",
        BranchedTCNConfig,
        "all four of note 001: L2, synchronized augmentation, lr 1e-3, causal TCN video",
    ),
)

for _name, _config, _description in _ENTRIES:
    register_model(
        _name,
        config=_config,
        data=branched_data,
        description=_description,
        seed_note=SEED_NOTE,
    )(build_branched)
