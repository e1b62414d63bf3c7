"""A run's warning events (faces not found...) as the user meets them: folded by RunLog,
printed by ``monitor``, and on screen in the dashboard's run view."""

from __future__ import annotations

import os

from rich.console import Console
from textual.widgets import Static

from emoconsole.dashboard.app import Dashboard
from emoconsole.dashboard.run_view import RunScreen
from emoconsole.monitor_view import MonitorState
from remote.watch import EventItem
from tests.test_dashboard import FAST, RUN_ID, make_run, sync, wait_for
from trainers.events import EventType, EventWriter, RunStatus, read_events
from trainers.runlog import RunLog

MESSAGE = (
    "faces not found in 12% of train recordings (3 of 25; actors 03 40%, 07 20%): "
    "crops fell back to the centre square of the frame (haar detector)"
)


def faces_warning(split: str, message: str = MESSAGE) -> dict:
    return dict(
        kind="faces_not_found", message=message, split=split, recordings=25, without_face=3,
        fraction=0.12, threshold=0.05, actors={"03": 0.4, "07": 0.2},
        fallback="centre square of the frame", detector="haar",
    )  # fmt: skip


def test_runlog_keeps_the_latest_warning_per_kind_and_split(tmp_path) -> None:
    with EventWriter(tmp_path / "events.jsonl") as events:
        events.write(EventType.STATUS, status=RunStatus.PREPARING)
        events.write(EventType.WARNING, **faces_warning("train", "old train"))
        events.write(EventType.WARNING, **faces_warning("val", "val warning"))
        events.write(EventType.STATUS, status=RunStatus.RUNNING)
        # A resumed run prepares its data again and warns again: replaced, not repeated.
        events.write(EventType.STATUS, status=RunStatus.RESUMED, from_epoch=0)
        events.write(EventType.WARNING, **faces_warning("train"))
    log = RunLog.read(tmp_path / "events.jsonl")
    assert [(w["split"], w["message"]) for w in log.warnings] == [
        ("train", MESSAGE),
        ("val", "val warning"),
    ]
    assert log.warnings[0]["actors"] == {"03": 0.4, "07": 0.2}

    state = MonitorState(run=RUN_ID, host="local")
    for event in read_events(tmp_path / "events.jsonl"):
        state.add(EventItem(event))
    assert state.run_warnings == [MESSAGE, "val warning"]
    console = Console(width=400, record=True)
    console.print(state.render())
    assert f"⚠ {MESSAGE}" in console.export_text()


@sync
async def test_the_run_view_shows_the_faces_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the local host lists ./runs
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "no-hosts.toml"))
    events = make_run(tmp_path / "runs", RUN_ID, os.getpid())
    events.write(EventType.WARNING, **faces_warning("train"))
    try:
        app = Dashboard(open_run=("local", RUN_ID), **FAST)
        async with app.run_test(size=(300, 50)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
            warnings = app.screen.query_one("#run-warnings", Static)
            await wait_for(
                pilot, lambda: MESSAGE in str(warnings.render()), what="the faces warning"
            )
            shown = str(warnings.render()).splitlines()
            # The run's own warning first, then the view's rules (sad's recall collapsed).
            assert shown[0] == f"⚠ {MESSAGE}"
            assert any("recall of 'sad' collapsed" in line for line in shown[1:])
    finally:
        events.close()
