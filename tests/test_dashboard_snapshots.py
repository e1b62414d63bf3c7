"""Snapshots of the dashboard's main views (pytest-textual-snapshot), on one finished run.

The run directory is fixture data written here with fixed times, ids and values,
so every figure on screen is the same on every machine and every day: the run
is completed (its ETA is 0 s, its row shows none), its log lines carry their own
timestamps and no live clock is drawn. The app is the real one: ``hostctl
list`` and the watcher run as subprocesses against the directory, as in
tests/test_dashboard.py.

A changed footer (a new binding) or layout changes these pictures on purpose:
look at the report, then ``uv run pytest -n 0 tests/test_dashboard_snapshots.py
--snapshot-update`` and commit the SVGs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_textual_snapshot
from textual.pilot import Pilot
from textual.widgets import DataTable, Log
from textual.worker import WorkerState

from emoconsole.dashboard.app import Dashboard
from emoconsole.dashboard.run_view import RunScreen

# pytest-textual-snapshot 1.0 names its file extension the syrupy 4 way (`_file_extension`);
# syrupy 5+ reads `file_extension`, so the SVGs would be saved as `.raw`. (1.1 pins syrupy 4,
# which would hold pytest below 9 for the whole suite.)
pytest_textual_snapshot.SVGImageExtension.file_extension = "svg"

RUN_ID = "20260101-120000-hybrid-attention-5eed"
T0 = 1_767_268_800.0  # 2026-01-01 12:00:00 UTC
CLASSES = ["neutral", "happy", "sad", "angry"]
EPOCHS, STEPS = 3, 4
SIZE = (140, 36)
FAST = {"refresh_s": 60.0, "interval": 0.2}  # one listing is enough: nothing changes


def _val(epoch: int, split: str, sad_recall: float) -> dict[str, Any]:
    """A val event as the engine writes it (per_class in class order, confusion rows true)."""
    per_class = {c: {"precision": 0.7, "recall": 0.7, "f1": 0.7, "support": 10} for c in CLASSES}
    per_class["sad"] = {"precision": 0.5, "recall": sad_recall, "f1": sad_recall, "support": 10}
    hits = round(10 * sad_recall)
    confusion = [[7, 1, 1, 1], [1, 7, 1, 1], [10 - hits, 0, hits, 0], [1, 1, 1, 7]]
    acc = 0.55 + 0.05 * epoch
    event: dict[str, Any] = dict(
        epoch=epoch, split=split, global_step=STEPS * epoch, loss=1.4 - 0.15 * epoch,
        accuracy=acc, macro_f1=acc - 0.05, weighted_f1=acc - 0.02, uar=acc - 0.04,
        per_class=per_class, confusion=confusion,
    )  # fmt: skip
    if split == "val":
        event.update(
            train_loss=1.5 - 0.2 * epoch, lr=1e-3, is_best=True, monitor="macro_f1",
            best=acc - 0.05, best_epoch=epoch, earliest_stop_epoch=epoch + 10, epoch_s=12.5,
        )  # fmt: skip
    return event


def write_finished_run(runs: Path) -> Path:
    """run.json, events.jsonl and train.log of a completed 3-epoch run, all at fixed times."""
    run = runs / RUN_ID
    run.mkdir(parents=True)
    events: list[dict[str, Any]] = []
    log: list[str] = []
    t = T0

    def emit(event_type: str, **fields: Any) -> None:
        events.append({"seq": len(events) + 1, "type": event_type, "time": t, **fields})

    def say(message: str, level: str = "INFO") -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
        log.append(f"{stamp} {level:<5} {message}")

    emit("status", status="starting")
    emit("status", status="running", device="cpu")
    say("status running device=cpu")
    for epoch, sad in zip(range(1, EPOCHS + 1), (0.6, 0.7, 0.8), strict=True):
        emit("epoch_start", epoch=epoch, epochs=EPOCHS, steps=STEPS, batches=STEPS, lr=1e-3,
             global_step=STEPS * (epoch - 1))  # fmt: skip
        say(f"epoch {epoch}/{EPOCHS} start: {STEPS} steps, lr 0.001")
        for step in range(1, STEPS + 1):
            t += 2.5
            loss = round(1.6 - 0.1 * (STEPS * (epoch - 1) + step), 4)
            emit("step", epoch=epoch, step=step, steps=STEPS, loss=loss, lr=1e-3, data_s=0.1,
                 compute_s=2.4, samples=24, global_step=STEPS * (epoch - 1) + step)  # fmt: skip
            say(f"epoch {epoch} step {step}/{STEPS} loss {loss:.4f} lr 0.001")
        t += 2.5
        val = _val(epoch, "val", sad)
        emit("val", **val)
        say(f"epoch {epoch} val: loss {val['loss']:.4f} acc {val['accuracy']:.4f} *best*")
        emit("checkpoint", epoch=epoch, path="checkpoints/best.pt", kind="best",
             metric="macro_f1", value=val["macro_f1"])  # fmt: skip
        emit("checkpoint", epoch=epoch, path="checkpoints/last.pt", kind="last", batches_done=0)
    t += 3.0
    emit("val", **_val(EPOCHS, "test", 0.8))
    say("epoch 3 test: acc 0.7000 macro-F1 0.6500")
    say("loader slow on Actor_05", level="WARNING")
    emit("status", status="completed", reason="max_epochs")
    say("status completed reason=max_epochs")

    manifest = {
        "id": RUN_ID, "model": "hybrid-attention", "host": "snapshot-host", "pid": 1,
        "status": "completed", "started_at": T0, "ended_at": t, "argv": ["trainers", "train"],
        "config": {"model": {"d_model": 128}, "train": {"epochs": EPOCHS, "lr": 0.001},
                   "data": {"layout": "ravdess"}},
    }  # fmt: skip
    (run / "run.json").write_text(json.dumps(manifest))
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "train.log").write_text("".join(line + "\n" for line in log))
    return run


@pytest.fixture
def finished_run(tmp_path, monkeypatch) -> Path:
    """The local host lists ./runs: run the app from a tmp dir with no user hosts file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "no-hosts.toml"))
    return write_finished_run(tmp_path / "runs")


async def until(
    pilot: Pilot, cond: Callable[[], bool], what: str | Callable[[], str], timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await pilot.pause(0.05)


def run_view_ready(tab_key: str | None) -> Callable[[Pilot], Awaitable[None]]:
    """Wait until the whole run is on screen (stream ended, drained, painted), then
    switch to a tab: a picture taken earlier would catch a half-read stream."""

    async def before(pilot: Pilot) -> None:
        app = pilot.app
        await until(pilot, lambda: isinstance(app.screen, RunScreen), "the run view")
        screen = app.screen
        assert isinstance(screen, RunScreen)
        log = screen.query_one("#run-log", Log)

        def done() -> bool:
            follow = [w for w in screen.workers if w.group == "follow"]
            return (
                screen.state.status == "completed"
                # A finished worker leaves the screen's list: gone or done, never running.
                and all(w.state == WorkerState.SUCCESS for w in follow)
                and not screen.queue
                and screen._painted == screen.state.version
                and screen.state.config is not None
                and len(log.lines) >= 20
            )

        await until(
            pilot,
            done,
            lambda: (
                f"the finished run drained (status {screen.state.status}, follow "
                f"{[w.state.name for w in screen.workers if w.group == 'follow']}, queue "
                f"{len(screen.queue)}, {len(log.lines)} log lines)"
            ),
        )
        if tab_key is not None:
            await pilot.press(tab_key)
        await pilot.pause(0.2)

    return before


def test_runs_table(snap_compare, finished_run):
    async def before(pilot: Pilot) -> None:
        table = pilot.app.screen.query_one("#runs", DataTable)
        await until(pilot, lambda: table.row_count == 1, "the run's row")
        # DataTable measures a new row's column widths on its next idle, not in add_row:
        # a picture taken before then shows every column cut to its label (seen in CI).
        await until(
            pilot,
            lambda: (
                not (table._new_rows or table._updated_cells or table._require_update_dimensions)
            ),
            "the table's column widths",
        )
        await pilot.pause(0.1)

    assert snap_compare(Dashboard(**FAST), terminal_size=SIZE, run_before=before)


@pytest.mark.parametrize(("tab", "key"), [("log", None), ("curves", "c"), ("confusion", "z")])
def test_run_view(snap_compare, finished_run, tab, key):
    app = Dashboard(open_run=("local", RUN_ID), **FAST)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_view_ready(key))
