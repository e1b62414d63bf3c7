"""A trained model leaves its run: self-contained checkpoints, load_bundle, predict.

One tiny hybrid-attention run on a private copy of the small generated corpus
is shared by every test here (module-scoped): training dominates the cost.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from tests.conftest import SMALL_MODEL, run_trainers, trainers_cmd
from trainers.rundir import RunDir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(small_corpus, tmp_path_factory):
    """(run directory, the corpus copy it trained on, its feature cache)."""
    base = tmp_path_factory.mktemp("predict")
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


def test_checkpoints_load_weights_only_and_carry_the_audio_norm(trained):
    from trainers.data.base import INFERENCE_FORMAT
    from trainers.session import config_from_manifest

    run, _data, _cache = trained
    for path in (run.best_ckpt, run.last_ckpt):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        inference = ckpt["inference"]
        assert inference["format"] == INFERENCE_FORMAT
        assert inference["preprocessing"]["kind"] == "audio-visual"
        assert (
            inference["preprocessing"]["video"]["face_size"] == ckpt["config"]["data"]["face_size"]
        )
    # The statistics are the data module's own, to the bit.
    entry, cfg = config_from_manifest(run)
    module = entry.data(cfg)
    module.setup(report_bad=lambda path, reason: None)
    norm = ckpt["inference"]["fitted"]["audio_norm"]
    assert np.array_equal(np.asarray(norm["mean"], np.float32), module.audio_norm.mean)
    assert np.array_equal(np.asarray(norm["std"], np.float32), module.audio_norm.std)


def test_load_bundle_builds_the_model_in_eval_mode(trained):
    from trainers.inference.bundle import load_bundle

    run, _data, _cache = trained
    bundle = load_bundle(run.path)
    assert bundle.model_name == "hybrid-attention"
    assert bundle.checkpoint == run.best_ckpt
    assert len(bundle.classes) == 8 and not bundle.model.training
    assert bundle.fitted["audio_norm"]["mean"]
    assert bundle.notes == []
    ckpt = torch.load(run.best_ckpt, map_location="cpu", weights_only=True)
    for key, value in bundle.model.state_dict().items():
        assert torch.equal(value, ckpt["model"][key]), key


def test_an_old_pickled_checkpoint_is_refused_unless_trusted(trained, tmp_path):
    from trainers.inference.bundle import BundleError, load_bundle

    run, _data, _cache = trained
    old = RunDir(tmp_path / "old")
    old.checkpoints.mkdir(parents=True)
    ckpt = torch.load(run.best_ckpt, map_location="cpu", weights_only=True)
    ckpt["rng"]["numpy"] = np.random.get_state()  # as checkpoints held it before
    del ckpt["inference"]
    torch.save(ckpt, old.best_ckpt)
    with pytest.raises(BundleError, match="trust_pickle") as err:
        load_bundle(old.path)
    assert str(old.best_ckpt) in str(err.value)
    bundle = load_bundle(old.path, trust_pickle=True)
    assert bundle.inference is None
    assert "(the audio normalisation) must be recomputed" in bundle.notes[0]
    with pytest.raises(BundleError, match="--checkpoint best"):
        load_bundle(old.path, checkpoint="last")


@pytest.fixture(scope="module")
def test_inputs(trained, tmp_path_factory):
    """The run's test recordings, copied out; then the data set and its cache are deleted."""
    run, data, cache = trained
    rows = [json.loads(line) for line in run.predictions.read_text().splitlines()]
    test = {r["key"]: r for r in rows if r["split"] == "test"}
    assert test
    out = tmp_path_factory.mktemp("inputs") / "test"
    out.mkdir()
    actors = {r["actor"] for r in test.values()}
    for actor in actors:
        for f in (data / f"Actor_{actor}").iterdir():
            shutil.copy2(f, out / f.name)
    shutil.rmtree(data)
    shutil.rmtree(cache, ignore_errors=True)
    return out, test


def predict(*args, cache):
    env = {**os.environ, "EMOCONSOLE_CACHE": str(cache)}
    return subprocess.run(
        trainers_cmd("predict", *args), capture_output=True, text=True, timeout=300, env=env
    )


def predict_here(capsys, *args):
    """The CLI in this process (no second torch import): (exit code, stdout, stderr)."""
    from trainers.cli import main

    capsys.readouterr()
    code = main(["predict", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_reproduces_the_runs_own_test_predictions(trained, test_inputs, tmp_path):
    run, _data, _cache = trained
    folder, expected = test_inputs
    empty = tmp_path / "cache"
    empty.mkdir()
    proc = predict(str(run.path), str(folder), "--json", cache=empty)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = {row["key"]: row for row in map(json.loads, proc.stdout.splitlines())}
    assert set(got) == set(expected)
    classes = json.loads(run.summary.read_text())["classes"]
    for key, row in got.items():
        probs = [row["probabilities"][c] for c in classes]
        assert probs == pytest.approx(expected[key]["probs"], abs=1e-5), key
        assert row["prediction"] == classes[expected[key]["pred"]]
    assert not any(empty.iterdir())  # nothing cached, nothing read from a cache


def test_a_corrupt_file_and_a_silent_video_fail_alone(trained, test_inputs, tmp_path, capsys):
    """Two one-line errors naming the files, the good recordings predicted, exit 1."""
    run, _data, _cache = trained
    folder, expected = test_inputs
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    keys = sorted(expected)[:2]
    for key in keys:  # two good takes: their 01 mp4 (video and its audio track)
        shutil.copy2(folder / f"{key}.mp4", mixed / f"{key}.mp4")
    blob = (folder / f"{keys[0]}.mp4").read_bytes()
    (mixed / "broken.mp4").write_bytes(blob[: len(blob) // 3])
    silent = "02" + keys[1][2:]  # the take's video-only file, under another name
    shutil.copy2(folder / f"{silent}.mp4", mixed / "silent.mp4")
    code, out, err = predict_here(capsys, str(run.path), str(mixed))
    assert code == 1, err[-2000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, err
    assert any(str(mixed / "broken.mp4") in e for e in errors), errors
    silent_error = next(e for e in errors if str(mixed / "silent.mp4") in e)
    assert "no usable audio: no audio stream" in silent_error
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["input", "prediction"]
    assert len(lines) == 1 + len(keys)
    classes = json.loads(run.summary.read_text())["classes"]
    for key, line in zip(keys, lines[1:], strict=True):
        name, top, *probs = line.split()
        assert name.endswith(f"{key}.mp4") and top in classes
        assert sum(map(float, probs)) == pytest.approx(1.0, abs=1e-3)


def test_bad_usage_exits_2_with_one_line(trained, tmp_path, capsys):
    run, _data, _cache = trained
    code, _out, err = predict_here(capsys, str(tmp_path), str(tmp_path))
    assert code == 2 and "not a run directory" in err
    code, _out, err = predict_here(capsys, str(run.path), str(tmp_path), "--device", "tpu")
    assert code == 2 and "--device" in err
    code, _out, err = predict_here(capsys, str(run.path), str(tmp_path / "nothing.mp4"))
    assert code == 1 and "nothing.mp4: no such file" in err
