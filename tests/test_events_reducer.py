"""One reader of a run's events (trainers.runlog.RunLog), and every view that shows a
run's epochs agreeing with it on a resumed run: killed between epoch 3's val event
and its checkpoint, resumed from epoch 2, epoch 3 repeated with other numbers.
Hand-written events, no training."""

from __future__ import annotations

import json
import os
import random
import re
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable

from emoconsole.dashboard.app import Dashboard
from emoconsole.dashboard.compare import read_val_events
from emoconsole.dashboard.plots import metric_series
from emoconsole.dashboard.run_view import RunScreen
from emoconsole.dashboard.state import RunState
from emoconsole.demo import RunView
from emoconsole.monitor_view import MonitorState
from emoconsole.report import epoch_metrics, write_report
from remote.local import LocalHost
from remote.onhost.hostctl import describe_run
from remote.watch import EventItem
from tests.test_dashboard import FAST, make_run, sync, table_rows, wait_for, write_epoch
from tests.test_dashboard import RUN_ID as DASH_RUN
from trainers.events import EventType, EventWriter, RunStatus, read_events
from trainers.rundir import RunDir, write_json_atomic
from trainers.runlog import RunLog

RUN_ID = "20260101-120000-hybrid-attention-ab12"
# (epoch, accuracy) of every val event in the order written; epoch 3 twice.
WRITTEN = [(1, 0.50), (2, 0.60), (3, 0.65), (3, 0.70), (4, 0.75)]
KEPT = {1: 0.50, 2: 0.60, 3: 0.70, 4: 0.75}


def val(epoch: int, acc: float, best: tuple[float, int]) -> dict:
    return dict(
        epoch=epoch, split="val", global_step=10 * epoch, train_loss=2.0 - acc,
        loss=1.5 - acc, accuracy=acc, macro_f1=acc - 0.1, weighted_f1=acc - 0.05,
        uar=acc - 0.08, lr=1e-3, is_best=best[1] == epoch, monitor="macro_f1",
        best=best[0], best_epoch=best[1], earliest_stop_epoch=epoch + 5, epoch_s=3.0,
        per_class={}, confusion=[],
    )  # fmt: skip


def epoch(events: EventWriter, n: int, acc: float, checkpoint: bool = True) -> None:
    events.write(EventType.EPOCH_START, epoch=n, epochs=4, steps=10, lr=1e-3, global_step=0)
    for step in (5, 10):
        events.write(
            EventType.STEP, epoch=n, step=step, steps=10, global_step=10 * (n - 1) + step,
            loss=1.0, lr=1e-3, data_s=0.1, compute_s=0.2, samples=8,
        )  # fmt: skip
    events.write(EventType.VAL, **val(n, acc, (acc - 0.1, n)))  # improves every epoch
    if checkpoint:
        events.write(EventType.CHECKPOINT, epoch=n, path="checkpoints/last.pt", kind="last")


@pytest.fixture
def resumed_run(tmp_path) -> Path:
    run = tmp_path / "runs" / RUN_ID
    run.mkdir(parents=True)
    write_json_atomic(
        run / "run.json",
        {
            "id": RUN_ID, "model": "hybrid-attention", "pid": 1, "status": "completed",
            "started_at": time.time() - 60, "ended_at": time.time(),
            "config": {"train": {"epochs": 4}}, "resumes": [{"at": time.time(), "pid": 1}],
        },
    )  # fmt: skip
    with EventWriter(run / "events.jsonl") as events:
        events.write(EventType.STATUS, status=RunStatus.RUNNING, device="cpu")
        epoch(events, 1, 0.50)
        epoch(events, 2, 0.60)
        epoch(events, 3, 0.65, checkpoint=False)  # killed before epoch 3's checkpoint
        events.write(
            EventType.STATUS, status=RunStatus.RESUMED, from_epoch=2, global_step=20,
            skip_batches=0,
        )  # fmt: skip
        events.write(EventType.STATUS, status=RunStatus.RUNNING, device="cpu")
        epoch(events, 3, 0.70)
        epoch(events, 4, 0.75)
        events.write(
            EventType.VAL, epoch=4, split="test", global_step=40, loss=0.8, accuracy=0.72,
            macro_f1=0.62, weighted_f1=0.67, uar=0.64,
        )  # fmt: skip
        events.write(EventType.STATUS, status=RunStatus.COMPLETED, reason="max_epochs")
    return run


def accuracies(rows) -> dict[int, float]:
    epochs = [int(r["epoch"]) for r in rows]
    assert epochs == sorted(set(epochs)), f"an epoch shown twice or out of order: {epochs}"
    return {int(r["epoch"]): r["accuracy"] for r in rows}


def test_the_reducer_keeps_each_epoch_once_as_the_run_ended_up(resumed_run):
    events = read_events(resumed_run / "events.jsonl")
    assert [(e["epoch"], e["accuracy"]) for e in events if e["type"] == "val"][:5] == WRITTEN
    log = RunLog.read(resumed_run / "events.jsonl")
    assert accuracies(log.rows) == KEPT
    assert log.status == "completed" and log.epoch == 4 and log.resumes == 1
    assert (log.best, log.best_epoch, log.monitor) == (pytest.approx(0.65), 4, "macro_f1")
    assert log.test is not None and log.test["accuracy"] == 0.72
    assert log.rewrites == 1  # the resume dropped epoch 3; nothing else was replaced


def test_a_resume_drops_later_epochs_and_the_best_goes_back_with_them():
    log = RunLog()
    for n, acc in WRITTEN[:3]:
        log.add({"type": "val", **val(n, acc, (acc - 0.1, n))})
    log.add({"type": "val", "epoch": 3, "split": "test", "accuracy": 0.1})
    assert log.add({"type": "status", "status": "resumed", "from_epoch": 2})
    assert accuracies(log.rows) == {1: 0.50, 2: 0.60}
    assert (log.best, log.best_epoch) == (pytest.approx(0.5), 2)  # epoch 2's running best
    assert log.test is None and log.status == "resumed"
    # A resume from the very start (stopped inside epoch 1) drops every epoch.
    assert log.add({"type": "status", "status": "resumed", "from_epoch": 0})
    assert log.rows == [] and log.best is None
    assert not log.add({"type": "status", "status": "resumed", "from_epoch": 0})


@pytest.mark.parametrize("seed", range(5))
def test_any_batching_gives_what_the_whole_file_gives(resumed_run, seed):
    events = read_events(resumed_run / "events.jsonl")
    whole = RunLog.from_events(events)
    rng = random.Random(seed)
    fed, at = RunLog(), 0
    while at < len(events):
        size = rng.randint(0, 7)  # empty batches too
        fed.extend(events[at : at + size])
        at += size
    for name in ("rows", "status", "epoch_start", "test", "best", "best_epoch", "resumes"):
        assert getattr(fed, name) == getattr(whole, name), name
    assert fed.rewrites == whole.rewrites


def test_every_view_shows_epoch_3_once_with_the_resumed_numbers(resumed_run):
    path = resumed_run / "events.jsonl"
    events = read_events(path)

    # emoconsole/report.py: the rows, and the table in summary.md.
    assert accuracies(epoch_metrics(events)) == KEPT
    md = write_report(resumed_run).read_text()
    table = [line for line in md.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [line.split(" | ")[0] for line in table] == ["| 1", "| 2", "| 3", "| 4"]
    assert table[2].split(" | ")[3] == "0.7000"  # epoch 3's accuracy: the resumed one

    # emoconsole demo: its live view polls the file.
    demo = RunView(RunDir(resumed_run))
    demo.poll()
    assert accuracies(demo.rows) == KEPT and demo.status == "completed"

    # emoconsole monitor and the dashboard's run view: fed event by event from the
    # stream, so they had painted the killed epoch 3 before the resume took it back.
    for state in (MonitorState(run=RUN_ID, host="local"), RunState(run=RUN_ID, host="local")):
        for event in events:
            state.add(EventItem(event))
        assert accuracies(state.history) == KEPT
        assert (state.best, state.best_epoch) == (pytest.approx(0.65), 4)
        assert state.status == "completed" and state.epoch == 4
        assert state.test is not None and state.test["accuracy"] == 0.72
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(state.render())
    cells = [
        [c.strip() for c in line.split("│")[1:-1]]
        for line in console.export_text().splitlines()
        if re.match(r"│ \d+ ", line)
    ]
    assert [(c[0], c[3]) for c in cells] == [(str(e), f"{a:.4f}") for e, a in KEPT.items()]

    # The compare screen: val events and resumes grepped on the host.
    compared = read_val_events(LocalHost("box"), str(resumed_run))
    assert accuracies(compared) == KEPT
    assert metric_series(compared, "accuracy", RUN_ID) == (
        RUN_ID,
        [1, 2, 3, 4],
        list(KEPT.values()),
    )

    # hostctl list on the host: epoch and best.
    row = describe_run(resumed_run)
    assert row is not None
    assert (row["epoch"], row["best"], row["monitor"]) == (4, pytest.approx(0.65), "macro_f1")
    assert row["status"] == "completed" and row["epochs"] == 4


def test_hostctl_list_over_its_command_line(resumed_run, capsys):
    from remote.onhost.hostctl import main

    assert main(["list", str(resumed_run.parent)]) == 0
    (row,) = json.loads(capsys.readouterr().out)["runs"]
    assert (row["id"], row["epoch"], row["best"]) == (RUN_ID, 4, pytest.approx(0.65))


@sync
async def test_the_run_view_paints_the_epochs_again_after_a_resume(tmp_path, monkeypatch):
    """The dashboard's run view adds epoch rows as they stream in; a resume that takes
    back epoch 3 repaints them, so the repeated epoch 3 is shown once."""
    monkeypatch.chdir(tmp_path)  # the local host lists ./runs
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "no-hosts.toml"))
    events = make_run(tmp_path / "runs", DASH_RUN, os.getpid())
    try:
        app = Dashboard(open_run=("local", DASH_RUN), **FAST)
        async with app.run_test(size=(160, 50)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
            epochs = app.screen.query_one("#epochs", DataTable)
            await wait_for(pilot, lambda: epochs.row_count == 3, what="3 epochs in the table")
            events.write(EventType.STATUS, status=RunStatus.RESUMED, from_epoch=2, global_step=8)
            events.write(EventType.STATUS, status=RunStatus.RUNNING, device="cpu")
            write_epoch(events, tmp_path / "runs" / DASH_RUN / "train.log", 3, 0.9)

            def repainted() -> bool:
                return [r[0].split()[0] for r in table_rows(epochs)] == ["1", "2", "3"] and (
                    app.screen.state.runlog.rewrites == 1
                )

            await wait_for(pilot, repainted, what="epochs 1, 2, 3 once each")
            per_class = app.screen.query_one("#per-class", DataTable)
            assert table_rows(per_class)[2][3] == "0.90/0.90"  # sad at the repeated epoch 3
    finally:
        events.close()
