"""Sample predictions: a few fixed validation samples after every validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_engine_hooks import Views
from trainers.config import resolve
from trainers.data.tensors import TensorDataModule
from trainers.engine.samples import pick_rows, picture
from trainers.engine.trainer import Trainer, new_manifest
from trainers.events import read_events, validate_event
from trainers.registry import get_entry
from trainers.rundir import RunDir

SMALL = [
    "model.audio_channels=16", "model.frame_width=8", "model.frame_dim=32",
    "model.tcn_channels=32", "model.d_model=32", "model.heads=2", "data.face_size=24",
    "train.batch_size=16", "train.epochs=2", "train.threads=1",
    "train.sample_predictions=5", "train.seed=7",
]  # fmt: skip
VIEWS = 3


class MultiViewData(TensorDataModule):
    def dataset(self, split):
        items = super().dataset(split)
        return items if split == "train" else Views(items, VIEWS)


@pytest.fixture(scope="module")
def views_run(tmp_path_factory):
    data = MultiViewData(n=48, audio_len=30, frames=6, face_size=24, seed=2)
    base = get_entry("hybrid-attention")
    entry = dataclasses.replace(base, data=lambda c: data)
    cfg = resolve(base.default_config(), assignments=SMALL)
    run = RunDir(tmp_path_factory.mktemp("samples") / "run").create()
    run.write_manifest(new_manifest(run, entry, cfg, []))
    Trainer(entry, cfg, run).fit()
    return run, data, entry, cfg


def test_same_samples_every_epoch_with_class_names_and_grouped_probabilities(views_run):
    run, data, entry, cfg = views_run
    events = read_events(run.events)
    shown = [e for e in events if e["type"] == "samples"]
    vals = [e for e in events if e["type"] == "val" and e["split"] == "val"]
    assert [e["epoch"] for e in shown] == [e["epoch"] for e in vals] == [1, 2]
    for e in shown:
        validate_event(e)
        # Written right after the epoch's val event, on the same step.
        assert events[events.index(e) - 1]["type"] == "val"
        assert e["global_step"] == vals[e["epoch"] - 1]["global_step"]
    infos = data.samples("val")
    rows = [[s["index"] for s in e["samples"]] for e in shown]
    assert rows[0] == rows[1] == pick_rows(len(infos), 5, seed=7)
    assert shown[0]["samples"] != shown[1]["samples"]  # the model trained in between
    classes = shown[0]["classes"]
    assert classes == data.classes
    for s in shown[-1]["samples"]:
        assert s["name"] == infos[s["index"]].key
        assert s["label"] == classes[infos[s["index"]].label]
        assert sum(s["probs"]) == pytest.approx(1.0, abs=1e-5)
        assert s["pred"] == classes[int(np.argmax(s["probs"]))]

    # The last epoch's probabilities are the mean over each sample's views, as the
    # weights saved after that validation (last.pt) give them.
    model = entry.build(cfg, len(classes))
    model.load_state_dict(torch.load(run.last_ckpt, weights_only=True)["model"])
    model.eval()
    dataset = data.dataset("val")
    for s in shown[-1]["samples"]:
        i = s["index"]
        batch = data.collate([dataset[i * VIEWS + v] for v in range(VIEWS)])
        with torch.no_grad():
            expected = torch.softmax(model(batch).float(), dim=-1).mean(0)
        assert s["probs"] == pytest.approx(expected.tolist(), abs=1e-4)


def test_pictures_written_once_and_tensorboard_has_table_and_images(views_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, data, _, _ = views_run
    shown = [e for e in read_events(run.events) if e["type"] == "samples"]
    paths = [s["image"] for s in shown[0]["samples"]]
    assert paths == [s["image"] for s in shown[1]["samples"]]
    assert paths == [f"samples/val_{s['index']:04d}.png" for s in shown[0]["samples"]]
    assert sorted(p.name for p in (run.path / "samples").iterdir()) == sorted(
        p.split("/")[1] for p in paths
    )
    dataset = data.dataset("val")
    for s in shown[0]["samples"]:
        with Image.open(run.path / s["image"]) as img:
            pixels = np.asarray(img)
        assert pixels.shape == (96, 96)  # the 24-pixel grey face crop, enlarged 4x
        # The middle view's middle real frame of the sample's face video.
        video = dataset[s["index"] * VIEWS + VIEWS // 2]["video"]
        frame = np.clip(video[len(video) // 2, 0], 0, 1)
        np.testing.assert_array_equal(pixels[::4, ::4], np.round(frame * 255).astype(np.uint8))

    acc = EventAccumulator(str(run.tb), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    tables = acc.Tensors("samples/val/text_summary")
    assert [t.step for t in tables] == [e["global_step"] for e in shown]
    last = tables[-1].tensor_proto.string_val[0].decode()
    for s in shown[-1]["samples"]:
        assert f"| {s['index']} | {s['name']} | {s['label']} | {s['pred']}" in last
    images = [tag for tag in acc.Tags()["images"] if tag.startswith("samples/")]
    assert sorted(images) == sorted(f"samples/{p.split('/')[1][:-4]}" for p in paths)
    assert all(len(acc.Images(tag)) == 1 for tag in images)  # once, not per epoch


def test_pick_rows_is_a_function_of_the_seed():
    assert pick_rows(100, 8, 3) == pick_rows(100, 8, 3) == sorted(set(pick_rows(100, 8, 3)))
    assert pick_rows(100, 8, 3) != pick_rows(100, 8, 4)
    assert pick_rows(5, 8, 3) == [0, 1, 2, 3, 4]
    assert pick_rows(100, 0, 3) == []


def test_picture_of_each_input_kind():
    # Video: the middle of the real (unpadded) frames, 0..1 -> 0..255.
    video = torch.zeros(1, 10, 1, 4, 4)
    video[0, 3] = 1.0  # 7 real frames: the middle is frame 3
    mask = torch.tensor([[True] * 7 + [False] * 3])
    assert (picture({"video": video, "video_mask": mask}) == 255).all()
    # Image: the pipeline's normalisation undone, RGB height x width x 3.
    norm = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    image = torch.full((1, 3, 5, 6), -2.0)  # (0 - 0.5) / 0.25
    out = picture({"image": image}, norm)
    assert out.shape == (5, 6, 3) and (out == 0).all()
    # Audio: features as rows (lowest at the bottom), time as columns, stretched to 0..255.
    audio = torch.zeros(1, 8, 4)
    audio[0, :, 0] = 3.0
    out = picture({"audio": audio, "audio_mask": torch.tensor([[True] * 6 + [False] * 2])})
    assert out.shape == (4, 6) and (out[-1] == 255).all() and (out[:-1] == 0).all()
    assert picture({"label": torch.tensor([0])}) is None
