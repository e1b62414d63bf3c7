"""Speaker-independent k-fold (trainers.data.folds) on generated corpora's actor lists:
no training, no decoding (the data module's folds are checked in tests/test_sweep.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from trainers.config import ConfigError, resolve
from trainers.data.config import DataConfig, DataError
from trainers.data.folds import actor_folds, fold_splits
from trainers.data.ravdess import _is_male

RAVDESS = [f"{i:02d}" for i in range(1, 25)]  # odd male, even female
# CREMA-D ids say nothing about sex: VideoDemographics.csv does (as actor_sex reads it).
CREMAD_SEX = {f"{1001 + i}": ("male" if i % 3 == 0 else "female") for i in range(15)}
COMBINED = [f"ravdess:{a}" for a in RAVDESS[:8]] + [f"crema-d:{a}" for a in list(CREMAD_SEX)[:9]]


def check_partition(actors, folds, val_fraction=0.15, seed=0, sex_of=None):
    """Every actor tested exactly once; no actor in two splits of one fold; val not empty."""
    tested = []
    for fold in range(folds):
        parts = fold_splits(actors, folds, fold, val_fraction, seed, sex_of)
        seen = parts["train"] + parts["val"] + parts["test"]
        assert sorted(seen) == sorted(set(actors)), f"fold {fold} loses or repeats an actor"
        assert parts["test"] and parts["train"]
        assert parts["val"] or val_fraction == 0
        tested += parts["test"]
    assert sorted(tested) == sorted(set(actors))  # each exactly once
    return tested


@pytest.mark.parametrize("folds", [2, 3, 5, 6])
def test_every_actor_tested_once_and_never_in_two_splits(folds):
    check_partition(RAVDESS, folds)
    check_partition(list(CREMAD_SEX), min(folds, 5), sex_of=CREMAD_SEX)
    check_partition(COMBINED, folds)


def sexes(fold, sex_of):
    males = sum(_is_male(a, sex_of) for a in fold)
    return males, len(fold) - males


@pytest.mark.parametrize(
    ("actors", "sex_of", "folds"),
    [(RAVDESS, {}, 4), (RAVDESS, {}, 5), (list(CREMAD_SEX), CREMAD_SEX, 5)],
)
def test_folds_are_balanced_by_sex(actors, sex_of, folds):
    dealt = actor_folds(actors, folds, seed=7, sex_of=sex_of)
    counts = [sexes(fold, sex_of) for fold in dealt]
    males, females = [c[0] for c in counts], [c[1] for c in counts]
    assert max(males) - min(males) <= 1 and max(females) - min(females) <= 1, counts
    assert max(map(len, dealt)) - min(map(len, dealt)) <= 1
    if actors is RAVDESS and folds == 4:  # 12 + 12 actors in 4 folds: 3 + 3 each
        assert counts == [(3, 3)] * 4


def test_combined_folds_hold_each_corpus_in_proportion():
    for fold in actor_folds(COMBINED, 4, seed=0):
        corpora = [a.split(":")[0] for a in fold]
        assert corpora.count("ravdess") == 2 and corpora.count("crema-d") in (2, 3)


def test_leave_one_actor_out():
    tested = check_partition(RAVDESS, len(RAVDESS))
    assert len(tested) == 24
    assert all(len(fold) == 1 for fold in actor_folds(RAVDESS, 24, seed=0))


def test_deterministic_given_split_seed_and_not_input_order():
    a = fold_splits(RAVDESS, 5, 2, 0.15, seed=3)
    assert a == fold_splits(list(reversed(RAVDESS)), 5, 2, 0.15, seed=3)
    assert actor_folds(RAVDESS, 5, 3) != actor_folds(RAVDESS, 5, 4)


def test_errors_name_the_key_and_what_to_do():
    with pytest.raises(DataError, match=r"data.folds=30.*only 24 actors.*--folds 24"):
        actor_folds(RAVDESS, 30, 0)
    with pytest.raises(DataError, match=r"data.fold=5"):
        fold_splits(RAVDESS, 5, 5, 0.15, 0)
    for layout, good in (("ravdess", True), ("crema-d", True), ("combined", True), ("meld", False)):
        cfg = DataConfig(layout=layout, folds=5, fold=4)
        if good:
            cfg.validate()
        else:
            with pytest.raises(ValueError, match="MELD has fixed official"):
                cfg.validate()
    with pytest.raises(ValueError, match=r"data.fold=5: must be in 0..4"):
        DataConfig(folds=5, fold=5).validate()
    with pytest.raises(ValueError, match=r"needs data\.split=actor"):
        DataConfig(folds=5, split="random").validate()


@dataclass
class AVConfig:  # an audio-visual model's config, less the model section (no torch import)
    data: DataConfig = field(default_factory=DataConfig)


def test_the_fold_keys_are_config_keys():
    cfg = AVConfig()
    resolve(cfg, (), ["data.folds=6", "data.fold=5", "data.fold_group=actor"])
    assert (cfg.data.folds, cfg.data.fold) == (6, 5)
    with pytest.raises(ConfigError, match=r"data\.fold_group"):
        resolve(cfg, (), ["data.fold_group=clip"])
