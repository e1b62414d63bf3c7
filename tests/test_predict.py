"""A trained model leaves its run: self-contained checkpoints, load_bundle, predict.

One tiny hybrid-attention run on a private copy of the small generated corpus
is shared by every test here (``tiny_run`` in conftest.py): training dominates
the cost. ``emoconsole predict`` is tested here too, so that it never trains a
run of its own (the suite runs with ``--dist loadfile``: one file, one worker).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import trainers_cmd
from trainers.rundir import RunDir

pytestmark = pytest.mark.slow
pytest_plugins = ["tests.sshd"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tiny_run):
    """(run directory, the corpus copy it trained on, its feature cache)."""
    return tiny_run


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
        # The detector that made the crops (the tiny run pins haar), recorded twice.
        detector = inference["preprocessing"]["video"]["face_detector"]
        assert detector["name"] == ckpt["config"]["data"]["face_detector"] == "haar"
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
    # predict decodes with bundle.config.data: the run's detector, not today's default.
    assert bundle.config.data.face_detector == "haar"
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
def test_inputs(trained, tiny_run_test_files):
    """The run's test recordings, copied out; the feature cache deleted and the data set
    out of the way while this module's tests run (put back after: the run and its
    corpus are the session's, and export's model card reads the corpus's manifest)."""
    _run, data, cache = trained
    shutil.rmtree(cache, ignore_errors=True)
    hidden = data.with_name(data.name + ".hidden")
    if data.exists():
        data.rename(hidden)
    yield tiny_run_test_files
    if hidden.exists():
        hidden.rename(data)


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


# ------------------------------------------------------------------ emoconsole predict


@pytest.fixture(scope="module")
def console_inputs(trained, test_inputs, tmp_path_factory):
    """A folder with one good take, a good take under a plain name (keyed by its folder
    and stem), a truncated video; and what `python -m trainers predict --json` says of
    them, run here from that folder: (folder, args, rows by input)."""
    folder, expected = test_inputs
    base = tmp_path_factory.mktemp("console")
    (base / "clips").mkdir()
    first, second = sorted(expected)[:2]
    shutil.copy2(folder / f"{first}.mp4", base / "clips" / f"{first}.mp4")
    shutil.copy2(folder / f"{second}.mp4", base / "take.mp4")
    blob = (folder / f"{first}.mp4").read_bytes()
    (base / "broken.mp4").write_bytes(blob[: len(blob) // 3])
    args = ["clips/", "take.mp4", "broken.mp4"]
    run, _data, _cache = trained
    from trainers.cli import main

    here = os.getcwd()
    out, err = StringIO(), StringIO()
    try:
        os.chdir(base)
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["predict", str(run.path), *args, "--json"])
    finally:
        os.chdir(here)
    assert code == 1, err.getvalue()[-2000:]
    rows = {r["input"]: r for r in map(json.loads, out.getvalue().splitlines())}
    assert set(rows) == {f"clips/{first}.mp4", "broken.mp4", "take.mp4"}
    assert rows["take.mp4"]["key"] == "/take" and "error" in rows["broken.mp4"]
    return base, args, rows


def check_rows(got: dict[str, dict], expected: dict[str, dict]) -> None:
    assert sorted(got) == sorted(expected)
    for name, row in got.items():
        want = expected[name]
        assert {k: v for k, v in row.items() if k != "probabilities"} == {
            k: v for k, v in want.items() if k != "probabilities"
        }, name
        if "probabilities" in want:
            assert list(row["probabilities"]) == list(want["probabilities"])  # class order
            assert row["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)


def test_console_predicts_a_local_run_as_trainers_does(trained, console_inputs, monkeypatch):
    """No host: the local run directory is read in place; trainers' table, its error line."""
    from typer.testing import CliRunner

    from emoconsole.cli import app
    from trainers.inference.table import table_header, table_line

    run, _data, _cache = trained
    base, args, expected = console_inputs
    monkeypatch.chdir(base)
    result = CliRunner().invoke(app, ["predict", str(run.path), *args])
    assert result.exit_code == 1, result.output[-2000:]
    assert result.stderr == f"error: broken.mp4: {expected['broken.mp4']['error']}\n"
    ok = [r for r in expected.values() if "error" not in r]
    classes = list(ok[0]["probabilities"])
    header, *lines = result.stdout.splitlines()
    assert header == table_header(classes)
    want = {r["input"]: table_line(r["input"], r["prediction"], r["probabilities"], classes)
            for r in ok}  # fmt: skip
    assert sorted(line.split()[0] for line in lines) == sorted(want)
    for line in lines:
        name, top, *probs = line.split()
        _name, w_top, *w_probs = want[name].split()
        assert top == w_top
        assert list(map(float, probs)) == pytest.approx(list(map(float, w_probs)), abs=2e-4)


def test_console_predicts_on_an_ssh_host_with_local_names(
    trained, console_inputs, sshd, ssh_env, tmp_path, monkeypatch
):
    """The inputs travel to <workdir>/predict/<token>/ (code/current: this checkout, as
    deploy leaves it); the JSON lines are trainers' for the same arguments here (names,
    keys, sources, errors), and the copy on the host is removed."""
    from typer.testing import CliRunner

    from emoconsole.cli import app

    run, _data, _cache = trained
    base, args, expected = console_inputs
    work = tmp_path / "work"
    (work / "code").mkdir(parents=True)
    (work / "code" / "current").symlink_to(REPO)
    config = ssh_env.config_dir / "emoconsole" / "hosts.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f'[hosts.box]\nhost = "127.0.0.1"\nport = {sshd.port}\nuser = "{sshd.user}"\n'
        f'identity_file = "{sshd.client_key}"\npython = "{sys.executable}"\n'
        f'workdir = "{work}"\n'
    )
    ssh_env.trust(sshd)
    monkeypatch.chdir(base)
    result = CliRunner().invoke(app, ["predict", str(run.path), *args, "--host", "box", "--json"])
    assert result.exit_code == 1, result.output[-2000:]
    check_rows({r["input"]: r for r in map(json.loads, result.stdout.splitlines())}, expected)
    assert result.stderr == f"error: broken.mp4: {expected['broken.mp4']['error']}\n"
    assert [p.name for p in (work / "predict").iterdir()] == []  # the shipped copy is gone
