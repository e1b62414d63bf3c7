"""``hybrid-attention`` (design note 002): Conv1D audio, TCN + self-attention
video, bidirectional cross-modal attention fusion, focal loss.

Recipe defaults from the note: batch 24, up to 50 epochs, lr 5e-4, early
stopping patience 10, focal loss gamma 2 with inverse-frequency class weights,
dynamic padding with masks. The note keeps "the same training parameters" as
the branched family it came from, whose scheduler is ReduceLROnPlateau: that is
the default here too.

Audio: per-frame features (MFCC by default) -> two multi-scale blocks (kernels
3 and 5 in parallel, BN, ReLU, max-pool 2) -> linear to ``d_model``.
Video: face crops -> :class:`FrameEncoder` per frame -> TCN (dilations 1, 2, 4,
8) -> self-attention. Fusion: audio attends to video and video to audio; each
stream is mean-pooled over its real frames and a learned gate weighs the two
modalities (the note's "modality-specific importance weighting") before the
classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from trainers.config import ExperimentConfig, TrainConfig
from trainers.data.config import DataConfig
from trainers.models.blocks import (
    TCN,
    AttentionBlock,
    FrameEncoder,
    MultiScaleConv1d,
    encode_frames,
    masked_mean,
)
from trainers.registry import register_model


@dataclass
class HybridAttentionParams:
    audio_channels: int = 64  # per kernel in each multi-scale block
    audio_kernels: tuple[int, ...] = (3, 5)
    frame_width: int = 16  # FrameEncoder base width (x1, x2, x4 over its stages)
    frame_dim: int = 128  # per-frame embedding size
    frame_grid: int = 3  # FrameEncoder keeps a grid x grid spatial map before projecting
    tcn_channels: int = 128
    tcn_kernel: int = 3
    tcn_dilations: tuple[int, ...] = (1, 2, 4, 8)
    tcn_dropout: float = 0.2
    causal: bool = True  # TCN sees only past frames, as in note 001's blocks
    d_model: int = 128
    heads: int = 4
    attn_dropout: float = 0.1
    dropout: float = 0.3  # classifier head

    def validate(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by heads={self.heads}")
        if any(k < 1 for k in self.audio_kernels) or not self.audio_kernels:
            raise ValueError(f"audio_kernels: must be positive, got {self.audio_kernels}")
        if any(d < 1 for d in self.tcn_dilations) or not self.tcn_dilations:
            raise ValueError(f"tcn_dilations: must be positive, got {self.tcn_dilations}")


def _train_defaults() -> TrainConfig:
    return TrainConfig(
        epochs=50,
        batch_size=24,
        lr=5e-4,
        optimizer="adam",
        scheduler="plateau",
        loss="focal",
        focal_gamma=2.0,
        class_weights="inverse",
        patience=10,
        monitor="accuracy",
    )


def _data_defaults() -> DataConfig:
    # 48x48 grayscale crops (FER-2013's format) keep the per-frame encoder cheap.
    return DataConfig(face_size=48, grayscale=True)


@dataclass
class HybridAttentionConfig(ExperimentConfig):
    model: HybridAttentionParams = field(default_factory=HybridAttentionParams)
    train: TrainConfig = field(default_factory=_train_defaults)
    data: DataConfig = field(default_factory=_data_defaults)


class HybridAttentionModel(nn.Module):
    def __init__(
        self, p: HybridAttentionParams, audio_dim: int, video_channels: int, num_classes: int
    ) -> None:
        super().__init__()
        # Masked BatchNorm throughout: with dynamic padding, plain BatchNorm would mix
        # padding into its statistics and normalise differently in training and eval.
        self.audio1 = MultiScaleConv1d(audio_dim, p.audio_channels, p.audio_kernels, True)
        self.audio2 = MultiScaleConv1d(
            self.audio1.out_channels, p.audio_channels, p.audio_kernels, True
        )
        self.audio_proj = nn.Linear(self.audio2.out_channels, p.d_model)
        self.frames = FrameEncoder(video_channels, p.frame_width, p.frame_dim, p.frame_grid)
        self.tcn = TCN(
            p.frame_dim,
            p.tcn_channels,
            p.tcn_dilations,
            p.tcn_kernel,
            p.tcn_dropout,
            p.causal,
            masked_norm=True,
        )
        self.video_proj = nn.Linear(p.tcn_channels, p.d_model)
        self.video_self = AttentionBlock(p.d_model, p.heads, p.attn_dropout)
        self.audio_to_video = AttentionBlock(p.d_model, p.heads, p.attn_dropout)
        self.video_to_audio = AttentionBlock(p.d_model, p.heads, p.attn_dropout)
        self.gate = nn.Linear(2 * p.d_model, 2)
        self.head = nn.Sequential(
            nn.Linear(2 * p.d_model, p.d_model),
            nn.ReLU(inplace=True),
            nn.Dropout(p.dropout),
            nn.Linear(p.d_model, num_classes),
        )

    def encode_audio(
        self, audio: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.audio1(audio.transpose(1, 2), mask)
        x, mask = self.audio2(x, mask)
        return self.audio_proj(x.transpose(1, 2)), mask

    def encode_video(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        per_frame = encode_frames(self.frames, video, mask)  # real frames only
        x = self.tcn(per_frame.transpose(1, 2), mask).transpose(1, 2)
        x = self.video_proj(x)
        return self.video_self(x, x, mask)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The gated, fused ``(B, 2 * d_model)`` embedding the head classifies (for fusion)."""
        audio, amask = self.encode_audio(batch["audio"], batch["audio_mask"])
        vmask = batch["video_mask"]
        video = self.encode_video(batch["video"], vmask)
        audio_x = self.audio_to_video(audio, video, vmask)  # audio queries, video context
        video_x = self.video_to_audio(video, audio, amask)
        pooled_a = masked_mean(audio_x, amask)
        pooled_v = masked_mean(video_x, vmask)
        weights = torch.softmax(self.gate(torch.cat([pooled_a, pooled_v], dim=-1)), dim=-1)
        return torch.cat([pooled_a * weights[:, :1], pooled_v * weights[:, 1:]], dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.forward_features(batch))


def _data(cfg: HybridAttentionConfig):
    from trainers.data.av_dataset import RavdessDataModule

    return RavdessDataModule(cfg.data, seed=cfg.train.seed)


@register_model(
    "hybrid-attention",
    config=HybridAttentionConfig,
    data=_data,
    description="Conv1D audio + TCN/self-attention video, cross-modal attention fusion",
    seed_note="002_21c7cb58aa1dfa4c.txt",
)
def build_hybrid_attention(cfg: HybridAttentionConfig, num_classes: int) -> HybridAttentionModel:
    return HybridAttentionModel(cfg.model, cfg.data.audio_dim, cfg.data.video_channels, num_classes)
