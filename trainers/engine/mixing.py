"""MixUp and CutMix (design note 003) as an engine callback.

Why it looks like this:

* Mixing is a batch-level operation on the device, after collation, so it is
  a :class:`~trainers.engine.callbacks.Callback` (``on_train_batch``), not a
  data set transform, and the loop needs no change: the callback sets
  ``label_b`` and ``mix_lam`` and the loop's ``mixed_loss`` computes
  ``lam * loss(y) + (1 - lam) * loss(y_b)`` for whatever loss the recipe uses.
* Per batch, one of the two is chosen: CutMix with probability
  ``cutmix_prob`` (default 0.5), MixUp otherwise (the note uses both and
  states no rule; an even coin is timm's default ``switch_prob``). ``prob`` is
  the chance that a batch is mixed at all (default 1.0: every batch, as the
  note's loop calls its mixing functions on every batch).
* MixUp: ``lam ~ Beta(0.4, 0.4)``, ``x = lam * x + (1 - lam) * x[perm]``.
  CutMix: ``lam ~ Beta(1, 1)`` sizes a box (sides ``sqrt(1 - lam)`` of the
  image's) centred at a uniform point and clipped to the image; the label
  weight is then the *actual* share of pixels kept after clipping, not the
  drawn ``lam`` (the note's ``rand_bbox`` returns the drawn one, which
  over-weights the pasted label whenever the box hits a border).
* Every draw comes from torch's global CPU RNG, which the engine's
  checkpoints save and restore, so a resumed run mixes exactly as an
  uninterrupted one (the loop calls this once per micro-batch, in order).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from trainers.engine.callbacks import Callback

if TYPE_CHECKING:
    from trainers.engine.trainer import Trainer


@dataclass
class MixConfig:
    """The ``mix`` config section of image recipes (``--set mix.cutmix_prob=...``)."""

    # Mix training batches at all (MixUp or CutMix).
    enabled: bool = True
    # Chance that a batch is mixed; the rest train on clean images.
    prob: float = 1.0
    # Chance that a mixed batch uses CutMix rather than MixUp.
    cutmix_prob: float = 0.5
    # Beta(alpha, alpha) of MixUp's weight (the note: 0.4).
    mixup_alpha: float = 0.4
    # Beta(alpha, alpha) of CutMix's box size (the note: 1.0).
    cutmix_alpha: float = 1.0
    # Batch key of the images to mix.
    key: str = "image"

    def validate(self) -> None:
        for name in ("prob", "cutmix_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"mix.{name}={getattr(self, name)}: must be in [0, 1]")
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, name) <= 0:
                raise ValueError(f"mix.{name}={getattr(self, name)}: must be > 0")


def _beta(alpha: float) -> float:
    """One Beta(alpha, alpha) draw from torch's global RNG (numpy's is not checkpointed)."""
    a = torch.tensor([alpha, alpha], dtype=torch.float64)
    return float(torch.distributions.Beta(a[0], a[1]).sample())


def mixup(x: torch.Tensor, lam: float, perm: torch.Tensor) -> torch.Tensor:
    """``lam * x + (1 - lam) * x[perm]`` for a batch ``x`` of any shape ``(B, ...)``."""
    return lam * x + (1.0 - lam) * x[perm]


def cutmix_box(
    height: int, width: int, lam: float, generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """A box ``(y1, y2, x1, x2)`` of sides ``sqrt(1 - lam)`` of the image's, clipped."""
    cut = (1.0 - lam) ** 0.5
    ch, cw = int(height * cut), int(width * cut)
    cy = int(torch.randint(0, height, (1,), generator=generator))
    cx = int(torch.randint(0, width, (1,), generator=generator))
    y1, y2 = max(cy - ch // 2, 0), min(cy + ch // 2, height)
    x1, x2 = max(cx - cw // 2, 0), min(cx + cw // 2, width)
    return y1, y2, x1, x2


def cutmix(
    x: torch.Tensor, box: tuple[int, int, int, int], perm: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """Paste ``x[perm]``'s box into a copy of ``x``; returns it and the kept pixel share."""
    y1, y2, x1, x2 = box
    out = x.clone()
    out[..., y1:y2, x1:x2] = x[perm][..., y1:y2, x1:x2]
    height, width = x.shape[-2:]
    lam = 1.0 - (y2 - y1) * (x2 - x1) / float(height * width)
    return out, lam


class MixCallback(Callback):
    """MixUp or CutMix on each training batch (see the module docstring)."""

    def __init__(self, cfg: MixConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        self.last: dict[str, Any] = {}  # what the latest batch got, for tests and logs

    def on_train_batch(self, trainer: Trainer | None, batch: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        x = batch[cfg.key]
        n = x.shape[0]
        # Draw the coins first and always, so the RNG stream does not depend on the outcome.
        coins = torch.rand(2)
        if n < 2 or float(coins[0]) >= cfg.prob:
            self.last = {"kind": "none"}
            return batch
        perm = torch.randperm(n).to(x.device)
        if float(coins[1]) < cfg.cutmix_prob:
            drawn = _beta(cfg.cutmix_alpha)
            box = cutmix_box(x.shape[-2], x.shape[-1], drawn)
            mixed, lam = cutmix(x, box, perm)
            self.last = {"kind": "cutmix", "lam": lam, "drawn": drawn, "box": box, "perm": perm}
        else:
            lam = _beta(cfg.mixup_alpha)
            mixed = mixup(x, lam, perm)
            self.last = {"kind": "mixup", "lam": lam, "perm": perm}
        out = dict(batch)
        out[cfg.key] = mixed
        out["label_b"] = batch["label"][perm]
        out["mix_lam"] = lam
        return out


def mix_callbacks(cfg: Any) -> list[Callback]:
    """The registry's ``callbacks`` hook for configs with a ``mix`` section."""
    return [MixCallback(cfg.mix)] if cfg.mix.enabled else []
