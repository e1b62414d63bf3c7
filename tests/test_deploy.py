"""Deploy, list, stop: real detached training processes, locally and over a real sshd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

import psutil
import pytest

from remote.deploy import (
    DeployError,
    deploy,
    list_runs,
    project_archive,
    ship_code,
    stop_run,
)
from remote.layout import resolve_layout
from remote.local import LocalHost
from tests.conftest import SMALL_MODEL

pytest_plugins = ["tests.sshd"]
REPO = Path(__file__).resolve().parents[1]

TINY = [*SMALL_MODEL, "train.epochs=2"]


def wait_for(predicate, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _event_type(line: str) -> str | None:
    try:
        return json.loads(line).get("type")
    except ValueError:  # the line being written
        return None


def row_of(host, run_id):
    return next((r for r in list_runs(host) if r["id"] == run_id), None)


def test_archive_is_reproducible_and_holds_the_packages():
    a, digest_a = project_archive()
    b, digest_b = project_archive()
    assert a == b and digest_a == digest_b
    with tarfile.open(fileobj=BytesIO(a)) as tar:
        names = tar.getnames()
    for needed in ("pyproject.toml", "uv.lock", "trainers/cli.py", "remote/hostctl.py"):
        assert needed in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert not any(n.startswith(("tests/", "runs/", ".venv/")) for n in names)


def test_unchanged_code_is_shipped_once(tmp_path):
    host = LocalHost("box", workdir=str(tmp_path / "work"))
    layout = resolve_layout(host)
    said: list[str] = []
    first = ship_code(host, layout, said.append)
    second = ship_code(host, layout, said.append)
    assert first == second
    assert said[0].startswith("shipping code") and said[1].endswith("already on box")


def test_local_deploy_is_detached_idempotent_and_listed(tmp_path, small_corpus, feature_cache):
    host = LocalHost("box", workdir=str(tmp_path / "work"))
    overrides = [*TINY, f"data.cache_dir={feature_cache}"]
    launch = deploy(
        host, "hybrid-attention", data=str(small_corpus), overrides=overrides, env="host"
    )
    assert launch.launched and launch.pid
    code_dir = Path(launch.code_dir)
    assert (code_dir / ".complete").exists() and (code_dir / "trainers" / "engine").is_dir()
    assert os.path.realpath(tmp_path / "work" / "code" / "current") == str(code_dir)
    # Its own session: a signal to this process group (a closing terminal) misses it.
    assert os.getsid(launch.pid) == launch.pid != os.getsid(0)

    # The retry after a "lost connection": same id, no second process.
    again = deploy(host, "hybrid-attention", data=str(small_corpus), overrides=overrides,
                   run_id=launch.run_id)  # fmt: skip
    assert not again.launched and again.pid == launch.pid

    row = wait_for(lambda: (r := row_of(host, launch.run_id)) and r["status"] == "completed"
                   and r, timeout=240, what="the run to complete")  # fmt: skip
    assert row["model"] == "hybrid-attention" and row["epoch"] == 2 and row["best"] is not None
    run_dir = Path(launch.run_dir)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["type"] == "status" and e["status"] == "starting"]
    assert len(starts) == 1  # exactly one training process ever wrote here


def test_wrong_config_key_stops_before_anything_starts(tmp_path, small_corpus, feature_cache):
    host = LocalHost("box", workdir=str(tmp_path / "work"))
    with pytest.raises(DeployError, match=r"train\.nope"):
        deploy(
            host, "hybrid-attention", data=str(small_corpus), overrides=["train.nope=1"], env="host"
        )
    assert not (tmp_path / "work" / "runs").exists() or not any(
        p for p in (tmp_path / "work" / "runs").iterdir() if not p.name.startswith(".")
    )


def test_stop_leaves_a_checkpoint_that_resume_continues(tmp_path, small_corpus, feature_cache):
    host = LocalHost("box", workdir=str(tmp_path / "work"))
    overrides = [
        *SMALL_MODEL,
        "train.epochs=12",
        "train.patience=50",
        f"data.cache_dir={feature_cache}",
    ]
    launch = deploy(
        host, "hybrid-attention", data=str(small_corpus), overrides=overrides, env="host"
    )
    run_dir = Path(launch.run_dir)

    def stepped():
        try:
            lines = (run_dir / "events.jsonl").read_text().splitlines()
            return any(json.loads(line)["type"] == "step" for line in lines)
        except (OSError, ValueError):
            return False

    wait_for(stepped, timeout=240, what="the first training step")
    answer = stop_run(host, launch.run_id, grace=60)
    assert answer["was_running"] and answer["signal"] == "TERM"
    assert answer["status"] == "stopped" and answer["last_ckpt"]
    assert not psutil.pid_exists(launch.pid) or psutil.Process(launch.pid).status() == "zombie"
    assert row_of(host, launch.run_id)["status"] == "stopped"

    env = {**os.environ, "PYTHONPATH": launch.code_dir}
    done = subprocess.run(
        [sys.executable, "-m", "trainers", "resume", str(run_dir)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_run"] == 12
    statuses = [
        json.loads(line).get("status")
        for line in (run_dir / "events.jsonl").read_text().splitlines()
    ]
    assert {"stopped", "resumed", "completed"} <= set(statuses)
    # A second stop finds nothing running and says so.
    assert stop_run(host, launch.run_id)["was_running"] is False


def test_deploy_stop_first_replaces_a_run_but_not_for_a_bad_config(
    tmp_path, small_corpus, feature_cache
):
    host = LocalHost("box", workdir=str(tmp_path / "work"))
    common = [*SMALL_MODEL, "train.patience=50", f"data.cache_dir={feature_cache}"]
    old = deploy(host, "hybrid-attention", data=str(small_corpus),
                 overrides=[*common, "train.epochs=50"], env="host")  # fmt: skip
    wait_for(lambda: (r := row_of(host, old.run_id)) and r["status"] == "running",
             timeout=240, what="the first run to train")  # fmt: skip
    # A typo in the replacement: refused, and the run it was to replace goes on.
    with pytest.raises(DeployError, match=r"train\.nope"):
        deploy(host, "hybrid-attention", data=str(small_corpus),
               overrides=[*common, "train.nope=1"], env="host", stop_first=old.run_id)  # fmt: skip
    assert row_of(host, old.run_id)["status"] == "running"
    new = deploy(host, "hybrid-attention", data=str(small_corpus), env="host",
                 overrides=[*common, "train.epochs=50"], stop_first=old.run_id)  # fmt: skip
    try:
        assert new.launched and new.run_id != old.run_id
        stopped = row_of(host, old.run_id)
        assert stopped["status"] == "stopped"
        assert (Path(old.run_dir) / "checkpoints" / "last.pt").exists()
        assert not psutil.pid_exists(old.pid) or psutil.Process(old.pid).status() == "zombie"
    finally:
        stop_run(host, new.run_id, grace=60)


def test_deploy_over_ssh_survives_the_console_disconnecting(
    sshd, ssh_env, tmp_path, small_corpus, feature_cache
):
    ssh_env.trust(sshd)
    host = sshd.ssh_host(workdir=str(tmp_path / "remote-work"))
    # Long enough to be stopped mid-run (a stop at the first step leaves ~6 epochs).
    overrides = [*SMALL_MODEL, "train.epochs=6", "train.patience=50",
                 f"data.cache_dir={feature_cache}"]  # fmt: skip
    # The data travels too (the loopback "host" could read it in place; a real one cannot).
    launch = deploy(host, "hybrid-attention", data="", upload=small_corpus, overrides=overrides,
                    env="host")  # fmt: skip
    assert launch.argv[launch.argv.index("--data") + 1].endswith("/remote-work/data/ravdess")
    host.close()  # the console goes away; the run must not notice

    host = sshd.ssh_host(workdir=str(tmp_path / "remote-work"))
    try:
        from remote.resume import resume_run, wait_taken_over
        from remote.watch import EventItem, follow

        events = f"{launch.run_dir}/events.jsonl"

        def stepped() -> bool:
            lines = host.run(["cat", events], timeout=30).stdout.splitlines()
            return any(_event_type(line) == "step" for line in lines)

        wait_for(stepped, timeout=240, what="the first step over SSH")
        # Stopped and resumed over SSH: the interpreter and code the run started with,
        # found from its launch record on the host.
        assert stop_run(host, launch.run_id, grace=60)["status"] == "stopped"
        resumed = resume_run(host, launch.run_id)
        assert resumed.python == launch.python and resumed.code_dir == launch.code_dir
        # Followed only once the new process owns the run: before, "stopped" is its end.
        wait_taken_over(host, resumed, timeout=240)
        statuses = [
            item.event["status"]
            for item in follow(host, f"runs/{launch.run_id}", interval=0.5)
            if isinstance(item, EventItem) and item.event["type"] == "status"
        ]
        assert statuses[-1] == "completed"
        assert {"stopped", "resumed"} <= set(statuses), statuses
        assert row_of(host, launch.run_id)["status"] == "completed"
    finally:
        host.close()


def test_a_run_that_dies_at_once_is_reported_with_its_output(tmp_path, feature_cache):
    host = LocalHost("box", workdir=str(tmp_path / "work"))
    with pytest.raises(DeployError, match="no such directory") as info:
        deploy(host, "hybrid-attention", data=str(tmp_path / "missing"), env="host")
    assert "exited" in str(info.value) and "output.log" in str(info.value)


def test_data_upload_sends_only_what_differs(sshd, ssh_env, tmp_path):
    from remote.sync import upload_dir

    ssh_env.trust(sshd)
    src = tmp_path / "data"
    (src / "Actor_01").mkdir(parents=True)
    for i in range(5):
        (src / "Actor_01" / f"clip{i}.mp4").write_bytes(os.urandom(20_000 + i))
    remote = str(tmp_path / "remote-data")
    for method in ("tar", "files"):
        host = sshd.ssh_host(workdir=str(REPO))
        try:
            first = upload_dir(host, src, f"{remote}-{method}", method=method)
            assert len(first.sent) == 5 and not first.skipped
            (src / "Actor_01" / "clip2.mp4").write_bytes(os.urandom(777))
            second = upload_dir(host, src, f"{remote}-{method}", method=method)
            assert second.sent == ["Actor_01/clip2.mp4"] and len(second.skipped) == 4
            assert second.bytes_sent == 777
            copy = Path(f"{remote}-{method}") / "Actor_01" / "clip2.mp4"
            assert copy.read_bytes() == (src / "Actor_01" / "clip2.mp4").read_bytes()
        finally:
            host.close()
