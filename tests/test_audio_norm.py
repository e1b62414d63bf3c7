"""data.audio_norm=speaker: each actor's features normalised with that actor's own
statistics, in every split, recorded in the checkpoint's preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainers.config import ConfigError, resolve
from trainers.data.av_dataset import MIN_SPEAKER_RECORDINGS, RavdessDataModule, fit_speaker_norms
from trainers.data.config import DataConfig
from trainers.registry import get_entry


def _module(root: Path, norm: str) -> RavdessDataModule:
    cfg = DataConfig(
        root=str(root), modalities=("audio",), audio_norm=norm, max_audio_frames=100,
        prepare_workers=1,
    )  # fmt: skip
    module = RavdessDataModule(cfg)
    module.setup(lambda path, reason: None)
    return module


def _actor_means(module: RavdessDataModule, split: str) -> dict[object, np.ndarray]:
    data = module.dataset(split)
    by_actor: dict[object, list[np.ndarray]] = {}
    for sample, features in zip(module.samples(split), data.audio, strict=True):
        by_actor.setdefault(sample.actor, []).append(features)
    return {actor: np.concatenate(arrays).mean(axis=0) for actor, arrays in by_actor.items()}


def test_speaker_norm_centres_every_actor_in_every_split(small_corpus):
    speaker = _module(small_corpus, "speaker")
    train = _module(small_corpus, "train")
    for split in ("train", "val", "test"):
        for actor, mean in _actor_means(speaker, split).items():
            assert np.abs(mean).max() < 1e-4, (split, actor)
    # With train statistics a held-out actor keeps its own offset: what speaker norm removes.
    held_out = next(iter(_actor_means(train, "test").values()))
    assert np.abs(held_out).max() > 0.1
    state = speaker.inference_state()["preprocessing"]["audio"]
    assert state["norm"] == "speaker" and "each actor's own statistics" in state["normalization"]
    assert "each actor's own mean" in speaker.describe()["audio"]["normalized"]


def test_actors_with_few_recordings_fall_back_to_train_statistics():
    rng = np.random.default_rng(0)
    many = [("a", rng.normal(size=(5, 3))) for _ in range(MIN_SPEAKER_RECORDINGS)]
    few = [("b", rng.normal(size=(5, 3))) for _ in range(MIN_SPEAKER_RECORDINGS - 1)]
    assert set(fit_speaker_norms(many + few + [("c", None)], 3)) == {"a"}


def test_unknown_audio_norm_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data\.audio_norm"):
        resolve(get_entry("hybrid-attention").default_config(), [], ["data.audio_norm=actor"])
