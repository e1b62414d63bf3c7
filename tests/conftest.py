"""Shared fixtures: a real generated corpus on disk, written once per session."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# Small model and short runs: the end-to-end tests check the machinery, not accuracy.
# Haar: 2.6x less CPU per detection than MTCNN on these 192x144 frames, and no torch +
# torchvision import in each run's preparation workers (tests/test_faces.py covers both).
SMALL_MODEL = [
    "model.audio_channels=16", "model.frame_width=8", "model.frame_dim=32",
    "model.tcn_channels=32", "model.d_model=32", "model.heads=2",
    "train.batch_size=8", "train.threads=1", "data.prepare_workers=2",
    "data.face_detector=haar",
]  # fmt: skip


# The files that take longest, heaviest first (`--durations` of a full run, 2 workers).
# pytest-xdist's `--dist loadfile` hands whole files to whichever worker frees up, in
# collection order (`--no-loadscope-reorder`: its default order is "most tests first",
# which put the fast 50-test files first and left a 60-s end-to-end file to start last
# while the other worker idled). Heavy first, the last minutes are small files on both
# workers. A file not listed keeps its place after these; a stale list only costs balance.
HEAVY_FIRST = (
    "test_train_e2e.py", "test_distributed.py", "test_recovery.py", "test_prepare.py",
    "test_deploy.py", "test_demo.py", "test_predict.py", "test_export.py",
    "test_trackers.py", "test_deploy_sweep.py", "test_deploy_cli.py", "test_ec2.py", "test_push.py",
    "test_dashboard_actions.py", "test_queue.py", "test_branched.py",
    "test_evaluate.py", "test_synth.py", "test_sweep.py", "test_cli_list.py",
    "test_remote_watch.py", "test_report.py", "test_image_models.py",
    "test_export_models.py", "test_meld.py", "test_clips.py", "test_cremad.py",
)  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


@pytest.fixture(autouse=True, scope="session")
def _private_feature_cache(tmp_path_factory):
    """Keep tests out of the user's ~/.cache (subprocesses inherit the variable)."""
    old = os.environ.get("EMOCONSOLE_CACHE")
    os.environ["EMOCONSOLE_CACHE"] = str(tmp_path_factory.mktemp("default-cache"))
    yield
    if old is None:
        os.environ.pop("EMOCONSOLE_CACHE", None)
    else:
        os.environ["EMOCONSOLE_CACHE"] = old


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory) -> Path:
    """4 actors x 15 recordings in RAVDESS layout (actor split: 2 train, 1 val, 1 test)."""
    from trainers.data.synth import write_corpus

    root = tmp_path_factory.mktemp("corpus") / "ravdess"
    write_corpus("ravdess", root, actors=4, seed=3, statements=1, repetitions=1)
    return root


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("features")


def trainers_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainers", *args]


def run_trainers(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        trainers_cmd(*args), capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
    )


def console(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    """`emoconsole ARGS` as a user types it, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "emoconsole", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="session")
def tiny_run(small_corpus, tmp_path_factory):
    """One tiny hybrid-attention run (1 epoch) on a private copy of the small corpus,
    shared by the tests that apply a trained model (tests/test_predict*.py): training
    dominates their cost. (run directory, the corpus copy, its feature cache)."""
    from trainers.rundir import RunDir

    base = tmp_path_factory.mktemp("tiny-run")
    data = base / "ravdess"
    shutil.copytree(small_corpus, data)
    cache = base / "cache"
    settings = []
    for item in [*SMALL_MODEL, "train.epochs=1", f"data.cache_dir={cache}"]:
        settings += ["--set", item]
    proc = run_trainers(
        "train", "hybrid-attention", "--data", str(data), "--out", str(base / "runs"),
        "--run-id", "tiny", *settings,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return RunDir(base / "runs" / "tiny"), data, cache


@pytest.fixture(scope="session")
def tiny_run_test_files(tiny_run, tmp_path_factory):
    """The tiny run's test recordings copied out of its corpus (which a test may then
    delete): (folder, the run's predictions.jsonl rows of the test split by key)."""
    run, data, _cache = tiny_run
    rows = [json.loads(line) for line in run.predictions.read_text().splitlines()]
    test = {r["key"]: r for r in rows if r["split"] == "test"}
    assert test
    out = tmp_path_factory.mktemp("tiny-run-inputs") / "test"
    out.mkdir()
    for actor in {r["actor"] for r in test.values()}:
        for f in (data / f"Actor_{actor}").iterdir():
            shutil.copy2(f, out / f.name)
    return out, test
