"""Early stopping on one monitored metric, with state that checkpoints carry."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EarlyStopping:
    patience: int
    mode: str = "max"  # "max" for accuracy/F1/UAR, "min" for loss
    min_delta: float = 0.0
    min_epochs: int = 0
    best: float = math.nan
    best_epoch: int = -1
    bad_epochs: int = 0

    def improved(self, value: float) -> bool:
        if math.isnan(self.best):
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, epoch: int, value: float) -> bool:
        """Record ``value`` for ``epoch`` (1-based); True when it is a new best."""
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def should_stop(self, epoch: int) -> bool:
        return epoch >= self.min_epochs and self.bad_epochs >= self.patience

    def earliest_stop_epoch(self) -> int:
        """The first epoch at which the run could stop if nothing improves."""
        return max(self.min_epochs, self.best_epoch + self.patience)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
