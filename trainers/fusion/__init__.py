"""Fusion of finished runs (notes 000 and 003).

Two kinds, listed together by ``python -m trainers list``:

* methods that combine finished runs' predictions and train nothing
  (:data:`FUSERS`: ``late-fusion``, ``image-ensemble``; :mod:`trainers.fusion.late`).
  They are not registry entries on purpose: the registry's contract is "a
  builder and a data module the engine trains", and every test that builds and
  runs each registered model would have nothing to build for them.
* ``attention-fusion`` (:mod:`trainers.fusion.attention`), a model trained by
  the engine on two runs' embeddings, registered like any model.

``python -m trainers fuse METHOD RUN...`` runs any of the three.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fuser:
    """A fusion method that is not a trainable model, as `list` shows it."""

    name: str
    description: str
    inputs: str
    params: int  # values fitted on validation data (late fusion's weight)
    seed_note: str
    min_runs: int
    max_runs: int | None


FUSERS: dict[str, Fuser] = {
    f.name: f
    for f in (
        Fuser(
            "late-fusion",
            "weighted mean of a visual and an audio run's probabilities, weight tuned on val",
            "two run directories (predictions.jsonl)",
            1,
            "000_2c0d303d2709a941.txt",
            2,
            2,
        ),
        Fuser(
            "image-ensemble",
            "equal-weight mean of N runs' probabilities (resnet50, efficientnet_b0, vit_b_16)",
            "two or more run directories (predictions.jsonl)",
            0,
            "003_00999254419ffd90.txt",
            2,
            None,
        ),
    )
}
