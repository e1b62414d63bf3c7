"""The 3D-CNN video models (design notes 000 and 004): entries and their recipes,
tiny-size forward/backward, SE blocks in every stage, the slow/fast split,
masking of padded frames, and progressive unfreezing."""

from __future__ import annotations

import types

import pytest
import torch

from trainers.config import ConfigError, resolve
from trainers.engine.unfreeze import ProgressiveUnfreezing
from trainers.models.video3d import (
    SEResBlock,
    SqueezeExcite3d,
    TemporalMasks,
    masked_pool3d,
    slowfast_callbacks,
    temporal_mask,
)
from trainers.registry import create_model, get_entry, list_models

ENTRIES = ["r3d-18", "slowfast-r50", "meld-slowfast"]
TINY = {
    "r3d-18": ["model.layers=1,1,1,1", "model.width=8"],
    "slowfast-r50": ["model.depth=18", "model.width=8"],
    "meld-slowfast": ["model.depth=18", "model.width=8"],
}
FRAMES, SIZE, CLASSES = 8, 32, 8


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_cfg(name: str, *extra: str):
    assignments = [*TINY[name], f"data.clip_frames={FRAMES}", f"data.face_size={SIZE}", *extra]
    return resolve(get_entry(name).default_config(), assignments=assignments)


def tiny_model(name: str, *extra: str, seed: int = 0, classes: int = CLASSES):
    torch.manual_seed(seed)
    return create_model(name, classes, tiny_cfg(name, *extra))


def as_if_trained(model):
    """Random BatchNorm scales: pytorchvideo zero-initialises each residual branch's last
    BN, so an untrained SlowFast's branches (and their SE blocks) output exactly zero."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.weight.data = torch.rand(m.weight.shape, generator=gen) + 0.5
            m.bias.data = torch.randn(m.bias.shape, generator=gen) * 0.1
    return model


def clip_batch(b: int = 3, frames: int = FRAMES, lengths=None, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    video = torch.rand(b, frames, 3, SIZE, SIZE, generator=gen)
    lengths = lengths or [frames] * b
    mask = torch.arange(frames).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    video = video * mask[:, :, None, None, None]  # padded frames are zeros, as collated
    return {
        "video": video,
        "video_mask": mask,
        "label": torch.arange(b) % CLASSES,
        "index": torch.arange(b),
    }


# ------------------------------------------------------------------------------ entries


def test_entries_carry_the_notes_recipes():
    assert set(ENTRIES) <= set(list_models())
    r3d = resolve(get_entry("r3d-18").default_config())
    assert get_entry("r3d-18").seed_note.startswith("000_")
    assert (r3d.model.layers, r3d.model.width, r3d.data.face_size) == ((2, 2, 2, 2), 64, 112)
    assert r3d.data.grayscale is False and r3d.data.modalities == ("video",)

    sf = resolve(get_entry("slowfast-r50").default_config())
    assert get_entry("slowfast-r50").seed_note.startswith("000_")
    m, t, d = sf.model, sf.train, sf.data
    assert (m.depth, m.width, m.slowfast_alpha, m.se, m.freeze_backbone) == (50, 64, 4, True, False)
    assert (d.face_size, d.clip_frames, d.clips_per_video_train, d.eval_clips) == (112, 48, 2, 5)
    assert d.max_frames >= 2 * d.clip_frames and d.fps == 30.0
    assert (t.batch_size, t.optimizer, t.scheduler, t.amp) == (6, "adamw", "onecycle", "auto")
    assert (t.loss, t.label_smoothing, t.patience) == ("ce", 0.1, 12)
    assert d.aug_affine_p > 0 and d.aug_erase_p > 0 and d.aug_jitter_p > 0
    assert d.aug_reverse_p > 0 and d.aug_drop_p > 0

    meld = resolve(get_entry("meld-slowfast").default_config())
    assert get_entry("meld-slowfast").seed_note.startswith("004_")
    m, t, d = meld.model, meld.train, meld.data
    assert (d.clip_frames // m.slowfast_alpha, d.clip_frames, d.face_size) == (8, 32, 224)
    assert (m.head, m.head_dropout, m.hidden_dropout, m.se) == ("mlp", 0.3, 0.2, False)
    assert (t.batch_size, t.lr, t.weight_decay, t.optimizer) == (16, 1e-3, 1e-4, "adamw")
    assert (t.scheduler, t.onecycle_pct_start, t.grad_accum, t.clip_grad_norm) == (
        "onecycle",
        0.3,
        4,
        1.0,
    )
    assert (t.loss, t.focal_gamma, t.class_weights) == ("focal", 2.0, "inverse_sqrt")
    assert (t.patience, t.min_epochs, t.min_delta, t.monitor) == (10, 25, 0.005, "weighted_f1")
    assert (m.freeze_backbone, m.unfreeze_stages, m.unfreeze_epochs) == (True, (5, 4, 3), (3, 6, 9))


@pytest.mark.parametrize(
    ("name", "assignment", "key"),
    [
        ("meld-slowfast", "model.unfreeze_epochs=3,6", "model.unfreeze_stages"),
        ("meld-slowfast", "model.unfreeze_stages=6,4,3", "model.unfreeze_stages"),
        ("slowfast-r50", "model.depth=34", "model.depth"),
        ("slowfast-r50", "model.width=12", "model.width"),
        ("slowfast-r50", "data.clip_frames=200", "data.clip_frames"),
        ("r3d-18", "data.modalities=audio,video", "data.modalities"),
        ("r3d-18", "data.aug_flip_p=1.5", "data.aug_flip_p"),
        ("r3d-18", "model.layers=2,2,2", "model.layers"),
    ],
)
def test_bad_settings_name_their_key(name, assignment, key):
    with pytest.raises(ConfigError) as info:
        resolve(get_entry(name).default_config(), assignments=[assignment])
    assert info.value.key == key, str(info.value)


# ------------------------------------------------------------------------- forward paths


@pytest.mark.parametrize("name", ENTRIES)
def test_tiny_forward_shapes_and_backward(name):
    model = tiny_model(name)
    batch = clip_batch(lengths=[FRAMES, 5, FRAMES])
    features = model.forward_features(batch)
    assert features.shape == (3, model.feature_dim)
    logits = model(batch)
    assert logits.shape == (3, CLASSES)
    torch.nn.functional.cross_entropy(logits, batch["label"]).backward()
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv3d))
    assert first_conv.weight.grad is not None and first_conv.weight.grad.abs().sum() > 0
    last_linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert last_linear.out_features == CLASSES and last_linear.weight.grad.abs().sum() > 0


def test_the_class_count_comes_from_the_data():
    assert tiny_model("meld-slowfast", classes=7)(clip_batch()).shape == (3, 7)


def test_grayscale_clips_are_repeated_to_rgb():
    model = tiny_model("r3d-18").eval()
    batch = clip_batch()
    gray = dict(batch, video=batch["video"][:, :, :1])
    rgb = dict(batch, video=batch["video"][:, :, :1].expand(-1, -1, 3, -1, -1))
    with torch.no_grad():
        torch.testing.assert_close(model(gray), model(rgb))


def test_r3d_at_default_size_is_torchvisions_r3d_18():
    from torchvision.models.video import r3d_18

    ours = create_model("r3d-18", 400).state_dict()
    ref = r3d_18(weights=None).state_dict()
    assert set(ours) == set(ref)
    assert all(ours[k].shape == ref[k].shape for k in ref)


def test_slow_pathway_sees_every_alpha_th_frame():
    model = tiny_model("meld-slowfast", "data.clip_frames=32").eval()
    seen = {}

    def remember(idx):
        def hook(_module, inputs):
            seen[idx] = inputs[0]

        return hook

    stems = model.blocks[0].multipathway_blocks
    for idx in (0, 1):
        stems[idx].register_forward_pre_hook(remember(idx))
    batch = clip_batch(b=2, frames=32)
    with torch.no_grad():
        model(batch)
    assert seen[0].shape[2] == 8 and seen[1].shape[2] == 32  # note 004: 8 slow, 32 fast
    torch.testing.assert_close(seen[0], seen[1][:, :, ::4])


# ---------------------------------------------------------------------------- SE blocks


@pytest.fixture(scope="module")
def default_slowfast():
    return create_model("slowfast-r50", 8)


def test_se_blocks_in_every_residual_stage_and_pathway(default_slowfast):
    model = default_slowfast
    assert model.feature_dim == 2048 + 256
    expected = (3, 4, 6, 3)  # ResNet-50's blocks per stage
    for stage, blocks in zip(model.blocks[1:], expected, strict=True):
        for pathway in stage.multipathway_blocks:
            res_blocks = list(pathway.res_blocks)
            assert len(res_blocks) == blocks
            assert all(isinstance(b, SEResBlock) for b in res_blocks)
            assert sum(isinstance(m, SqueezeExcite3d) for m in pathway.modules()) == blocks
    meld = create_model("meld-slowfast", 7)
    assert not any(isinstance(m, SqueezeExcite3d) for m in meld.modules())  # note 004 has none


def test_every_stages_se_changes_the_output():
    model = as_if_trained(tiny_model("slowfast-r50")).eval()
    batch = clip_batch()
    with torch.no_grad():
        before = model(batch)
        for stage in model.blocks[1:]:
            for pathway in stage.multipathway_blocks:
                se = pathway.res_blocks[0].se
                saved = se.fc2.bias.clone()
                se.fc2.bias.add_(3.0)  # push the gate towards 1 on every channel
                assert not torch.allclose(model(batch), before), "an SE block had no effect"
                se.fc2.bias.copy_(saved)
        torch.testing.assert_close(model(batch), before)


def test_identity_se_blocks_leave_the_pretrained_network_as_it_was():
    """model.se_gate=identity (the default): every SE gate is exactly 1 at the start, so
    weights loaded into the backbone (kinetics400, which has no SE) compute what they did
    without the SE blocks; the gate still learns (2 * sigmoid, fc2 zeroed)."""
    with_se = as_if_trained(tiny_model("slowfast-r50")).eval()
    assert with_se.blocks[1].multipathway_blocks[0].res_blocks[0].se.scale == 2.0
    plain = tiny_model("slowfast-r50", "model.se=false").eval()
    missing, unexpected = plain.load_state_dict(with_se.state_dict(), strict=False)
    assert not missing and all(".se." in k for k in unexpected) and unexpected
    batch = clip_batch()
    with torch.no_grad():
        torch.testing.assert_close(with_se(batch), plain(batch), rtol=0, atol=1e-6)
    se = SqueezeExcite3d(8, 2, TemporalMasks(), gate="identity")
    x = torch.randn(2, 8, 3, 2, 2)
    assert torch.equal(se(x), x)
    with torch.no_grad():
        se.fc2.bias.fill_(-2.0)
    torch.testing.assert_close(se(x), x * 2 * torch.sigmoid(torch.tensor(-2.0)))


def test_runs_saved_before_se_gate_rebuild_with_the_sigmoid_gate():
    from trainers.config import apply_saved, to_dict

    cfg = get_entry("slowfast-r50").default_config()
    assert cfg.model.se_gate == "identity"
    saved = to_dict(cfg)
    del saved["model"]["se_gate"]  # a run.json or checkpoint from before the key
    apply_saved(cfg, saved)
    assert cfg.model.se_gate == "sigmoid"
    cfg = get_entry("slowfast-r50").default_config()
    apply_saved(cfg, to_dict(get_entry("slowfast-r50").default_config()))
    assert cfg.model.se_gate == "identity"


# ------------------------------------------------------------------------------ masking


def test_masked_pool_is_adaptive_avg_pool_without_padding_and_skips_padding():
    x = torch.randn(2, 5, 6, 3, 3)
    full = torch.ones(2, 6, dtype=torch.bool)
    ref = torch.nn.AdaptiveAvgPool3d(1)(x).flatten(1)
    torch.testing.assert_close(masked_pool3d(x, full), ref)
    torch.testing.assert_close(masked_pool3d(x, None), ref)
    mask = full.clone()
    mask[0, 4:] = False
    torch.testing.assert_close(masked_pool3d(x, mask)[0], x[0, :, :4].mean(dim=(1, 2, 3)))
    # A stride-2 feature map's step t covers frame 2t.
    assert temporal_mask(mask, 3)[0].tolist() == [True, True, False]


@pytest.mark.parametrize("name", ENTRIES)
def test_padded_frames_do_not_change_the_output(name):
    model = as_if_trained(tiny_model(name)).eval()
    batch = clip_batch(b=2, lengths=[5, FRAMES])
    noisy = dict(batch, video=batch["video"].clone())
    noisy["video"][0, 5:] = torch.rand(FRAMES - 5, 3, SIZE, SIZE)
    with torch.no_grad():
        clean_out = model(batch)
        torch.testing.assert_close(model(noisy), clean_out, rtol=0, atol=1e-6)
        # Not vacuous: without the mask the same noise does change the prediction.
        unmasked = dict(noisy, video_mask=torch.ones_like(batch["video_mask"]))
        assert not torch.allclose(model(unmasked)[0], clean_out[0], atol=1e-4)


# ------------------------------------------------------------------- progressive unfreezing


def trainable_stages(model) -> list[int]:
    """1-based stages whose every parameter is trainable; asserts none is half frozen."""
    out = []
    for s, block in enumerate(model.blocks, start=1):
        flags = {p.requires_grad for p in block.parameters()}
        assert len(flags) == 1, f"stage {s} is partly frozen"
        if flags == {True}:
            out.append(s)
    return out


def test_unfreezing_flips_at_epochs_3_6_9_and_resume_matches():
    cfg = tiny_cfg("meld-slowfast")
    (callback,) = slowfast_callbacks(cfg)
    model = create_model("meld-slowfast", 7, cfg)
    trainer = types.SimpleNamespace(model=model)
    callback.on_fit_start(trainer)
    seen = {}
    for epoch in range(1, 11):
        callback.on_epoch_start(trainer, epoch)
        seen[epoch] = trainable_stages(model)
        assert all(p.requires_grad for p in model.head.parameters())
    assert seen == {
        1: [], 2: [], 3: [5], 4: [5], 5: [5], 6: [4, 5], 7: [4, 5], 8: [4, 5],
        9: [3, 4, 5], 10: [3, 4, 5],
    }  # fmt: skip
    stepped = {n: p.requires_grad for n, p in model.named_parameters()}

    resumed = create_model("meld-slowfast", 7, cfg)
    callback.on_epoch_start(types.SimpleNamespace(model=resumed), 7)
    callback.on_epoch_start(trainer, 7)  # going back sets, never toggles
    at_7 = {n: p.requires_grad for n, p in resumed.named_parameters()}
    assert at_7 == {n: p.requires_grad for n, p in model.named_parameters()}
    assert trainable_stages(resumed) == [4, 5] and at_7 != stepped


def test_unfreezing_schedule_is_configurable_and_off_for_slowfast_r50():
    assert slowfast_callbacks(tiny_cfg("slowfast-r50")) == []
    cfg = tiny_cfg("meld-slowfast", "model.unfreeze_stages=5,2", "model.unfreeze_epochs=2,4")
    (callback,) = slowfast_callbacks(cfg)
    model = create_model("meld-slowfast", 7, cfg)
    callback.apply(model, 4)
    assert trainable_stages(model) == [2, 5]
    assert slowfast_callbacks(tiny_cfg("meld-slowfast", "model.freeze_backbone=false")) == []


def test_unfreezing_names_a_missing_module_at_fit_start():
    callback = ProgressiveUnfreezing(frozen=["blocks"], schedule=[("blocks.9", 3)])
    with pytest.raises(ValueError, match=r"blocks\.9"):
        callback.on_fit_start(types.SimpleNamespace(model=tiny_model("meld-slowfast")))


def test_frozen_stages_stay_put_under_an_optimizer_holding_every_parameter():
    cfg = tiny_cfg("meld-slowfast")
    (callback,) = slowfast_callbacks(cfg)
    model = create_model("meld-slowfast", 7, cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    callback.on_epoch_start(types.SimpleNamespace(model=model), 3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = clip_batch(b=4)
    torch.nn.functional.cross_entropy(model(batch), batch["label"] % 7).backward()
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved, "nothing trained"
    assert all(n.startswith(("blocks.4.", "head.")) for n in moved), sorted(moved)[:5]


def test_se_squeeze_averages_only_real_time_steps():
    masks = TemporalMasks()
    se = SqueezeExcite3d(8, 2, masks)
    x = torch.randn(2, 8, 6, 3, 3)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    masks.masks = {6: mask}
    squeezed = torch.stack([x[0, :, :4].mean(dim=(1, 2, 3)), x[1].mean(dim=(1, 2, 3))])
    gate = torch.sigmoid(se.fc2(torch.relu(se.fc1(squeezed))))
    torch.testing.assert_close(se(x), x * gate[:, :, None, None, None])
    masks.masks = {}
    assert not torch.allclose(se(x)[0], x[0] * gate[0, :, None, None, None])


def test_meld_one_cycle_runs_from_1e5_to_1e3_and_back():
    from trainers.engine.optim import build_schedule
    from trainers.registry import get_entry

    tc = get_entry("meld-slowfast").default_config().train
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=tc.lr)
    sched = build_schedule(opt, tc, steps_per_epoch=10, mode="max")
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(tc.epochs * 10 - 1):
        opt.step()
        sched.after_optimizer_step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-5)
    assert max(lrs) == pytest.approx(1e-3)
    assert lrs.index(max(lrs)) == pytest.approx(0.3 * len(lrs), abs=2)
    assert lrs[-1] == pytest.approx(1e-5, rel=1e-3)
