"""BatchNorm statistics over every rank's batch, on GPUs and on CPUs.

torch's SyncBatchNorm refuses CPU modules under DDP ("SyncBatchNorm layers only
work with GPU modules"), and would drop the mask of the sequence models' masked
BatchNorm. :func:`normalize_global` is the one implementation both use here:
sum, sum of squares and count all-reduced with autograd's all-reduce, so the
gradients flow through the global statistics as they would with one process
holding the whole batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def step_momentum(bn: _BatchNorm) -> float:
    """Count one training batch and return the running estimates' momentum for it,
    as BatchNorm does (``momentum=None``: a cumulative moving average)."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    return momentum


def normalize_global(bn: _BatchNorm, rows: torch.Tensor) -> torch.Tensor:
    """Batch-normalise ``rows`` (N, C) with statistics of every rank's rows; updates
    ``bn``'s running estimates as BatchNorm does (unbiased variance, its momentum)."""
    from torch.distributed.nn.functional import all_reduce

    momentum = step_momentum(bn)
    rows = rows.float()
    count = torch.full((1,), float(rows.shape[0]), device=rows.device)
    stats = all_reduce(torch.cat([rows.sum(0), (rows * rows).sum(0), count]))
    c = rows.shape[1]
    n = stats[2 * c]
    mean = stats[:c] / n
    var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0.0)
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            unbiased = var * n / (n - 1).clamp_min(1.0)
            bn.running_mean.mul_(1 - momentum).add_(momentum * mean)
            bn.running_var.mul_(1 - momentum).add_(momentum * unbiased)
    out = (rows - mean) / torch.sqrt(var + bn.eps)
    if bn.affine:
        out = out * bn.weight + bn.bias
    return out


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm1d/2d/3d whose training statistics span every rank (CPU or GPU).

    Same parameters and state_dict keys as the layer it replaces; in eval, or with
    one process, it is that layer exactly.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {x.dim()}D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or world_size() == 1:
            return F.batch_norm(
                x,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                self.training or not self.track_running_stats,
                0.0 if self.momentum is None else self.momentum,
                self.eps,
            )
        channels_last = x.movedim(1, -1)
        rows = normalize_global(self, channels_last.reshape(-1, x.shape[1]))
        return rows.reshape(channels_last.shape).movedim(-1, 1)

    @classmethod
    def replacing(cls, bn: _BatchNorm) -> GlobalBatchNorm:
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        new.load_state_dict(bn.state_dict())
        return new.to(next(iter(bn.buffers()), torch.empty(0)).device).train(bn.training)


def convert(module: nn.Module, cuda: bool) -> tuple[nn.Module, int]:
    """Every BatchNorm of ``module`` synchronised; returns it and how many layers.

    Plain BatchNorm layers become torch's SyncBatchNorm on CUDA (its fused kernels)
    and :class:`GlobalBatchNorm` on CPU; layers that compute their own statistics
    and offer a ``sync`` switch (the masked BatchNorm) get the switch turned on.
    """
    if isinstance(module, _BatchNorm) and hasattr(type(module), "sync"):
        module.sync = True  # type: ignore[attr-defined]
        return module, 1
    if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        if cuda:
            return nn.SyncBatchNorm.convert_sync_batchnorm(module), 1
        return GlobalBatchNorm.replacing(module), 1
    count = 0
    for name, child in module.named_children():
        new, n = convert(child, cuda)
        count += n
        if new is not child:
            setattr(module, name, new)
    return module, count
