"""The engine under torchrun: PyTorch's own DistributedDataParallel, nothing home-made.

torchrun starts one process per rank with RANK, WORLD_SIZE and LOCAL_RANK in
the environment; :func:`from_env` reads them, so the same ``Trainer`` runs as
one process or as many. What changes with more than one rank:

- each rank trains on its own shard of the epoch (``DistributedSampler`` with
  ``set_epoch``, or the weighted draw split the same way: see
  ``trainer.epoch_batches``), so ``train.batch_size`` stays the per-process batch
  of the recipe and the global batch is ``batch_size * world_size * grad_accum``;
- evaluation is sharded too and every rank gathers all predictions, so the
  metrics, the confusion matrix and the early-stopping decision are computed
  over the whole split and agree on every rank;
- rank 0 alone writes events, TensorBoard, checkpoints and the summary; the
  other ranks keep only their own log, ``ranks/rank{N}.log``, for a failing
  rank's last lines;
- a stop request (SIGTERM on any rank) is agreed by an all-reduce at the end of
  each optimizer step, so every rank saves and leaves at the same step.

Checkpoints hold the unwrapped model's state, so they resume on any number of
ranks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    restart: int = 0  # torchrun's elastic restart count: > 0 means "resume"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env(env: dict[str, str] | None = None) -> DistInfo:
    """The rank this process is, from torchrun's environment (one rank without it)."""
    env = os.environ if env is None else env
    return DistInfo(
        rank=int(env.get("RANK", 0)),
        world_size=int(env.get("WORLD_SIZE", 1)),
        local_rank=int(env.get("LOCAL_RANK", 0)),
        restart=int(env.get("TORCHELASTIC_RESTART_COUNT", 0)),
    )


def init(info: DistInfo, device: torch.device, timeout_s: float = 600.0) -> None:
    """Join the process group: NCCL between GPUs, gloo on CPU."""
    if not info.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        timeout=timedelta(seconds=timeout_s),
    )


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def local_device(info: DistInfo, spec: str) -> str:
    """One GPU per local rank: ``auto``/``cuda`` become ``cuda:LOCAL_RANK``."""
    if info.enabled and spec in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{info.local_rank}"
    return spec


def eval_indices(n: int, info: DistInfo) -> list[int]:
    """This rank's rows of an eval split: every world-th row, none twice."""
    return list(range(info.rank, n, info.world_size))


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True on every rank when it is true on one (a stop request, say)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_floats(values: Sequence[float], info: DistInfo) -> list[float]:
    """Sums over ranks (loss sums, sample counts), the same on every rank."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def gather(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (a checkpoint only rank 0's disk holds)."""
    if not info.enabled:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
