"""`emoconsole demo` as a user runs it: a separate training process, followed
through its run directory, ending with the summary on screen."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import SMALL_MODEL
from trainers.events import read_events
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


def test_closing_the_terminal_stops_the_demos_run_with_a_checkpoint(small_corpus, tmp_path):
    """SIGHUP to the demo (its terminal closed): the demo exits 129 and its training
    process, in a session of its own, is stopped as `q` stops it: a checkpoint and
    status `stopped`, not a process killed mid-epoch."""
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "emoconsole", "demo", "--data-dir", str(small_corpus),
           "--actors", "4", "--seed", "3", "--runs", str(runs)]  # fmt: skip
    for item in [*SMALL_MODEL, "train.epochs=50"]:
        cmd += ["--set", item]
    demo = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def run_dir() -> RunDir | None:
        found = [p for p in runs.iterdir() if p.is_dir()] if runs.exists() else []
        return RunDir(found[0]) if found else None

    def training() -> bool:
        run = run_dir()
        return bool(run and run.events.exists()) and any(
            e["type"] == "step" for e in read_events(run.events)
        )

    run = None
    try:
        _until(training, 240, "the first training step")
        run = run_dir()
        demo.send_signal(signal.SIGHUP)
        assert demo.wait(30) == 128 + signal.SIGHUP
        _until(lambda: run.read_manifest().get("status") == "stopped", 120, "status stopped")
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if run is not None and run.read_manifest().get("status") != "stopped":
            # The training process outlives the demo (its own session): never leave it.
            with contextlib.suppress(ProcessLookupError, KeyError):
                os.kill(run.read_manifest()["pid"], signal.SIGKILL)
    assert run.last_ckpt.exists() and run.read_summary() is None
    last = [e for e in read_events(run.events) if e["type"] == "status"][-1]
    assert last["status"] == "stopped" and last["signal"] == signal.SIGTERM


def _until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


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


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def _screen_until(session: str, want, timeout: float = 120.0, what: str = "") -> str:
    """capture-pane until ``want(screen)`` holds; the screen, or an error showing it."""
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _tmux("capture-pane", "-p", "-t", session)
        if want(screen):
            return screen
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")


def test_demo_opens_the_dashboard_in_a_real_terminal(small_corpus, tmp_path):
    """tmux runs `emoconsole demo` as a user would: the dashboard opens on the run, an
    epoch's validation line streams in, Escape shows the runs table with the run, Enter
    opens it again, / searches the log, q quits and the summary is printed."""
    if not shutil.which("tmux"):
        pytest.skip("no tmux: apt-get install tmux to run")
    session = f"emo-demo-{uuid.uuid4().hex[:8]}"
    sets = " ".join(f"--set {item}" for item in [*SMALL_MODEL, "train.epochs=4"])
    demo = (
        f"cd {tmp_path} && {sys.executable} -m emoconsole demo --data-dir {small_corpus} "
        f"--actors 4 --seed 3 {sets}; echo DEMO-EXIT=$?; sleep 120"
    )
    env = {"EMOCONSOLE_CONFIG": str(tmp_path / "no-hosts.toml"), "TERM": "xterm-256color"}
    _tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "45",
          *[a for k, v in env.items() for a in ("-e", f"{k}={v}")], demo)  # fmt: skip
    try:
        screen = _screen_until(session, lambda s: "epoch 1 val:" in s, what="epoch 1's val line")
        (run_path,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
        run_id = run_path.name
        assert "Search log" in screen  # the run view's footer shows its bindings
        _tmux("send-keys", "-t", session, "Escape")
        screen = _screen_until(session, lambda s: run_id in s and "hybrid-attention" in s,
                               what="the runs table with the run")  # fmt: skip
        assert "local" in screen
        _tmux("send-keys", "-t", session, "Enter")
        _screen_until(session, lambda s: "epoch 1 val:" in s, what="the run view again")
        _tmux("send-keys", "-t", session, "/")
        _screen_until(session, lambda s: "search the log" in s, what="the search box")
        _tmux("send-keys", "-t", session, "-l", "test:")
        screen = _screen_until(session, lambda s: "epoch 1 val:" not in s and "test:" in s,
                               what="only the matching log lines")  # fmt: skip
        _tmux("send-keys", "-t", session, "Enter")
        _screen_until(session, lambda s: "completed" in s, what="the run to complete")
        _tmux("send-keys", "-t", session, "q")
        screen = _screen_until(session, lambda s: "DEMO-EXIT=" in s, what="the demo to exit")
        assert "DEMO-EXIT=0" in screen and "test set (held-out actors)" in screen
        assert RunDir(run_path).read_manifest()["status"] == "completed"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
