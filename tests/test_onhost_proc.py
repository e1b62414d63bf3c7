"""One answer to "is the run's process still running?" for the runs table (hostctl
list) and the run view (the watcher's samples), pid reuse included."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from remote.onhost.hostctl import describe_run
from remote.onhost.proc import pid_alive, process_start_time, run_alive
from remote.onhost.watcher import Sampler
from trainers.rundir import RunDir


def test_start_time_of_this_process_is_when_it_started():
    born = process_start_time(os.getpid())
    assert born is not None and time.time() - 3600 < born <= time.time()


def test_a_pid_held_by_a_younger_process_is_a_reused_pid():
    born = process_start_time(os.getpid())
    manifest = {"pid": os.getpid(), "host": socket.gethostname()}
    assert run_alive({**manifest, "started_at": born + 1}) is True  # run.json after the start
    assert run_alive({**manifest, "started_at": born - 600}) is False  # someone else's pid
    # A resume writes a new start: the newest one counts.
    assert run_alive({**manifest, "started_at": born - 600, "resumes": [{"at": born}]}) is True


def test_cannot_tell_for_another_machine_or_no_pid():
    assert run_alive({"pid": os.getpid(), "host": "not-" + socket.gethostname()}) is None
    assert run_alive({"host": socket.gethostname()}) is None


def test_a_zombie_is_not_running():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while pid_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child.pid)  # exited, not yet reaped: a zombie
    child.wait()


def test_runs_table_and_run_view_agree_on_a_reused_pid(tmp_path):
    run_dir = tmp_path / "20260101-000000-m-0000"
    run_dir.mkdir()
    born = process_start_time(os.getpid())
    manifest = {
        "id": run_dir.name, "model": "m", "status": "running", "pid": os.getpid(),
        "host": socket.gethostname(), "started_at": born - 600, "config": {},
    }  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(manifest))
    assert describe_run(run_dir)["status"] == "crashed"
    assert Sampler(RunDir(run_dir)).sample(manifest)["alive"] is False
