"""Fusion of finished runs: late fusion, the ensemble, attention fusion trained by the
engine, and the refusals when runs do not line up.

Source runs: neither hybrid-attention nor the branched family takes a single
modality, so the two sources are a hybrid-attention run and a branched-baseline
run (both audio-visual) on the small generated corpus; fusion only needs two
finished runs over the same samples, and two different architectures also
exercise both models' ``forward_features``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import SMALL_MODEL
from trainers.cli import main
from trainers.data.base import SampleInfo
from trainers.data.tensors import TensorDataModule
from trainers.events import read_events, validate_event
from trainers.fusion.late import image_ensemble, late_fusion, tune_weight, weight_grid
from trainers.fusion.runs import FusionError, first_rows, mean_per_sample, rebuild_source
from trainers.rundir import RunDir

BRANCHED_TINY = [
    "model.frame_width=4", "model.frame_dim=12", "model.audio_conv_channels=8,8",
    "model.audio_lstm=6", "model.audio_dense=10", "model.video_lstm=6",
    "model.tcn_channels=10", "model.video_dense=12", "model.fusion_dims=16,8",
    "train.batch_size=8", "train.threads=1",
]  # fmt: skip
FUSION_TINY = ["model.d_model=16", "model.heads=2", "model.tokens=2", "train.batch_size=8",
               "train.epochs=2", "train.threads=1"]  # fmt: skip


@contextlib.contextmanager
def own_signal_handlers():
    """The engine installs SIGINT/SIGTERM/SIGHUP handlers; give pytest its own back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def cli(*args: str) -> int:
    with own_signal_handlers():
        return main(list(args))


@pytest.fixture(scope="module")
def sources(small_corpus, feature_cache, tmp_path_factory) -> tuple[Path, Path]:
    """Two finished runs, 2 epochs each, shared by every test here."""
    out = tmp_path_factory.mktemp("sources")
    common = [f"data.cache_dir={feature_cache}", "train.epochs=2", "data.prepare_workers=1"]
    hybrid = [*SMALL_MODEL, *common, "train.lr=3e-3", "train.seed=1"]
    branched = [*BRANCHED_TINY, *common, "train.lr=3e-3"]
    for run_id, model, items in (("hybrid", "hybrid-attention", hybrid),
                                 ("branched", "branched-baseline", branched)):  # fmt: skip
        code = cli("train", model, "--data", str(small_corpus), "--out", str(out),
                   "--run-id", run_id, *sets(items))  # fmt: skip
        assert code == 0
    return out / "hybrid", out / "branched"


def rows_of(run: Path) -> dict[tuple[str, str], dict]:
    lines = (run / "predictions.jsonl").read_text().splitlines()
    return {(r["split"], r["key"]): r for r in map(json.loads, lines)}


def accuracy(rows: dict, split: str) -> float:
    picked = [r for (s, _), r in rows.items() if s == split]
    return float(np.mean([int(np.argmax(r["probs"])) == r["label"] for r in picked]))


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------- late fusion


def test_late_fusion_weight_is_tuned_on_val_and_never_loses_to_a_source(sources, tmp_path):
    a, b = sources
    result = late_fusion(a, b, tmp_path, run_id="late")
    summary = result.summary
    w = summary["fusion"]["weight"]
    assert 0.0 <= w <= 1.0 and result.weights == pytest.approx([w, 1 - w])
    # 0 and 1 are in the grid, so the tuned val accuracy is at least each source's.
    for src in (a, b):
        assert summary["val"]["accuracy"] >= RunDir(src).read_summary()["val"]["accuracy"]
    curve = dict(map(tuple, summary["fusion"]["val_curve"]))
    assert len(curve) == 21 and summary["val"]["accuracy"] == max(curve.values())
    assert curve[1.0] == pytest.approx(accuracy(rows_of(a), "val"))
    assert curve[0.0] == pytest.approx(accuracy(rows_of(b), "val"))

    # predictions: the same samples, probabilities w * p_a + (1 - w) * p_b
    fused, pa, pb = rows_of(result.run.path), rows_of(a), rows_of(b)
    assert set(fused) == set(pa) == set(pb)
    for key, row in fused.items():
        assert row["label"] == pa[key]["label"] == pb[key]["label"]
        expected = w * np.array(pa[key]["probs"]) + (1 - w) * np.array(pb[key]["probs"])
        assert np.allclose(row["probs"], expected, atol=2e-6)
        assert row["pred"] == int(np.argmax(row["probs"]))
    assert summary["test"]["accuracy"] == pytest.approx(accuracy(fused, "test"))

    # the engine's run-directory format
    engine_summary = RunDir(a).read_summary()
    assert set(engine_summary) <= set(summary)
    assert set(summary["test"]) == set(engine_summary["test"])
    assert summary["majority_floor"]["class"] == engine_summary["majority_floor"]["class"]
    manifest = result.run.read_manifest()
    assert manifest["model"] == "late-fusion" and manifest["status"] == "completed"
    assert manifest["config"]["runs"] == [str(a), str(b)]
    assert [s["id"] for s in manifest["sources"]] == ["hybrid", "branched"]
    events = read_events(result.run.events)
    for i, event in enumerate(events, start=1):
        validate_event(event, i)
    assert [e["status"] for e in events if e["type"] == "status"][-1] == "completed"
    assert {e["split"] for e in events if e["type"] == "val"} == {"val", "test"}


def test_tuning_prefers_equal_weights_on_ties_and_minimises_loss():
    labels = np.array([0, 1])
    same = np.array([[0.9, 0.1], [0.2, 0.8]])
    w, _ = tune_weight(same, same, labels, ["x", "y"], "accuracy")
    assert w == 0.5
    good, bad = same, np.array([[0.4, 0.6], [0.6, 0.4]])
    w, curve = tune_weight(good, bad, labels, ["x", "y"], "loss")
    assert w == 1.0 and curve[-1][1] == min(v for _, v in curve)
    assert weight_grid(0.25) == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(FusionError, match="must divide 1"):
        weight_grid(0.3)


def test_fuse_cli_prints_the_test_metrics_and_the_run(sources, tmp_path, capsys):
    a, b = sources
    out = tmp_path / "runs"
    assert cli("fuse", "late-fusion", str(a), str(b), "--out", str(out), "--run-id", "f") == 0
    printed = capsys.readouterr().out
    assert f"run: {out / 'f'}" in printed and "test accuracy" in printed
    assert "weight" in printed and (out / "f" / "summary.json").exists()


# ------------------------------------------------------------------------------ ensemble


def test_image_ensemble_averages_n_runs_with_equal_weights(sources, tmp_path):
    a, b = sources
    c = copy_run(a, tmp_path / "third")
    rng = np.random.default_rng(0)
    rows = [json.loads(line) for line in (c / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        row["probs"] = rng.dirichlet(np.ones(len(row["probs"]))).round(6).tolist()
    (c / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    result = image_ensemble([a, b, c], tmp_path / "runs", run_id="ens")
    assert result.weights == pytest.approx([1 / 3] * 3)
    fused, parts = rows_of(result.run.path), [rows_of(p) for p in (a, b, c)]
    for key, row in fused.items():
        mean = np.mean([np.array(p[key]["probs"]) for p in parts], axis=0)
        assert np.allclose(row["probs"], mean, atol=2e-6)
    assert result.summary["model"] == "image-ensemble"
    assert len(result.summary["fusion"]["sources"]) == 3


# ----------------------------------------------------------------------------- refusals


def test_runs_with_different_classes_are_refused_and_nothing_is_created(sources, tmp_path, capsys):
    a, b = sources
    other = copy_run(b, tmp_path / "other-classes")
    summary = json.loads((other / "summary.json").read_text())
    summary["classes"] = summary["classes"][::-1]
    (other / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "runs"
    with pytest.raises(FusionError, match="different classes"):
        late_fusion(a, other, out)
    assert cli("fuse", "late-fusion", str(a), str(other), "--out", str(out)) == 2
    assert "different classes" in capsys.readouterr().err
    assert not out.exists()


def test_runs_over_different_samples_are_refused(sources, tmp_path):
    a, b = sources
    other = copy_run(b, tmp_path / "fewer")
    lines = (other / "predictions.jsonl").read_text().splitlines()
    dropped = next(json.loads(line) for line in lines if json.loads(line)["split"] == "val")
    (other / "predictions.jsonl").write_text(
        "".join(line + "\n" for line in lines if json.loads(line) != dropped)
    )
    with pytest.raises(FusionError, match=f"1 only in {a}.*{dropped['key']}"):
        late_fusion(a, other, tmp_path / "runs")
    unfinished = copy_run(b, tmp_path / "unfinished")
    (unfinished / "summary.json").unlink()
    with pytest.raises(FusionError, match="has not finished"):
        image_ensemble([a, unfinished], tmp_path / "runs")


# ---------------------------------------------------------------------- attention fusion


def test_attention_fusion_trains_on_both_runs_embeddings(sources, tmp_path):
    a, b = sources
    out = tmp_path / "runs"
    code = cli("fuse", "attention-fusion", str(a), str(b), "--out", str(out),
               "--run-id", "att", *sets(FUSION_TINY))  # fmt: skip
    assert code == 0
    run = RunDir(out / "att")
    manifest, summary = run.read_manifest(), run.read_summary()
    assert manifest["model"] == "attention-fusion" and manifest["status"] == "completed"
    assert manifest["config"]["data"]["runs"] == [str(a), str(b)]
    assert summary["epochs_run"] == 2 and {"accuracy", "macro_f1"} <= set(summary["test"])
    # hybrid-attention's embedding is 2 * d_model (32 in SMALL_MODEL); branched's is
    # fusion_dims[-1] (8).
    assert summary["data"]["dims"] == [64, 8]
    fused, source = rows_of(run.path), rows_of(a)
    assert set(fused) == set(source)
    assert all(fused[k]["label"] == source[k]["label"] for k in fused)

    # The cached embeddings are the source model's forward_features of the right samples.
    cache = Path(summary["data"]["cache"])
    with np.load(cache) as npz:
        keys, table = list(npz["val_keys"]), npz["val_a"]
    entry, cfg, source_run = rebuild_source(a)
    data = entry.data(cfg)
    data.setup(report_bad=lambda path, reason: None)
    model = entry.build(cfg, len(data.classes))
    model.load_state_dict(torch.load(source_run.best_ckpt, weights_only=False)["model"])
    model.eval()
    infos, dataset = data.samples("val"), data.dataset("val")
    rows = [keys.index(info.key) for info in infos[:3]]
    with torch.no_grad():
        direct = model.forward_features(data.collate([dataset[i] for i in range(3)]))
    assert np.allclose(table[rows], direct.numpy(), atol=1e-5)

    # `train attention-fusion --set data.runs=A,B` is the same thing; no --data needed,
    # and the second run reads the embeddings from the cache.
    code = cli("train", "attention-fusion", "--out", str(out), "--run-id", "att2",
               *sets([*FUSION_TINY, "train.epochs=1", f"data.runs={a},{b}"]))  # fmt: skip
    assert code == 0
    again = RunDir(out / "att2").read_summary()
    assert again["data"]["from_cache"] is True and again["data"]["cache"] == str(cache)


def test_attention_fusion_needs_two_runs_before_anything_is_created(sources, tmp_path, capsys):
    a, _ = sources
    out = tmp_path / "runs"
    assert cli("train", "attention-fusion", "--out", str(out)) == 2
    assert "data.runs" in capsys.readouterr().err
    assert cli("train", "attention-fusion", "--out", str(out), "--set", f"data.runs={a}") == 2
    assert "exactly two run directories" in capsys.readouterr().err
    assert cli("fuse", "attention-fusion", str(a), str(tmp_path), "--out", str(out)) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert not out.exists()
    # Every other model still needs its data set directory.
    assert cli("train", "hybrid-attention", "--out", str(out)) == 2
    assert "--data DIR is required" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("name", ["hybrid-attention", "branched-baseline"])
def test_forward_is_the_head_of_forward_features(name, sources):
    a, b = sources
    entry, cfg, _ = rebuild_source(a if name == "hybrid-attention" else b)
    data = TensorDataModule(n=8, audio_len=30, frames=6, face_size=48)
    batch = data.collate(data.dataset("train")[:4])
    torch.manual_seed(0)
    model = entry.build(cfg, 8).eval()
    with torch.no_grad():
        features = model.forward_features(batch)
        head = model.head if name == "hybrid-attention" else model.out
        assert features.shape == (4, 64 if name == "hybrid-attention" else 8)
        assert torch.equal(head(features), model(batch))


def test_embedding_rows_become_one_per_sample():
    # Multi-clip/TTA rows carry their sample: averaged.
    features = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    pooled = mean_per_sample(features, np.array([1, 0, 1]), 2)
    assert np.allclose(pooled, [[3.0, 2.0], [3.0, 2.5]])
    with pytest.raises(ValueError, match="do not cover"):
        mean_per_sample(features, np.array([0, 0, 0]), 2)
    # An expanded train split (originals, then augmented copies): each key's first row.
    infos = [SampleInfo(k, 0, "01", ()) for k in ("x", "y", "x", "y", "x")]
    assert first_rows(infos) == [0, 1]
