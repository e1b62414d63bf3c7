"""The guard's storage leg: a run stopped on a spot notice lands in S3 (moto) with its
last checkpoint and notice.json, pushed by the guard with the instance role's
credentials from the IMDSv2 stand-in (hostctl scrubs every AWS_* variable).

The trainer is tests/test_guard.py's stand-in (the engine's contract with the guard,
in a fraction of a second); the engine itself is covered there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("remote.storage")

from remote.onhost.proc import pid_alive
from tests.test_guard import FAKE_TRAINER

pytest_plugins = ["tests.aws", "tests.imds"]


def test_a_preempted_run_is_in_storage_with_its_checkpoint_and_notice(s3, imds, tmp_path):
    runs = tmp_path / "runs"
    run_dir = runs / "r1"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(tmp_path)  # no ~/.aws: the instance role is the only credential
    out = subprocess.run(
        [sys.executable, "-m", "remote.hostctl", "launch", "--runs", str(runs),
         "--run-id", "r1", "--storage", f"s3://{s3.bucket}/runs", "--endpoint-url",
         s3.endpoint, "--region", "us-east-1", "--imds", imds.url, "--poll", "0.3",
         "--push-every", "1", "--", sys.executable, "-c", FAKE_TRAINER, str(run_dir)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    answer = json.loads(out.stdout.splitlines()[-1])
    deadline = time.monotonic() + 30
    while "runs/r1/run.json" not in s3.keys("runs/r1/"):  # the guard pushes as it trains
        assert time.monotonic() < deadline, (run_dir / "guard.log").read_text()
        time.sleep(0.1)
    imds.announce("terminate", in_s=120)
    while pid_alive(answer["guard_pid"]):
        assert time.monotonic() < deadline + 30, (run_dir / "guard.log").read_text()
        time.sleep(0.1)
    keys = s3.keys("runs/r1/")
    assert {"runs/r1/checkpoints/last.pt", "runs/r1/notice.json"} <= set(keys), keys
    assert s3.body("runs/r1/checkpoints/last.pt") == (run_dir / "checkpoints/last.pt").read_bytes()
    notice = json.loads(s3.body("runs/r1/notice.json"))
    assert notice["source"] == "spot" and notice["pushed"] is True
    assert notice["stopped_at"] <= notice["pushed_at"] < notice["time"]
    assert json.loads(s3.body("runs/r1/run.json"))["status"] == "preempted"
    # The credentials came from the stand-in (instance role), not from any variable.
    assert any("security-credentials" in path for _, path in imds.requests)
