"""The guards against inputs that decode but are not what their label says.

Each CREMA-D defect its tracker lists (github.com/CheyneyComputerScience/CREMA-D
issue #8) is made here as a tiny file with the same property, in the release's
layout, and read by the data module every audio-visual model uses: the files
are listed in bad_inputs as "suspect" and left out by default, on a warm cache
too, and kept with data.keep_suspect=true.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.avfiles import moving_frames, still_frames, tone, write_media, write_wav
from trainers.config import ConfigError, resolve
from trainers.data import guards
from trainers.data.av_dataset import RavdessDataModule
from trainers.data.config import DataConfig
from trainers.registry import get_entry

SMALL = {"face_size": 16, "max_frames": 16, "max_audio_frames": 50, "prepare_workers": 1,
         "max_bad_fraction": 0.9}  # fmt: skip
MP3_RATE = 22050


def take(root: Path, stem: str, frames, fps: int, audio, *, wav=None, flv_audio=True,
         header_duration: bool = True) -> None:  # fmt: skip
    """One take as the release keeps it: VideoFlash/.flv (mp3 track), AudioMP3/, AudioWAV/."""
    track = audio if flv_audio else None
    write_media(root / "VideoFlash" / f"{stem}.flv", frames, fps, track, MP3_RATE, header_duration)
    write_media(root / "AudioMP3" / f"{stem}.mp3", None, 0, audio, MP3_RATE, header_duration)
    if wav is not None:
        write_wav(root / "AudioWAV" / f"{stem}.wav", wav, 16000)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    """Two good takes and CREMA-D's three defective ones, tiny."""
    root = tmp_path_factory.mktemp("guards") / "CREMA-D"
    for i, stem in enumerate(("1001_DFA_ANG_XX", "1001_DFA_HAP_XX")):
        take(root, stem, moving_frames(2, 15, seed=i), 15, tone(2, MP3_RATE), wav=tone(2, 16000))
    # 1076_MTI_SAD_XX: plays, but no sound, and an error card for video.
    silence = np.zeros(2 * MP3_RATE, np.float32)
    take(root, "1076_MTI_SAD_XX", still_frames(2, 15), 15, silence, wav=silence[: 2 * 16000])
    # 1064_IEO_DIS_MD: a whole minute (61 s) in one file.
    take(root, "1064_IEO_DIS_MD", moving_frames(61, 5, seed=3), 5, tone(61, MP3_RATE),
         wav=tone(61, 16000))  # fmt: skip
    # 1064_TIE_SAD_XX: flv and mp3 with no duration, 18 frames; the wav is a normal take.
    take(root, "1064_TIE_SAD_XX", moving_frames(0.6, 30, seed=4), 30, tone(0.6, MP3_RATE),
         wav=tone(2.4, 16000), header_duration=False)  # fmt: skip
    return root


def setup(root: Path, cache: Path, **overrides) -> tuple[RavdessDataModule, dict[str, str]]:
    cfg = DataConfig(root=str(root), layout="crema-d", cache_dir=str(cache), **SMALL)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    reported: dict[str, str] = {}
    module = RavdessDataModule(cfg)
    module.setup(lambda path, why: reported.setdefault(Path(path).name, why))
    return module, reported


def kept(module: RavdessDataModule) -> set[str]:
    return {s.key for split in ("train", "val", "test") for s in module.samples(split)}


GOOD = {"1001_DFA_ANG_XX", "1001_DFA_HAP_XX"}


def test_defects_are_listed_as_suspect_and_left_out_on_cold_and_warm_cache(release, tmp_path):
    cache = tmp_path / "cache"
    module, bad = setup(release, cache)
    assert kept(module) == GOOD
    info = module.describe()
    assert info["suspect_recordings"] == 3 and info["dropped_recordings"] == 0
    assert all(reason.startswith(("suspect: ", "skipped: recording")) for reason in bad.values())
    assert "silent audio" in bad["1076_MTI_SAD_XX.wav"]
    assert "a still picture" in bad["1076_MTI_SAD_XX.flv"]
    assert "audio lasts 61.0 s, above data.max_duration_s=10" in bad["1064_IEO_DIS_MD.wav"]
    assert "video lasts 61.0 s" in bad["1064_IEO_DIS_MD.flv"]
    # The headerless flv decodes to its 18 frames (0.6 s, measured to a sample at
    # data.fps=10): short, and not the wav's length.
    short = bad["1064_TIE_SAD_XX.flv"]
    assert re.search(r"video lasts 0\.[67]0 s, below data.min_duration_s=0.75", short)
    assert "audio 2.40 s: not one take" in short
    # The take's other files are listed as skipped with it, never used under its label.
    for name in ("1076_MTI_SAD_XX.mp3", "1064_IEO_DIS_MD.mp3", "1064_TIE_SAD_XX.wav"):
        assert bad[name].startswith(f"skipped: recording {name[:15]} is suspect")
    assert len(bad) == 9

    warm, again = setup(release, cache)
    assert warm.describe()["decoded_recordings"] == 0  # every entry from the cache...
    assert again == bad and kept(warm) == GOOD  # ...and guarded the same


def test_cache_entries_without_measures_are_decoded_again(release, tmp_path):
    cache = tmp_path / "cache"
    first, bad = setup(release, cache, modalities=("audio",))
    entries = list(cache.rglob("*.npz"))
    assert entries
    for path in entries:  # as written before the guards existed
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files if k not in guards.MEASURES["audio"]}
        np.savez(path, **arrays)
    module, again = setup(release, cache, modalities=("audio",))
    assert module.describe()["decoded_recordings"] == first.describe()["decoded_recordings"] > 0
    assert again == bad and "silent audio" in again["1076_MTI_SAD_XX.wav"]


def test_keep_suspect_keeps_them_and_video_alone_is_guarded_too(release, tmp_path):
    cache = tmp_path / "cache"
    module, bad = setup(release, cache, keep_suspect=True)
    assert bad == {} and len(kept(module)) == 5
    video, bad = setup(release, cache, modalities=("video",))
    assert kept(video) == GOOD
    assert set(bad) == {
        f"{stem}.{ext}"
        for stem in ("1076_MTI_SAD_XX", "1064_IEO_DIS_MD", "1064_TIE_SAD_XX")
        for ext in ("flv", "mp3", "wav")
    }
    assert "still picture" in bad["1076_MTI_SAD_XX.flv"]
    assert "below data.min_duration_s" in bad["1064_TIE_SAD_XX.flv"]


def test_loudness_measure_hears_sound_not_clicks():
    rate = 16000
    assert guards.loudest_window_dbfs(np.zeros(rate, np.float32), rate) == guards.DBFS_FLOOR
    sine = 0.1 * np.sin(2 * np.pi * 440 * np.arange(2 * rate) / rate)
    assert guards.loudest_window_dbfs(sine, rate) == pytest.approx(-23.01, abs=0.05)
    clicks = np.zeros(2 * rate)
    clicks[[100, 12000, 24000]] = 1.0  # three full-scale clicks in two seconds of silence
    assert guards.loudest_window_dbfs(clicks, rate) == guards.DBFS_FLOOR
    word = np.concatenate([np.zeros(9 * rate // 4), sine[: rate // 4]])  # 10% sound
    assert guards.loudest_window_dbfs(word, rate) > -30


def test_video_duration_is_read_from_the_middle_window():
    fps = 10.0
    whole = np.arange(40) / fps  # a 4 s clip, every sample kept
    middle = np.arange(20, 36) / fps  # 5.6 s, the middle 16 kept
    assert float(guards.video_measures(whole, fps)["duration_s"]) == pytest.approx(4.0)
    assert float(guards.video_measures(middle, fps)["duration_s"]) == pytest.approx(5.6)


@pytest.mark.parametrize(
    ("assignment", "key", "fragment"),
    [
        ("data.silence_dbfs=3", "data.silence_dbfs", "between -120 and 0"),
        ("data.max_duration_s=-1", "data.max_duration_s", ">= 0"),
        ("data.min_duration_s=20", "data.min_duration_s", "below the longest allowed, 10.0"),
        ("data.keep_suspect=maybe", "data.keep_suspect", "bool"),
    ],
)
def test_guard_keys_are_validated_naming_the_key(assignment, key, fragment):
    with pytest.raises(ConfigError) as info:
        resolve(get_entry("hybrid-attention").default_config(), assignments=[assignment])
    assert info.value.key == key
    assert fragment in str(info.value)


def test_layout_defaults_fit_each_corpus():
    assert DataConfig(layout="crema-d").duration_limits() == (0.75, 10.0)
    assert DataConfig(layout="meld").duration_limits() == (0.1, 60.0)
    assert DataConfig(layout="meld", max_duration_s=90).duration_limits() == (0.1, 90)
