"""The one-shot CLI: deploy, runs, monitor, stop, as a researcher types them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import SMALL_MODEL, console

CANARY = "canary-secret-7f3a9c"


def test_console_killed_mid_run_then_a_new_console_picks_it_up(
    tmp_path, small_corpus, feature_cache
):
    env = {
        **os.environ,
        "EMOCONSOLE_STATE": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "AWS_SECRET_ACCESS_KEY": CANARY,
    }
    sets = [x for item in [*SMALL_MODEL, "train.epochs=8", f"data.cache_dir={feature_cache}"]
            for x in ("--set", item)]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "emoconsole", "deploy", "hybrid-attention",
         "--remote-data", str(small_corpus), "--env", "host", *sets, "--follow"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_id = proc.stdout.readline().strip()
    assert run_id.endswith(tuple("0123456789abcdef")) and "hybrid-attention" in run_id
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)  # the console dies; the run must not
    proc.wait(timeout=30)

    run_dir = tmp_path / "runs" / run_id
    pid = json.loads((run_dir / "run.json").read_text())["pid"]
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert CANARY.encode() not in environ  # credentials never reach the run

    listed = console("runs", "--host", "local", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["id"] == run_id)
    assert row["status"] in ("running", "preparing", "starting", "completed")

    # A new console finds the run through its ledger (no --host) and follows it to the end.
    followed = console("monitor", run_id, cwd=tmp_path, env=env)
    assert followed.returncode == 0, followed.stderr
    assert "completed" in followed.stdout and "test: accuracy" in followed.stdout
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    assert CANARY not in followed.stdout + followed.stderr + listed.stdout

    stopped = console("stop", run_id, cwd=tmp_path, env=env)
    assert stopped.returncode == 0 and "was not running" in stopped.stdout


def test_deploy_refuses_a_bad_key_and_says_which(tmp_path, small_corpus):
    env = {**os.environ, "EMOCONSOLE_STATE": str(tmp_path / "state")}
    out = console(
        "deploy", "hybrid-attention", "--remote-data", str(small_corpus), "--env", "host",
        "--set", "train.lerning_rate=1", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert out.returncode == 1
    assert "train.lerning_rate" in out.stderr
    assert not (tmp_path / "runs").exists() or not [
        p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")
    ]
