"""The image models of design note 003: recipe defaults, tiny forward/backward,
the attention option, and end-to-end runs (CLI training, stratified k-fold).

Why these tests: the defaults *are* the note's recipe, so they are pinned
number by number; the real torchvision architectures run at 32-64 px so a CPU
can afford them; the end-to-end runs go through the real engine and files, as
any user's run would.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import run_trainers
from trainers.config import ConfigError, resolve
from trainers.data.synth import write_corpus
from trainers.engine.kfold import KFOLD_JSON, run_kfold
from trainers.registry import get_entry
from trainers.rundir import RunDir

ENTRIES = ("image-resnet50", "image-efficientnet-b0", "image-vit-b16")
TINY = [
    "data.image_size=32", "data.start_size=24", "data.resize_epoch=2", "data.prepare_workers=2",
    "train.batch_size=8", "train.grad_accum=1", "train.num_workers=0", "train.threads=1",
    "train.min_epochs=0",
]  # fmt: skip
TINY_VIT = [
    *TINY, "data.start_size=32", "model.patch_size=8", "model.layers=1", "model.heads=2",
    "model.hidden_dim=32", "model.mlp_dim=64",
]  # fmt: skip


def tiny(name: str, *extra: str):
    entry = get_entry(name)
    cfg = resolve(
        entry.default_config(), assignments=[*(TINY_VIT if "vit" in name else TINY), *extra]
    )
    return entry, cfg


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fi") / "fi"
    write_corpus("fi", root, actors=2, seed=4, workers=1)  # 36 images, 2 to 8 per class
    return root


def test_recipe_defaults_are_the_notes_numbers():
    for name in ENTRIES:
        entry = get_entry(name)
        assert entry.seed_note.startswith("003_")
        cfg = entry.default_config()
        t = cfg.train
        assert (t.batch_size, t.epochs, t.grad_accum, t.clip_grad_norm) == (32, 100, 4, 1.0)
        assert (t.optimizer, t.lr, t.weight_decay) == ("adamw", 5e-3, 1e-4)
        assert (t.scheduler, t.onecycle_pct_start) == ("onecycle", 0.1)
        assert (t.loss, t.focal_alpha, t.focal_gamma, t.label_smoothing) == ("focal", 0.25, 2, 0.1)
        assert (t.class_weights, t.sampler, t.amp) == ("none", "weighted", "auto")
        assert (cfg.mix.mixup_alpha, cfg.mix.cutmix_alpha, cfg.mix.enabled) == (0.4, 1.0, True)
        d = cfg.data
        assert (d.image_size, d.resize_epoch, d.tta, d.augment) == (224, 30, True, True)
        assert (d.val_fraction, d.test_fraction) == (0.1, 0.1)
        assert d.start_size == (224 if "vit" in name else 176)
        assert len(entry.make_callbacks(cfg)) == 1
    assert get_entry("image-resnet50").default_config().model.attention is False


def _batch(size: int, n: int = 4) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"image": torch.randn(n, 3, size, size), "label": torch.arange(n) % 8}


@pytest.mark.parametrize(
    ("name", "dim", "sizes"),
    [("image-resnet50", 2048, (24, 32)), ("image-efficientnet-b0", 1280, (24, 32)),
     ("image-vit-b16", 32, (32,))],
)  # fmt: skip
def test_forward_backward_at_tiny_size(name, dim, sizes):
    entry, cfg = tiny(name)
    model = entry.build(cfg, 8)
    model.train()
    for size in sizes:  # CNNs take both progressive sizes
        batch = _batch(size)
        feats = model.forward_features(batch)
        assert feats.shape == (4, dim)
        logits = model(batch)
        assert logits.shape == (4, 8) and torch.isfinite(logits).all()
        model.zero_grad()
        nn.functional.cross_entropy(logits, batch["label"]).backward()
        first = next(p for p in model.backbone.parameters() if p.requires_grad)
        assert first.grad is not None and first.grad.abs().sum() > 0
        assert model.head[-1].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model(_batch(sizes[-1], n=1)).shape == (1, 8)  # BN head takes one image in eval


def test_the_head_is_the_notes_enhanced_classifier():
    entry, cfg = tiny("image-resnet50")
    head = entry.build(cfg, 8).head
    assert [type(m).__name__ for m in head] == [
        "BatchNorm1d", "Dropout", "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear",
    ]  # fmt: skip
    assert head[0].num_features == 2048 and head[1].p == 0.5 and head[5].p == 0.25
    assert (head[2].in_features, head[2].out_features, head[6].out_features) == (2048, 1024, 8)


def test_attention_option_attends_over_spatial_tokens():
    entry, cfg = tiny("image-resnet50", "model.attention=true")
    model = entry.build(cfg, 8)
    assert isinstance(model.attention, nn.MultiheadAttention)
    assert model.attention.num_heads == 8 and model.attention.embed_dim == 2048
    batch = _batch(64, n=2)  # a 2x2 feature map: four tokens
    model.train()
    out = model(batch)
    nn.functional.cross_entropy(out, batch["label"]).backward()
    assert model.attention.in_proj_weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        before = model(batch)
        model.attention.out_proj.weight.mul_(2.0)
        assert not torch.allclose(before, model(batch))
    plain_entry, plain_cfg = tiny("image-resnet50")
    assert plain_entry.build(plain_cfg, 8).attention is None
    with pytest.raises(ConfigError, match=r"model\.attention_heads"):
        entry.build(resolve(cfg, assignments=["model.attention_heads=3"]), 8)


def test_vit_refuses_progressive_resizing_before_decoding():
    entry, cfg = tiny("image-vit-b16", "data.start_size=24")
    with pytest.raises(ConfigError) as err:
        entry.data(cfg)
    assert err.value.key == "data.start_size"
    entry, cfg = tiny("image-vit-b16", "model.patch_size=5")
    with pytest.raises(ConfigError) as err:
        entry.build(cfg, 8)
    assert err.value.key == "model.patch_size"


def test_cli_trains_image_resnet50_end_to_end(corpus, tmp_path):
    sets = [x for item in [*TINY, "train.epochs=2"] for x in ("--set", item)]
    proc = run_trainers(
        "train", "image-resnet50", "--data", str(corpus), "--out", str(tmp_path),
        "--run-id", "r", *sets,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = RunDir(tmp_path / "r")
    summary = run.read_summary()
    assert summary["model"] == "image-resnet50" and summary["epochs_run"] == 2
    assert 0.0 <= summary["test"]["accuracy"] <= 1.0
    assert summary["data"]["imbalance_ratio"] == 4.0  # 8 contentment, 2 fear
    rows = [json.loads(line) for line in run.predictions.read_text().splitlines()]
    for split in ("val", "test"):
        keys = [r["key"] for r in rows if r["split"] == split]
        assert len(keys) == len(set(keys)) == summary["data"]["splits"][split]["samples"]
    assert all(r["key"].split("/")[0] == summary["classes"][r["label"]] for r in rows)
    assert run.read_manifest()["config"]["mix"]["enabled"] is True


def test_run_kfold_writes_each_fold_and_mean_and_std(corpus, tmp_path):
    entry, cfg = tiny("image-vit-b16", "train.epochs=1", f"data.root={corpus}")
    summary = run_kfold(entry, cfg, tmp_path / "cv", folds=2, argv=["test"])
    table = json.loads((tmp_path / "cv" / KFOLD_JSON).read_text())
    assert [row["fold"] for row in table["per_fold"]] == [0, 1]
    for i, row in enumerate(table["per_fold"]):
        run = RunDir(tmp_path / "cv" / f"fold-{i}")
        fold_summary = run.read_summary()
        assert run.read_manifest()["config"]["data"]["fold"] == i
        assert row["test"]["accuracy"] == fold_summary["test"]["accuracy"]
    for split in ("val", "test"):
        for metric in ("accuracy", "macro_f1", "weighted_f1"):
            values = [row[split][metric] for row in table["per_fold"]]
            assert table["mean"][split][metric] == pytest.approx(np.mean(values))
            assert table["std"][split][metric] == pytest.approx(np.std(values))
    assert summary["out_of_fold"]["samples"] == 36  # every image tested exactly once
    assert json.loads((tmp_path / "cv" / "summary.json").read_text())["kind"] == "kfold"
    stamp = (tmp_path / "cv" / "fold-0" / "summary.json").stat().st_mtime_ns
    again = run_kfold(entry, cfg, tmp_path / "cv", folds=2, argv=["test"])  # finished: kept
    assert (tmp_path / "cv" / "fold-0" / "summary.json").stat().st_mtime_ns == stamp
    assert again["mean"] == summary["mean"]


def test_torchvision_state_dicts_load_under_backbone(tmp_path):
    """ImageNet weights come as torchvision state dicts: they must land in the backbone."""
    from torchvision import models as tvm

    from trainers.engine.pretrained import load_pretrained

    source = tvm.efficientnet_b0(weights=None)  # 1000-class classifier, as published
    torch.save(source.state_dict(), tmp_path / "efficientnet_b0.pth")
    entry, cfg = tiny("image-efficientnet-b0")
    model = entry.build(cfg, 8)
    report = load_pretrained(model, str(tmp_path / "efficientnet_b0.pth"))
    assert report.add == "backbone."
    own = model.state_dict()
    for key, value in source.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(own[f"backbone.{key}"], value), key
    assert all(k.startswith("head.") for k in report.kept)  # only the new head is fresh


def test_cli_folds_flag_runs_kfold_and_reports_mean_and_std(corpus, tmp_path):
    from tests.conftest import run_trainers

    sets = []
    for item in [*TINY_VIT, "train.epochs=1"]:
        sets += ["--set", item]
    proc = run_trainers(
        "train", "image-vit-b16", "--data", str(corpus), "--out", str(tmp_path),
        "--run-id", "cv", "--folds", "2", *sets,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "+-" in proc.stdout and "over 2 folds" in proc.stdout
    table = json.loads((tmp_path / "cv" / KFOLD_JSON).read_text())
    assert len(table["per_fold"]) == 2
    # Audio-visual data folds by actor, except MELD's fixed splits: refused, nothing created.
    bad = run_trainers("train", "hybrid-attention", "--data", str(corpus), "--folds", "2",
                       "--out", str(tmp_path), "--run-id", "meld-cv",
                       "--set", "data.layout=meld")  # fmt: skip
    assert bad.returncode == 2 and "data.folds" in bad.stderr and "MELD" in bad.stderr
    assert not (tmp_path / "meld-cv").exists()
