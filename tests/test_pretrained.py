"""Pretrained weights from real local files: torchvision and pytorchvideo formats, our own
checkpoints, torch hub's cache, and the errors when a file is missing or fits nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision import models as tvm

from trainers.cli import main
from trainers.config import ConfigError, resolve
from trainers.data.tensors import TensorDataModule
from trainers.engine.pretrained import PretrainedError, load_pretrained, resolve_spec
from trainers.engine.trainer import Trainer, new_manifest
from trainers.registry import ModelEntry, get_entry
from trainers.rundir import RunDir


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Wrapped(nn.Module):
    """Our habit: a torchvision backbone under ``backbone.``, with our class count."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.backbone = tvm.resnet18(weights=None, num_classes=num_classes)


def resnet18_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return tvm.resnet18(weights=None).state_dict()  # 1000 classes, as published


def assert_backbone_equal(model: Wrapped, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    for key, tensor in state.items():
        if not key.startswith("fc."):
            assert torch.equal(own[f"backbone.{key}"], tensor), key


def test_torchvision_weights_land_under_the_wrappers_prefix_and_the_head_is_reported(tmp_path):
    state = resnet18_state()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    torch.manual_seed(1)
    model = Wrapped(num_classes=8)
    head_before = model.backbone.fc.weight.detach().clone()

    report = load_pretrained(model, str(path))

    assert_backbone_equal(model, state)
    assert torch.equal(model.backbone.fc.weight, head_before)  # 8-class head kept
    assert report.add == "backbone." and report.strip == ""
    assert sorted(report.skipped_names) == ["backbone.fc.bias", "backbone.fc.weight"]
    assert report.kept == ["backbone.fc.bias", "backbone.fc.weight"]
    assert report.loaded and not report.unused
    text = str(report)
    assert "backbone.fc.weight (1000x512 in file vs 8x512 in model)" in text
    assert f"loaded {len(state) - 2}/{len(state)}" in text


def test_pytorchvideo_model_state_with_ddp_prefix(tmp_path):
    state = resnet18_state(seed=2)
    path = tmp_path / "SLOW_8x8_R50.pyth"  # pytorchvideo's hub files: {"model_state": ...}
    wrapped = {f"module.{k}": v for k, v in state.items()}
    torch.save({"model_state": wrapped, "epoch": 196, "cfg": "..."}, path)
    model = Wrapped(num_classes=8)
    report = load_pretrained(model, str(path))
    assert_backbone_equal(model, state)
    assert len(report.loaded) == len(state) - 2


def test_our_own_checkpoint_format_loads_with_its_numpy_extras(tmp_path):
    """Checkpoints hold RNG states (numpy objects): not loadable with weights_only."""
    torch.manual_seed(3)
    source = Wrapped(num_classes=8)
    path = tmp_path / "best.pt"
    torch.save(
        {"format_version": 1, "model": source.state_dict(), "rng": np.random.get_state()}, path
    )
    target = Wrapped(num_classes=8)
    report = load_pretrained(target, str(path))
    for key, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], tensor), key
    assert not report.skipped and not report.kept and report.strip == report.add == ""
    assert "weights_only=False" in str(report)


def test_a_file_prefix_is_dropped_when_the_model_has_none(tmp_path):
    state = resnet18_state(seed=4)
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in state.items()}}, path)
    model = tvm.resnet18(weights=None, num_classes=1000)
    report = load_pretrained(model, str(path))
    assert report.strip == "encoder." and report.add == ""
    for key, tensor in state.items():
        assert torch.equal(model.state_dict()[key], tensor), key


def test_hub_spec_reads_torch_hubs_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    state = resnet18_state(seed=5)
    torch.save(state, checkpoints / "resnet18-f37072fd.pth")
    assert resolve_spec("hub:resnet18-f37072fd.pth") == checkpoints / "resnet18-f37072fd.pth"
    model = Wrapped(num_classes=7)
    load_pretrained(model, "hub:resnet18-f37072fd.pth")
    assert_backbone_equal(model, state)


def test_missing_file_names_the_path_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    with pytest.raises(PretrainedError) as err:
        load_pretrained(Wrapped(8), str(tmp_path / "nope.pth"))
    assert str(tmp_path / "nope.pth") in str(err.value) and str(hub) in str(err.value)
    with pytest.raises(PretrainedError) as err:
        load_pretrained(Wrapped(8), "hub:resnet18-f37072fd.pth")
    assert str(hub / "resnet18-f37072fd.pth") in str(err.value)
    # The config check fails before any run exists, naming the key.
    cfg = get_entry("hybrid-attention").default_config()
    with pytest.raises(ConfigError) as err:
        resolve(cfg, assignments=[f"pretrained={tmp_path / 'nope.pth'}"])
    assert err.value.key == "train.pretrained"
    assert str(tmp_path / "nope.pth") in str(err.value) and "hub:" in str(err.value)


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state(), path)
    entry = get_entry("hybrid-attention")
    model = entry.build(entry.default_config(), 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Some BatchNorm vectors share widths by chance: still refused, and nothing is loaded.
    with pytest.raises(PretrainedError, match="a coincidence of shapes"):
        load_pretrained(model, str(path))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    torch.save({"classifier.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(PretrainedError, match="none of its 1 tensors fits the model"):
        load_pretrained(model, str(path))


def test_cli_refuses_a_missing_file_with_exit_2_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(
        ["train", "hybrid-attention", "--data", str(tmp_path), "--out", str(out),
         "--set", "pretrained=/nope"]
    )  # fmt: skip
    assert code == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "train.pretrained" in err and "/nope" in err and "hub" in err


def test_the_engine_loads_and_logs_pretrained_weights(tmp_path):
    base = get_entry("hybrid-attention")
    small = ["model.audio_channels=8", "model.frame_width=4", "model.frame_dim=16",
             "model.tcn_channels=16", "model.d_model=16", "model.heads=2", "data.face_size=24",
             "train.batch_size=16", "train.epochs=1", "train.threads=1"]  # fmt: skip
    cfg = resolve(base.default_config(), assignments=small)
    torch.manual_seed(7)
    source = base.build(cfg, 8)
    weights = tmp_path / "hybrid.pt"
    torch.save({"model": source.state_dict()}, weights)
    cfg = resolve(cfg, assignments=[f"train.pretrained={weights}"])
    data = TensorDataModule(n=32, audio_len=30, frames=6, face_size=24, seed=1)
    entry = ModelEntry(base.name, base.description, base.config, base.build, lambda c: data)
    run = RunDir(tmp_path / "run").create()
    run.write_manifest(new_manifest(run, entry, cfg, []))
    trainer = Trainer(entry, cfg, run)
    trainer.fit()
    n = len(source.state_dict())
    assert f"pretrained: loaded {n}/{n} model tensors from {weights}" in run.train_log.read_text()


def test_torchvision_resnet50_lands_in_image_resnet50(tmp_path):
    torch.manual_seed(0)
    state = tvm.resnet50(weights=None).state_dict()
    path = tmp_path / "resnet50-11ad3fa6.pth"
    torch.save(state, path)
    entry = get_entry("image-resnet50")
    model = entry.build(entry.default_config(), 8)
    report = load_pretrained(model, str(path))
    assert report.add == "backbone."
    assert report.unused == ["fc.bias", "fc.weight"]  # the enhanced head replaces fc
    own = model.state_dict()
    for key, tensor in state.items():
        if not key.startswith("fc."):
            assert torch.equal(own[f"backbone.{key}"], tensor), key
    assert all(k.startswith("head.") for k in report.kept)
