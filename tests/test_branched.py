"""The branched family (design note 001): entries, L2, causality, masking,
synchronized augmentation, the embeddings input and one CLI run."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from tests.conftest import run_trainers
from trainers.config import resolve
from trainers.data.augment import (
    SyncAugmentDataModule,
    SyncAugmentSettings,
    SynchronizedAugmentation,
    time_warp,
)
from trainers.data.av_dataset import AVDataset, collate_av
from trainers.data.base import SampleInfo
from trainers.data.config import DataError
from trainers.models.blocks import MaskedBatchNorm1d
from trainers.models.branched import (
    BranchedModel,
    BranchedParams,
    EmbeddingVideoDataModule,
    branched_data,
)
from trainers.registry import get_entry, list_models
from trainers.rundir import RunDir

ENTRIES = [
    "branched-baseline",
    "branched-regularization",
    "branched-sync-aug",
    "branched-optimizer",
    "branched-tcn",
]
TINY = [
    "model.frame_width=4", "model.frame_dim=12", "model.audio_conv_channels=8,8",
    "model.audio_lstm=6", "model.audio_dense=10", "model.video_lstm=6",
    "model.tcn_channels=10", "model.video_dense=12", "model.fusion_dims=16,8",
]  # fmt: skip
AUDIO_DIM, FACE, CLASSES = 40, 24, 8


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_params(**switches) -> BranchedParams:
    cfg = resolve(get_entry("branched-baseline").default_config(), assignments=TINY)
    return dataclasses.replace(cfg.model, **switches)


def tiny_model(seed: int = 0, **switches) -> BranchedModel:
    torch.manual_seed(seed)
    return BranchedModel(tiny_params(**switches), AUDIO_DIM, 1, CLASSES)


def random_items(n: int, seed: int = 0, audio=(30, 50), frames=(5, 9)) -> list[dict]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        ta, tv = int(rng.integers(*audio)), int(rng.integers(*frames))
        items.append(
            {
                "audio": rng.normal(size=(ta, AUDIO_DIM)).astype(np.float32),
                "video": rng.integers(0, 256, (tv, 1, FACE, FACE), dtype=np.uint8),
                "label": i % CLASSES,
                "index": i,
            }
        )
    return items


# ------------------------------------------------------------------------------ entries


def test_five_entries_with_the_notes_switches():
    assert set(ENTRIES) <= set(list_models())
    expected = {  # video branch, l2, l2 on convs, sync aug, lr
        "branched-baseline": ("bilstm", 0.0, False, False, 5e-4),
        "branched-regularization": ("bilstm", 0.001, False, False, 5e-4),
        "branched-sync-aug": ("bilstm", 0.0, False, True, 5e-4),
        "branched-optimizer": ("bilstm", 0.0, False, False, 1e-3),
        "branched-tcn": ("tcn", 0.001, True, True, 1e-3),
    }
    for name, switches in expected.items():
        entry = get_entry(name)
        assert entry.seed_note == "001_e12522b59f9f4028.txt" and entry.description
        cfg = resolve(entry.default_config())
        m, t = cfg.model, cfg.train
        assert (m.video_branch, m.l2, m.l2_conv, m.sync_aug, t.lr) == switches, name
        assert (t.optimizer, t.scheduler, t.batch_size) == ("adam", "plateau", 24)
        assert (m.aug_factor, m.aug_probability, m.tcn_dilations) == (2.0, 0.8, (1, 2, 4, 8))
        assert m.tcn_dropout == 0.2 and m.audio_dense == 128 and m.video_dense == 256


@pytest.mark.parametrize("name", ENTRIES)
def test_every_entry_runs_forward_and_backward(name):
    entry = get_entry(name)
    cfg = resolve(entry.default_config(), assignments=[*TINY, f"data.face_size={FACE}"])
    torch.manual_seed(0)
    model = entry.build(cfg, CLASSES)
    batch = collate_av(random_items(4))
    logits = model(batch)
    assert logits.shape == (4, CLASSES)
    loss = torch.nn.functional.cross_entropy(logits, batch["label"]) + model.regularization_loss()
    loss.backward()
    assert model.out.weight.grad is not None
    assert model.frames is not None and model.frames.net[0].weight.grad is not None
    assert model.audio.convs[0].weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------- L2


@pytest.mark.parametrize("branch", ["bilstm", "tcn"])
def test_l2_is_lambda_times_sum_of_squared_kernels(branch):
    model = tiny_model(video_branch=branch, l2=0.001, l2_conv=True)
    # By hand: the dense kernels the note names, plus every TCN conv kernel (l2_conv).
    kernels = [model.audio.dense.weight, model.video.dense.weight]
    kernels += [model.fusion[0].weight, model.fusion[4].weight, model.out.weight]
    if branch == "tcn":
        for block in model.video.tcn.blocks:
            kernels += [block.conv1.weight, block.conv2.weight]
        kernels.append(model.video.tcn.blocks[0].residual.weight)  # 12 -> 10 channels
    expected = 0.001 * sum(float((k.detach().double() ** 2).sum()) for k in kernels)
    assert float(model.regularization_loss().detach()) == pytest.approx(expected, rel=1e-5)
    # Biases, LSTMs, the audio convs and the frame encoder carry no penalty.
    with torch.no_grad():
        model.out.bias.add_(5.0)
        model.audio.convs[0].weight.add_(5.0)
        model.frames.net[0].weight.add_(5.0)
        model.audio.lstm1.weight_ih_l0.add_(5.0)
    assert float(model.regularization_loss().detach()) == pytest.approx(expected, rel=1e-5)


def test_l2_switches():
    assert float(tiny_model(l2=0.0).regularization_loss()) == 0.0
    without_conv = tiny_model(video_branch="tcn", l2=0.01, l2_conv=False)
    with_conv = tiny_model(video_branch="tcn", l2=0.01, l2_conv=True)
    with torch.no_grad():
        conv = sum(
            float((b.conv1.weight**2).sum() + (b.conv2.weight**2).sum())
            for b in with_conv.video.tcn.blocks
        ) + float((with_conv.video.tcn.blocks[0].residual.weight ** 2).sum())
        diff = float(with_conv.regularization_loss() - without_conv.regularization_loss())
    assert diff == pytest.approx(0.01 * conv, rel=1e-4)  # same seed, same weights


# ------------------------------------------------------------------- causality, masking


def test_tcn_video_branch_is_causal():
    model = tiny_model(video_branch="tcn").eval()
    batch = collate_av(random_items(2, frames=(10, 11)))
    video, mask = batch["video"], batch["video_mask"]
    with torch.no_grad():
        before = model.video.sequence(model.per_frame(video, mask), mask)
        changed = video.clone()
        changed[:, 6:] = torch.rand_like(changed[:, 6:])
        after = model.video.sequence(model.per_frame(changed, mask), mask)
    torch.testing.assert_close(after[:, :6], before[:, :6], rtol=0, atol=0)
    assert not torch.allclose(after[:, 6:], before[:, 6:])


def alone_and_padded(model, items):
    """Each item run on its own vs in one padded batch whose padding is garbage."""
    batch = collate_av(items)
    batch["video"][~batch["video_mask"]] = torch.rand_like(batch["video"][~batch["video_mask"]])
    batch["audio"][~batch["audio_mask"]] = 100.0
    with torch.no_grad():
        together = (
            model.audio(batch["audio"], batch["audio_mask"]),
            model.encode_video(batch["video"], batch["video_mask"]),
            model(batch),
        )
        alone = [
            (
                model.audio(b["audio"], b["audio_mask"]),
                model.encode_video(b["video"], b["video_mask"]),
                model(b),
            )
            for b in (collate_av([item]) for item in items)
        ]
    return together, alone


@pytest.mark.parametrize("branch", ["bilstm", "tcn"])
def test_padding_never_changes_outputs(branch):
    model = tiny_model(video_branch=branch).eval()
    items = random_items(3, seed=1, audio=(17, 60), frames=(3, 12))  # odd lengths: pooling edges
    together, alone = alone_and_padded(model, items)
    for row, outputs in enumerate(alone):
        for name, whole, single in zip(
            ("audio", "video", "logits"), together, outputs, strict=True
        ):
            torch.testing.assert_close(whole[row], single[0], atol=2e-5, rtol=1e-4, msg=name)


def test_masked_batchnorm_ignores_padding_in_training():
    bn = MaskedBatchNorm1d(4).train()
    x = torch.randn(2, 4, 7)
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    garbage = x.clone()
    garbage[1, :, 3:] = 1000.0
    a, b = bn(x, mask), bn(garbage, mask)
    torch.testing.assert_close(a[:, :, :3], b[:, :, :3])
    real = x.transpose(1, 2)[mask]
    expected = (real - real.mean(0)) / torch.sqrt(real.var(0, unbiased=False) + bn.eps)
    torch.testing.assert_close(a.transpose(1, 2)[mask], expected, atol=1e-5, rtol=1e-4)
    bn.eval()  # eval: plain BatchNorm1d on the running statistics
    torch.testing.assert_close(bn(x, mask), torch.nn.BatchNorm1d.forward(bn, x))


# ------------------------------------------------------------------------- augmentation


def av_dataset(items: list[dict]) -> AVDataset:
    def frozen(a):
        a = a.copy()
        a.flags.writeable = False
        return a

    return AVDataset(
        np.array([it["label"] for it in items]),
        [frozen(it["audio"]) for it in items],
        [frozen(it["video"]) for it in items],
    )


def test_time_warp_one_factor_scales_both_modalities():
    base = av_dataset(random_items(6, audio=(100, 101), frames=(20, 21)))
    aug = SynchronizedAugmentation(base, SyncAugmentSettings(probability=1.0), seed=7)
    aug.set_epoch(1)
    warps = []
    for i in range(6, 12):
        plan, item, orig = aug.plan(i), aug[i], base[i % 6]
        assert plan.augmented and 0.8 <= plan.warp <= 1.2
        assert len(item["audio"]) == round(plan.warp * 100)
        assert len(item["video"]) == round(plan.warp * 20)
        assert item["video"].dtype == np.uint8 and item["audio"].dtype == np.float32
        assert not np.array_equal(item["audio"][:10], orig["audio"][:10])  # noise added
        warps.append(plan.warp)
    assert len(set(warps)) == len(warps)  # drawn per item
    warped = time_warp(np.arange(10, dtype=np.float32)[:, None], 1.1)  # a 1.1 warp: +10%
    assert warped.shape == (11, 1) and warped[0, 0] == 0 and warped[-1, 0] == 9


def test_augmentation_is_a_function_of_seed_epoch_index():
    base = av_dataset(random_items(5))
    settings = SyncAugmentSettings(probability=1.0)
    a, b = SynchronizedAugmentation(base, settings, 3), SynchronizedAugmentation(base, settings, 3)
    a.set_epoch(2)
    b.set_epoch(2)
    _ = [b[i] for i in (9, 8, 7)]  # another access order must not matter
    for i in range(5, 10):
        for key in ("audio", "video"):
            np.testing.assert_array_equal(a[i][key], b[i][key])
    b.set_epoch(3)
    assert all(not np.array_equal(a[i]["audio"], b[i]["audio"]) for i in range(5, 10))
    other_seed = SynchronizedAugmentation(base, settings, 4)
    other_seed.set_epoch(2)
    assert not np.array_equal(a[7]["audio"], other_seed[7]["audio"])


def test_factor_two_doubles_the_split_and_originals_come_first():
    n = 200
    base = av_dataset(random_items(n, audio=(4, 6), frames=(2, 3)))
    aug = SynchronizedAugmentation(base, SyncAugmentSettings(), seed=0)
    assert len(aug) == 2 * n
    assert not any(aug.plan(i).augmented for i in range(n))
    for i in (0, 5, n - 1):
        assert aug[i]["audio"] is base[i]["audio"]  # untouched, not even copied
    share = np.mean([aug.plan(i).augmented for i in range(n, 2 * n)])
    assert 0.7 <= share <= 0.9  # probability 0.8
    assert all(aug[i]["label"] == base[i % n]["label"] for i in range(n, 2 * n, 7))
    assert len(SynchronizedAugmentation(base, SyncAugmentSettings(factor=1.5), 0)) == 300
    batch = collate_av([aug[i] for i in range(n - 2, n + 6)])  # originals + copies, padded
    assert batch["video"].dtype == torch.float32 and float(batch["video"].max()) <= 1.0


def test_sync_aug_module_wraps_train_only():
    items = random_items(6)
    datasets = {"train": av_dataset(items), "val": av_dataset(items[:2]), "test": None}

    class Base:
        classes = tuple(str(i) for i in range(CLASSES))
        collate = staticmethod(collate_av)

        def setup(self, report_bad, progress=None):
            pass

        def dataset(self, split):
            return datasets[split]

        def labels(self, split):
            return datasets[split].labels

        def samples(self, split):
            return [SampleInfo(str(i), int(y), "1", ()) for i, y in enumerate(self.labels(split))]

        def describe(self):
            return {"dataset": "fake"}

    module = SyncAugmentDataModule(Base(), SyncAugmentSettings(), seed=0)
    module.setup(lambda path, reason: None)
    train = module.dataset("train")
    assert isinstance(train, SynchronizedAugmentation) and module.dataset("train") is train
    assert module.dataset("val") is datasets["val"]
    assert len(module.labels("train")) == len(module.samples("train")) == len(train) == 12
    assert list(module.labels("train")[6:]) == list(datasets["train"].labels)
    assert module.describe()["augmentation"]["train_items"] == 12


# ----------------------------------------------------------------------------- embeddings


class KeyedBase:
    """A minimal data module: audio only, rows keyed like recordings."""

    classes = tuple(str(i) for i in range(CLASSES))
    collate = staticmethod(collate_av)

    def __init__(self, items):
        self.items = items

    def setup(self, report_bad, progress=None):
        pass

    def dataset(self, split):
        rows = [it for it in self.items if it["split"] == split]
        return [{"audio": r["audio"], "label": r["label"], "index": i} for i, r in enumerate(rows)]

    def samples(self, split):
        rows = [it for it in self.items if it["split"] == split]
        return [SampleInfo(r["key"], r["label"], "01", ()) for r in rows]

    def labels(self, split):
        return np.array([s.label for s in self.samples(split)])

    def describe(self):
        return {"modalities": ["audio"]}


def test_embeddings_replace_the_frame_encoder(tmp_path):
    rng = np.random.default_rng(0)
    items, dim = [], 12
    for i, split in enumerate(["train"] * 4 + ["val", "test"]):
        key = f"01-01-0{i % 8 + 1}-01-01-01-01"
        items.append({"key": key, "split": split, "label": i % CLASSES, "audio": None})
        items[-1]["audio"] = rng.normal(size=(20 + i, AUDIO_DIM)).astype(np.float32)
        np.save(tmp_path / f"{key}.npy", rng.normal(size=(5 + i, dim)).astype(np.float64))
    module = EmbeddingVideoDataModule(KeyedBase(items), tmp_path, dim)
    module.setup(lambda path, reason: None)
    train = module.dataset("train")
    assert train[2]["video"].shape == (7, dim) and train[2]["video"].dtype == np.float32
    np.testing.assert_allclose(
        train[2]["video"], np.load(tmp_path / f"{items[2]['key']}.npy"), rtol=1e-6
    )
    assert module.describe()["video"]["source"] == "embeddings"

    model = tiny_model(video_branch="tcn", video_input="embeddings", embedding_dim=dim).eval()
    assert model.frames is None
    batch = collate_av([train[i] for i in range(4)])
    assert batch["video"].shape == (4, 8, dim)
    assert model(batch).shape == (4, CLASSES)
    together, alone = alone_and_padded(model, [train[i] for i in range(4)])
    torch.testing.assert_close(together[2][0], alone[0][2][0], atol=2e-5, rtol=1e-4)

    # Synchronized augmentation warps the embeddings with the audio.
    aug = SynchronizedAugmentation(train, SyncAugmentSettings(probability=1.0), seed=1)
    plan, item = aug.plan(5), aug[5]
    assert len(item["video"]) == round(plan.warp * 6)  # base row 1: 6 frames, 21 audio
    assert len(item["audio"]) == round(plan.warp * 21)

    (tmp_path / f"{items[4]['key']}.npy").unlink()
    np.save(tmp_path / f"{items[5]['key']}.npy", np.zeros((3, dim + 1), np.float32))
    with pytest.raises(DataError) as info:
        EmbeddingVideoDataModule(KeyedBase(items), tmp_path, dim).setup(lambda p, r: None)
    assert "2 embedding file(s)" in str(info.value) and items[4]["key"] in str(info.value)


def test_embeddings_config_skips_video_decoding(tmp_path):
    cfg = resolve(
        get_entry("branched-tcn").default_config(),
        assignments=["model.video_input=embeddings", f"model.embeddings_dir={tmp_path}"],
    )
    module = branched_data(cfg)
    assert isinstance(module, SyncAugmentDataModule)
    assert isinstance(module.base, EmbeddingVideoDataModule)
    assert module.base.base.cfg.modalities == ("audio",)
    assert cfg.data.modalities == ("audio", "video")  # the run's own config is untouched


def test_stop_and_resume_with_augmentation_equals_uninterrupted(tmp_path):
    """Augmented items come from (seed, epoch, index), so a resumed run replays them."""
    from trainers.data.tensors import TensorDataModule
    from trainers.engine.trainer import StopRequested, Trainer, new_manifest
    from trainers.events import EventType
    from trainers.registry import ModelEntry

    base = get_entry("branched-tcn")

    def make(name):
        data = TensorDataModule(n=24, audio_len=30, frames=6, face_size=FACE, seed=1)
        cfg = resolve(
            base.default_config(),
            assignments=[*TINY, "train.batch_size=8", "train.epochs=2", "train.threads=1"],
        )
        module = SyncAugmentDataModule(data, cfg.model.augment_settings(), cfg.train.seed)
        entry = ModelEntry(base.name, base.description, base.config, base.build, lambda c: module)
        run = RunDir(tmp_path / name).create()
        run.write_manifest(new_manifest(run, entry, cfg, []))
        return entry, cfg, run

    entry, cfg, straight = make("straight")
    ref = Trainer(entry, cfg, straight).fit()

    entry, cfg, run = make("stopped")
    trainer = Trainer(entry, cfg, run)
    setup = Trainer._setup

    class StopAtStep:
        def handle(self, event):
            if event["type"] == EventType.STEP and event["global_step"] == 3:
                trainer.stop_signal = 15

        def close(self):
            pass

    def setup_then_stop(self):
        setup(self)
        self.logger.sinks.append(StopAtStep())

    trainer._setup = setup_then_stop.__get__(trainer)
    with pytest.raises(StopRequested):
        trainer.fit()
    resumed = Trainer(entry, cfg, run).fit(resume=True)
    assert resumed["test"]["loss"] == ref["test"]["loss"]
    a = torch.load(straight.last_ckpt, weights_only=False)["model"]
    b = torch.load(run.last_ckpt, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ the CLI


@pytest.mark.slow
def test_cli_trains_branched_tcn(small_corpus, feature_cache, tmp_path):
    settings = [
        *TINY,
        "train.batch_size=8",
        "train.threads=1",
        "data.prepare_workers=2",
        "data.face_detector=haar",
    ]
    settings += ["train.epochs=2", f"data.cache_dir={feature_cache}"]
    args = [arg for item in settings for arg in ("--set", item)]
    proc = run_trainers(
        "train", "branched-tcn", "--data", str(small_corpus), "--out", str(tmp_path),
        "--run-id", "tcn", *args,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = RunDir(tmp_path / "tcn")
    summary = json.loads(run.summary.read_text())
    assert summary["model"] == "branched-tcn" and summary["epochs_run"] == 2
    assert 0.0 <= summary["test"]["accuracy"] <= 1.0
    assert summary["data"]["augmentation"]["factor"] == 2.0
    train_samples = summary["data"]["splits"]["train"]["samples"]
    assert summary["data"]["augmentation"]["train_items"] == 2 * train_samples
