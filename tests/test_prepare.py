"""`python -m trainers prepare`: the feature cache built once, resumable after a kill,
with unusable inputs skipped and listed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_trainers, trainers_cmd

pytestmark = pytest.mark.slow

SETTINGS = ["--workers", "2"]


def entries(cache: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every cache entry's arrays by relative path (digests.json is an index of source
    file identities, not content, and is left out)."""
    out = {}
    for path in sorted(cache.rglob("*.npz")):
        with np.load(path) as npz:
            out[str(path.relative_to(cache))] = {k: npz[k] for k in npz.files}
    return out


@pytest.fixture(scope="module")
def one_actor(small_corpus, tmp_path_factory) -> Path:
    """One actor of the shared corpus (15 recordings): enough to kill a prepare midway."""
    root = tmp_path_factory.mktemp("one-actor")
    shutil.copytree(small_corpus / "Actor_01", root / "Actor_01")
    return root


@pytest.fixture(scope="module")
def full_cache(one_actor, tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("prepared")
    proc = run_trainers("prepare", "ravdess", str(one_actor), "--out", str(cache), *SETTINGS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "15 recordings" in proc.stdout and "15 decoded, 0 already cached" in proc.stdout
    assert "prepare [" in proc.stderr  # the progress bar
    return cache


def test_a_second_prepare_decodes_nothing(one_actor, full_cache):
    proc = run_trainers("prepare", "ravdess", str(one_actor), "--out", str(full_cache))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "0 decoded, 15 already cached" in proc.stdout
    assert len(entries(full_cache)) == 30  # audio and video for each recording


def test_killed_midway_then_restarted_equals_an_uninterrupted_prepare(
    one_actor, full_cache, tmp_path
):
    cache = tmp_path / "cache"
    argv = trainers_cmd("prepare", "ravdess", str(one_actor), "--out", str(cache), *SETTINGS)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=os.environ.copy())  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(cache.rglob("*.npz"))) < 6:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "prepare wrote nothing"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the workers too, mid-write
    proc.wait()
    partial = len(list(cache.rglob("*.npz")))
    assert 6 <= partial < 30

    again = run_trainers("prepare", "ravdess", str(one_actor), "--out", str(cache), *SETTINGS)
    assert again.returncode == 0, again.stderr[-2000:]
    # It resumed: only the recordings whose entries were missing were decoded again.
    decoded = int(again.stdout.split(" decoded,")[0].rsplit(" ", 1)[1])
    assert 0 < decoded < 15
    ours, theirs = entries(cache), entries(full_cache)
    assert sorted(ours) == sorted(theirs)
    for name, arrays in theirs.items():
        assert sorted(ours[name]) == sorted(arrays), name
        for key, value in arrays.items():
            np.testing.assert_array_equal(ours[name][key], value, err_msg=f"{name}:{key}")
    assert not list(cache.rglob("*.tmp*"))  # no torn file left by the kill


def test_unusable_inputs_are_skipped_and_listed_once(small_corpus, tmp_path):
    src = tmp_path / "data"
    (src / "Actor_01").mkdir(parents=True)
    for path in (small_corpus / "Actor_01").iterdir():  # neutral and calm: 3 recordings
        if path.name.split("-")[2] in ("01", "02"):
            shutil.copy2(path, src / "Actor_01" / path.name)
    victim = sorted((src / "Actor_01").glob("01-*.mp4"))[0]
    victim.write_bytes(b"not a video at all" * 100)
    (src / "Actor_01" / "notes-unparsable.mp4").write_bytes(b"")
    cache = tmp_path / "cache"
    proc = run_trainers("prepare", "ravdess", str(src), "--out", str(cache), *SETTINGS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    listed = [json.loads(line) for line in (cache / "bad_inputs.jsonl").read_text().splitlines()]
    paths = [item["path"] for item in listed]
    assert len(paths) == len(set(paths))
    assert any(p.endswith(victim.name) for p in paths)
    assert any("notes-unparsable" in p for p in paths)
    assert all(item["reason"] for item in listed)
    assert victim.name in proc.stdout  # said on screen too


def test_wrong_dataset_key_stops_before_anything(small_corpus, tmp_path):
    cache = tmp_path / "cache"
    proc = run_trainers("prepare", "ravdess", str(small_corpus), "--out", str(cache),
                        "--set", "data.face_sise=64")  # fmt: skip
    assert proc.returncode == 2
    assert "data.face_sise" in proc.stderr and "face_size" in proc.stderr
    assert not cache.exists()
