"""hybrid-attention's parts act as the design note says."""

from __future__ import annotations

import torch

from trainers.config import resolve
from trainers.data.tensors import TensorDataModule
from trainers.registry import get_entry

TINY = ["model.audio_channels=8", "model.frame_width=4", "model.frame_dim=16",
        "model.tcn_channels=16", "model.d_model=16", "model.heads=2"]  # fmt: skip


def build():
    entry = get_entry("hybrid-attention")
    cfg = resolve(entry.default_config(), assignments=[*TINY, "data.face_size=24"])
    torch.manual_seed(0)
    return entry.build(cfg, 8)


def batch():
    data = TensorDataModule(n=8, audio_len=30, frames=6, face_size=24)
    return data.collate(data.dataset("train")[:4])


def test_shapes_and_backward():
    model, b = build(), batch()
    logits = model(b)
    assert logits.shape == (4, 8)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_padding_never_changes_the_output():
    model, b = build(), batch()
    model.train()
    for _ in range(2):  # let BatchNorm running stats move away from their init
        model(b)
    model.eval()
    ref = model(b)
    noisy = {k: v.clone() for k, v in b.items()}
    noisy["audio"][~noisy["audio_mask"]] = 7.0
    noisy["video"][~noisy["video_mask"]] = 0.9
    assert (~b["audio_mask"]).any() and (~b["video_mask"]).any()
    torch.testing.assert_close(model(noisy), ref)
    # and in training mode the batch statistics ignore padding too
    model.train()
    torch.manual_seed(1)
    a = model(b)
    torch.manual_seed(1)
    torch.testing.assert_close(model(noisy), a)


def test_cross_modal_attention_uses_both_modalities():
    model, b = build(), batch()
    model.eval()
    ref = model(b)
    louder = dict(b, audio=b["audio"] + 0.5)
    assert not torch.allclose(model(louder), ref)
    upside_down = dict(b, video=b["video"].flip(-2))
    assert not torch.allclose(model(upside_down), ref)


def test_face_crops_are_standardised_so_lighting_does_not_matter():
    model, b = build(), batch()
    model.eval()
    brighter = dict(b, video=b["video"] * 0.5 + 0.3)
    # equal up to the 1e-3 epsilon that guards flat crops
    torch.testing.assert_close(model(brighter), model(b), atol=2e-3, rtol=1e-2)
