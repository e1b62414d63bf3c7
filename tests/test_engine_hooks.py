"""The loop's extension points: weighted sampling, grouped evaluation, callbacks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from trainers.config import resolve
from trainers.data.tensors import TensorDataModule
from trainers.engine.callbacks import Callback
from trainers.engine.losses import mixed_loss
from trainers.engine.trainer import Trainer, epoch_batches, group_mean, new_manifest
from trainers.events import read_events
from trainers.registry import get_entry
from trainers.rundir import RunDir

SMALL = [
    "model.audio_channels=16", "model.frame_width=8", "model.frame_dim=32",
    "model.tcn_channels=32", "model.d_model=32", "model.heads=2",
    "train.batch_size=16", "train.epochs=3", "train.threads=1", "data.face_size=24",
]  # fmt: skip


def make(tmp_path, name, data, extra=(), callbacks=None):
    base = get_entry("hybrid-attention")
    entry = dataclasses.replace(base, data=lambda c: data, callbacks=callbacks)
    cfg = resolve(base.default_config(), assignments=[*SMALL, *extra])
    run = RunDir(tmp_path / name).create()
    run.write_manifest(new_manifest(run, entry, cfg, []))
    return entry, cfg, run


def test_weighted_batches_are_seeded_and_balance_classes():
    labels = np.array([0] * 90 + [1] * 10)
    counts = np.bincount(labels).astype(float)
    weights = 1.0 / counts[labels]
    a = epoch_batches(100, 10, seed=3, epoch=2, drop_last=False, weights=weights)
    b = epoch_batches(100, 10, seed=3, epoch=2, drop_last=False, weights=weights)
    assert a == b
    assert a != epoch_batches(100, 10, seed=3, epoch=3, drop_last=False, weights=weights)
    drawn = np.concatenate(
        [np.concatenate(epoch_batches(100, 10, 3, e, False, weights)) for e in range(1, 21)]
    )
    share = np.bincount(labels[drawn], minlength=2) / len(drawn)
    assert share[1] == pytest.approx(0.5, abs=0.05)  # 10% of the data, half of the draws


def test_group_mean_averages_rows_of_one_sample_in_sample_order():
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.8]], dtype=np.float32)
    labels = np.array([1, 0, 0, 1])
    groups = np.array([3, 0, 0, 3])
    out, out_labels, ids = group_mean(probs, labels, groups)
    assert ids.tolist() == [0, 3]
    assert out_labels.tolist() == [0, 1]
    np.testing.assert_allclose(out, [[0.25, 0.75], [0.6, 0.4]])
    with pytest.raises(ValueError, match="different labels"):
        group_mean(probs, np.array([1, 0, 1, 1]), groups)


class Views(torch.utils.data.Dataset):
    """Each sample of a split seen as ``k`` rows (like clips or TTA views)."""

    def __init__(self, items, k):
        self.items, self.k = items, k

    def __len__(self):
        return len(self.items) * self.k

    def __getitem__(self, i):
        item = dict(self.items[i // self.k])
        item["sample"] = i // self.k
        item["video"] = item["video"] * (1.0 + 0.1 * (i % self.k))
        return item


class MultiViewData(TensorDataModule):
    def dataset(self, split):
        items = super().dataset(split)
        return items if split == "train" else Views(items, 3)


def test_multi_view_eval_writes_one_prediction_per_sample(tmp_path):
    data = MultiViewData(n=48, audio_len=30, frames=6, face_size=24, seed=2)
    entry, cfg, run = make(tmp_path, "views", data, ["train.epochs=2"])
    summary = Trainer(entry, cfg, run).fit()
    rows = [json.loads(line) for line in run.predictions.read_text().splitlines()]
    test = [r for r in rows if r["split"] == "test"]
    assert len(test) == len(data.samples("test")) == 12
    assert [r["key"] for r in test] == [s.key for s in data.samples("test")]
    assert sum(summary["test"]["confusion"][i][j] for i in range(8) for j in range(8)) == 12


class Recorder(Callback):
    def __init__(self):
        self.epochs: list[int] = []
        self.started = 0
        self.batches = 0

    def on_fit_start(self, trainer):
        self.started += 1

    def on_epoch_start(self, trainer, epoch):
        self.epochs.append(epoch)
        # Frozen until epoch 2: the optimizer must still hold these parameters.
        for p in trainer.model.head.parameters():
            p.requires_grad_(epoch >= 2)

    def on_train_batch(self, trainer, batch):
        self.batches += 1
        return batch


def test_callbacks_run_at_their_points_and_may_unfreeze(tmp_path):
    data = TensorDataModule(n=32, audio_len=30, frames=6, face_size=24, seed=1)
    recorder = Recorder()
    snapshots = []

    class Snapshot(Callback):
        def on_epoch_start(self, trainer, epoch):
            snapshots.append([p.detach().clone() for p in trainer.model.head.parameters()])

    entry, cfg, run = make(tmp_path, "cb", data, callbacks=lambda c: [recorder, Snapshot()])
    Trainer(entry, cfg, run).fit()
    assert recorder.started == 1 and recorder.epochs == [1, 2, 3]
    assert recorder.batches == 3 * 2  # 32 items, batch 16
    # Epoch 1 ran frozen (no change), epoch 2 trained it (changed).
    assert all(torch.equal(a, b) for a, b in zip(snapshots[0], snapshots[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(snapshots[1], snapshots[2], strict=True))


def test_mixed_loss_weights_both_labels():
    criterion = torch.nn.CrossEntropyLoss()
    logits = torch.randn(4, 3)
    y, y_b = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 0, 2])
    batch = {"label": y, "label_b": y_b, "mix_lam": 0.3}
    expected = 0.3 * criterion(logits, y) + 0.7 * criterion(logits, y_b)
    assert torch.allclose(mixed_loss(criterion, logits, batch), expected)
    assert torch.allclose(mixed_loss(criterion, logits, {"label": y}), criterion(logits, y))


def test_weighted_sampler_run_and_its_config_errors(tmp_path):
    data = TensorDataModule(n=40, audio_len=30, frames=6, face_size=24, seed=1)
    entry, cfg, run = make(tmp_path, "w", data, ["train.sampler=weighted", "train.epochs=1"])
    Trainer(entry, cfg, run).fit()
    assert any(e["type"] == "val" for e in read_events(run.events))
    from trainers.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.sampler"):
        resolve(get_entry("hybrid-attention").default_config(), assignments=["train.sampler=x"])
