"""`python -m trainers export`: a tiny trained run as a Hugging Face-layout folder that
loads without the run (no torch.load), predicts as the run did, and runs in onnxruntime.

One tiny hybrid-attention run, exported once with --format onnx, is shared by every
test here (module-scoped): training and the ONNX export dominate the cost.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import run_trainers
from trainers.rundir import RunDir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tiny_run):
    """The session's tiny hybrid-attention run (conftest.py), shared with predict and
    evaluate: (run directory, the corpus copy it trained on, its feature cache)."""
    return tiny_run


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    run, _data, _cache = trained
    out = tmp_path_factory.mktemp("exported") / "model"
    proc = run_trainers("export", str(run.path), "--out", str(out), "--format", "onnx")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "checked onnx against PyTorch" in proc.stdout
    return out


def test_config_and_card_carry_classes_metrics_and_the_floor(trained, exported):
    run, _data, _cache = trained
    summary = json.loads(run.summary.read_text())
    assert {p.name for p in exported.iterdir()} == {
        "model.safetensors", "config.json", "README.md", "summary.json", "model.onnx",
    }  # fmt: skip
    config = json.loads((exported / "config.json").read_text())
    assert config["format"] == "emoconsole-export" and config["format_version"] == 1
    assert config["model_name"] == "hybrid-attention" and config["run_id"] == "tiny"
    assert config["classes"] == summary["classes"]
    assert config["id2label"]["0"] == summary["classes"][0]
    ckpt = torch.load(run.best_ckpt, map_location="cpu", weights_only=True)
    assert config["inference"] == ckpt["inference"]
    assert config["config"] == json.loads(json.dumps(ckpt["config"]))  # tuples as lists
    assert config["metrics"]["test"]["accuracy"] == summary["test"]["accuracy"]
    assert config["metrics"]["majority_floor"] == summary["majority_floor"]
    assert list(config["inputs"]) == ["audio", "audio_mask", "video", "video_mask"]
    assert config["inputs"]["video"]["shape"][:2] == ["batch", "video_time"]
    assert config["onnx"]["checked"]["max_abs_diff"] <= 1e-4

    card = (exported / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: emoconsole\n")
    front = card.split("---")[1]
    assert "model-index:" in front and f"value: {summary['test']['macro_f1']}" in front
    for name in summary["classes"]:
        assert name in card
    floor, test = summary["majority_floor"], summary["test"]
    for key in ("accuracy", "macro_f1", "weighted_f1", "uar"):
        assert f"| {test[key]:.4f} | {floor[key]:.4f} |" in card
    assert "majority-class floor" in card
    actors = summary["data"]["splits"]["test"]["actors"]
    assert f"test: {', '.join(actors)}" in card  # the held-out actors
    assert "**generated**" in card  # the corpus is the project's generator's
    # Recorded when the run described its data: true after the data root is gone too.
    assert summary["data"]["generated"] is True
    assert "python -m trainers predict ." in card
    assert "Small test set" in card and "single held-out split" in card


def test_the_folder_loads_through_load_bundle_without_torch_load(trained, exported, monkeypatch):
    from trainers.inference.bundle import load_bundle

    run, _data, _cache = trained
    ckpt = torch.load(run.best_ckpt, map_location="cpu", weights_only=True)

    def refuse(*args, **kwargs):
        raise AssertionError("an exported folder must load without torch.load")

    monkeypatch.setattr(torch, "load", refuse)
    bundle = load_bundle(exported)
    assert bundle.checkpoint == exported / "model.safetensors"
    assert bundle.classes == [str(c) for c in ckpt["classes"]]
    assert bundle.inference == ckpt["inference"] and bundle.notes == []
    state = bundle.model.state_dict()
    assert set(state) == set(ckpt["model"])
    for key, value in state.items():
        assert torch.equal(value, ckpt["model"][key]), key


def test_onnx_equals_pytorch_on_two_lengths(exported):
    import onnxruntime

    from trainers.inference.bundle import load_bundle
    from trainers.inference.export import example_batches

    bundle = load_bundle(exported)
    session = onnxruntime.InferenceSession(
        str(exported / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    inputs = {i.name: i.shape for i in session.get_inputs()}
    assert inputs["audio"][:2] == ["batch", "audio_time"]
    batches = example_batches(bundle, seed=7)
    assert batches[0]["audio"].shape[1] != batches[1]["audio"].shape[1]
    for batch in batches:
        assert not batch["audio_mask"].all()  # padded items: the masks matter
        (got,) = session.run(["logits"], {k: v.numpy() for k, v in batch.items()})
        with torch.no_grad():
            want = bundle.model(batch).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_predict_from_the_folder_equals_the_runs_predictions(
    trained, exported, tiny_run_test_files, tmp_path
):
    """With the data set (hidden) and its cache deleted: only the folder is left."""
    from trainers.inference.bundle import load_bundle
    from trainers.inference.predict import predict_inputs

    _run, data, cache = trained
    test_files, expected = tiny_run_test_files
    keys = sorted(expected)[:4]  # a few recordings keep the decoding cheap
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for f in test_files.iterdir():
        if any(f.stem[3:] == key[3:] for key in keys):
            shutil.copy2(f, inputs / f.name)
    shutil.rmtree(cache, ignore_errors=True)
    # The run's corpus is the session's (test_predict deletes it for good): hidden
    # while predicting, put back for whatever runs next on this worker.
    hidden = data.with_name(data.name + ".hidden")
    if data.exists():
        data.rename(hidden)
    try:
        bundle = load_bundle(exported)
        got = {p.key: p for p in predict_inputs(bundle, [inputs])}
    finally:
        if hidden.exists():
            hidden.rename(data)
    assert set(got) == set(keys)
    classes = bundle.classes
    for key, row in got.items():
        assert row.ok, row.error
        probs = [row.probabilities[c] for c in classes]
        assert probs == pytest.approx(expected[key]["probs"], abs=1e-5), key


def test_a_pickled_checkpoint_is_refused_unless_trusted(trained, tmp_path):
    from trainers.inference.bundle import BundleError
    from trainers.inference.export import export_model

    run, _data, _cache = trained
    old = RunDir(tmp_path / "old")
    old.checkpoints.mkdir(parents=True)
    ckpt = torch.load(run.best_ckpt, map_location="cpu", weights_only=True)
    ckpt["rng"]["numpy"] = np.random.get_state()  # as checkpoints held it before
    torch.save(ckpt, old.best_ckpt)
    out = tmp_path / "out"
    with pytest.raises(BundleError, match="trust_pickle"):
        export_model(old.path, out)
    assert not out.exists()
    result = export_model(old.path, out, trust_pickle=True)
    assert (out / "model.safetensors") in result.files
    assert json.loads((out / "config.json").read_text())["run_id"] == "old"


def test_export_refuses_a_folder_that_is_not_empty(trained, tmp_path, capsys):
    from trainers.cli import main

    run, _data, _cache = trained
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["export", str(run.path), "--out", str(tmp_path)]) == 2
    assert "not empty and not an earlier export" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_onnx_failure_leaves_a_complete_safetensors_export(
    trained, tmp_path, monkeypatch, capsys
):
    from trainers.cli import main
    from trainers.inference import export
    from trainers.inference.bundle import load_bundle

    def fail(bundle, path, batches):
        raise export.ExportError(f"model {bundle.model_name!r} cannot be exported to ONNX: why")

    monkeypatch.setattr(export, "export_onnx", fail)
    run, _data, _cache = trained
    out = tmp_path / "model"
    assert main(["export", str(run.path), "--out", str(out), "--format", "onnx"]) == 1
    err = capsys.readouterr().err
    assert "model 'hybrid-attention' cannot be exported to ONNX: why" in err
    assert f"the safetensors export in {out} is complete" in err
    assert not (out / "model.onnx").exists()
    assert "onnx" not in json.loads((out / "config.json").read_text())
    assert load_bundle(out).model_name == "hybrid-attention"
