"""`python -m trainers sweep` in process on the small generated corpus: a 2x2 grid x 2 seeds
(8 tiny runs), stopped by SIGTERM during its fifth run and rerun; the experiment directory
and experiment.json; a bad grid key stopping before any run; the actor folds of the real
data module."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from tests.conftest import SMALL_MODEL
from trainers import cli
from trainers.rundir import EXPERIMENT_FORMAT as FORMAT
from trainers.rundir import EXPERIMENT_JSON, BadInputLog, RunDir

pytestmark = pytest.mark.slow

GRID = ["--grid", "train.lr=1e-3,3e-4", "--grid", "model.dropout=0.1,0.2"]


def sweep_args(data, out, cache, *extra):
    args = ["sweep", "hybrid-attention", "--data", str(data), "--out", str(out), "--id", "e1"]
    for item in [*SMALL_MODEL, "train.epochs=1", f"data.cache_dir={cache}"]:
        args += ["--set", item]
    return [*args, *extra]


def stop_when_started(run_json, timeout=120.0):
    """SIGTERM this process once ``run_json`` exists (the sweep's fifth run has started)."""

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if run_json.exists():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def stopped_then_rerun(small_corpus, feature_cache, tmp_path_factory):
    """The 2x2x2 sweep stopped during run 5 of 8, then rerun: (dir, first, second) with
    each invocation's exit code, output and the summary.json mtimes after it."""
    out = tmp_path_factory.mktemp("sweeps")
    exp = out / "e1"
    args = sweep_args(small_corpus, out, feature_cache, *GRID, "--seeds", "2")
    fifth = exp / "c02_lr=0.0003_dropout=0.1_s42" / "run.json"
    results = []
    for watcher in (stop_when_started(fifth), None):
        t0 = time.perf_counter()
        code = cli.main(args)
        if watcher is not None:
            watcher.join(5)
        mtimes = {p.parent.name: p.stat().st_mtime_ns for p in exp.glob("*/summary.json")}
        results.append({"code": code, "s": time.perf_counter() - t0, "mtimes": mtimes})
    return exp, results[0], results[1]


def test_sweep_writes_the_experiment_directory(stopped_then_rerun):
    exp, _first, second = stopped_then_rerun
    assert second["code"] == 0
    doc = json.loads((exp / EXPERIMENT_JSON).read_text())
    assert doc["format"] == FORMAT and doc["id"] == "e1" and doc["model"] == "hybrid-attention"
    assert doc["grid"] == {"train.lr": [0.001, 0.0003], "model.dropout": [0.1, 0.2]}
    assert doc["seeds"] == [42, 43] and doc["folds"] is None and doc["group"] is None
    assert "train.epochs=1" in doc["fixed"]
    assert len(doc["runs"]) == 8
    cells = {(r["cell"]["train.lr"], r["cell"]["model.dropout"], r["seed"]) for r in doc["runs"]}
    assert len(cells) == 8
    for row in doc["runs"]:
        assert row["status"] == "completed" and row["fold"] is None
        run = RunDir(exp / row["dir"])
        manifest = run.read_manifest()
        assert manifest["id"] == row["run_id"]
        assert manifest["experiment"] == {
            "id": "e1",
            "cell": row["cell"],
            "seed": row["seed"],
            "fold": None,
        }
        config = manifest["config"]
        assert config["train"]["seed"] == row["seed"]
        assert config["train"]["lr"] == row["cell"]["train.lr"]
        assert config["model"]["dropout"] == row["cell"]["model.dropout"]
        assert run.read_summary()["test"]["accuracy"] >= 0
    assert sorted(p.name for p in exp.iterdir()) == sorted(
        [EXPERIMENT_JSON, *(r["dir"] for r in doc["runs"])]
    )


def test_a_stopped_sweep_rerun_finishes_only_the_missing_runs(stopped_then_rerun, capsys):
    exp, first, second = stopped_then_rerun
    assert first["code"] == 128 + signal.SIGTERM
    assert len(first["mtimes"]) == 4  # runs 1-4 finished, run 5 stopped
    stopped = RunDir(exp / "c02_lr=0.0003_dropout=0.1_s42")
    assert stopped.read_manifest()["status"] == "completed"  # after the rerun
    assert len(stopped.read_manifest()["resumes"]) == 1  # resumed, not restarted
    # The rerun trained 4 runs (the stopped one resumed, three started) and kept 4.
    assert len(second["mtimes"]) == 8
    retrained = [name for name, t in second["mtimes"].items() if first["mtimes"].get(name) != t]
    assert len(retrained) == 4
    assert all(first["mtimes"][name] == second["mtimes"][name] for name in first["mtimes"])
    print(f"first {first['s']:.1f} s (4.x runs), rerun {second['s']:.1f} s (4 runs)")


def test_a_bad_grid_key_stops_before_any_run(small_corpus, feature_cache, tmp_path, capsys):
    code = cli.main(
        sweep_args(small_corpus, tmp_path, feature_cache, "--grid", "train.lr=1e-3,oops")
    )
    assert code == 2
    assert "train.lr" in capsys.readouterr().err
    code = cli.main(sweep_args(small_corpus, tmp_path, feature_cache, "--grid", "train.lrr=1,2"))
    err = capsys.readouterr().err
    assert code == 2 and "unknown config key" in err and "train.lr" in err
    assert not any(tmp_path.iterdir())  # nothing created
    code = cli.main(
        sweep_args(small_corpus, tmp_path, feature_cache, "--grid", "seed=1,2", "--seeds", "2")
    )
    assert code == 2 and "train.seed is both a grid key and --seeds" in capsys.readouterr().err
    # MELD keeps its official splits: actor folds are refused before anything starts.
    code = cli.main(
        sweep_args(small_corpus, tmp_path, feature_cache, "--folds", "2", "--set", "layout=meld")
    )
    assert code == 2 and "MELD has fixed official" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_data_module_tests_each_actor_once_over_the_folds(
    small_corpus, feature_cache, stopped_then_rerun
):
    """Leave-one-actor-out on the 4-actor corpus, from the feature cache the sweep filled."""
    from trainers.config import resolve
    from trainers.registry import get_entry

    entry = get_entry("hybrid-attention")
    tested = []
    for fold in range(4):
        cfg = entry.default_config()
        cfg.data.root = str(small_corpus)
        items = [*SMALL_MODEL, f"data.cache_dir={feature_cache}", "data.folds=4"]
        resolve(cfg, (), [*items, f"data.fold={fold}"])
        module = entry.data(cfg)
        module.setup(BadInputLog(None))
        splits = module.describe()["splits"]
        actors = [splits[s]["actors"] for s in ("train", "val", "test")]
        assert sum(map(len, actors)) == 4 and len({a for part in actors for a in part}) == 4
        assert len(actors[2]) == 1 and len(actors[1]) == 1
        tested += actors[2]
    assert sorted(tested) == ["01", "02", "03", "04"]


def test_a_sweep_file_plans_cells_seeds_and_folds(small_corpus, tmp_path, capsys):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        f'model = "hybrid-attention"\ndata = "{small_corpus}"\nseeds = [1, 2]\nfolds = 4\n'
        'group = "actor"\n[grid]\n"data.modalities" = [["audio"], ["audio", "video"]]\n'
        "[fixed]\ntrain.epochs = 1\n"
    )
    out = tmp_path / "runs"
    assert cli.main(["sweep", "--file", str(sweep), "--out", str(out), "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert len(lines) == 2 * 2 * 4 and "seed 2 fold 3" in lines[-1]
    assert not out.exists()
    sweep.write_text('model = "hybrid-attention"\nepochs = 3\n')
    assert cli.main(["sweep", "--file", str(sweep), "--out", str(out)]) == 2
    assert "unknown key(s) epochs" in capsys.readouterr().err
