"""Speaker-independent k-fold splits of an audio-visual corpus (``data.folds``, ``data.fold``).

Why it looks like this:

* The unit dealt into folds is the actor (``data.fold_group = "actor"``): a
  speaker whose voice and face the model trained on would flatter its score,
  so fold ``i``'s actors form the test split and appear in no other fold's
  test split, and never in the same fold's train or val.
* Dealt, not cut: the actors are ordered group by group (corpus, then sex:
  CREMA-D's demographics where the corpus records them, RAVDESS's odd = male
  rule otherwise, see :func:`trainers.data.ravdess._is_male`), each group
  shuffled by ``data.split_seed``, and dealt round robin with the offset
  carried from one group to the next, so fold sizes differ by at most one,
  overall and within each (corpus, sex) group. ``folds = number of actors``
  is leave-one-actor-out.
* Val comes from the other folds' actors (``data.val_fraction`` of them,
  alternating sexes, per corpus, as :func:`~trainers.data.ravdess.split_actors`
  cuts it), so the held-out fold never picks the checkpoint it is scored with.
* Deterministic given the actors and ``data.split_seed``; the order the
  actors are passed in does not matter.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from trainers.data.config import DataError
from trainers.data.ravdess import _is_male, split_actors


def actor_folds(
    actors: Sequence[str], folds: int, seed: int, sex_of: Mapping[str, str] | None = None
) -> list[list[str]]:
    """``folds`` disjoint lists of actors covering every actor once, balanced by corpus and sex.

    Raises :class:`DataError` when there are fewer actors than folds.
    """
    unique = sorted(set(actors))
    if folds < 2:
        raise DataError(f"data.folds={folds}: actor k-fold needs at least 2 folds")
    if len(unique) < folds:
        raise DataError(
            f"data.folds={folds}: the data set has only {len(unique)} actors; use at most "
            f"--folds {len(unique)} (leave-one-actor-out)"
        )
    groups: dict[tuple[str, bool], list[str]] = {}
    for actor in unique:
        key = (actor.rpartition(":")[0], _is_male(actor, sex_of or {}))
        groups.setdefault(key, []).append(actor)
    out: list[list[str]] = [[] for _ in range(folds)]
    rng = np.random.default_rng([seed, zlib.crc32(b"actor-folds")])
    # Which fold the first actor goes to rotates at random, so fold 0 is not always the
    # largest; then the offset carries across groups to keep the sizes within one.
    offset = int(rng.integers(folds))
    for _key, members in sorted(groups.items()):
        for i in rng.permutation(len(members)):
            out[offset % folds].append(members[i])
            offset += 1
    return [sorted(fold) for fold in out]


def fold_splits(
    actors: Sequence[str],
    folds: int,
    fold: int,
    val_fraction: float,
    seed: int,
    sex_of: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """Actor -> split for fold ``fold`` of ``folds``: its actors test, val from the rest."""
    if not 0 <= fold < folds:
        raise DataError(f"data.fold={fold}: must be in 0..{folds - 1} (data.folds={folds})")
    dealt = actor_folds(actors, folds, seed, sex_of)
    test = dealt[fold]
    rest = sorted(a for i, part in enumerate(dealt) if i != fold for a in part)
    # The val cut is seeded per fold too, so fold 0's val actors are not fold 1's by rule.
    parts = split_actors(rest, val_fraction, 0.0, seed * 1000 + fold, sex_of=sex_of)
    return {"train": parts["train"], "val": parts["val"], "test": list(test)}
