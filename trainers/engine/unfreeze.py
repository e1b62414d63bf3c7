"""Progressive unfreezing (design note 004) as an engine callback.

A backbone starts frozen and its stages become trainable at set epochs
(note 004: stage 5 at epoch 3, stage 4 at 6, stage 3 at 9), so a pretrained
backbone is not wrecked by the large gradients of a fresh head.

Why it is built this way:

* **The state is a pure function of the epoch.** ``on_epoch_start`` *sets*
  ``requires_grad`` on every parameter it manages from the epoch number:
  frozen modules off, then every module whose epoch has come on. It never
  toggles, so calling it for epoch 7 directly (a resumed run) gives exactly
  the state that stepping through epochs 1..7 gives (the resume rule in
  trainers.engine.callbacks).
* **The optimizer already holds every parameter** (the engine builds it
  that way): a frozen parameter has no gradient and the optimizer skips it,
  weight decay included, until it is unfrozen. Nothing is rebuilt.
* Modules are named by their dotted path in the model (``"blocks.4"``), so
  the same callback serves any backbone; a name that does not exist fails at
  the start of the run, not at epoch 9.
* BatchNorm layers in frozen stages still update their running statistics
  in training mode (``requires_grad`` does not govern buffers); the engine
  puts the whole model in training mode each epoch, as the note's loop did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from trainers.engine.callbacks import Callback


class ProgressiveUnfreezing(Callback):
    """``frozen`` modules start frozen; ``schedule`` lists (module, first trainable epoch)."""

    def __init__(self, frozen: Sequence[str], schedule: Sequence[tuple[str, int]]) -> None:
        if not frozen:
            raise ValueError("ProgressiveUnfreezing needs at least one module to freeze")
        for name, epoch in schedule:
            if epoch < 1:
                raise ValueError(f"unfreezing {name!r} at epoch {epoch}: epochs start at 1")
        self.frozen = tuple(frozen)
        self.schedule = tuple((str(name), int(epoch)) for name, epoch in schedule)
        self._last: tuple[str, ...] | None = None

    def unfrozen_at(self, epoch: int) -> tuple[str, ...]:
        """The scheduled modules that are trainable during ``epoch`` (1-based)."""
        return tuple(name for name, first in self.schedule if first <= epoch)

    def apply(self, model: nn.Module, epoch: int) -> tuple[str, ...]:
        """Set ``requires_grad`` for ``epoch``; returns the unfrozen scheduled modules."""
        model = getattr(model, "module", model)  # a DDP wrapper holds the model
        for name in self.frozen:
            for param in _submodule(model, name).parameters():
                param.requires_grad_(False)
        unfrozen = self.unfrozen_at(epoch)
        for name in unfrozen:
            for param in _submodule(model, name).parameters():
                param.requires_grad_(True)
        return unfrozen

    def on_fit_start(self, trainer: Any) -> None:
        model = getattr(trainer.model, "module", trainer.model)
        for name in (*self.frozen, *(n for n, _ in self.schedule)):
            _submodule(model, name)  # fail now, naming the module, not at epoch 9
        tc = getattr(trainer, "tc", None)
        logger = getattr(trainer, "logger", None)
        if logger is not None and tc is not None and not tc.pretrained:
            logger.log(
                "progressive unfreezing without train.pretrained: the frozen stages keep their "
                "random initialisation; load weights (train.pretrained=PATH) or set "
                "model.freeze_backbone=false to train the whole network"
            )

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        unfrozen = self.apply(trainer.model, epoch)
        logger = getattr(trainer, "logger", None)
        if logger is not None and unfrozen != self._last:
            names = ", ".join(unfrozen) if unfrozen else "none"
            logger.log(f"epoch {epoch}: frozen {', '.join(self.frozen)} except: {names}")
        self._last = unfrozen


def _submodule(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        top = ", ".join(n for n, _ in model.named_children())
        raise ValueError(
            f"progressive unfreezing names module {name!r}, which {type(model).__name__} does "
            f"not have (its top-level modules: {top})"
        ) from None
