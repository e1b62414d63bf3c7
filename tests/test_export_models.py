"""Export of every model family at tiny sizes, untrained (no run needed): the
safetensors weights reload to the identical state dict, and the ONNX graphs equal
PyTorch in onnxruntime on inputs of two lengths (image models: two batch sizes).
Also the export-only paths in the models (dense frame encoding, unpacked BiLSTMs)
against the ones training uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.config import resolve
from trainers.inference.bundle import Bundle
from trainers.registry import get_entry

CLASSES = 8
# Tiny settings of each family, as in test_branched, test_video_models, test_image_models.
TINY = {
    "hybrid-attention": [
        "model.audio_channels=8", "model.frame_width=4", "model.frame_dim=8",
        "model.tcn_channels=8", "model.tcn_dilations=1,2", "model.d_model=8", "model.heads=2",
        "data.face_size=24",
    ],
    "branched-tcn": [
        "model.frame_width=4", "model.frame_dim=12", "model.audio_conv_channels=8,8",
        "model.audio_lstm=6", "model.audio_dense=10", "model.video_lstm=6",
        "model.tcn_channels=10", "model.video_dense=12", "model.fusion_dims=16,8",
        "data.face_size=24",
    ],
    "r3d-18": ["model.layers=1,1,1,1", "model.width=8", "data.clip_frames=8", "data.face_size=32"],
    "slowfast-r50": ["model.depth=18", "model.width=8", "data.clip_frames=8", "data.face_size=32"],
    "meld-slowfast": ["model.depth=18", "model.width=8", "data.clip_frames=8", "data.face_size=32"],
    "image-resnet50": ["data.image_size=32", "data.start_size=24"],
}  # fmt: skip
# branched-baseline: the video BiLSTM instead of the TCN (its unpacked export path).
SETTINGS = {**TINY, "branched-baseline": TINY["branched-tcn"]}
KIND = {
    "image-resnet50": "image",
    "hybrid-attention": "audio-visual",
    "branched-tcn": "audio-visual",
    "branched-baseline": "audio-visual",
}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_bundle(name: str, seed: int = 0) -> Bundle:
    """An untrained tiny model as load_bundle would hand it over (eval mode, inference dict)."""
    entry = get_entry(name)
    cfg = resolve(entry.default_config(), assignments=SETTINGS[name])
    torch.manual_seed(seed)
    model = entry.build(cfg, CLASSES).eval()
    kind = KIND.get(name, "video-clips")
    pre: dict = {"kind": kind}
    if kind == "video-clips":
        pre["clips"] = {"frames": cfg.data.clip_frames, "eval_clips": 1}
    if kind == "image":
        pre["image_size"] = cfg.data.image_size
    return Bundle(
        model=model, model_name=name, classes=[f"c{i}" for i in range(CLASSES)], config=cfg,
        inference={"format": 1, "preprocessing": pre, "fitted": {}}, path=Path("."),
        checkpoint=Path("none.pt"), entry=entry,
    )  # fmt: skip


def randomize_norms(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics and scales, so a weight mix-up changes outputs."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data = torch.rand(m.weight.shape, generator=gen) + 0.5


@pytest.mark.parametrize("name", list(TINY))
def test_safetensors_reload_to_the_identical_state_dict(name, tmp_path):
    from trainers.engine.checkpoint import load_model_state
    from trainers.inference.folder import load_weights, save_weights

    bundle = tiny_bundle(name)
    state = bundle.model.state_dict()
    save_weights(state, tmp_path / "model.safetensors", {"model_name": name})
    loaded = load_weights(tmp_path / "model.safetensors")
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key
    fresh = tiny_bundle(name, seed=1).model
    load_model_state(fresh, loaded, tmp_path / "model.safetensors")
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("name", ["branched-tcn", "image-resnet50"])
def test_onnx_equals_pytorch_on_two_input_shapes(name, tmp_path):
    import onnxruntime

    from trainers.inference.export import example_batches, export_onnx

    bundle = tiny_bundle(name)
    randomize_norms(bundle.model)
    batches = example_batches(bundle)
    export_onnx(bundle, tmp_path / "model.onnx", batches)
    session = onnxruntime.InferenceSession(
        str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    first = next(iter(batches[0].values()))
    if name.startswith("image"):
        assert [len(b["image"]) for b in batches] == [2, 3]
    else:
        assert first.shape[1] != next(iter(batches[1].values())).shape[1]
        assert session.get_inputs()[0].shape[:2] == ["batch", "audio_time"]
    for batch in example_batches(bundle, seed=5):
        (got,) = session.run(["logits"], {k: v.numpy() for k, v in batch.items()})
        with torch.no_grad():
            want = bundle.model(batch).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["hybrid-attention", "branched-tcn", "branched-baseline"])
def test_the_export_paths_of_the_models_equal_the_training_ones(name, monkeypatch):
    """While exporting, frames are encoded densely and BiLSTMs run unpacked: the same
    logits in eval mode as the masked-gather and packed paths."""
    from trainers.inference.export import example_batches
    from trainers.models import blocks, branched

    bundle = tiny_bundle(name)
    randomize_norms(bundle.model)
    batch = example_batches(bundle)[0]
    with torch.no_grad():
        want = bundle.model(batch)
        for module in (blocks, branched):
            monkeypatch.setattr(module, "exporting", lambda: True)
        got = bundle.model(batch)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_max_pool_ceil_is_ceil_mode_max_pooling():
    import torch.nn.functional as F

    from trainers.models.blocks import max_pool_ceil

    for length in (3, 4, 5, 8, 11):
        x = torch.randn(2, 3, length)
        for factor in (2, 3):
            want = F.max_pool1d(x, factor, factor, ceil_mode=True)
            assert torch.equal(max_pool_ceil(x, factor), want), (length, factor)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_equals_pytorch_on_two_lengths(tmp_path):
    from trainers.inference.export import example_batches, export_torchscript

    bundle = tiny_bundle("hybrid-attention")
    randomize_norms(bundle.model)
    export_torchscript(bundle, tmp_path / "model.pt", example_batches(bundle))
    traced = torch.jit.load(str(tmp_path / "model.pt"))
    for batch in example_batches(bundle, seed=3):
        with torch.no_grad():
            torch.testing.assert_close(
                traced(*batch.values()), bundle.model(batch), atol=1e-5, rtol=0
            )
