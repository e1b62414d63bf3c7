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


def max_pool_ceil(x: torch.Tensor, factor: int, fill: float = float("-inf")) -> torch.Tensor:
    """``F.max_pool1d(x, factor, factor, ceil_mode=True)`` over ``(B, C, T)``: ceil(T/factor)
    steps, the last one over what is left.

    Written as the max of ``x`` shifted left by 0..factor-1 steps (``fill`` shifted in,
    which never wins: -inf, or 0 for inputs >= 0), then every factor-th step: the same
    values, but the time axis stays symbolic under torch.export, which specializes
    max_pool1d's (either mode) to the traced length; an ONNX export must take any length.
    """
    out = x
    for shift in range(1, factor):
        tail = x.new_full((*x.shape[:-1], shift), fill)
        out = torch.maximum(out, torch.cat([x[..., shift:], tail], dim=-1))
    return out[..., ::factor]


def downsample_mask(mask: torch.Tensor, factor: int, length: int) -> torch.Tensor:
    """A pooled frame is real if any frame under it was real."""
    pooled = max_pool_ceil(mask.float().unsqueeze(1), factor, fill=0.0).squeeze(1)
    pooled = pooled[:, :length]
    if pooled.shape[1] < length:
        pooled = F.pad(pooled, (0, length - pooled.shape[1]))
    return pooled > 0


def exporting() -> bool:
    """True while torch.export, the ONNX exporter or torch.jit.trace records the model."""
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def encode_frames(encoder: nn.Module, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)``: ``encoder`` on every real frame of ``video`` (B, T, ...), zeros at
    padding.

    Only real frames go through the encoder: padding would cost compute and, in
    training, enter its BatchNorm statistics. Boolean indexing has a data-dependent
    shape, which torch.export (the ONNX exporter) cannot trace and torch.jit.trace
    freezes, so while exporting every frame is encoded and the padded ones zeroed: the
    same values in eval mode, where BatchNorm uses its running statistics per frame.
    """
    if exporting():
        encoded = encoder(video.flatten(0, 1))
        encoded = encoded.view(video.shape[0], video.shape[1], encoded.shape[-1])
        return encoded * mask.unsqueeze(-1).to(encoded.dtype)
    real = encoder(video[mask])
    out = real.new_zeros(*mask.shape, real.shape[-1])
    out[mask] = real
    return out


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over ``(B, C, T)`` whose training statistics count real frames only.

    Plain BatchNorm in training mode averages over the padding too, so how long the
    batch's longest item is would shift the normalisation of every real frame. Given a
    mask, the batch mean and variance (and the running estimates) come from the real
    frames alone. In eval mode, or without a mask, it is exactly BatchNorm1d, and its
    state_dict keys are BatchNorm1d's. Outputs at padded frames are zero in training and
    unspecified in eval: callers mask them, as every block here does.
    """

    # Set by trainers.engine.sync_bn.convert (train.sync_bn): statistics over every
    # rank's real frames (torch's SyncBatchNorm would drop the mask).
    sync: bool = False

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.sync and self.training and x.dim() == 3 and _world() > 1:
            if mask is None:
                mask = torch.ones(x.shape[0], x.shape[2], dtype=torch.bool, device=x.device)
            return self._synced(x, mask)
        if mask is None or not self.training or x.dim() != 3:
            return super().forward(x)
        from trainers.engine.sync_bn import step_momentum

        momentum = step_momentum(self)
        real = x.transpose(1, 2)[mask]  # (N, C): the real frames of every item
        normed = F.batch_norm(
            real,
            self.running_mean if self.track_running_stats else None,
            self.running_var if self.track_running_stats else None,
            self.weight,
            self.bias,
            True,
            momentum,
            self.eps,
        )
        # normed's dtype, not x's: under autocast batch_norm may run in float32.
        out = normed.new_zeros(x.shape[0], x.shape[2], x.shape[1])
        out[mask] = normed
        return out.transpose(1, 2)

    def _synced(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from trainers.engine.sync_bn import normalize_global

        normed = normalize_global(self, x.transpose(1, 2)[mask])
        out = normed.new_zeros(x.shape[0], x.shape[2], x.shape[1])
        out[mask] = normed
        return out.transpose(1, 2)


def _world() -> int:
    from trainers.engine.sync_bn import world_size

    return world_size()


class FrameEncoder(nn.Module):
    """Per-frame face encoder: a small CNN applied to every face crop.

    Input (N, C, S, S) in 0..1, output (N, dim). Each crop is first standardised
    on its own (zero mean, unit variance), which removes skin tone and lighting,
    the things that differ most between actors and say nothing about emotion.
    Then three conv stages (5x5 stride 2, then two 3x3 with 2x2 max-pooling) with
    BatchNorm and ReLU, average pooling to a ``grid`` x ``grid`` map and a linear
    projection. The grid keeps *where* a feature is (brows above eyes above
    mouth); pooling to 1x1 threw that away and, measured on generated data, left
    the video branch near chance on held-out actors. Sized for 48x48 crops
    (FER-2013's format) so a whole clip costs little on a CPU; any size works.
    """

    def __init__(self, in_channels: int, width: int, dim: int, grid: int = 3) -> None:
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
            nn.AdaptiveAvgPool2d(grid),
            nn.Flatten(),
            nn.Linear(width * 4 * grid * grid, dim),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        mean = frames.mean(dim=(1, 2, 3), keepdim=True)
        std = frames.std(dim=(1, 2, 3), keepdim=True)
        return self.net((frames - mean) / (std + 1e-3))


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
        masked_norm: bool = False,
    ) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.causal = causal
        # masked_norm: batch statistics from real frames only (MaskedBatchNorm1d); off keeps
        # plain BatchNorm1d, whose statistics also count the zeroed padding.
        self.masked_norm = masked_norm
        norm = MaskedBatchNorm1d if masked_norm else nn.BatchNorm1d
        self.conv1 = nn.Conv1d(in_ch, out_ch, kernel, dilation=dilation)
        self.bn1 = norm(out_ch)
        self.conv2 = nn.Conv1d(out_ch, out_ch, kernel, dilation=dilation)
        self.bn2 = norm(out_ch)
        self.drop = nn.Dropout(dropout)
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal:
            return F.pad(x, (self.pad, 0))
        return F.pad(x, (self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T); mask: (B, T). Padded frames are zeroed after each conv."""
        m = mask.unsqueeze(1).to(x.dtype)
        h = self.drop(F.relu(self._norm(self.bn1, self.conv1(self._pad(x * m)), mask)))
        h = self.drop(F.relu(self._norm(self.bn2, self.conv2(self._pad(h * m)), mask)))
        return F.relu(h + self.residual(x)) * m

    def _norm(self, bn: nn.BatchNorm1d, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return bn(h, mask) if self.masked_norm else bn(h)


class TCN(nn.Module):
    def __init__(
        self,
        in_ch: int,
        channels: int,
        dilations: tuple[int, ...],
        kernel: int,
        dropout: float,
        causal: bool = True,
        masked_norm: bool = False,
    ) -> None:
        super().__init__()
        widths = [in_ch] + [channels] * len(dilations)
        self.blocks = nn.ModuleList(
            TCNBlock(widths[i], widths[i + 1], kernel, d, dropout, causal, masked_norm)
            for i, d in enumerate(dilations)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask)
        return x


class MultiScaleConv1d(nn.Module):
    """Parallel Conv1D branches with different kernels, concatenated, BN, ReLU,
    then max-pooled by 2 (ceil mode): spectral patterns at several time scales.

    ``masked_norm`` takes BatchNorm's batch statistics from real frames only, so
    how much padding a batch carries does not shift the normalisation.
    """

    def __init__(
        self, in_ch: int, out_per_kernel: int, kernels: tuple[int, ...], masked_norm: bool = False
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(in_ch, out_per_kernel, k, padding=k // 2) for k in kernels
        )
        self.masked_norm = masked_norm
        norm = MaskedBatchNorm1d if masked_norm else nn.BatchNorm1d
        self.bn = norm(out_per_kernel * len(kernels))

    @property
    def out_channels(self) -> int:
        return self.bn.num_features

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x * mask.unsqueeze(1).to(x.dtype)
        h = torch.cat([conv(x) for conv in self.convs], dim=1)
        h = F.relu(self.bn(h, mask) if self.masked_norm else self.bn(h))
        h = max_pool_ceil(h * mask.unsqueeze(1).to(h.dtype), 2)
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
