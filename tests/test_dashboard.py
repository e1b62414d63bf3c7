"""The dashboard, driven by Pilot against real run directories on the local host.

Runs are written the way the engine writes them (EventWriter, a flushed
train.log, run.json), listed by the real ``hostctl list`` subprocess and
followed by the real watcher subprocess: nothing under test is mocked.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandPalette
from textual.widgets import DataTable, Input, Log, Sparkline, Static

from emoconsole.dashboard import run_view
from emoconsole.dashboard.app import Dashboard
from emoconsole.dashboard.run_view import ConfirmDialog, RunScreen
from emoconsole.dashboard.runs_table import RunsScreen
from emoconsole.dashboard.state import COLUMNS, RunsListing, RunState, sort_rows
from emoconsole.dashboard.trackers import trackers_text
from remote.config import LOCAL, HostConfig
from remote.watch import EventItem, SysItem
from trainers.events import EventType, EventWriter, RunStatus
from trainers.rundir import write_json_atomic

pytest_plugins = ["tests.sshd"]

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["neutral", "happy", "sad", "angry"]
RUN_ID = "20260101-120000-hybrid-attention-ab12"
FAST = {"refresh_s": 0.3, "interval": 0.3}


def val_event(epoch: int, sad_recall: float) -> dict:
    """A val event as the engine writes it: per_class in class order, confusion rows true."""
    per_class = {c: {"precision": 0.7, "recall": 0.7, "f1": 0.7, "support": 10} for c in CLASSES}
    per_class["sad"] = {"precision": 0.5, "recall": sad_recall, "f1": sad_recall, "support": 10}
    sad_hits = round(10 * sad_recall)
    confusion = [[7, 1, 1, 1], [1, 7, 1, 1], [10 - sad_hits, 0, sad_hits, 0], [1, 1, 1, 7]]
    acc = 0.6 + 0.05 * epoch
    return dict(
        epoch=epoch, split="val", global_step=4 * epoch, train_loss=1.5 - 0.2 * epoch,
        loss=1.4 - 0.15 * epoch, accuracy=acc, macro_f1=acc - 0.05, weighted_f1=acc - 0.02,
        uar=acc - 0.04, lr=1e-3, is_best=True, monitor="macro_f1", best=acc - 0.05,
        best_epoch=epoch, earliest_stop_epoch=epoch + 5, epoch_s=2.0,
        per_class=per_class, confusion=confusion,
    )  # fmt: skip


def write_epoch(events: EventWriter, log_path: Path, epoch: int, sad_recall: float) -> None:
    events.write(EventType.EPOCH_START, epoch=epoch, epochs=5, steps=4, lr=1e-3)
    for step in range(1, 5):
        # data_s >> compute_s: the loader is the bottleneck, the warning must say so.
        events.write(
            EventType.STEP, epoch=epoch, step=step, steps=4, global_step=4 * (epoch - 1) + step,
            loss=1.0 / step, lr=1e-3, data_s=0.3, compute_s=0.1, samples=8,
        )  # fmt: skip
    events.write(EventType.VAL, **val_event(epoch, sad_recall))
    with open(log_path, "a", encoding="utf-8") as fh:
        fh.write(f"INFO epoch {epoch} val macro_f1 {0.55 + 0.05 * epoch:.4f}\n")


def make_run(runs: Path, run_id: str, pid: int, epochs_done: int = 3) -> EventWriter:
    """run.json + events.jsonl + train.log of a run mid-training; returns the open writer."""
    run = runs / run_id
    run.mkdir(parents=True)
    write_json_atomic(
        run / "run.json",
        {
            "id": run_id, "model": "hybrid-attention", "pid": pid, "status": "running",
            "started_at": time.time(), "host": socket.gethostname(),
            "config": {"train": {"epochs": 5, "lr": 0.001}, "model": {"width": 16}},
        },
    )  # fmt: skip
    events = EventWriter(run / "events.jsonl")
    events.write(EventType.STATUS, status=RunStatus.RUNNING, pid=pid)
    for epoch, recall in zip(range(1, epochs_done + 1), (0.6, 0.7, 0.0), strict=False):
        write_epoch(events, run / "train.log", epoch, recall)
    return events


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The local host lists ./runs: run the app from a tmp dir with no user hosts file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "no-hosts.toml"))
    return tmp_path


@pytest.fixture
def live_run(workdir):
    events = make_run(workdir / "runs", RUN_ID, os.getpid())
    yield workdir / "runs" / RUN_ID, events
    events.close()


def sync(test: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async Pilot test with asyncio.run (no pytest async plugin in this project)."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return wrapper


async def wait_for(pilot, cond: Callable[[], bool], timeout: float = 40.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await pilot.pause(0.05)


def table_rows(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


@sync
async def test_runs_table_lists_runs_and_follows_appends(live_run):
    _run_dir, events = live_run
    app = Dashboard(**FAST)
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the run's row")
        # Painted, and the time recorded. How long it took is a benchmark's question:
        # a timed assert here would only measure how loaded the test machine is.
        await wait_for(pilot, lambda: app.first_paint_s is not None, what="the first paint")
        row = table_rows(table)[0]
        assert row[:5] == [RUN_ID, "hybrid-attention", "local", "running", "3/5"]
        assert row[5] == "macro_f1 0.7000"  # best so far: epoch 3
        shown = {
            b.binding.description for b in app.screen.active_bindings.values() if b.binding.show
        }
        assert {"Open run", "Filter", "Sort", "Refresh", "Quit"} <= shown  # the footer's keys
        # Mouse: clicking the sorted column's header flips the order; "o" moves to the next.
        screen = app.screen
        assert screen.sort_column == "id" and screen.sort_reverse
        await pilot.click("#runs", offset=(2, 0))
        assert not screen.sort_reverse
        await pilot.press("o")
        assert screen.sort_column == "model"
        # The run goes on while the table is on screen: the row follows by itself.
        events.write(EventType.EPOCH_START, epoch=4, epochs=5, steps=4, lr=1e-3)
        await wait_for(pilot, lambda: table_rows(table)[0][4] == "4/5", what="epoch 4/5")
        # Filtering hides rows that do not match and brings them back when cleared.
        await pilot.press("slash")
        filter_box = app.screen.query_one("#filter", Input)
        assert filter_box.has_focus
        await pilot.press(*"resnet")
        assert table.row_count == 0
        await pilot.press("escape")
        assert table.row_count == 1


@sync
async def test_unreachable_host_is_a_row_not_a_crash(live_run):
    with socket.socket() as s:  # a port where nothing listens: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hosts = {
        "local": LOCAL,
        "gpu-down": HostConfig(name="gpu-down", kind="ssh", host="127.0.0.1", port=port),
    }
    app = Dashboard(hosts, **FAST)
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.screen.query_one("#runs", DataTable)

        def both() -> bool:
            return {r[2] for r in table_rows(table)} == {"local", "gpu-down"}

        await wait_for(pilot, both, what="a row per host")
        down = next(r for r in table_rows(table) if r[2] == "gpu-down")
        assert down[3].startswith("unreachable")
        assert "gpu-down" in str(app.screen.query_one("#hosts-status", Static).render())
        assert app.is_running  # and the local run is still listed beside it
        assert any(r[0] == RUN_ID for r in table_rows(table))


@sync
async def test_run_view_shows_the_run_and_streams(live_run, monkeypatch):
    run_dir, events = live_run
    # The run turns W&B and MLflow on; they record their ids in run.json mid-run (below).
    monkeypatch.setattr(run_view, "MANIFEST_REREAD_S", 0.0)  # re-read on the next event
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest["config"]["track"] = {"wandb": True, "wandb_mode": "online",
                                   "mlflow_uri": "http://127.0.0.1:5000"}  # fmt: skip
    write_json_atomic(run_dir / "run.json", manifest)
    app = Dashboard(**FAST)
    async with app.run_test(size=(160, 50)) as pilot:
        table = app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the run's row")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        log = screen.query_one("#run-log", Log)
        epochs = screen.query_one("#epochs", DataTable)
        await wait_for(pilot, lambda: epochs.row_count == 3, what="3 epochs in the table")
        await wait_for(pilot, lambda: len(log.lines) >= 3, what="the log lines")
        assert log.lines[:3] == [
            f"INFO epoch {e} val macro_f1 {0.55 + 0.05 * e:.4f}" for e in (1, 2, 3)
        ]
        first = table_rows(epochs)[0]
        # epoch, train loss, val loss, acc, UAR, macro F1, weighted F1
        assert first[:7] == ["1 *", "1.3000", "1.2500", "0.6500", "0.6100", "0.6000", "0.6300"]
        per_class = screen.query_one("#per-class", DataTable)
        assert [str(c.label) for c in per_class.columns.values()][1:] == [
            f"{c} R/F1" for c in CLASSES
        ]
        assert table_rows(per_class)[2][3] == "0.00/0.00"  # sad at epoch 3
        warnings = str(screen.query_one("#run-warnings", Static).render())
        assert "recall of 'sad' collapsed: 0.00 now, was 0.70" in warnings
        assert "input-bound: 75% of step time waits for data" in warnings
        header = str(screen.query_one("#run-header", Static).render())
        assert "running" in header and "epoch 3/5" in header and "ETA" in header
        assert "W&B" not in header and "MLflow" not in header  # no ids recorded yet
        grid = screen.query_one("#confusion-grid", Static).content
        assert grid.title.startswith("confusion matrix (val, epoch 3)")
        assert [str(c.header) for c in grid.columns][1:] == CLASSES
        assert "'epochs': 5" in str(screen.query_one("#config-text", Static).render()).replace(
            '"', "'"
        )
        await wait_for(pilot, lambda: screen.state.sys is not None, what="a system sample")
        # Keys switch tabs; the mouse can too (TabbedContent's tabs are clickable).
        await pilot.press("z")
        assert screen.query_one("#run-tabs").active == "confusion"
        await pilot.press("l")
        # Pause: new lines keep arriving but the view stays put; follow again scrolls.
        await pilot.press("f")
        assert not screen.following and not log.auto_scroll
        assert "log: paused" in str(screen.query_one("#run-header", Static).render())
        manifest["trackers"] = {
            "wandb": {"id": "abc123", "project": "emo", "entity": "lab", "mode": "online",
                      "url": "https://wandb.ai/lab/emo/runs/abc123", "dir": "wandb/run-x"},
            "mlflow": {"run_id": "0123abcd", "experiment_id": "1",
                       "tracking_uri": "http://127.0.0.1:5000"},
        }  # fmt: skip
        write_json_atomic(run_dir / "run.json", manifest)
        write_epoch(events, run_dir / "train.log", 4, 0.8)
        await wait_for(pilot, lambda: epochs.row_count == 4, what="epoch 4 streamed in")
        header = str(screen.query_one("#run-header", Static).render())
        assert "W&B: https://wandb.ai/lab/emo/runs/abc123" in header
        assert "MLflow: run 0123abcd at http://127.0.0.1:5000" in header
        await wait_for(pilot, lambda: len(log.lines) >= 4, what="epoch 4's log line")
        assert "recall of 'sad' collapsed" not in str(
            screen.query_one("#run-warnings", Static).render()
        )
        await pilot.press("f")
        assert screen.following and log.auto_scroll
        # Level filter and search: a traceback's continuation line keeps its ERROR level.
        with open(run_dir / "train.log", "a", encoding="utf-8") as fh:
            fh.write("2026-01-01 12:00:00 WARNING loader slow\n")
            fh.write("2026-01-01 12:00:01 ERROR nan loss at step 7\n  File trainer.py\n")
        await wait_for(pilot, lambda: len(log.lines) >= 7, what="the new log lines")
        await pilot.press("v", "v")
        assert list(log.lines) == [
            "2026-01-01 12:00:00 WARNING loader slow",
            "2026-01-01 12:00:01 ERROR nan loss at step 7",
            "  File trainer.py",
        ]
        await pilot.press("slash", *"NaN")
        assert list(log.lines) == ["2026-01-01 12:00:01 ERROR nan loss at step 7"]
        assert "(showing WARNING+ 'NaN')" in str(screen.query_one("#run-header", Static).render())
        await pilot.press("escape")  # clears the search, stays in the run
        assert isinstance(app.screen, RunScreen) and len(log.lines) == 3
        await pilot.press("v", "v")  # ERROR, then everything again
        assert len(log.lines) == 7
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


def test_trackers_line_for_an_offline_wandb_run_and_for_none():
    offline = {"trackers": {"wandb": {"id": "x1", "mode": "offline", "url": None,
                                      "dir": "wandb/offline-run-20260101_120000-x1"}}}  # fmt: skip
    assert trackers_text(offline, "/srv/runs/r1") == (
        "W&B offline: /srv/runs/r1/wandb/offline-run-20260101_120000-x1"
    )
    assert trackers_text({"id": "r1", "config": {"track": {"wandb": False}}}) == ""
    assert trackers_text(None) == ""


@sync
async def test_stop_run_asks_first_then_stops(workdir):
    run_id = "20260101-130000-hybrid-attention-cd34"
    # The run's process: its command line names the run, as hostctl's pid check wants.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", run_id],
        start_new_session=True,
    )
    events = make_run(workdir / "runs", run_id, proc.pid, epochs_done=1)
    try:
        app = Dashboard(open_run=("local", run_id), **FAST)
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="confirm")
            await pilot.press("n")  # no: nothing happens
            await pilot.pause(0.3)
            assert proc.poll() is None
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="confirm")
            await pilot.press("y")
            deadline = time.monotonic() + 15
            while proc.poll() is None and time.monotonic() < deadline:
                await pilot.pause(0.1)
            assert proc.returncode == -15  # SIGTERM, from remote.deploy.stop_run
            screen = app.screen
            assert isinstance(screen, RunScreen)
            # The watcher sees the process gone without a final status: crashed.
            await wait_for(pilot, lambda: screen.state.status == "crashed", what="crashed")
    finally:
        events.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@sync
async def test_a_failing_worker_is_a_notification_not_a_crash(workdir):
    # No wait for the run to appear (the run view waits for one that is still starting).
    app = Dashboard(open_run=("local", "no-such-run"), wait_run_s=0, **FAST)
    async with app.run_test(notifications=True) as pilot:

        def messages() -> list[str]:
            return [n.message for n in app._notifications]

        await wait_for(pilot, lambda: messages(), what="a notification")
        assert messages() == [f"follow run: WatchError: local: no run directory at "
                              f"{workdir / 'runs' / 'no-such-run'}"]  # fmt: skip
        assert app.is_running and isinstance(app.screen, RunScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


@sync
async def test_command_palette_runs_actions(live_run):
    app = Dashboard(**FAST)
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the run's row")
        runs_screen = app.screen
        titles = {c.title for c in app.get_system_commands(runs_screen)}
        assert {"Open run", "Filter runs", "Sort runs", "Refresh runs"} <= titles
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"Open run")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Back to runs", "Pause/follow log", "Stop run", "Show confusion"} <= titles


@sync
async def test_dropped_ssh_host_shows_and_recovers(tmp_path, make_sshd, ssh_env):
    """A real sshd killed and restarted under the dashboard: the run's row and the run
    view's header say so, and both come back by themselves."""
    server = make_sshd()
    ssh_env.trust(server)
    work = tmp_path / "remote-work"
    (work / "code").mkdir(parents=True)
    (work / "code" / "current").symlink_to(REPO)  # what a deploy leaves there: the code
    events = make_run(work / "runs", RUN_ID, os.getpid())
    hosts = {
        "gpu1": HostConfig(
            name="gpu1", kind="ssh", host="127.0.0.1", port=server.port, user=server.user,
            identity_file=str(server.client_key), python=sys.executable, workdir=str(work),
        )
    }  # fmt: skip
    try:
        app = Dashboard(hosts, **FAST)
        async with app.run_test(size=(160, 40)) as pilot:
            table = app.screen.query_one("#runs", DataTable)

            def status() -> str:
                rows = table_rows(table)
                return rows[0][3] if rows else ""

            await wait_for(pilot, lambda: status() == "running", what="the run over SSH")
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
            view = app.screen
            await wait_for(pilot, lambda: view.state.connection == "live", what="live stream")
            server.kill()
            await wait_for(pilot, lambda: status() == "running (host unreachable)", what="row")
            header = view.query_one("#run-header", Static)
            await wait_for(
                pilot, lambda: "reconnecting" in str(header.render()), what="header reconnecting"
            )
            server.start()
            await wait_for(pilot, lambda: status() == "running", what="the row recovering")
            # "restored" shows until the next sample, which makes it plain "live" again.
            await wait_for(
                pilot,
                lambda: "connection: live" in str(header.render()),
                timeout=20,
                what=f"the stream recovering ({view.state.connection})",
            )
            # Nothing lost or doubled across the drop: still the same three epochs.
            write_epoch(events, work / "runs" / RUN_ID / "train.log", 4, 0.8)
            epochs = view.query_one("#epochs", DataTable)
            await wait_for(pilot, lambda: epochs.row_count == 4, what="epoch 4 after the drop")
            assert [r[0] for r in table_rows(epochs)] == ["1 *", "2 *", "3 *", "4 *"]
    finally:
        events.close()


def test_listing_marks_a_dropped_host_and_recovers():
    """A host that stops answering keeps its rows, marked, until it answers again."""
    listing = RunsListing()
    run = {"id": "r1", "model": "m", "status": "running", "epoch": 2, "epochs": 5}
    listing.update("gpu1", [run], None)
    assert [r.status_text for r in listing.rows()] == ["running"]
    listing.update("gpu1", None, "TransportError: connection reset")
    (row,) = listing.rows()
    assert row.id == "r1" and row.status_text == "running (host unreachable)" and row.eta == "?"
    listing.update("gpu1", [{**run, "epoch": 3}], None)
    (row,) = listing.rows()
    assert row.status_text == "running" and row.epoch_text == "3/5"


def test_listing_costs_runs_on_a_priced_host_only():
    """An EC2 host's runs cost their own hours at its price (the ETA's on top while
    running); other hosts' runs show none."""
    now = time.time()
    running = {"id": "r1", "model": "m", "status": "running", "epoch": 3, "epochs": 5,
               "started_at": now - 2 * 3600}  # fmt: skip
    ended = {"id": "r2", "model": "m", "status": "completed", "epoch": 5, "epochs": 5,
             "started_at": now - 5 * 3600, "ended_at": now - 4 * 3600}  # fmt: skip
    listing = RunsListing()
    listing.update("gpu", [running, ended], None, usd_per_hour=0.5)
    listing.update("local", [running], None)
    rows = {r.key: r for r in listing.rows()}
    live = rows["gpu/r1"]
    # 2 epochs of 5 done in 2 h: 3 h left by the listing's rough ETA.
    assert live.cost_so_far == pytest.approx(1.0, abs=0.01)
    assert live.cost_at_end == pytest.approx(2.5, abs=0.01)
    assert live.cells()[COLUMNS.index("cost")] == "$1.00 → $2.50"
    assert rows["gpu/r2"].cells()[COLUMNS.index("cost")] == "$0.50"
    assert rows["local/r1"].cells()[COLUMNS.index("cost")] == "-"
    # The price is kept across a failed pass, and sorting by cost puts the dearest first.
    listing.update("gpu", None, "TransportError: reset")
    ordered = sort_rows(listing.rows(), "cost", reverse=True)
    assert [r.key for r in ordered] == ["gpu/r1", "gpu/r2", "local/r1"]


def gpu_sample(index: int, util: float) -> dict:
    """One board as the watcher's Sampler reports it (nvidia-smi's fields)."""
    return {"index": index, "name": "NVIDIA A10G", "util_percent": util, "mem_used_mib": 4000,
            "mem_total_mib": 16000, "temp_c": 61, "power_w": 140.5}  # fmt: skip


def host_sample(cpu: float, gpus: list[dict] | None = None) -> dict:
    """A watcher sample; ``gpus`` only where nvidia-smi answered, as the Sampler does."""
    sample = {"cpu_percent": cpu, "ram_percent": 40.0, "disk_free": 75, "disk_total": 100}
    return sample if gpus is None else {**sample, "gpus": gpus}


def test_system_history_for_sparklines():
    state = RunState(run="r", host="h")
    for cpu in (10.0, 20.0):
        state.add(SysItem(host_sample(cpu, [gpu_sample(0, 87), gpu_sample(1, 50)])))
    assert list(state.sys_history["cpu"]) == [10.0, 20.0]
    assert list(state.sys_history["disk"]) == [25.0, 25.0]
    assert list(state.sys_history["gpu0_mem"]) == [25.0, 25.0]
    assert list(state.sys_history["gpu0_power"]) == [140.5, 140.5]
    assert list(state.sys_history["gpu1_util"]) == [50.0, 50.0]
    assert state.gpus == {0: "NVIDIA A10G", 1: "NVIDIA A10G"}
    assert state.connection == "live"


def test_system_history_without_a_gpu():
    state = RunState(run="r", host="h")
    state.add(SysItem(host_sample(10.0)))
    state.add(SysItem(host_sample(20.0, gpus=[])))  # nvidia-smi there, no board listed
    assert state.gpus == {}
    assert sorted(state.sys_history) == ["cpu", "disk", "ram"]


def spark_labels(view: RunScreen) -> dict[str, str]:
    return {
        str(w.id).removeprefix("label-"): str(w.render())
        for w in view.query(".spark-label")
        if w.id and w.id.startswith("label-")
    }


async def open_system_tab(pilot, app: Dashboard) -> RunScreen:
    """A run view whose run is not there: its worker only waits, so the only samples
    are the ones a test puts on the view's queue, as the follow worker would."""
    await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
    view = app.screen
    assert isinstance(view, RunScreen)
    await pilot.press("s")
    return view


@sync
async def test_system_tab_without_a_gpu_says_so(workdir):
    app = Dashboard(open_run=("local", RUN_ID), wait_run_s=60, **FAST)
    async with app.run_test(size=(140, 50)) as pilot:
        view = await open_system_tab(pilot, app)
        note = view.query_one("#gpu-note", Static)
        assert str(note.render()) == "GPUs: no system sample yet"
        view._put(SysItem(host_sample(12.0)))
        view._put(SysItem(host_sample(14.0)))
        await wait_for(pilot, lambda: "no GPU" in str(note.render()), what="the GPU note")
        assert str(note.render()).startswith("no GPU on local")
        assert note.display
        assert spark_labels(view) == {"cpu": "CPU %: 14", "ram": "RAM %: 40",
                                      "disk": "disk used %: 25"}  # fmt: skip
        assert len(view.query(Sparkline)) == 3
        assert view.query_one("#spark-cpu", Sparkline).data == [12.0, 14.0]


@sync
async def test_system_tab_draws_each_gpu(workdir):
    app = Dashboard(open_run=("local", RUN_ID), wait_run_s=60, **FAST)
    async with app.run_test(size=(140, 50)) as pilot:
        view = await open_system_tab(pilot, app)
        view._put(SysItem(host_sample(12.0, [gpu_sample(0, 87), gpu_sample(1, 50)])))
        await wait_for(pilot, lambda: bool(view.query("#gpu1-title")), what="the GPU rows")
        view._put(SysItem(host_sample(14.0, [gpu_sample(0, 90), gpu_sample(1, 55)])))
        await wait_for(pilot, lambda: spark_labels(view).get("gpu1_util") == "util %: 55",
                       what="the second sample")  # fmt: skip
        assert not view.query_one("#gpu-note", Static).display
        titles = [str(w.render()) for w in view.query(".section") if str(w.id).startswith("gpu")]
        assert titles == ["GPU 0: NVIDIA A10G", "GPU 1: NVIDIA A10G"]
        labels = spark_labels(view)
        assert [labels[f"gpu0_{k}"] for k in ("util", "mem", "temp", "power")] == [
            "util %: 90", "memory %: 25", "temp °C: 61", "power W: 140"
        ]  # fmt: skip
        assert len(view.query(Sparkline)) == 3 + 2 * 4
        assert view.query_one("#spark-gpu0_util", Sparkline).data == [87.0, 90.0]


def test_run_state_rules_on_items():
    """The warnings' thresholds, on items alone: no collapse without an earlier peak."""
    state = RunState(run="r", host="h")
    state.add(EventItem({"seq": 1, "type": "val", "time": 1.0, **val_event(1, 0.0)}))
    state.add(EventItem({"seq": 2, "type": "val", "time": 2.0, **val_event(2, 0.05)}))
    assert state.collapsed_classes() == []  # never learnt, not collapsed
    state.add(EventItem({"seq": 3, "type": "val", "time": 3.0, **val_event(3, 0.9)}))
    state.add(EventItem({"seq": 4, "type": "val", "time": 4.0, **val_event(4, 0.1)}))
    assert state.collapsed_classes() == [("sad", 0.9, 0.1)]
    state.add(EventItem({"seq": 5, "type": "step", "time": 5.0, "epoch": 5, "step": 1,
                         "data_s": 0.1, "compute_s": 0.9}))  # fmt: skip
    assert state.input_bound_share() == pytest.approx(0.1)
    assert not any("input-bound" in w for w in state.warnings())


def test_dashboard_never_imports_torch_and_paints_fast(tmp_path):
    """Importing the app (and the CLI that opens it) loads neither torch nor paramiko,
    and a headless start reaches its first paint quickly."""
    code = (
        "import sys, json, asyncio, os\n"
        f"os.chdir({str(tmp_path)!r})\n"
        "from emoconsole.dashboard.app import Dashboard\n"
        "import emoconsole.cli\n"
        "async def main():\n"
        "    app = Dashboard(refresh_s=60)\n"
        "    async with app.run_test() as pilot:\n"
        "        while app.first_paint_s is None:\n"
        "            await pilot.pause(0.01)\n"
        "        return app.first_paint_s\n"
        "paint = asyncio.run(main())\n"
        "heavy = sorted({'torch', 'paramiko', 'boto3', 'plotext'} & set(sys.modules))\n"
        "print(json.dumps({'heavy': heavy, 'paint': paint}))\n"
    )
    env = {**os.environ, "EMOCONSOLE_CONFIG": str(tmp_path / "none.toml")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # No torch ever; no SSH/AWS stack until a host needs it; plotext once a run is opened.
    assert result["heavy"] == []
    assert result["paint"] < 2.0, result
