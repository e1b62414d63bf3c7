"""Losses and class weighting.

Focal loss follows Lin et al. (2017): ``-(1 - p_t)^gamma * log(p_t)``, with an
optional per-class weight vector (the usual remedy for emotion data sets'
imbalance) and an optional scalar alpha. Label smoothing applies to both.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WeightScheme = Literal["none", "inverse", "inverse_sqrt", "balanced"]


def class_weights(
    labels: np.ndarray, num_classes: int, scheme: WeightScheme
) -> torch.Tensor | None:
    """Per-class weights from training labels, normalised to mean 1.

    ``inverse``: 1/count. ``inverse_sqrt``: 1/sqrt(count), gentler, for long tails
    such as MELD. ``balanced``: n / (k * count), scikit-learn's "balanced".
    A class with no training sample gets weight 0 rather than infinity.
    """
    if scheme == "none":
        return None
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(float)
    safe = np.where(counts > 0, counts, np.inf)
    if scheme == "inverse":
        w = 1.0 / safe
    elif scheme == "inverse_sqrt":
        w = 1.0 / np.sqrt(safe)
    elif scheme == "balanced":
        w = counts.sum() / (num_classes * safe)
    else:
        raise ValueError(f"unknown class weight scheme {scheme!r}")
    present = counts > 0
    w = w / w[present].mean()
    return torch.tensor(w, dtype=torch.float32)


class FocalLoss(nn.Module):
    def __init__(
        self,
        gamma: float = 2.0,
        weight: torch.Tensor | None = None,
        alpha: float | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), dim=-1)
        num_classes = logits.shape[-1]
        with torch.no_grad():
            soft = torch.full_like(logp, self.label_smoothing / num_classes)
            on = 1.0 - self.label_smoothing + self.label_smoothing / num_classes
            soft.scatter_(1, target.unsqueeze(1), on)
        p = logp.exp()
        # Modulating factor per class; with one-hot targets this is (1 - p_t)^gamma.
        loss = -(soft * (1.0 - p).pow(self.gamma) * logp)
        if self.weight is not None:
            loss = loss * self.weight.unsqueeze(0)
        loss = loss.sum(dim=-1)
        if self.alpha is not None:
            loss = self.alpha * loss
        if self.weight is not None:
            # Weighted mean, as cross_entropy(weight=...) normalises.
            return loss.sum() / self.weight[target].sum().clamp_min(1e-12)
        return loss.mean()


def build_loss(
    kind: Literal["ce", "focal"],
    weight: torch.Tensor | None,
    gamma: float = 2.0,
    alpha: float | None = None,
    label_smoothing: float = 0.0,
) -> nn.Module:
    if kind == "ce":
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    if kind == "focal":
        return FocalLoss(gamma=gamma, weight=weight, alpha=alpha, label_smoothing=label_smoothing)
    raise ValueError(f"unknown loss {kind!r}")


def mixed_loss(criterion: Any, logits: Any, batch: dict[str, Any]) -> Any:
    """The loss of a batch, weighting both labels when a callback mixed its samples."""
    loss = criterion(logits, batch["label"])
    if "label_b" in batch:
        lam = float(batch["mix_lam"])
        loss = lam * loss + (1.0 - lam) * criterion(logits, batch["label_b"])
    return loss
