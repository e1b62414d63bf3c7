"""Notifications of a run's end (issue 16, item 5).

The host's half: ``hostctl launch --notify-url`` (what ``deploy`` runs for a host with
``notify_url`` in hosts.toml: tests/test_deploy_sweep.py goes that whole way with real
training runs) starts the run's guard, which POSTs to the webhook (a loopback stand-in
for Slack's, tests/webhooks.py) when a run completes and when one is killed with
SIGKILL, and not when a user stopped it; the URL, a secret, is in no launch record, log
or run file.

The console's half: ``emoconsole monitor`` and the dashboard ring the bell and run the
desktop notifier (a real ``notify-send`` script put first on PATH, recording its
arguments) once for a run that ends while they are open, and never for one that had
ended before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from emoconsole.dashboard.app import Dashboard
from emoconsole.notify import StreamEnding
from remote.config import HostConfig
from remote.onhost.proc import pid_alive
from remote.onhost.webhook import experiment_status, post_json, redact
from remote.watch import EventItem, SysItem
from tests.conftest import console
from tests.test_dashboard import make_run, sync, wait_for
from trainers.events import EventType, RunStatus
from trainers.rundir import write_json_atomic

if TYPE_CHECKING:
    from tests.webhooks import WebhookStandIn

pytest_plugins = ["tests.webhooks"]


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


# -- the host's webhook --------------------------------------------------------------------------


# A trainer where the engine is not what is tested (tests/test_guard.py's reasoning; the
# real engine's runs end in tests/test_deploy_sweep.py): it writes run.json, train.log,
# summary.json and the progress record as the engine does, then ends with the status it
# is given ("never": it trains until killed).
ENDING_TRAINER = """
import json, os, sys, time
from pathlib import Path
from trainers.rundir import write_json_atomic
run, status = Path(sys.argv[1]), sys.argv[2]
run.mkdir(parents=True)
manifest = {"id": run.name, "model": "hybrid-attention", "pid": os.getpid(),
            "status": "running", "started_at": time.time() - 75, "host": "gpu1"}
write_json_atomic(run / "run.json", manifest)
(run / "train.log").write_text("INFO epoch 1/40 ...\\nINFO still training\\n")
time.sleep(1.0 if status != "never" else 600)
write_json_atomic(run / "summary.json", {"test": {"accuracy": 0.75, "macro_f1": 0.7, "uar": 0.72}})
progress = {"best": 0.71, "best_epoch": 3, "monitor": "macro_f1", "epoch": 4, "epochs": 4}
write_json_atomic(run / "run.json", {**manifest, "status": status, "ended_at": time.time(),
                                     "progress": progress})
"""


def launch(runs: Path, run_id: str, url: str, *trainer_args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "remote.hostctl", "launch", "--runs", str(runs), "--run-id",
         run_id, "--notify-url", url, "--", sys.executable, "-c", ENDING_TRAINER,
         str(runs / run_id), *trainer_args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_the_guard_posts_a_completed_run_and_a_killed_one_not_a_stopped_one(
    tmp_path, webhook: WebhookStandIn
):
    """``hostctl launch --notify-url`` (what deploy runs for a host with notify_url;
    tests/test_deploy_sweep.py goes through deploy): three runs end three ways."""
    runs = tmp_path / "runs"
    webhook.posts.clear()
    done = launch(runs, "done", webhook.url, "completed")
    halted = launch(runs, "halted", webhook.url, "stopped")
    killed = launch(runs, "killed", webhook.url, "never")  # it would train on and on
    # The run's own environment never holds the URL (the guard's alone does).
    assert webhook.secret.encode() not in Path(f"/proc/{killed['pid']}/environ").read_bytes()
    assert webhook.secret.encode() in Path(f"/proc/{killed['guard_pid']}/environ").read_bytes()
    log = runs / "killed" / "train.log"
    wait_until(lambda: log.exists() and log.stat().st_size, 30, "the run's log")
    os.kill(killed["pid"], signal.SIGKILL)  # no status written: the guard must call it crashed
    guards = [done["guard_pid"], halted["guard_pid"], killed["guard_pid"]]
    wait_until(lambda: not any(map(pid_alive, guards)), 60, "the guards to leave")
    bodies = {b["text"].split()[1]: b for b in (p["body"] for p in webhook.posts)}
    assert sorted(bodies) == ["done", "killed"]  # a user's stop is not news
    text = (
        "run done (hybrid-attention) on gpu1: completed after 1m16s\n"
        "best macro_f1 0.7100 (epoch 3); test accuracy 0.7500, macro-f1 0.7000, uar 0.7200"
    )
    section = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    assert bodies["done"] == {"text": text, "blocks": [section]}
    crashed = bodies["killed"]["text"]
    assert crashed.startswith("run killed (hybrid-attention) on gpu1: crashed after 1m1")
    assert crashed.endswith("last log lines:\nINFO epoch 1/40 ...\nINFO still training")
    assert bodies["killed"]["blocks"][1]["text"]["text"] == (
        "```INFO epoch 1/40 ...\nINFO still training```"
    )
    assert [p["path"] for p in webhook.posts] == [f"/services/{webhook.secret}"] * 2
    for run_id in ("done", "halted", "killed"):  # the URL is in no launch record or log
        launched = runs / ".launches" / run_id
        shown = (launched / "guard_argv.json").read_text() + (launched / "guard.out").read_text()
        shown += (runs / run_id / "run.json").read_text()
        assert webhook.secret not in shown and f"http://127.0.0.1:{webhook.port}/…" in shown


def test_an_experiment_ends_as_its_runs_say():
    def ending(*statuses: str) -> str:
        return experiment_status({"runs": [{"status": s} for s in statuses]})

    assert ending("completed", "completed") == "completed"
    assert ending("completed", "failed") == "failed"
    assert ending("completed", "stopped", "pending") == "stopped"  # SIGTERM: a user's stop
    assert ending("completed", "preempted", "pending") == "preempted"
    assert ending("completed", "running", "pending") == "crashed"  # the sweep was killed
    assert ending("completed", "pending") == "crashed"  # died between two runs


def test_a_webhook_post_retries_a_server_error_and_not_a_refusal(webhook: WebhookStandIn):
    said: list[str] = []
    webhook.posts.clear()
    webhook.fail_next = 2  # two 500s, then the message goes through
    assert post_json(webhook.url, {"text": "hello"}, said.append, backoff=0.01)
    assert [p["body"] for p in webhook.posts] == [{"text": "hello"}]
    assert len(said) == 3 and said[-1].endswith("(try 3)")
    # Slack's answer to a body it cannot use (400 invalid_payload) is final.
    assert not post_json(webhook.url, {"blocks": []}, said.append, backoff=0.01)
    assert "refused the message (HTTP 400); not retried" in said[-1]
    assert len(webhook.posts) == 1
    assert all(webhook.secret not in line for line in said)
    assert redact(webhook.url) == f"http://127.0.0.1:{webhook.port}/…"


def test_a_bad_notify_url_is_named_without_echoing_it(tmp_path):
    (tmp_path / "hosts.toml").write_text(
        '[hosts.gpu1]\nhost = "gpu1"\nnotify_url = "hooks.slack.com/services/T0/B0/topsecret"\n'
    )
    env = {**os.environ, "EMOCONSOLE_CONFIG": str(tmp_path / "hosts.toml")}
    out = console("hosts", "list", cwd=tmp_path, env=env)
    assert out.returncode != 0
    assert "hosts.gpu1.notify_url" in out.stderr and "http(s) URL" in out.stderr
    assert "topsecret" not in out.stderr + out.stdout


# -- the console: bell and desktop notification -----------------------------------------------


@pytest.fixture
def notify_send(tmp_path, monkeypatch) -> Path:
    """A real ``notify-send`` first on PATH that appends its arguments to a file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "notify-send.jsonl"
    script = bin_dir / "notify-send"
    script.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(record)!r}, 'a') as fh:\n    fh.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("EMOCONSOLE_NOTIFY", raising=False)
    return record


def notified(record: Path) -> list[list[str]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def watcher_of(pid: int) -> psutil.Process | None:
    children = psutil.Process(pid).children(recursive=True)
    return next((c for c in children if "remote.watcher" in " ".join(c.cmdline())), None)


def end_run(run_dir: Path, events, status: str) -> None:
    """The run's end as the engine writes it: the status event, then run.json."""
    events.write(EventType.STATUS, status=status)
    manifest = json.loads((run_dir / "run.json").read_text())
    write_json_atomic(run_dir / "run.json", {**manifest, "status": status, "ended_at": time.time()})


def test_monitor_rings_once_for_a_run_that_ends_while_it_watches(
    tmp_path, notify_send, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    env = {**os.environ, "EMOCONSOLE_CONFIG": str(tmp_path / "none.toml"),
           "EMOCONSOLE_STATE": str(tmp_path / "state")}  # fmt: skip
    events = make_run(tmp_path / "runs", "live-run", os.getpid())  # this process is its pid
    monitor = subprocess.Popen(
        [sys.executable, "-m", "emoconsole", "monitor", "live-run", "--interval", "0.2"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        # Up, and following the run: its watcher has sent samples (alive) after the history.
        watcher = wait_until(lambda: watcher_of(monitor.pid), 60, "monitor's watcher")
        sent = [watcher.io_counters().write_chars]
        wait_until(lambda: sent.append(watcher.io_counters().write_chars) or len(set(sent)) > 3,
                   60, "three samples streamed")  # fmt: skip
        time.sleep(0.5)
        assert monitor.poll() is None
        end_run(tmp_path / "runs" / "live-run", events, RunStatus.COMPLETED)
        out, err = monitor.communicate(timeout=60)
    finally:
        monitor.kill()
        events.close()
    assert monitor.returncode == 0, err.decode()
    assert out.count(b"\a") == 1
    assert notified(notify_send) == [
        [
            "--app-name",
            "emoconsole",
            "emoconsole",
            "live-run on local: completed (best macro_f1 0.7000)",
        ]
    ]
    # Opened on the run once it has ended, monitor replays the run's history with it
    # alive (this process is its pid): the stream's items ring nothing.
    from remote.local import LocalHost
    from remote.watch import follow

    ending = StreamEnding()
    rings = []
    for item in follow(LocalHost(), str(tmp_path / "runs" / "live-run"), interval=0.2):
        alive = item.sample.get("alive") if isinstance(item, SysItem) else None
        status = item.event.get("status") if isinstance(item, EventItem) else ending.status
        rings.append(ending.observe(alive, status or ending.status))
    assert ending.status == "completed" and ending.armed and not any(rings)


@sync
async def test_the_dashboard_announces_a_run_ending_once(tmp_path, notify_send, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    old = make_run(runs, "old-run", os.getpid())
    end_run(runs / "old-run", old, RunStatus.COMPLETED)  # over before the dashboard opened
    old.close()
    live = make_run(runs, "live-run", os.getpid())
    stopped = make_run(runs, "stopped-run", os.getpid())
    app = Dashboard({"local": HostConfig(name="local", kind="local")}, refresh_s=0.2)
    rings: list[float] = []
    app.bell = lambda: rings.append(time.time())  # the terminal's bell, counted
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: app.endings._listed, what="the first listing")
            end_run(runs / "stopped-run", stopped, RunStatus.STOPPED)  # a user's stop: no news
            end_run(runs / "live-run", live, RunStatus.CRASHED)
            await wait_for(pilot, lambda: rings, what="the bell")
            await pilot.pause(0.6)  # three more listings: still once
            toasts = [n.message for n in app._notifications]
    finally:
        live.close()
        stopped.close()
    assert len(rings) == 1
    assert notified(notify_send) == [
        [
            "--app-name",
            "emoconsole",
            "emoconsole",
            "live-run on local: crashed (best macro_f1 0.7000)",
        ]
    ]
    assert toasts == ["live-run on local: crashed (best macro_f1 0.7000)"]
