"""`emoconsole demo` as a user runs it: a separate training process, followed
through its run directory, ending with the summary on screen."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import SMALL_MODEL
from trainers.rundir import RunDir

pytestmark = pytest.mark.slow


def test_demo_trains_and_prints_the_summary(small_corpus, tmp_path):
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "emoconsole", "demo", "--data-dir", str(small_corpus),
           "--actors", "4", "--seed", "3", "--runs", str(runs)]  # fmt: skip
    for item in [*SMALL_MODEL, "train.epochs=2"]:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "reusing" in proc.stdout  # the corpus was not written again
    assert "test set (held-out actors)" in proc.stdout
    assert "macro-F1" in proc.stdout
    (run_path,) = [p for p in runs.iterdir() if p.is_dir()]
    run = RunDir(run_path)
    assert run.read_manifest()["status"] == "completed"
    summary = run.read_summary()
    assert summary["epochs_run"] == 2
    assert f"accuracy {summary['test']['accuracy']:.4f}" in proc.stdout
    assert not list(runs.glob(".*.stdout"))  # the captured output is removed on success


def test_demo_refuses_a_corpus_with_other_settings(small_corpus, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "emoconsole", "demo", "--data-dir", str(small_corpus),
         "--actors", "5", "--runs", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "other settings" in proc.stderr and "actors=4" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_emoconsole_without_arguments_shows_help():
    proc = subprocess.run([sys.executable, "-m", "emoconsole"], capture_output=True, text=True)
    assert "demo" in proc.stdout + proc.stderr
