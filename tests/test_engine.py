"""The engine on in-memory tensors: fast checks of the loop's guarantees."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch

from trainers.config import resolve
from trainers.data.tensors import TensorDataModule
from trainers.engine.signals import stop_signals
from trainers.engine.trainer import StopRequested, Trainer, new_manifest
from trainers.events import EventType, read_events
from trainers.registry import ModelEntry, get_entry
from trainers.rundir import RunDir

SMALL = [
    "model.audio_channels=16", "model.frame_width=8", "model.frame_dim=32",
    "model.tcn_channels=32", "model.d_model=32", "model.heads=2",
    "train.batch_size=16", "train.epochs=3", "train.threads=1",
]  # fmt: skip


def make(tmp_path, name, extra=()):
    base = get_entry("hybrid-attention")
    data = TensorDataModule(n=64, audio_len=40, frames=8, face_size=24, seed=1)
    entry = ModelEntry(base.name, base.description, base.config, base.build, lambda c: data)
    cfg = resolve(base.default_config(), assignments=[*SMALL, "data.face_size=24", *extra])
    run = RunDir(tmp_path / name).create()
    run.write_manifest(new_manifest(run, entry, cfg, []))
    return entry, cfg, run


class StopAt:
    """A sink that asks the trainer to stop, as SIGTERM would, at a given step."""

    def __init__(self, trainer, global_step):
        self.trainer, self.global_step = trainer, global_step

    def handle(self, event):
        if event["type"] == EventType.STEP and event["global_step"] == self.global_step:
            self.trainer.stop_signal = 15

    def close(self):
        pass


def fit_with_stop(trainer, global_step):
    original = Trainer._setup

    def setup(self):
        original(self)
        self.logger.sinks.append(StopAt(self, global_step))

    trainer._setup = setup.__get__(trainer)
    trainer.fit()


@pytest.mark.parametrize("extra", [(), ("train.grad_accum=2", "train.scheduler=onecycle")])
def test_stop_mid_epoch_then_resume_equals_uninterrupted(tmp_path, extra):
    entry, cfg, straight = make(tmp_path, "straight", extra)
    ref = Trainer(entry, cfg, straight).fit()

    entry, cfg, run = make(tmp_path, "stopped", extra)
    with pytest.raises(StopRequested):
        fit_with_stop(Trainer(entry, cfg, run), global_step=5 if not extra else 3)
    assert run.read_manifest()["status"] == "stopped"
    assert torch.load(run.last_ckpt, weights_only=False)["batches_done"] > 0
    resumed = Trainer(entry, cfg, run).fit(resume=True)

    for key in ("accuracy", "macro_f1", "loss"):
        assert resumed["test"][key] == ref["test"][key]
    a = torch.load(straight.last_ckpt, weights_only=False)["model"]
    b = torch.load(run.last_ckpt, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    seqs = [e["seq"] for e in read_events(run.events)]
    assert seqs == sorted(set(seqs))
    statuses = [e["status"] for e in read_events(run.events) if e["type"] == "status"]
    assert "stopped" in statuses and "resumed" in statuses and statuses[-1] == "completed"


def test_tensorboard_matches_events_and_summary_matches_sklearn(tmp_path):
    from sklearn import metrics as skm
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    entry, cfg, run = make(tmp_path, "tb")
    summary = Trainer(entry, cfg, run).fit()
    events = read_events(run.events)
    acc = EventAccumulator(str(run.tb))
    acc.Reload()
    steps = [e for e in events if e["type"] == "step"]
    tb_loss = {s.step: s.value for s in acc.Scalars("train/loss")}
    assert len(tb_loss) == len(steps)
    for e in steps:
        assert tb_loss[e["global_step"]] == pytest.approx(e["loss"], rel=1e-6)
    vals = [e for e in events if e["type"] == "val" and e["split"] == "val"]
    tb_acc = {s.step: s.value for s in acc.Scalars("val/macro_f1")}
    assert [tb_acc[e["global_step"]] for e in vals] == pytest.approx([e["macro_f1"] for e in vals])

    rows = [json.loads(line) for line in run.predictions.read_text().splitlines()]
    test = [r for r in rows if r["split"] == "test"]
    y, p = np.array([r["label"] for r in test]), np.array([r["pred"] for r in test])
    assert summary["test"]["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert summary["test"]["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert summary["test"]["weighted_f1"] == pytest.approx(skm.f1_score(y, p, average="weighted"))
    assert summary["test"]["uar"] == pytest.approx(skm.balanced_accuracy_score(y, p))
    assert summary["test"]["confusion"] == skm.confusion_matrix(y, p, labels=range(8)).tolist()
    assert json.loads(run.summary.read_text())["best_epoch"] == summary["best_epoch"]


def test_early_stopping_ends_the_run(tmp_path):
    entry, cfg, run = make(
        tmp_path,
        "es",
        ["train.epochs=20", "train.patience=1", "train.monitor=loss", "train.lr=1e-6"],
    )
    summary = Trainer(entry, cfg, run).fit()
    assert summary["stop_reason"] == "early_stopping"
    assert summary["epochs_run"] < 20
    assert summary["epochs_run"] == summary["best_epoch"] + 1


def test_failure_is_recorded_with_an_error_event(tmp_path):
    entry, cfg, run = make(tmp_path, "boom", ["train.lr=1e9", "train.loss=ce"])
    with pytest.raises(FloatingPointError):
        Trainer(entry, cfg, run).fit()
    events = read_events(run.events)
    assert events[-2]["type"] == "error" and "loss is" in events[-2]["message"]
    assert events[-1]["status"] == "failed"
    assert run.read_manifest()["status"] == "failed"


def test_sighup_stops_a_run_unless_the_process_ignores_it():
    """SIGHUP (the terminal closed) stops a run like SIGTERM; under nohup it stays ignored."""
    saved = signal.getsignal(signal.SIGHUP)
    try:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        assert stop_signals() == [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        assert stop_signals() == [signal.SIGTERM, signal.SIGINT]
    finally:
        signal.signal(signal.SIGHUP, saved)
