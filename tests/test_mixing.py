"""MixUp / CutMix as an engine callback (design note 003).

Why these tests: a mixing bug is silent (training still "works"), so the
arithmetic is checked exactly: MixUp's output against its formula, and
CutMix's label weight against the pixels that really came from the other
image, including boxes clipped at the border, where the note's own code
would use the drawn weight instead. The draws must come from the RNG the
checkpoints restore, so resumed runs mix identically.
"""

from __future__ import annotations

import pytest
import torch

from trainers.config import ConfigError, resolve
from trainers.engine.losses import mixed_loss
from trainers.engine.mixing import MixCallback, MixConfig, cutmix, cutmix_box, mix_callbacks

B, H, W = 6, 20, 28


def batch(kind: str = "random") -> dict:
    if kind == "constant":  # image i is filled with the value i + 1: provenance is visible
        x = torch.arange(1, B + 1, dtype=torch.float32).view(B, 1, 1, 1).expand(B, 3, H, W)
        x = x.clone()
    else:
        x = torch.randn(B, 3, H, W)
    return {"image": x, "label": torch.arange(B), "index": torch.arange(B)}


def perm_of(out: dict) -> torch.Tensor:
    return out["label_b"]  # labels are 0..B-1, so label_b is the permutation itself


def test_mixup_is_lam_x_plus_one_minus_lam_x_perm():
    cb = MixCallback(MixConfig(cutmix_prob=0.0))
    torch.manual_seed(0)
    for _ in range(5):
        b = batch()
        out = cb.on_train_batch(None, b)
        lam, perm = out["mix_lam"], perm_of(out)
        assert cb.last["kind"] == "mixup" and 0.0 <= lam <= 1.0
        assert sorted(perm.tolist()) == list(range(B))
        expected = lam * b["image"] + (1 - lam) * b["image"][perm]
        assert torch.allclose(out["image"], expected, atol=1e-6)
        assert torch.equal(out["label"], b["label"])


def test_cutmix_lam_is_the_share_of_pixels_kept_even_when_the_box_is_clipped():
    cb = MixCallback(MixConfig(cutmix_prob=1.0))
    torch.manual_seed(1)
    clipped = 0
    for _ in range(60):
        b = batch("constant")
        out = cb.on_train_batch(None, b)
        assert cb.last["kind"] == "cutmix"
        perm, lam = perm_of(out), out["mix_lam"]
        for i in range(B):
            if perm[i] == i:
                continue
            from_other = (out["image"][i] == float(perm[i] + 1)).all(dim=0).sum().item()
            kept = (out["image"][i] == float(i + 1)).all(dim=0).sum().item()
            assert from_other + kept == H * W  # every pixel is one image or the other
            assert lam == pytest.approx(1.0 - from_other / (H * W), abs=1e-12)
        cut = (1.0 - cb.last["drawn"]) ** 0.5
        unclipped = (2 * (int(H * cut) // 2)) * (2 * (int(W * cut) // 2))
        y1, y2, x1, x2 = cb.last["box"]
        if (y2 - y1) * (x2 - x1) < unclipped:
            clipped += 1
    assert clipped > 5  # border-clipped boxes happened, and were weighted by their real area


def test_cutmix_box_is_clipped_to_the_image():
    torch.manual_seed(0)
    for lam in (0.0, 0.3, 0.9, 1.0):
        y1, y2, x1, x2 = cutmix_box(H, W, lam)
        assert 0 <= y1 <= y2 <= H and 0 <= x1 <= x2 <= W
    x = torch.zeros(2, 1, 4, 4)
    x[1] = 1
    out, lam = cutmix(x, (0, 2, 0, 4), torch.tensor([1, 0]))
    assert lam == 0.5 and out[0].sum() == 8 and out[1].sum() == 8
    assert x[0].sum() == 0  # the input batch is not modified in place


def test_the_choice_follows_the_configured_probabilities():
    torch.manual_seed(2)
    cb = MixCallback(MixConfig())  # prob 1.0, cutmix_prob 0.5
    kinds = []
    for _ in range(300):
        cb.on_train_batch(None, batch())
        kinds.append(cb.last["kind"])
    assert "none" not in kinds
    assert 0.4 < kinds.count("cutmix") / len(kinds) < 0.6
    off = MixCallback(MixConfig(prob=0.0))
    b = batch()
    out = off.on_train_batch(None, b)
    assert out is b and "label_b" not in out
    single = {"image": torch.randn(1, 3, 4, 4), "label": torch.tensor([3])}
    assert "label_b" not in MixCallback(MixConfig()).on_train_batch(None, single)


def test_draws_come_from_the_global_rng_that_checkpoints_restore():
    b = batch()
    torch.manual_seed(7)
    first = [MixCallback(MixConfig()).on_train_batch(None, b) for _ in range(4)]
    torch.manual_seed(7)
    again = [MixCallback(MixConfig()).on_train_batch(None, b) for _ in range(4)]
    for x, y in zip(first, again, strict=True):
        assert x["mix_lam"] == y["mix_lam"] and torch.equal(x["image"], y["image"])
    assert len({round(x["mix_lam"], 9) for x in first}) > 1


def test_the_loop_weights_both_labels_with_lam():
    criterion = torch.nn.CrossEntropyLoss()
    torch.manual_seed(3)
    out = MixCallback(MixConfig()).on_train_batch(None, batch())
    logits = torch.randn(B, 8)
    lam = out["mix_lam"]
    expected = lam * criterion(logits, out["label"]) + (1 - lam) * criterion(logits, out["label_b"])
    assert torch.allclose(mixed_loss(criterion, logits, out), expected)


def test_mix_section_is_configurable_and_checked():
    from trainers.models.image import ResNet50Config

    cfg = resolve(ResNet50Config(), assignments=["mix.cutmix_prob=0.2", "mix.mixup_alpha=0.2"])
    assert (cfg.mix.cutmix_prob, cfg.mix.mixup_alpha, cfg.mix.cutmix_alpha) == (0.2, 0.2, 1.0)
    (callback,) = mix_callbacks(cfg)
    assert callback.cfg.cutmix_prob == 0.2
    assert mix_callbacks(resolve(ResNet50Config(), assignments=["mix.enabled=false"])) == []
    with pytest.raises(ConfigError) as err:
        resolve(ResNet50Config(), assignments=["mix.cutmix_prob=1.5"])
    assert err.value.key == "mix.cutmix_prob"
    with pytest.raises(ConfigError) as err:
        resolve(ResNet50Config(), assignments=["mix.mixup_alpha=0"])
    assert err.value.key == "mix.mixup_alpha"
