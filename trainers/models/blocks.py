"""Building blocks shared by the zoo's sequence models.

Every block takes and keeps a boolean mask (True = real frame) so dynamic
padding never leaks into convolutions, attention or pooling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of ``x`` (B, T, D) counting only frames where ``mask`` (B, T)."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def downsample_mask(mask: torch.Tensor, factor: int, length: int) -> torch.Tensor:
    """A pooled frame is real if any frame under it was real."""
    pooled = F.max_pool1d(mask.float().unsqueeze(1), factor, factor, ceil_mode=True).squeeze(1)
    pooled = pooled[:, :length]
    if pooled.shape[1] < length:
        pooled = F.pad(pooled, (0, length - pooled.shape[1]))
    return pooled > 0


class FrameEncoder(nn.Module):
    """Per-frame face encoder: a small CNN applied to every face crop.

    Input (N, C, S, S) in 0..1, output (N, dim). Three conv stages (5x5 stride 2,
    then two 3x3 with 2x2 max-pooling), BatchNorm and ReLU, global average
    pooling and a linear projection. Sized for 48x48 crops (FER-2013's format)
    so a whole clip of frames costs little on a CPU; any crop size works.
    """

    def __init__(self, in_channels: int, width: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width * 2, 3, padding=1, bias=False),
            nn.BatchNorm2d(width * 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width * 2, width * 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(width * 4),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width * 4, dim),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)


class TCNBlock(nn.Module):
    """Residual TCN block (Bai et al. 2018, as in design note 001).

    Two dilated Conv1D + BatchNorm + ReLU + Dropout, causal by default (left
    padding only, so a frame never sees the future), and a 1x1 convolution on
    the residual path when the widths differ.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        dilation: int,
        dropout: float,
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.causal = causal
        self.conv1 = nn.Conv1d(in_ch, out_ch, kernel, dilation=dilation)
        self.bn1 = nn.BatchNorm1d(out_ch)
        self.conv2 = nn.Conv1d(out_ch, out_ch, kernel, dilation=dilation)
        self.bn2 = nn.BatchNorm1d(out_ch)
        self.drop = nn.Dropout(dropout)
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal:
            return F.pad(x, (self.pad, 0))
        return F.pad(x, (self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T); mask: (B, T). Padded frames are zeroed after each conv."""
        m = mask.unsqueeze(1).to(x.dtype)
        h = self.drop(F.relu(self.bn1(self.conv1(self._pad(x * m)))))
        h = self.drop(F.relu(self.bn2(self.conv2(self._pad(h * m)))))
        return F.relu(h + self.residual(x)) * m


class TCN(nn.Module):
    def __init__(
        self,
        in_ch: int,
        channels: int,
        dilations: tuple[int, ...],
        kernel: int,
        dropout: float,
        causal: bool = True,
    ) -> None:
        super().__init__()
        widths = [in_ch] + [channels] * len(dilations)
        self.blocks = nn.ModuleList(
            TCNBlock(widths[i], widths[i + 1], kernel, d, dropout, causal)
            for i, d in enumerate(dilations)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return x


class MultiScaleConv1d(nn.Module):
    """Parallel Conv1D branches with different kernels, concatenated, BN, ReLU,
    then max-pooled by 2: spectral patterns at several time scales."""

    def __init__(self, in_ch: int, out_per_kernel: int, kernels: tuple[int, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(in_ch, out_per_kernel, k, padding=k // 2) for k in kernels
        )
        self.bn = nn.BatchNorm1d(out_per_kernel * len(kernels))
        self.pool = nn.MaxPool1d(2, ceil_mode=True)

    @property
    def out_channels(self) -> int:
        return self.bn.num_features

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x * mask.unsqueeze(1).to(x.dtype)
        h = F.relu(self.bn(torch.cat([conv(x) for conv in self.convs], dim=1)))
        h = self.pool(h)
        return h, downsample_mask(mask, 2, h.shape[-1])


class AttentionBlock(nn.Module):
    """Multi-head attention + residual + LayerNorm + feed-forward (post-norm).

    Used for self-attention (query = context) and cross-modal attention
    (query from one modality, keys/values from the other).
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(
            nn.Linear(dim, dim * 2),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dim * 2, dim),
        )
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor
    ) -> torch.Tensor:
        attended, _ = self.attn(
            query, context, context, key_padding_mask=~context_mask, need_weights=False
        )
        x = self.norm1(query + self.drop(attended))
        return self.norm2(x + self.drop(self.ff(x)))
