"""Headless training through the CLI on real generated files: the run
directory, kill -9 and resume, bad inputs, TensorBoard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.conftest import SMALL_MODEL, run_trainers, trainers_cmd
from trainers.events import read_events, validate_event
from trainers.rundir import RunDir

pytestmark = pytest.mark.slow


def settings(cache, epochs=4):
    out = []
    for item in [*SMALL_MODEL, f"train.epochs={epochs}", f"data.cache_dir={cache}"]:
        out += ["--set", item]
    return out


def train(data, out, run_id, cache, epochs):
    """`python -m trainers train hybrid-attention` at the tests' small size."""
    return run_trainers(
        "train",
        "hybrid-attention",
        "--data",
        str(data),
        "--out",
        str(out),
        "--run-id",
        run_id,
        *settings(cache, epochs),
    )


@pytest.fixture(scope="module")
def straight(small_corpus, feature_cache, tmp_path_factory) -> RunDir:
    """One uninterrupted 4-epoch run, shared: the run directory's contents, TensorBoard
    against events, and the reference a killed-then-resumed run must equal."""
    out = tmp_path_factory.mktemp("straight")
    proc = train(small_corpus, out, "straight", feature_cache, 4)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return RunDir(out / "straight")


def test_train_writes_a_complete_run_directory(small_corpus, straight):
    run = straight
    for path in (
        run.run_json,
        run.events,
        run.train_log,
        run.summary,
        run.best_ckpt,
        run.last_ckpt,
        run.bad_inputs,
        run.predictions,
    ):
        assert path.exists(), path
    assert list(run.tb.iterdir())
    manifest = run.read_manifest()
    assert manifest["status"] == "completed" and manifest["model"] == "hybrid-attention"
    assert manifest["config"]["train"]["epochs"] == 4
    assert manifest["config"]["data"]["root"] == str(small_corpus.resolve())
    events = read_events(run.events)
    for i, event in enumerate(events, start=1):
        validate_event(event, i)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    types = {e["type"] for e in events}
    assert {"status", "epoch_start", "step", "val", "checkpoint"} <= types
    step = next(e for e in events if e["type"] == "step")
    assert step["data_s"] >= 0 and step["compute_s"] > 0
    summary = run.read_summary()
    assert summary["epochs_run"] == 4
    assert set(summary["test"]) >= {
        "accuracy",
        "macro_f1",
        "weighted_f1",
        "uar",
        "per_class",
        "confusion",
    }
    # actor-disjoint: the test actor never appears in training predictions' actors
    rows = [json.loads(x) for x in run.predictions.read_text().splitlines()]
    assert {r["actor"] for r in rows if r["split"] == "test"}.isdisjoint(
        {r["actor"] for r in rows if r["split"] == "val"}
    )
    assert "epoch 4 val:" in run.train_log.read_text()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_then_resume_matches_an_uninterrupted_run(
    small_corpus, feature_cache, straight, tmp_path
):
    args = ["--data", str(small_corpus), "--out", str(tmp_path), *settings(feature_cache, 4)]
    proc = subprocess.Popen(
        trainers_cmd("train", "hybrid-attention", "--run-id", "killed", *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run = RunDir(tmp_path / "killed")

    def in_epoch_3():
        return run.events.exists() and any(
            e["type"] == "step" and e["epoch"] == 3 for e in read_events(run.events)
        )

    try:
        wait_for(in_epoch_3, 240, "epoch 3 to start")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert run.read_summary() is None  # it really died before the end
    resumed = run_trainers("resume", str(run.path))
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    a, b = straight.read_summary(), run.read_summary()
    for split in ("val", "test"):
        for key in ("accuracy", "macro_f1", "weighted_f1", "uar", "loss", "confusion"):
            assert b[split][key] == a[split][key], (split, key)
    assert b["best_epoch"] == a["best_epoch"]
    events = read_events(run.events)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    resumed_ev = next(e for e in events if e.get("status") == "resumed")
    assert resumed_ev["from_epoch"] == 2
    assert len(run.read_manifest()["resumes"]) == 1


def test_sighup_stops_training_like_sigterm(small_corpus, feature_cache, tmp_path):
    """The terminal running `train` closes: the run checkpoints, says `stopped`, exits 129."""
    args = ["--data", str(small_corpus), "--out", str(tmp_path), *settings(feature_cache, 50)]
    proc = subprocess.Popen(
        trainers_cmd("train", "hybrid-attention", "--run-id", "hangup", *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    run = RunDir(tmp_path / "hangup")

    def training():
        return run.events.exists() and any(e["type"] == "step" for e in read_events(run.events))

    try:
        wait_for(training, 240, "the first training step")
        os.kill(proc.pid, signal.SIGHUP)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signal.SIGHUP, stderr.decode(errors="replace")[-2000:]
    last = [e for e in read_events(run.events) if e["type"] == "status"][-1]
    assert last["status"] == "stopped" and last["signal"] == signal.SIGHUP
    assert run.read_manifest()["status"] == "stopped"
    assert run.last_ckpt.exists() and run.read_summary() is None
    assert f"resume {run.path}" in stderr.decode()


def test_tensorboard_scalars_match_events(straight):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = straight
    events = read_events(run.events)
    acc = EventAccumulator(str(run.tb))
    acc.Reload()
    steps = [e for e in events if e["type"] == "step"]
    tb = {s.step: s.value for s in acc.Scalars("train/loss")}
    assert sorted(tb) == [e["global_step"] for e in steps]
    assert [tb[e["global_step"]] for e in steps] == pytest.approx([e["loss"] for e in steps])
    vals = [e for e in events if e["type"] == "val" and e["split"] == "val"]
    for key in ("accuracy", "uar", "loss"):
        tb_val = {s.step: s.value for s in acc.Scalars(f"val/{key}")}
        assert [tb_val[e["global_step"]] for e in vals] == pytest.approx([e[key] for e in vals])


def test_truncated_mp4_and_empty_wav_are_skipped_and_listed(small_corpus, feature_cache, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_corpus, data)
    mp4 = sorted(data.glob("Actor_01/01-*.mp4"))[0]
    wav = sorted(data.glob("Actor_02/03-*.wav"))[0]
    blob = mp4.read_bytes()
    mp4.write_bytes(blob[: len(blob) // 2])
    wav.write_bytes(b"")
    proc = train(data, tmp_path, "bad", feature_cache, 1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = RunDir(tmp_path / "bad")
    bad = {row["path"]: row["reason"] for row in run.read_bad_inputs()}
    assert set(bad) == {str(mp4), str(wav)}, bad
    assert all(reason for reason in bad.values())
    assert run.read_manifest()["status"] == "completed"
    assert run.read_summary()["bad_inputs"] == 2
