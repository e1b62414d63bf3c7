"""Gradient norms in the step events: the norm the optimizer step used, before clipping.

The reference is taken independently of the engine's own computation: an optimizer
step pre-hook reads the gradients at the moment ``optimizer.step`` receives them
(accumulated, all-reduced, unscaled) and asks ``clip_grad_norm_`` (with an infinite
threshold, which leaves them unchanged) for their norm.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from emoconsole.dashboard.series import ScalarSeries
from trainers.config import resolve
from trainers.data.tensors import TensorDataModule
from trainers.engine.callbacks import Callback
from trainers.engine.trainer import Trainer, new_manifest
from trainers.events import read_events
from trainers.registry import get_entry
from trainers.rundir import RunDir

SMALL = [
    "model.audio_channels=16", "model.frame_width=8", "model.frame_dim=32",
    "model.tcn_channels=32", "model.d_model=32", "model.heads=2", "data.face_size=24",
    "train.batch_size=16", "train.epochs=1", "train.threads=1", "train.sample_predictions=0",
]  # fmt: skip


class NormProbe(Callback):
    """``clip_grad_norm_``'s value on the gradients each optimizer step receives, by
    global step; optionally runs the loop under CPU autocast (the engine enables AMP on
    CUDA only) with fp16's grad scaler, as a CUDA run with ``train.amp`` would."""

    def __init__(self, amp: torch.dtype | None = None) -> None:
        self.amp = amp
        self.norms: dict[int, float] = {}

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.amp is not None:
            trainer.amp = self.amp
            if self.amp == torch.float16:
                # A scale too high for the first step, as fp16 training meets it: the
                # first step overflows and is skipped, the scale drops to 2**16.
                trainer.scaler = torch.amp.GradScaler(
                    "cpu", init_scale=2.0**40, backoff_factor=2.0**-24
                )

        def before_step(optimizer, args, kwargs):
            params = [p for p in trainer.model.parameters() if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
            self.norms[trainer.global_step + 1] = float(norm)

        trainer.optimizer.register_step_pre_hook(before_step)


def fit(tmp_path, name, extra=(), callbacks=(), epochs=1):
    base = get_entry("hybrid-attention")
    data = TensorDataModule(n=64, audio_len=40, frames=8, face_size=24, seed=1)
    entry = dataclasses.replace(base, data=lambda c: data, callbacks=lambda c: list(callbacks))
    cfg = resolve(base.default_config(), assignments=[*SMALL, f"train.epochs={epochs}", *extra])
    run = RunDir(tmp_path / name).create()
    run.write_manifest(new_manifest(run, entry, cfg, []))
    trainer = Trainer(entry, cfg, run)
    summary = trainer.fit()
    return trainer, run, summary, read_events(run.events)


@pytest.mark.parametrize(
    ("extra", "amp"),
    [
        (("train.grad_accum=2", "train.log_grad_norms_every=1"), None),
        ((), torch.bfloat16),
        (("train.grad_accum=2",), torch.float16),
    ],
    ids=["fp32-accum2-groups", "bf16", "fp16-scaler-accum2"],
)
def test_logged_norm_is_clip_grad_norms_value_at_that_step(tmp_path, extra, amp):
    probe = NormProbe(amp)
    trainer, run, summary, events = fit(tmp_path, "run", extra, [probe])
    steps = [e for e in events if e["type"] == "step"]
    assert [e["global_step"] for e in steps] == list(range(1, trainer.global_step + 1))
    for e in steps:
        if e["grad_norm"] is None:  # fp16: the scaler found inf and skipped the step
            assert e["global_step"] not in probe.norms
        else:
            assert e["grad_norm"] == pytest.approx(probe.norms[e["global_step"]], rel=1e-6)
    taken = [e for e in steps if e["grad_norm"] is not None]
    assert taken and all(e["grad_norm"] > 0 for e in taken)
    skipped = len(steps) - len(taken)
    assert summary["grad_norm_nonfinite"] == skipped
    assert json.loads(run.summary.read_text())["grad_norm_nonfinite"] == skipped
    warned = [e for e in events if e["type"] == "warning"]
    if amp == torch.float16:
        assert trainer.scaler.get_scale() == 2.0**16
        assert skipped == 1 and steps[0]["grad_norm"] is None
        assert len(warned) == 1 and "normal in the first steps" in warned[0]["message"]
    else:
        assert skipped == 0 and not warned
    if "train.log_grad_norms_every=1" in extra:
        # The groups partition the parameters: their norms make up the total.
        for e in steps:
            groups = e["grad_norms"]
            assert {"audio1", "frames", "head"} <= set(groups)
            total = math.sqrt(sum(v * v for v in groups.values()))
            assert total == pytest.approx(e["grad_norm"], rel=1e-4)
    else:
        assert all("grad_norms" not in e for e in steps)
    # sample_predictions=0: no samples events, no pictures.
    assert not any(e["type"] == "samples" for e in events)
    assert not (run.path / "samples").exists()


def test_norm_is_taken_before_clipping_and_shown_in_tensorboard(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    returned: list[float] = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        norm = real(parameters, max_norm, *args, **kwargs)
        if max_norm != float("inf"):  # the engine's call, not the probe's
            returned.append(float(norm))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    probe = NormProbe()
    extra = ("train.clip_grad_norm=0.001", "train.log_grad_norms_every=2")
    _, run, _, events = fit(tmp_path, "clip", extra, [probe])
    steps = [e for e in events if e["type"] == "step"]
    assert [e["grad_norm"] for e in steps] == pytest.approx(returned, rel=1e-6)
    for e in steps:
        # The optimizer saw the clipped gradient; the event reports the one before.
        assert probe.norms[e["global_step"]] == pytest.approx(0.001, rel=1e-3)
        assert e["grad_norm"] > 0.01
        assert ("grad_norms" in e) == (e["global_step"] % 2 == 0)

    acc = EventAccumulator(str(run.tb))
    acc.Reload()
    tb = {s.step: s.value for s in acc.Scalars("train/grad_norm")}
    assert tb == pytest.approx({e["global_step"]: e["grad_norm"] for e in steps}, rel=1e-6)
    grouped = [e for e in steps if "grad_norms" in e]
    head = {s.step: s.value for s in acc.Scalars("grad_norm/head")}
    assert head == pytest.approx({e["global_step"]: e["grad_norms"]["head"] for e in grouped})

    # The run view's grid of curves gets the same series under the same names.
    curves = ScalarSeries()
    for e in events:
        curves.add_event(e)
    assert {"train/grad_norm", "grad_norm/head", "grad_norm/audio1"} <= set(curves.series)
    norm = curves.series["train/grad_norm"]
    assert dict(zip(norm.xs, norm.ys, strict=True)) == pytest.approx(tb, rel=1e-6)
    assert curves.series["grad_norm/head"].xs == [float(e["global_step"]) for e in grouped]


class PoisonGradient(Callback):
    """Makes one parameter's gradient inf at the given optimizer steps (1-based)."""

    def __init__(self, steps: set[int]) -> None:
        self.steps = steps

    def on_fit_start(self, trainer: Trainer) -> None:
        param = next(trainer.model.head.parameters())

        def poison(grad):
            if trainer.global_step + 1 in self.steps:
                return torch.full_like(grad, float("inf"))
            return grad

        param.register_hook(poison)


def test_non_finite_norm_is_null_skipped_counted_and_warned_once_per_epoch(tmp_path):
    _, run, summary, events = fit(tmp_path, "inf", callbacks=[PoisonGradient({2, 3, 6})], epochs=2)
    text = run.events.read_text()
    assert "NaN" not in text and "Infinity" not in text
    steps = {e["global_step"]: e for e in events if e["type"] == "step"}
    assert [n for n, e in steps.items() if e["grad_norm"] is None] == [2, 3, 6]
    warnings = [e for e in events if e["type"] == "warning" and e["kind"] == "grad_norm_nonfinite"]
    assert [(w["epoch"], w["global_step"], w["count"]) for w in warnings] == [(1, 2, 1), (2, 6, 3)]
    assert "skipped" in warnings[0]["message"]
    assert summary["grad_norm_nonfinite"] == 3
    assert json.loads(run.summary.read_text())["grad_norm_nonfinite"] == 3
    assert events[-1]["status"] == "completed"
    # The skipped steps left the weights finite, so the run trained on.
    weights = torch.load(run.last_ckpt, weights_only=True)["model"]
    assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    assert "gradient norm not finite" in run.train_log.read_text()
    assert np.isfinite(summary["test"]["loss"])


def test_config_errors_name_the_key():
    from trainers.config import ConfigError

    default = get_entry("hybrid-attention").default_config  # resolve() sets it in place
    with pytest.raises(
        ConfigError, match=r"train\.log_grad_norms_every.*multiple of train\.log_every"
    ):
        resolve(default(), assignments=["train.log_every=2", "train.log_grad_norms_every=3"])
    with pytest.raises(ConfigError, match=r"train\.sample_predictions.*>= 0"):
        resolve(default(), assignments=["train.sample_predictions=-1"])
    cfg = resolve(default(), assignments=["train.log_every=2", "train.log_grad_norms_every=4"])
    assert cfg.train.log_grad_norms_every == 4 and cfg.train.sample_predictions == 8
