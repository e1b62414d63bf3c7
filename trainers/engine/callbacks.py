"""Hooks a recipe adds to the one training loop, instead of a second loop.

A recipe that needs something the loop does not do (progressive unfreezing,
MixUp/CutMix, a curriculum) ships a :class:`Callback` through its registry
entry (``register_model(..., callbacks=...)``). The loop calls the hooks at
fixed points; it never knows which recipe it runs.

Resume rule: a callback's effect must be a pure function of the epoch (and of
RNG state the checkpoint restores), because ``on_epoch_start`` is called again
for the epoch a resumed run continues. Progressive unfreezing, for instance,
*sets* ``requires_grad`` from the epoch number rather than toggling it, so a
run resumed at epoch 7 has stages 5 and 4 unfrozen exactly as an uninterrupted
one would.

Mixing: a callback that mixes samples (MixUp, CutMix) returns the batch with
``"label_b"`` (LongTensor ``(B,)``) and ``"mix_lam"`` (float): the loop then
uses ``lam * loss(y) + (1 - lam) * loss(y_b)`` (:func:`trainers.engine.losses.mixed_loss`),
which works for every loss the engine builds (cross-entropy, label smoothing, focal, class
weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainers.engine.trainer import Trainer


class Callback:
    """Base class: every hook does nothing, override what the recipe needs."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """After the model, optimizer and data exist, before the first (or resumed) epoch."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first batch of ``epoch`` (1-based), also for a resumed epoch."""

    def on_train_batch(self, trainer: Trainer, batch: dict[str, Any]) -> dict[str, Any]:
        """A training batch on its device, before the forward pass; return the batch to use."""
        return batch
