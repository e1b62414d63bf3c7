"""The RAVDESS loader: names, recordings, splits, bad files, cache reuse and batches."""

from __future__ import annotations

import json
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from trainers.data import audio as audio_mod
from trainers.data import cache as cache_mod
from trainers.data import video as video_mod
from trainers.data.av_dataset import RavdessDataModule, collate_av
from trainers.data.config import DataConfig, DataError
from trainers.data.ravdess import CLASSES, index_ravdess, parse_name, split_actors

# ----------------------------------------------------------------- a tiny corpus


def _write_mp4(path: Path, seed: int, with_audio: bool, seconds: float = 0.8) -> None:
    """Unique content per seed, so every file has its own cache key."""
    fps, rate = 10, 16000
    with av.open(str(path), "w") as container:
        vstream = container.add_stream("libx264", rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = 64, 48, "yuv420p"
        vstream.time_base = Fraction(1, fps)
        vstream.options = {"preset": "ultrafast"}
        astream = container.add_stream("aac", rate=rate) if with_audio else None
        if astream is not None:
            astream.layout = "mono"
        for i in range(round(fps * seconds)):
            level = (seed * 37 + i * 5) % 256
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), level, np.uint8), "rgb24")
            frame.pts = i
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        if astream is not None:
            signal = _tone(seed, seconds, rate)
            for start in range(0, len(signal), 1024):
                chunk = signal[None, start : start + 1024]
                aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                aframe.sample_rate, aframe.pts = rate, start
                container.mux(astream.encode(aframe))
            container.mux(astream.encode(None))


def _tone(seed: int, seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (0.2 * np.sin(2 * np.pi * (150 + 20 * seed) * t)).astype(np.float32)


def make_corpus(
    root: Path,
    actors: tuple[int, ...] = (1, 2, 3, 4),
    emotions: tuple[int, ...] = (1, 3, 5),
    modalities: tuple[int, ...] = (1, 2, 3),
) -> list[str]:
    """Speech recordings ``01-01-EE-01-01-01-AA`` for every actor x emotion, as 01/02/03 files."""
    keys = []
    for actor in actors:
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for emotion in emotions:
            seed = actor * 10 + emotion
            rest = f"01-{emotion:02d}-01-01-01-{actor:02d}"
            keys.append(f"01-{rest}")
            if 1 in modalities:
                _write_mp4(folder / f"01-{rest}.mp4", seed, with_audio=True)
            if 2 in modalities:
                _write_mp4(folder / f"02-{rest}.mp4", seed, with_audio=False)
            if 3 in modalities:
                sf.write(str(folder / f"03-{rest}.wav"), _tone(seed, 0.8), 16000)
    return keys


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ravdess")
    make_corpus(root)
    return root


class BadLog:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def __call__(self, path: str, reason: str) -> None:
        self.items.append((path, reason))

    def names(self) -> list[str]:
        return [Path(p).name for p, _ in self.items]

    def reason(self, name: str) -> str:
        return next(r for p, r in self.items if Path(p).name == name)


def config(root: Path, cache: Path, **overrides: object) -> DataConfig:
    values: dict[str, object] = {
        "root": str(root),
        "cache_dir": str(cache),
        "prepare_workers": 1,
        "fps": 10.0,
        "face_size": 32,
        # The loader's machinery, not the detector (tests/test_faces.py): the cheaper one.
        "face_detector": "haar",
    }
    values.update(overrides)
    return DataConfig(**values)  # type: ignore[arg-type]


# ----------------------------------------------------------------- names and recordings


def test_parse_good_name() -> None:
    name = parse_name("01-01-06-02-01-02-13.mp4")
    assert (name.modality, name.vocal, name.emotion, name.intensity) == (1, 1, 6, 2)
    assert (name.statement, name.repetition, name.actor) == (1, 2, 13)
    assert parse_name("03-01-06-02-01-02-13.wav").recording_key == "01-01-06-02-01-02-13"
    assert parse_name("02-01-06-02-01-02-13.mp4").recording_key == "01-01-06-02-01-02-13"
    assert CLASSES[name.emotion - 1] == "fearful"
    assert parse_name("03-02-01-01-02-01-24.WAV").modality == 3


@pytest.mark.parametrize(
    ("filename", "why"),
    [
        ("01-01-06-02-01-02.mp4", "7 dash-separated"),
        ("01-01-6-02-01-02-13.mp4", "two digits"),
        ("04-01-06-02-01-02-13.mp4", "modality"),
        ("01-03-06-02-01-02-13.mp4", "vocal channel"),
        ("01-01-09-02-01-02-13.mp4", "emotion"),
        ("01-01-06-03-01-02-13.mp4", "intensity"),
        ("01-01-06-02-01-02-00.mp4", "actor"),
        ("03-01-06-02-01-02-13.mp4", "should be a .wav"),
        ("01-01-06-02-01-02-13", "extension"),
    ],
)
def test_parse_bad_names(filename: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_name(filename)


def test_index_groups_01_and_02_into_one_recording(tmp_path: Path) -> None:
    folder = tmp_path / "Actor_07" / "nested"
    folder.mkdir(parents=True)
    for name in (
        "01-01-03-02-01-01-07.mp4",
        "02-01-03-02-01-01-07.mp4",
        "03-01-03-02-01-01-07.wav",
        "02-01-04-01-02-01-07.mp4",  # video only: no audio source
        "01-02-03-02-01-01-07.mp4",  # song: skipped silently
        "video_final.mp4",  # not a RAVDESS name: reported
        "._01-01-03-02-01-01-07.mp4",  # macOS resource fork: ignored
        "README.txt",  # not media: ignored
    ):
        (folder / name).write_bytes(b"x")
    bad = BadLog()
    recordings = index_ravdess(str(tmp_path), bad)
    assert bad.names() == ["video_final.mp4"]
    assert "not a RAVDESS file name" in bad.items[0][1]
    assert [r.key for r in recordings] == ["01-01-03-02-01-01-07", "01-01-04-01-02-01-07"]
    first = recordings[0]
    assert (first.label, first.actor) == (CLASSES.index("happy"), "07")
    assert [Path(p).name for p in first.video_sources] == [
        "01-01-03-02-01-01-07.mp4",
        "02-01-03-02-01-01-07.mp4",
    ]
    assert [Path(p).name for p in first.audio_sources] == [
        "03-01-03-02-01-01-07.wav",
        "01-01-03-02-01-01-07.mp4",
    ]
    assert recordings[1].audio_sources == ()


def test_actor_splits_are_disjoint_balanced_and_deterministic() -> None:
    actors = [f"{a:02d}" for a in range(1, 13)]
    splits = split_actors(actors, 0.15, 0.15, seed=0)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (8, 2, 2)
    assert sorted(splits["train"] + splits["val"] + splits["test"]) == actors
    for held_out in (splits["val"], splits["test"]):
        assert sorted(int(a) % 2 for a in held_out) == [0, 1]  # one male, one female
    assert split_actors(list(reversed(actors)), 0.15, 0.15, seed=0) == splits
    assert any(split_actors(actors, 0.15, 0.15, seed=s) != splits for s in range(1, 5))
    three = split_actors(["01", "02", "03"], 0.15, 0.15, seed=3)
    assert all(len(names) == 1 for names in three.values())
    two = split_actors(["01", "02"], 0.15, 0.15, seed=0)
    assert (len(two["train"]), len(two["val"]), len(two["test"])) == (1, 1, 0)


def test_config_validation_names_the_field() -> None:
    DataConfig().validate()
    with pytest.raises(ValueError, match=r"data\.val_fraction"):
        DataConfig(val_fraction=1.2).validate()
    with pytest.raises(ValueError, match=r"data\.face_size"):
        DataConfig(face_size=8).validate()
    with pytest.raises(ValueError, match=r"data\.modalities"):
        DataConfig(modalities=("audio", "text")).validate()
    with pytest.raises(ValueError, match=r"data\.test_fraction"):
        DataConfig(val_fraction=0.5, test_fraction=0.5).validate()
    assert DataConfig().audio_dim == 40
    assert DataConfig(audio_features="logmel", grayscale=False).audio_dim == 64


# ----------------------------------------------------------------- the data module


def test_setup_builds_one_sample_per_recording(corpus: Path, tmp_path: Path) -> None:
    module = RavdessDataModule(config(corpus, tmp_path / "cache"))
    bad = BadLog()
    calls: list[tuple[int, int, str]] = []
    module.setup(bad, lambda done, total, what: calls.append((done, total, what)))
    assert bad.items == []
    assert calls[-1][:2] == (12, 12)

    info = module.describe()
    json.dumps(info)  # goes into the run directory as is
    assert sum(s["samples"] for s in info["splits"].values()) == 12  # not 24 or 36
    actor_sets = [set(info["splits"][s]["actors"]) for s in ("train", "val", "test")]
    assert all(actor_sets) and not set.intersection(*actor_sets)
    assert info["faces_not_found"] == 12  # flat gray frames hold no face
    assert info["bad_inputs"] == 0 and info["dropped_recordings"] == 0

    train = module.dataset("train")
    item = train[0]
    assert item["video"].shape == (8, 1, 32, 32) and item["video"].dtype == np.uint8
    assert item["audio"].shape[1] == 40 and item["audio"].dtype == np.float32
    sample = module.samples("train")[0]
    assert [Path(p).name[:2] for p in sample.sources] == ["01", "03"]
    assert module.labels("train").dtype == np.int64
    assert len(module.labels("train")) == len(train)

    # Audio features are standardized with train statistics only.
    frames = np.concatenate([train[i]["audio"] for i in range(len(train))])
    np.testing.assert_allclose(frames.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(frames.std(axis=0)[frames.std(axis=0) > 0.5], 1, atol=1e-2)
    assert module.audio_norm is not None and module.audio_norm.mean.shape == (40,)


def test_bad_files_are_reported_once_and_sources_fall_back(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_corpus(root, actors=(1, 2, 3), emotions=(1, 2))
    actor1 = root / "Actor_01"
    truncated = actor1 / "01-01-01-01-01-01-01.mp4"
    truncated.write_bytes(truncated.read_bytes()[:1500])
    (actor1 / "03-01-02-01-01-01-01.wav").write_bytes(b"")
    # A recording whose only source is broken is dropped, its files reported.
    (actor1 / "03-01-03-01-01-01-01.wav").write_bytes(b"RIFF0000WAVEjunk")
    (actor1 / "02-01-03-01-01-01-01.mp4").write_bytes(b"\x00" * 64)

    module = RavdessDataModule(config(root, tmp_path / "cache"))
    bad = BadLog()
    module.setup(bad)
    names = bad.names()
    assert len(names) == len(set(names))  # once per file
    assert sorted(names) == [
        "01-01-01-01-01-01-01.mp4",
        "02-01-03-01-01-01-01.mp4",
        "03-01-02-01-01-01-01.wav",
        "03-01-03-01-01-01-01.wav",
    ]
    assert bad.reason("01-01-01-01-01-01-01.mp4").startswith("cannot open")
    assert bad.reason("03-01-02-01-01-01-01.wav") == "zero-byte file"

    samples = {s.key: s for split in ("train", "val", "test") for s in module.samples(split)}
    assert len(samples) == 6
    fell_back_video = samples["01-01-01-01-01-01-01"].sources
    assert [Path(p).name for p in fell_back_video] == [
        "02-01-01-01-01-01-01.mp4",
        "03-01-01-01-01-01-01.wav",
    ]
    fell_back_audio = samples["01-01-02-01-01-01-01"].sources
    assert [Path(p).name for p in fell_back_audio] == ["01-01-02-01-01-01-01.mp4"]
    assert module.describe()["dropped_recordings"] == 1

    # A warm run reports the same files again (from negative cache entries) without decoding.
    again = BadLog()
    RavdessDataModule(config(root, tmp_path / "cache")).setup(again)
    assert sorted(again.items) == sorted(bad.items)


def test_too_many_bad_recordings_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_corpus(root, actors=(1, 2), emotions=(1,), modalities=(2,))  # no audio anywhere
    with pytest.raises(DataError, match=r"2 of 2 recordings under .*data"):
        RavdessDataModule(config(root, tmp_path / "cache")).setup(BadLog())
    module = RavdessDataModule(config(root, tmp_path / "cache", modalities=("video",)))
    module.setup(BadLog())  # video alone is fine
    assert "audio" not in module.dataset("train")[0]
    with pytest.raises(DataError, match="no RAVDESS speech recordings"):
        RavdessDataModule(config(tmp_path / "cache", tmp_path / "c2")).setup(BadLog())


def test_cache_hit_decodes_nothing_and_face_size_rebuilds_video_only(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = RavdessDataModule(config(corpus, cache))
    first.setup(BadLog())

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded on a cache hit")

    monkeypatch.setattr(video_mod, "extract_faces", no_decoding)
    monkeypatch.setattr(audio_mod, "extract_audio", no_decoding)
    warm = RavdessDataModule(config(corpus, cache))
    warm.setup(BadLog())
    assert warm.describe()["cached_recordings"] == 12
    for split in ("train", "val", "test"):
        a, b = first.dataset(split), warm.dataset(split)
        for i in range(len(a)):
            np.testing.assert_array_equal(a[i]["video"], b[i]["video"])
            np.testing.assert_array_equal(a[i]["audio"], b[i]["audio"])

    # A new process (an empty digest memo) finds its entries without reading the sources.
    monkeypatch.setattr(cache_mod, "_digests", {})

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("a source file was hashed again")

    monkeypatch.setattr(cache_mod, "open", no_reading, raising=False)  # file_digest's reads
    RavdessDataModule(config(corpus, cache)).setup(BadLog())
    monkeypatch.delattr(cache_mod, "open")

    # Switching between MFCC and log-mel reuses the same audio entries.
    logmel = RavdessDataModule(config(corpus, cache, audio_features="logmel"))
    logmel.setup(BadLog())
    assert logmel.dataset("train")[0]["audio"].shape[1] == 64

    decoded_video: list[str] = []
    monkeypatch.undo()
    monkeypatch.setattr(audio_mod, "extract_audio", no_decoding)
    original = video_mod.extract_faces

    def counting(path: str, cfg: DataConfig, threads: int = 0) -> video_mod.FaceClip:
        decoded_video.append(path)
        return original(path, cfg, threads)

    monkeypatch.setattr(video_mod, "extract_faces", counting)
    bigger = RavdessDataModule(config(corpus, cache, face_size=48))
    bigger.setup(BadLog())
    assert len(decoded_video) == 12
    assert bigger.dataset("train")[0]["video"].shape[-2:] == (48, 48)

    # So does another face detector; checkpoints record which one made the crops.
    decoded_video.clear()
    other = "mtcnn" if config(corpus, cache).face_detector == "haar" else "haar"
    switched = RavdessDataModule(config(corpus, cache, face_detector=other))
    switched.setup(BadLog())
    assert len(decoded_video) == 12
    recorded = switched.inference_state()["preprocessing"]["video"]["face_detector"]
    assert recorded["name"] == other


def test_random_split_warns(corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    module = RavdessDataModule(config(corpus, tmp_path / "cache", split="random"))
    with caplog.at_level(logging.WARNING):
        module.setup(BadLog())
    assert "inflated" in caplog.text
    assert sum(len(module.samples(s)) for s in ("train", "val", "test")) == 12


# ----------------------------------------------------------------- batches


def test_collate_pads_to_the_batch_maximum_and_masks() -> None:
    items = [
        {
            "index": 0,
            "label": 3,
            "audio": np.ones((5, 4), np.float32),
            "video": np.full((2, 1, 8, 8), 255, np.uint8),
        },
        {
            "index": 1,
            "label": 1,
            "audio": np.ones((7, 4), np.float32),
            "video": np.full((3, 1, 8, 8), 51, np.uint8),
        },
    ]
    batch = collate_av(items)
    assert batch["label"].tolist() == [3, 1] and batch["label"].dtype == torch.long
    assert batch["index"].tolist() == [0, 1]
    assert batch["audio"].shape == (2, 7, 4) and batch["audio"].dtype == torch.float32
    assert batch["audio_mask"].tolist() == [[True] * 5 + [False] * 2, [True] * 7]
    assert batch["audio"][0, 5:].abs().sum() == 0
    assert batch["video"].shape == (2, 3, 1, 8, 8) and batch["video"].dtype == torch.float32
    assert batch["video_mask"].tolist() == [[True, True, False], [True, True, True]]
    assert torch.allclose(batch["video"][0, 0], torch.ones(1, 8, 8))
    assert torch.allclose(batch["video"][1, 0], torch.full((1, 8, 8), 0.2))
    assert batch["video"][0, 2].abs().sum() == 0


def test_dataloader_batches_from_the_module(corpus: Path, tmp_path: Path) -> None:
    module = RavdessDataModule(config(corpus, tmp_path / "cache"))
    module.setup(BadLog())
    loader = torch.utils.data.DataLoader(
        module.dataset("train"), batch_size=4, collate_fn=module.collate
    )
    batch = next(iter(loader))
    assert set(batch) == {"label", "index", "audio", "audio_mask", "video", "video_mask"}
    assert batch["video"].shape[:3] == (4, 8, 1)
    assert batch["video"].max() <= 1.0


# ----------------------------------------------------------------- the synthetic corpus


def test_synthetic_corpus_round_trip_in_worker_processes(tmp_path: Path) -> None:
    """Drawn faces, generated voices, the process pool, and one broken file among them."""
    from trainers.data.synth import write_corpus

    out = tmp_path / "synth"
    manifest = write_corpus("ravdess", out, actors=2, seed=0, statements=1, repetitions=1)
    broken = out / manifest.recordings[0].files[0]  # an 01 audio-video mp4
    broken.write_bytes(broken.read_bytes()[:3000])

    cfg = config(out, tmp_path / "cache", face_size=48, prepare_workers=2)
    module = RavdessDataModule(cfg)
    bad = BadLog()
    module.setup(bad)
    # Bad files found in the workers are reported once, by the parent.
    assert [Path(p).name for p, _ in bad.items] == [broken.name]

    info = module.describe()
    assert info["decoded_recordings"] == len(manifest.recordings)
    samples = {s.key: s for split in ("train", "val", "test") for s in module.samples(split)}
    assert sorted(samples) == sorted(r.key for r in manifest.recordings)
    for rec in manifest.recordings:
        sample = samples[rec.key]
        assert CLASSES[sample.label] == rec.emotion
        assert sample.actor == f"{rec.actor:02d}"
    # The broken take drew its video from the 02 file and its audio from the wav.
    assert [Path(p).name[:2] for p in samples[manifest.recordings[0].key].sources] == ["02", "03"]
    # Two actors: one trains, the other validates.
    assert [len(info["splits"][s]["actors"]) for s in ("train", "val", "test")] == [1, 1, 0]
    # The default detector (MTCNN, run in the workers) finds the drawn faces.
    assert info["faces_not_found"] == 0
    item = module.dataset("train")[0]
    assert item["video"].shape[1:] == (1, 48, 48)
    # A face crop is not the flat centre of the frame: it has contrast.
    assert item["video"].std() > 10


def test_collate_scales_a_batch_that_mixes_uint8_and_float_video():
    from trainers.data.av_dataset import collate_av

    raw = np.full((2, 1, 4, 4), 255, dtype=np.uint8)
    augmented = np.full((3, 1, 4, 4), 0.5, dtype=np.float32)
    batch = collate_av(
        [{"label": 0, "index": 0, "video": raw}, {"label": 1, "index": 1, "video": augmented}]
    )
    assert batch["video"].max() <= 1.0
    assert batch["video"][0, :2].eq(1.0).all() and batch["video"][1, :3].eq(0.5).all()
    assert batch["video_mask"].tolist() == [[True, True, False], [True, True, True]]


@pytest.mark.parametrize(
    ("channel", "keys"),
    [
        ("speech", ["01-01-03-02-01-01-07"]),
        ("song", ["01-02-03-02-01-01-07"]),
        ("both", ["01-01-03-02-01-01-07", "01-02-03-02-01-01-07"]),
    ],
)
def test_vocal_channel_chooses_speech_song_or_both_and_debris_is_ignored(
    tmp_path: Path, channel: str, keys: list[str]
) -> None:
    """data.vocal_channel, through the layout the data module reads; the debris a zip
    made on a Mac leaves (__MACOSX/ with ._ forks, .DS_Store) is no bad input."""
    from trainers.data.av_dataset import LAYOUTS
    from trainers.data.config import DataConfig

    folder = tmp_path / "Actor_07"
    folder.mkdir()
    for name in ("01-01-03-02-01-01-07.mp4", "01-02-03-02-01-01-07.mp4", ".DS_Store"):
        (folder / name).write_bytes(b"x")
    debris = tmp_path / "__MACOSX" / "Actor_07"
    debris.mkdir(parents=True)
    (debris / "._01-01-03-02-01-01-07.mp4").write_bytes(b"x")
    bad = BadLog()
    cfg = DataConfig(root=str(tmp_path), vocal_channel=channel)  # type: ignore[arg-type]
    indexed = LAYOUTS["ravdess"].index(str(tmp_path), bad, cfg)
    assert [r.key for r in indexed.recordings] == keys
    assert bad.items == []
