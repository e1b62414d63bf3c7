"""Clip data (trainers.data.clips) and clip-consistent augmentation
(trainers.data.video_augment): windows, multi-clip rows, padding masks,
reproducible augmentation, and one CLI run of a video model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from tests.conftest import run_trainers
from trainers.data.av_dataset import AVDataset
from trainers.data.base import SampleInfo
from trainers.data.clips import (
    ClipDataConfig,
    ClipDataModule,
    ClipEvalSet,
    ClipTrainSet,
    collate_clips,
)
from trainers.data.video_augment import (
    ClipAugmentSettings,
    augment_clip,
    drop_frames,
    plan_clip,
    reverse_frames,
)
from trainers.rundir import RunDir

SIZE = 24
EVERYTHING = ClipAugmentSettings(affine_p=1.0, flip_p=1.0, jitter_p=1.0, erase_p=1.0)


def distinct_frames(n: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, channels, SIZE, SIZE), dtype=np.uint8)


def still_clip(n: int, channels: int = 3) -> np.ndarray:
    """One frame repeated: any per-frame difference after augmentation is inconsistency."""
    return np.repeat(distinct_frames(1, channels), n, axis=0)


# ------------------------------------------------------------------------- augmentation


@pytest.mark.parametrize("channels", [3, 1])
def test_spatial_augmentation_is_one_draw_for_the_whole_clip(channels):
    clip = still_clip(6, channels)
    out = augment_clip(clip, EVERYTHING, seed=1, epoch=2, index=3)
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert not np.array_equal(out, clip), "nothing was augmented"
    for frame in out[1:]:
        np.testing.assert_array_equal(frame, out[0])


def test_same_seed_epoch_index_same_clip_and_global_rng_untouched():
    clip = distinct_frames(8)
    settings = dataclasses.replace(EVERYTHING, reverse_p=0.5, drop_p=0.5)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a = augment_clip(clip, settings, seed=7, epoch=1, index=4)
    b = augment_clip(clip, settings, seed=7, epoch=1, index=4)
    np.testing.assert_array_equal(a, b)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    others = [
        augment_clip(clip, settings, seed=7, epoch=2, index=4),
        augment_clip(clip, settings, seed=7, epoch=1, index=5),
        augment_clip(clip, settings, seed=8, epoch=1, index=4),
    ]
    assert all(not np.array_equal(a, o) for o in others)


def test_time_reversal_plays_the_clip_backwards():
    clip = distinct_frames(7)
    out = augment_clip(clip, ClipAugmentSettings(reverse_p=1.0), seed=0, epoch=1, index=0)
    np.testing.assert_array_equal(out, clip[::-1])
    assert reverse_frames(4).tolist() == [3, 2, 1, 0]


def test_frame_dropping_holds_the_last_kept_frame_and_keeps_the_length():
    rng = np.random.default_rng(0)
    order = drop_frames(200, 0.3, rng)
    assert len(order) == 200 and order[0] == 0
    assert np.all(np.diff(order) >= 0)
    held = order != np.arange(200)
    assert 30 < held.sum() < 90  # about 30% dropped
    assert np.all(order[held] == order[np.flatnonzero(held) - 1])  # the previous frame again
    assert drop_frames(5, 0.0, rng).tolist() == [0, 1, 2, 3, 4]
    assert drop_frames(5, 1.0, rng).tolist() == [0, 0, 0, 0, 0]

    clip = distinct_frames(40)
    settings = ClipAugmentSettings(drop_p=1.0, drop_rate=0.5)
    out = augment_clip(clip, settings, seed=0, epoch=1, index=0)
    plan = plan_clip(40, settings, seed=0, epoch=1, index=0)
    assert out.shape == clip.shape and plan.dropped > 0
    np.testing.assert_array_equal(out, clip[plan.order])


# ----------------------------------------------------------------------- clip data sets


LENGTHS = [40, 20, 10]  # frames per video; the last is shorter than a clip


def base_set() -> AVDataset:
    videos = [distinct_frames(n, seed=i) for i, n in enumerate(LENGTHS)]
    return AVDataset(np.array([2, 5, 7]), None, videos)


def test_train_rows_are_k_clips_per_video_from_different_parts():
    train = ClipTrainSet(base_set(), np.array([2, 5, 7]), 16, 2, ClipAugmentSettings(), seed=3)
    assert len(train) == 6
    assert train.item_labels.tolist() == [2, 2, 5, 5, 7, 7]
    train.set_epoch(1)
    items = [train[i] for i in range(6)]
    assert [it["index"] for it in items] == [0, 0, 1, 1, 2, 2]
    assert [it["label"] for it in items] == [2, 2, 5, 5, 7, 7]
    for it in items:
        video = base_set()[it["index"]]["video"]
        real = it["frames"]
        np.testing.assert_array_equal(it["video"][:real], video[it["start"] : it["start"] + real])
    # Video 0 has 25 possible starts: clip 0 draws from the first half, clip 1 the second.
    starts = {e: [] for e in (0, 1)}
    for epoch in range(1, 30):
        train.set_epoch(epoch)
        starts[0].append(train[0]["start"])
        starts[1].append(train[1]["start"])
    assert max(starts[0]) <= 12 <= min(starts[1]) and max(starts[1]) <= 24
    assert len(set(starts[0])) > 3  # a new window most epochs
    short = items[4]  # 10 real frames, padded to 16
    assert short["frames"] == 10 and short["video"].shape[0] == 16
    assert not short["video"][10:].any()


def test_a_resumed_epoch_sees_the_same_augmented_clips():
    settings = dataclasses.replace(EVERYTHING, reverse_p=0.5, drop_p=0.5)
    labels = np.array([2, 5, 7])
    stepped = ClipTrainSet(base_set(), labels, 16, 2, settings, seed=3)
    for epoch in range(1, 5):
        stepped.set_epoch(epoch)
        [stepped[i] for i in range(6)]
    resumed = ClipTrainSet(base_set(), labels, 16, 2, settings, seed=3)
    resumed.set_epoch(4)
    for i in reversed(range(6)):  # any order, any history: a function of (seed, epoch, row)
        a, b = stepped[i], resumed[i]
        assert a["start"] == b["start"]
        np.testing.assert_array_equal(a["video"], b["video"])
    resumed.set_epoch(3)
    assert any(not np.array_equal(stepped[i]["video"], resumed[i]["video"]) for i in range(6))


def test_eval_rows_are_evenly_spaced_clips_naming_their_video():
    evals = ClipEvalSet(base_set(), 16, 5)
    assert len(evals) == 15
    items = [evals[i] for i in range(15)]
    assert [it["sample"] for it in items] == [v for v in range(3) for _ in range(5)]
    assert [it["start"] for it in items[:5]] == [0, 6, 12, 18, 24]  # 40 frames: 0 .. 40-16
    assert [it["start"] for it in items[5:10]] == [0, 1, 2, 3, 4]
    assert ClipEvalSet(base_set(), 16, 1)[0]["start"] == 12  # one clip: the middle

    batch = collate_clips(items[8:12])  # video 1 (full clips) and video 2 (10 of 16 frames)
    assert batch["video"].shape == (4, 16, 3, SIZE, SIZE) and batch["video"].dtype == torch.float32
    assert batch["sample"].tolist() == [1, 1, 2, 2]
    assert batch["video_mask"].sum(1).tolist() == [16, 16, 10, 10]
    assert float(batch["video"].max()) <= 1.0


class FakeBase:
    """The slice of RavdessDataModule that ClipDataModule uses, without decoding."""

    classes = ("a", "b", "c", "d", "e", "f", "g", "h")

    def setup(self, report_bad, progress=None):
        self.ready = True

    def dataset(self, split):
        return base_set()

    def samples(self, split):
        return [SampleInfo(f"k{i}", lab, "01", ()) for i, lab in enumerate([2, 5, 7])]

    def labels(self, split):
        return np.array([2, 5, 7])

    def describe(self):
        return {"dataset": "fake"}


def test_module_keeps_one_train_set_and_per_video_samples():
    cfg = ClipDataConfig(clip_frames=16, max_frames=48, clips_per_video_train=2, eval_clips=5)
    module = ClipDataModule(FakeBase(), cfg, seed=0)
    module.setup(lambda path, reason: None)
    assert module.dataset("train") is module.dataset("train")  # set_epoch reaches it
    assert len(module.dataset("train")) == 6 and len(module.dataset("val")) == 15
    assert len(module.samples("test")) == 3 and module.labels("train").tolist() == [2, 5, 7]
    assert module.describe()["clips"]["eval_per_video"] == 5
    with pytest.raises(TypeError, match="ClipDataConfig"):
        ClipDataModule(FakeBase(), object(), seed=0)


# ----------------------------------------------------------------------- through the CLI


TINY_RUN = [
    "model.depth=18", "model.width=8", "data.face_size=32", "data.fps=8",
    "data.max_frames=16", "data.clip_frames=8", "train.epochs=2", "train.batch_size=8",
    "train.threads=1", "data.prepare_workers=1", "data.detect_every=16", "data.face_detector=haar",
]  # fmt: skip


def test_cli_trains_slowfast_with_multi_clip_eval_one_prediction_per_video(
    small_corpus, feature_cache, tmp_path
):
    sets = []
    for item in [*TINY_RUN, f"data.cache_dir={feature_cache}"]:
        sets += ["--set", item]
    proc = run_trainers(
        "train", "slowfast-r50", "--data", str(small_corpus), "--out", str(tmp_path),
        "--run-id", "sf", *sets,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = RunDir(tmp_path / "sf")
    summary = run.read_summary()
    assert summary["epochs_run"] == 2
    assert {"accuracy", "macro_f1", "weighted_f1", "confusion"} <= set(summary["test"])
    data = summary["data"]
    assert data["clips"]["train_per_video"] == 2 and data["clips"]["eval_per_video"] == 5
    rows = [json.loads(line) for line in run.predictions.read_text().splitlines()]
    for split in ("val", "test"):
        keys = [r["key"] for r in rows if r["split"] == split]
        assert len(keys) == len(set(keys)) == data["splits"][split]["samples"]
        assert sum(sum(r["probs"]) for r in rows if r["split"] == split) == pytest.approx(
            len(keys), abs=1e-3
        )
    steps = [e for e in map(json.loads, run.events.read_text().splitlines()) if e["type"] == "step"]
    # 2 train videos' worth of actors x 15 recordings x 2 clips, batches of 8 (drop_last).
    assert steps[0]["steps"] == data["splits"]["train"]["samples"] * 2 // 8
