"""``emoconsole compare``: the table's numbers against numpy over each run's summary.json.

Run directories are written by hand in the real format: run.json and summary.json
with the keys docs/run-directory.md lists (the shape copied from a finished tiny run:
``summary.json`` has ``test.{accuracy,macro_f1,weighted_f1,uar,per_class}``,
``majority_floor``, ``best_epoch``, ``epochs_run``, ``timings.total_s``, ``device``,
``world_size``), and an experiment.json in the shared format (2 cells x 2 seeds).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from textual.widgets import DataTable
from typer.testing import CliRunner

from emoconsole.cli import app
from emoconsole.comparison import (
    METRICS,
    build_table,
    load_experiment,
    load_run,
    read_local_json,
    render,
)
from tests.test_dashboard import FAST, sync, table_rows, wait_for

CLASSES = ["neutral", "happy", "sad", "angry"]
runner = CliRunner()


def _scores(rng: np.random.Generator) -> dict:
    recall = {c: float(rng.uniform(0.2, 1.0)) for c in CLASSES}
    return {
        "loss": float(rng.uniform(0.5, 1.5)),
        "accuracy": float(rng.uniform(0.4, 0.9)),
        "macro_f1": float(rng.uniform(0.4, 0.9)),
        "weighted_f1": float(rng.uniform(0.4, 0.9)),
        "uar": float(np.mean(list(recall.values()))),
        "per_class": {
            c: {"precision": 0.5, "recall": r, "f1": 0.5, "support": 4} for c, r in recall.items()
        },
        "confusion": [[1] * len(CLASSES) for _ in CLASSES],
    }


def write_run(
    parent: Path,
    run_id: str,
    *,
    lr: float,
    seed: int,
    rng: np.random.Generator,
    finished: bool = True,
    device: str = "cpu",
    experiment: dict | None = None,
) -> Path:
    run = parent / run_id
    run.mkdir(parents=True)
    manifest = {
        "id": run_id, "model": "hybrid-attention",
        "config": {"model": {"d_model": 32}, "train": {"lr": lr, "seed": seed, "epochs": 5},
                   "data": {"root": f"/data/{run_id}", "fold": None}},
        "host": "vm", "pid": 1, "argv": [], "cwd": str(parent), "version": "0.1.0",
        "started_at": 1.0, "status": "completed" if finished else "running",
    }  # fmt: skip
    if experiment is not None:
        manifest["experiment"] = experiment
    (run / "run.json").write_text(json.dumps(manifest))
    if finished:
        summary = {
            "run_id": run_id, "model": "hybrid-attention", "classes": CLASSES,
            "monitor": "accuracy", "best_epoch": int(rng.integers(1, 5)), "best_value": 0.5,
            "epochs_run": 5, "stop_reason": "max_epochs", "val": _scores(rng),
            "test": _scores(rng),
            "majority_floor": {"accuracy": 0.25, "macro_f1": 0.1, "weighted_f1": 0.1,
                               "uar": 0.25, "class": 1},
            "data": {}, "bad_inputs": 0,
            "timings": {"total_s": float(rng.uniform(600, 7200)), "prepare_s": 1.0,
                        "train_s": 2.0, "epoch_mean_s": 0.4, "eval_s": 0.1},
            "device": device, "amp": "off", "world_size": 1,
        }  # fmt: skip
        (run / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def experiment(tmp_path: Path) -> Path:
    """A 2 (lr) x 2 (seed) experiment; one more run of the second cell never finished."""
    rng = np.random.default_rng(0)
    exp = tmp_path / "exp-1"
    runs = []
    for lr in (0.001, 0.01):
        for seed in (0, 1):
            run_id = f"r-lr{lr}-s{seed}"
            cell = {"train.lr": lr}
            tag = {"id": "exp-1", "cell": cell, "seed": seed, "fold": None}
            write_run(exp, run_id, lr=lr, seed=seed, rng=rng, device="cuda:0", experiment=tag)
            runs.append({"run_id": run_id, "dir": run_id, "cell": cell, "seed": seed,
                         "fold": None, "status": "completed"})  # fmt: skip
    write_run(exp, "r-lr0.01-s2", lr=0.01, seed=2, rng=rng, finished=False)
    runs.append({"run_id": "r-lr0.01-s2", "dir": "r-lr0.01-s2", "cell": {"train.lr": 0.01},
                 "seed": 2, "fold": None, "status": "running"})  # fmt: skip
    runs.append({"run_id": "r-never", "dir": "r-never", "cell": {"train.lr": 0.01},
                 "seed": 3, "fold": None, "status": "queued"})  # fmt: skip
    (exp / "experiment.json").write_text(json.dumps({
        "format": "emoconsole-experiment/1", "id": "exp-1", "model": "hybrid-attention",
        "created_at": 1.0, "grid": {"train.lr": [0.001, 0.01]}, "fixed": [], "seeds": [0, 1],
        "folds": None, "group": None, "runs": runs,
    }))  # fmt: skip
    return exp


def _summaries(exp: Path, lr: float) -> list[dict]:
    return [json.loads((exp / f"r-lr{lr}-s{s}" / "summary.json").read_text()) for s in (0, 1)]


def test_means_and_stds_equal_numpy_over_each_runs_summary(experiment):
    table = build_table(load_experiment(read_local_json, str(experiment)))
    assert [r.label for r in table.rows] == ["train.lr=0.001", "train.lr=0.01"]
    for row, lr in zip(table.rows, (0.001, 0.01), strict=True):
        summaries = _summaries(experiment, lr)
        for m in METRICS:
            values = np.array([s["test"][m] for s in summaries])
            assert row.metrics[m].n == 2
            assert row.metrics[m].mean == pytest.approx(values.mean(), abs=1e-12)
            assert row.metrics[m].std == pytest.approx(values.std(ddof=1), abs=1e-12)
        for c in CLASSES:
            recalls = [s["test"]["per_class"][c]["recall"] for s in summaries]
            assert row.recall[c] == pytest.approx(np.mean(recalls))
        hours = sum(s["timings"]["total_s"] for s in summaries) / 3600
        assert row.gpu_hours == pytest.approx(hours) and row.wall_hours == pytest.approx(hours)
        assert row.floor.mean == pytest.approx(0.1)
        assert row.epochs_run.mean == 5
    # The unfinished runs are counted, not averaged.
    assert [r.run_id for r in table.rows[1].unfinished] == ["r-lr0.01-s2", "r-never"]
    # The baseline (first row by default) and the spread rule.
    base, other = table.rows
    assert base.is_baseline and base.diff is None
    diff = other.metrics["macro_f1"].mean - base.metrics["macro_f1"].mean
    assert other.diff == pytest.approx(diff)
    spread = max(other.metrics["macro_f1"].std, base.metrics["macro_f1"].std)
    assert other.beyond_spread is (abs(diff) > spread)


def test_cli_markdown_and_csv_parse_and_list_unfinished_runs(experiment):
    result = runner.invoke(app, ["compare", str(experiment), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["configuration"] for r in rows] == ["train.lr=0.001", "train.lr=0.01"]
    acc = [s["test"]["accuracy"] for s in _summaries(experiment, 0.01)]
    assert float(rows[1]["accuracy_mean"]) == pytest.approx(np.mean(acc))
    assert float(rows[1]["accuracy_std"]) == pytest.approx(np.std(acc, ddof=1))
    assert rows[1]["n"] == "2" and rows[1]["unfinished"] == "2"
    assert rows[0]["baseline"] == "True" and float(rows[0]["gpu_hours"]) > 0

    result = runner.invoke(app, ["compare", str(experiment), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert len({len(c) for c in cells}) == 1  # header, rule and rows all as wide
    head, body = cells[0], cells[2:]
    assert [r[0] for r in body] == ["train.lr=0.001", "train.lr=0.01"]
    mf1 = [s["test"]["macro_f1"] for s in _summaries(experiment, 0.001)]
    col = head.index("macro-F1")
    assert body[0][col] == f"{np.mean(mf1):.4f} ± {np.std(mf1, ddof=1):.4f}"
    assert body[0][head.index("Δ macro-F1 vs baseline")] == "baseline"
    assert "unfinished (no summary.json): r-lr0.01-s2" in result.stdout
    assert "r-never" in result.stdout and "status queued" in result.stdout


def test_runs_one_by_one_group_by_config_and_a_baseline_is_added(tmp_path):
    """Runs named singly pool over train.seed; --baseline names a run not listed;
    CPU runs show 0 GPU-h with their wall hours."""
    rng = np.random.default_rng(1)
    runs = tmp_path / "runs"
    a = [write_run(runs, f"a{s}", lr=0.1, seed=s, rng=rng) for s in (0, 1, 2)]
    base = write_run(runs, "base", lr=0.5, seed=0, rng=rng)
    result = runner.invoke(
        app, ["compare", *map(str, a), "--baseline", str(base), "--metric", "accuracy"]
    )
    assert result.exit_code == 0, result.output
    table = build_table(
        [load_run(read_local_json, str(p)) for p in (*a, base)],
        baseline="base",
        metric="accuracy",
    )
    first, second = table.rows
    assert first.label == "train.lr=0.1" and first.metrics["accuracy"].n == 3
    assert second.is_baseline and first.beyond_spread is None  # one baseline run: no spread
    acc = np.array([json.loads((p / "summary.json").read_text())["test"]["accuracy"] for p in a])
    assert first.metrics["accuracy"].std == pytest.approx(acc.std(ddof=1))
    assert first.gpu_hours == 0 and first.wall_hours > 0
    out = render(table, "table")
    assert f"{first.diff:+.4f} ?" in out and "0 GPU-h (cpu," in out
    assert out.splitlines()[0].split()[:2] == ["configuration", "n"]
    assert result.stdout == out


def test_bad_arguments_fail_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["compare", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "has neither run.json nor summary.json" in result.output
    assert "Traceback" not in result.output
    rng = np.random.default_rng(2)
    run = write_run(tmp_path, "x", lr=0.1, seed=0, rng=rng)
    result = runner.invoke(app, ["compare", str(run), "--format", "html"])
    assert result.exit_code == 1 and "--format 'html'" in result.output
    result = runner.invoke(app, ["compare", str(run), "--baseline", str(run), "--metric", "f1"])
    assert result.exit_code == 1 and "--metric 'f1'" in result.output


def test_run_ids_resolve_on_the_local_host(tmp_path, monkeypatch):
    """Ids (and unique prefixes) are found as `download` finds them: the ledger, else
    the host's list of runs (./runs for the local host), read through the host."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "no-hosts.toml"))
    monkeypatch.setenv("EMOCONSOLE_STATE", str(tmp_path / "state"))
    rng = np.random.default_rng(3)
    for s in (0, 1):
        write_run(tmp_path / "runs", f"20261203-100000-hybrid-attention-000{s}", lr=0.1,
                  seed=s, rng=rng)  # fmt: skip
    result = runner.invoke(
        app,
        ["compare", "20261203-100000-hybrid-attention-0000",
         "20261203-100000-hybrid-attention-0001", "--format", "csv"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = csv.DictReader(io.StringIO(result.stdout))
    assert row["n"] == "2" and row["configuration"] == "hybrid-attention"
    result = runner.invoke(app, ["compare", "20261203-100000"])
    assert result.exit_code == 1 and "matches several runs" in result.output


def _val_events(run: Path, rng: np.random.Generator, epochs: int = 3) -> None:
    lines = [
        json.dumps(
            {
                "seq": e,
                "type": "val",
                "time": float(e),
                "epoch": e,
                "split": "val",
                "loss": float(rng.uniform(0.5, 1.5)),
                "accuracy": float(rng.uniform(0.3, 0.9)),
                "macro_f1": float(rng.uniform(0.3, 0.9)),
            },
            separators=(",", ":"),  # the engine's compact JSON, which the screen greps for
        )
        for e in range(1, epochs + 1)
    ]
    (run / "events.jsonl").write_text("\n".join(lines) + "\n")


@sync
async def test_dashboard_compares_an_experiment_from_one_of_its_runs(experiment, monkeypatch):
    """One run of an experiment opens its whole experiment: the comparison table (as the
    CLI's), and every started run's val curve; `e` narrows to the run given."""
    from emoconsole.comparison import display_rows
    from emoconsole.dashboard.app import Dashboard
    from emoconsole.dashboard.compare import CompareScreen

    monkeypatch.chdir(experiment.parent)
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(experiment.parent / "no-hosts.toml"))
    monkeypatch.setenv("EMOCONSOLE_STATE", str(experiment.parent / "state"))
    rng = np.random.default_rng(4)
    for run in experiment.glob("r-*"):
        _val_events(run, rng)
    app = Dashboard(**FAST)
    async with app.run_test(size=(160, 45)) as pilot:
        screen = CompareScreen([("local", str(experiment / "r-lr0.001-s0"))])
        await app.push_screen(screen)
        summary = screen.query_one("#compare-summary", DataTable)
        await wait_for(pilot, lambda: summary.row_count == 2, what="the table")
        expected = display_rows(build_table(load_experiment(read_local_json, str(experiment))))
        assert table_rows(summary) == expected
        await wait_for(pilot, lambda: len(screen.histories) == 6, what="every run's curve")
        assert sorted(len(v) for v in screen.histories.values()) == [0, 3, 3, 3, 3, 3]
        assert "6 runs, 2 configurations" in str(screen.query_one("#compare-title").render())
        await pilot.press("e")
        await wait_for(pilot, lambda: summary.row_count == 1, what="the run alone")
        await wait_for(pilot, lambda: len(screen.histories) == 1, what="its curve")
        assert table_rows(summary)[0][1] == "1"  # n


def test_scalar_series_are_bounded_and_follow_resumes():
    from emoconsole.dashboard.series import MAX_POINTS, ScalarSeries

    scalars = ScalarSeries()
    n = 5 * MAX_POINTS
    for g in range(1, n + 1):
        scalars.add_event({"type": "step", "global_step": g, "loss": 1.0 / g, "lr": 1e-3,
                           "data_s": 0.1, "compute_s": 0.2})  # fmt: skip
    loss = scalars.series["train/loss"]
    assert MAX_POINTS // 2 <= len(loss.xs) <= MAX_POINTS and loss.xs[-1] > 0.9 * n
    assert loss.xs == sorted(loss.xs)
    scalars.add_event({"type": "val", "split": "val", "global_step": n, "loss": 0.5,
                       "accuracy": 0.6, "train_loss": 0.4,
                       "per_class": {"sad": {"recall": 0.3, "f1": 0.2}}})  # fmt: skip
    scalars.add_event({"type": "status", "status": "resumed", "global_step": n // 2})
    assert max(loss.xs) <= n // 2 and scalars.series["val/loss"].xs == []
    assert scalars.names("recall") == ["val_recall/sad"]
    assert scalars.names("^perf/") == ["perf/data_s", "perf/compute_s"]
    assert scalars.names("val_f1/sad") == ["val_f1/sad"]  # a plain name is a regex too
    assert scalars.names("[") == []  # not a regex: a substring


@sync
async def test_run_view_curves_chart_every_series_with_a_filter(tmp_path, monkeypatch):
    import os

    from emoconsole.dashboard.app import Dashboard
    from emoconsole.dashboard.run_view import RunScreen
    from tests.test_dashboard import RUN_ID, make_run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "no-hosts.toml"))
    make_run(tmp_path / "runs", RUN_ID, os.getpid()).close()
    app = Dashboard(open_run=("local", RUN_ID), **FAST)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
        view = app.screen
        await wait_for(pilot, lambda: len(view.state.history) == 3, what="3 epochs")
        await pilot.press("c")  # the Curves tab
        names = view.state.scalars.names()
        assert {"train/lr", "perf/data_s", "val/uar"} <= set(names)
        await wait_for(pilot, lambda: list(view.series_plots) == names, what="every series")
        view.query_one("#series-filter").value = "recall"
        await wait_for(pilot, lambda: bool(view.series_plots) and all(
            n.startswith("val_recall/") for n in view.series_plots), what="the filter")  # fmt: skip
        view.query_one("#series-filter").value = ""
        view.action_log_scale()
        await wait_for(pilot, lambda: len(view.series_plots) == len(names), what="all again")
        assert "log scale" in str(view.query_one("#series-info").render())


def test_two_experiments_with_equal_cells_stay_apart(experiment):
    import shutil

    other = experiment.parent / "exp-2"
    shutil.copytree(experiment, other)
    doc = json.loads((other / "experiment.json").read_text())
    (other / "experiment.json").write_text(json.dumps({**doc, "id": "exp-2"}))
    records = [*load_experiment(read_local_json, str(experiment)),
               *load_experiment(read_local_json, str(other))]  # fmt: skip
    labels = [row.label for row in build_table(records).rows]
    assert labels == [
        "experiment=exp-1 train.lr=0.001", "experiment=exp-1 train.lr=0.01",
        "experiment=exp-2 train.lr=0.001", "experiment=exp-2 train.lr=0.01",
    ]  # fmt: skip


def test_baseline_named_by_its_path_joins_its_configuration(experiment):
    base = str(experiment / "r-lr0.01-s1") + "/"  # trailing slash and all
    result = runner.invoke(app, ["compare", str(experiment), "--baseline", base, "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["baseline"] for r in rows] == ["False", "True"]  # no extra row for it
    result = runner.invoke(app, ["compare", str(experiment), "--baseline", str(experiment)])
    assert result.exit_code == 1 and "is an experiment of 6 runs" in result.output
