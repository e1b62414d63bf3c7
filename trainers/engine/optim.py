"""Optimizers and schedulers, and *when* each scheduler steps.

OneCycle and cosine are per-optimizer-step schedules (their length is the
number of optimizer steps, after gradient accumulation); ReduceLROnPlateau
steps once per epoch on the monitored validation metric. Getting this wrong
silently stretches or compresses the schedule, so the granularity lives with
the scheduler, not in the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from trainers.config import TrainConfig


def build_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


@dataclass
class Schedule:
    """A scheduler plus its stepping granularity ("step", "epoch" or None)."""

    scheduler: Any
    every: str | None
    mode: str = "max"

    def after_optimizer_step(self) -> None:
        if self.every == "step":
            self.scheduler.step()

    def after_epoch(self, monitored: float) -> None:
        if self.every == "epoch":
            self.scheduler.step(monitored)

    def state_dict(self) -> dict[str, Any] | None:
        return self.scheduler.state_dict() if self.scheduler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scheduler is not None and state is not None:
            self.scheduler.load_state_dict(state)


def build_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int, mode: str
) -> Schedule:
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.scheduler == "none":
        return Schedule(None, None)
    if cfg.scheduler == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=cfg.lr,
            total_steps=total,
            pct_start=cfg.onecycle_pct_start,
            div_factor=cfg.onecycle_div_factor,
            final_div_factor=cfg.onecycle_final_div_factor,
            anneal_strategy="cos",
        )
        return Schedule(sched, "step")
    if cfg.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total, eta_min=cfg.min_lr
        )
        return Schedule(sched, "step")
    if cfg.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode=mode,
            factor=cfg.plateau_factor,
            patience=cfg.plateau_patience,
            min_lr=cfg.min_lr,
        )
        return Schedule(sched, "epoch", mode)
    raise ValueError(f"unknown scheduler {cfg.scheduler!r}")


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
