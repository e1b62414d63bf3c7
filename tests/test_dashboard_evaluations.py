"""The run view lists a run's evaluations on other data (``python -m trainers
evaluate``) under its own test row, read on its host through ``hostctl evaluations``."""

from __future__ import annotations

import json
import os

from textual.widgets import DataTable

from emoconsole.dashboard.app import Dashboard
from emoconsole.dashboard.run_view import RunScreen
from remote.onhost.hostctl import main as hostctl
from tests.test_dashboard import FAST, RUN_ID, make_run, sync, table_rows, wait_for
from trainers.rundir import write_json_atomic

TEST = {
    "accuracy": 0.75, "macro_f1": 0.7, "weighted_f1": 0.72, "uar": 0.71,
    "per_class": {"happy": {"support": 6}, "sad": {"support": 6}},
}  # fmt: skip
EVALUATION = {
    "name": "crema-d-all",
    "data": {"layout": "crema-d", "split": "all"},
    "n": 51,
    "metrics": {"accuracy": 0.41, "macro_f1": 0.38, "weighted_f1": 0.39, "uar": 0.4},
    "majority_floor": {"accuracy": 0.17},
    "excluded": {"not_learned": {}, "not_in_corpus": ["calm", "surprised"]},
}


def write_evaluated(run_dir) -> None:
    write_json_atomic(run_dir / "summary.json", {"test": TEST, "majority_floor": {"accuracy": 0.5}})
    folder = run_dir / "evaluations" / "crema-d-all"
    folder.mkdir(parents=True)
    (folder / "evaluation.json").write_text(json.dumps(EVALUATION))
    (run_dir / "evaluations" / "half-written").mkdir()  # no evaluation.json yet: left out


def test_hostctl_evaluations_answers_with_each_evaluation_and_the_own_test(tmp_path, capsys):
    make_run(tmp_path / "runs", RUN_ID, os.getpid()).close()
    write_evaluated(tmp_path / "runs" / RUN_ID)
    assert hostctl(["evaluations", str(tmp_path / "runs" / RUN_ID)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in answer["evaluations"]] == ["crema-d-all"]
    assert answer["evaluations"][0]["metrics"] == EVALUATION["metrics"]
    assert answer["test"]["accuracy"] == 0.75
    assert hostctl(["evaluations", str(tmp_path / "nope")]) == 1


@sync
async def test_the_run_view_lists_evaluations_beside_the_own_test(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the local host lists ./runs
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "no-hosts.toml"))
    events = make_run(tmp_path / "runs", RUN_ID, os.getpid())
    write_evaluated(tmp_path / "runs" / RUN_ID)
    try:
        app = Dashboard(open_run=("local", RUN_ID), **FAST)
        async with app.run_test(size=(160, 50)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
            table = app.screen.query_one("#evaluations", DataTable)
            await wait_for(pilot, lambda: table.row_count == 2, what="the evaluations table")
            own, other = table_rows(table)
            assert own[:7] == [
                "own test",
                "its test split",
                "12",
                "0.750",
                "0.700",
                "0.720",
                "0.710",
            ]
            assert own[7] == "0.500"
            assert other[:4] == ["crema-d-all", "crema-d all", "51", "0.410"]
            assert other[7:] == ["0.170", "0 rec., 2 classes"]
            assert table.display
    finally:
        events.close()


@sync
async def test_a_run_without_evaluations_shows_no_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "no-hosts.toml"))
    events = make_run(tmp_path / "runs", RUN_ID, os.getpid())
    try:
        app = Dashboard(open_run=("local", RUN_ID), **FAST)
        async with app.run_test(size=(160, 50)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="the run view")
            epochs = app.screen.query_one("#epochs", DataTable)
            await wait_for(pilot, lambda: epochs.row_count == 3, what="the epochs")
            assert not app.screen.query_one("#evaluations", DataTable).display
    finally:
        events.close()
