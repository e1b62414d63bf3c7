"""Decoding real files: frame sampling by time, face crops, audio features, the cache."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import soundfile as sf

from trainers.data import audio, cache, faces, video
from trainers.data.config import DataConfig, DecodeError


def write_mp4(
    path: Path,
    fps: int,
    seconds: float,
    *,
    size: tuple[int, int] = (96, 64),
    audio_rate: int | None = 16000,
    channels: int = 1,
    frame_value: bool = True,
    faststart: bool = False,
) -> None:
    """A tiny H.264 (+ AAC) file; frame i has gray level 2*i, to check which frames come back."""
    width, height = size
    n_frames = round(fps * seconds)
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        vstream = container.add_stream("libx264", rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.time_base = Fraction(1, fps)
        vstream.options = {"crf": "10", "preset": "ultrafast"}
        astream = None
        layout = "mono" if channels == 1 else "stereo"
        if audio_rate:
            astream = container.add_stream("aac", rate=audio_rate)
            astream.layout = layout
        for i in range(n_frames):
            level = (2 * i) % 256 if frame_value else 0
            frame = av.VideoFrame.from_ndarray(
                np.full((height, width, 3), level, np.uint8), format="rgb24"
            )
            frame.pts = i
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        if astream is not None and audio_rate:
            t = np.arange(round(audio_rate * seconds)) / audio_rate
            tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            signal = np.repeat(tone[None], channels, axis=0)
            for start in range(0, signal.shape[1], 1024):
                chunk = np.ascontiguousarray(signal[:, start : start + 1024])
                aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                aframe.sample_rate, aframe.pts = audio_rate, start
                container.mux(astream.encode(aframe))
            container.mux(astream.encode(None))


def write_wav(path: Path, seconds: float, rate: int = 16000, channels: int = 1) -> None:
    t = np.arange(round(rate * seconds)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 330 * t)
    sf.write(str(path), np.stack([tone] * channels, axis=1), rate, subtype="PCM_16")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clips")
    paths = {
        "30fps": root / "a30.mp4",
        "15fps": root / "a15.mp4",
        "long": root / "long.mp4",
        "silent_video": root / "noaudio.mp4",
        "stereo44k_mp4": root / "stereo.mp4",
        "wav": root / "mono16k.wav",
        "wav44k_stereo": root / "stereo44k.wav",
        "faststart": root / "faststart.mp4",
    }
    write_mp4(paths["30fps"], 30, 2.0)
    write_mp4(paths["15fps"], 15, 2.0)
    write_mp4(paths["long"], 25, 8.0, audio_rate=None)
    write_mp4(paths["silent_video"], 10, 1.0, audio_rate=None)
    write_mp4(paths["stereo44k_mp4"], 10, 1.5, audio_rate=44100, channels=2)
    write_wav(paths["wav"], 1.5)
    write_wav(paths["wav44k_stereo"], 1.5, rate=44100, channels=2)
    write_mp4(paths["faststart"], 10, 3.0, faststart=True)
    return paths


# ------------------------------------------------------------------------- video


def test_frames_are_sampled_by_time_not_index(clips: dict[str, Path]) -> None:
    frames30, times30 = video.decode_frames(str(clips["30fps"]), fps=10, max_frames=100)
    frames15, times15 = video.decode_frames(str(clips["15fps"]), fps=10, max_frames=100)
    # 2 s at 10 fps is 20 samples whatever the source rate, 0.1 s apart.
    assert len(frames30) == len(frames15) == 20
    np.testing.assert_allclose(times30, np.arange(20) / 10, atol=1e-6)
    np.testing.assert_allclose(times15, times30)
    # Sample k (at k/10 s) is source frame 3k at 30 fps, and frame floor(1.5k) held at 15 fps.
    levels30 = np.array([f.mean() for f in frames30])
    levels15 = np.array([f.mean() for f in frames15])
    np.testing.assert_allclose(levels30, 6 * np.arange(20), atol=3)
    np.testing.assert_allclose(levels15, 2 * np.floor(1.5 * np.arange(20)), atol=3)


def test_long_clips_keep_the_middle_frames(clips: dict[str, Path]) -> None:
    frames, times = video.decode_frames(str(clips["long"]), fps=10, max_frames=16)
    assert len(frames) == 16
    # 80 samples in all; the middle 16 start at sample 32 (3.2 s).
    np.testing.assert_allclose(times, 3.2 + np.arange(16) / 10, atol=1e-6)


def test_face_clip_shapes_and_center_crop_fallback(clips: dict[str, Path]) -> None:
    cfg = DataConfig(fps=10, max_frames=12, face_size=32)
    clip = video.extract_faces(str(clips["30fps"]), cfg)
    assert clip.frames.shape == (12, 1, 32, 32)
    assert clip.frames.dtype == np.uint8
    # A blank picture has no face: the centre is cropped and the clip flagged.
    assert clip.face_found is False
    assert clip.detections == 0

    rgb = video.extract_faces(str(clips["15fps"]), DataConfig(grayscale=False, face_size=16))
    assert rgb.frames.shape == (20, 3, 16, 16)


def test_video_errors_are_typed(tmp_path: Path, clips: dict[str, Path]) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="zero-byte file"):
        video.decode_frames(str(empty), 10, 10)
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(clips["30fps"].read_bytes()[:2000])
    with pytest.raises(DecodeError, match="cannot open"):
        video.decode_frames(str(truncated), 10, 10)
    with pytest.raises(DecodeError, match="no video stream"):
        video.decode_frames(str(clips["wav"]), 10, 10)


def test_files_cut_short_are_caught_even_when_they_open(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    # With the index at the front, a cut file opens and decodes quietly, just shorter.
    data = clips["faststart"].read_bytes()
    cut = tmp_path / "cut_faststart.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match=r"truncated: decoded .* of 3\.00 s"):
        video.decode_frames(str(cut), 10, 100)
    with pytest.raises(DecodeError, match=r"truncated|decode failed"):
        audio.load_audio(str(cut), 16000)
    frames, _ = video.decode_frames(str(clips["faststart"]), 10, 100)
    assert len(frames) == 30


def test_face_track_smoothing_and_crop() -> None:
    boxes: list[faces.Box | None] = [
        faces.Box(50, 50, 40),
        None,
        faces.Box(400, 50, 40),  # a one-frame outlier
        faces.Box(54, 50, 40),
        faces.Box(56, 50, 40),
    ]
    track = faces.smooth_track(boxes, [0, 3, 6, 9, 12], 13)
    assert len(track) == 13
    assert max(box.cx for box in track) < 60  # the outlier is gone
    image = np.arange(100 * 120, dtype=np.uint32).reshape(100, 120).astype(np.uint8)
    crop = faces.crop_square(image, faces.Box(5, 5, 50), 16)  # runs off the corner
    assert crop.shape == (16, 16)
    np.testing.assert_array_equal(
        crop, faces.crop_square(image, faces.Box(29, 29, 50), 16)
    )  # shifted inside, not padded


# ------------------------------------------------------------------------- audio


def test_audio_features_from_wav_and_mp4_track(clips: dict[str, Path]) -> None:
    cfg = DataConfig()
    from_wav = audio.extract_audio(str(clips["wav"]), cfg)
    from_mp4 = audio.extract_audio(str(clips["30fps"]), cfg)
    assert from_wav.mfcc.shape == (151, 40)  # 1.5 s / 10 ms + 1 (centred frames)
    assert from_wav.logmel.shape == (151, 64)
    assert from_mp4.mfcc.dtype == np.float32 and from_mp4.mfcc.shape[1] == 40
    # AAC adds encoder delay, so a 2 s track gives a few frames more than 201.
    assert 201 <= from_mp4.mfcc.shape[0] <= 215


def test_stereo_44k_is_mixed_and_resampled(clips: dict[str, Path]) -> None:
    signal = audio.load_audio(str(clips["wav44k_stereo"]), 16000)
    assert signal.ndim == 1 and signal.dtype == np.float32
    assert len(signal) == 24000
    track = audio.load_audio(str(clips["stereo44k_mp4"]), 16000)
    assert track.ndim == 1 and abs(len(track) - 24000) < 2048
    # Averaged, not summed or -3 dB downmixed: the tone keeps its 0.3 amplitude.
    assert 0.27 < np.abs(signal).max() < 0.33
    assert 0.25 < np.abs(track).max() < 0.35
    feats = audio.extract_audio(str(clips["wav44k_stereo"]), DataConfig(audio_features="logmel"))
    assert feats.logmel.shape == (151, 64)


def test_audio_cap_trim_and_errors(tmp_path: Path, clips: dict[str, Path]) -> None:
    capped = audio.extract_audio(str(clips["wav"]), DataConfig(max_audio_frames=50))
    assert capped.mfcc.shape == (50, 40)

    quiet = tmp_path / "padded.wav"
    tone = 0.3 * np.sin(2 * np.pi * 330 * np.arange(8000) / 16000)
    sf.write(str(quiet), np.concatenate([np.zeros(8000), tone, np.zeros(8000)]), 16000)
    trimmed = audio.extract_audio(str(quiet), DataConfig(trim_silence=True))
    untrimmed = audio.extract_audio(str(quiet), DataConfig())
    assert trimmed.mfcc.shape[0] < 0.6 * untrimmed.mfcc.shape[0]

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(DecodeError, match="zero-byte file"):
        audio.load_audio(str(empty), 16000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF" + os.urandom(200))
    with pytest.raises(DecodeError, match="cannot open"):
        audio.load_audio(str(garbage), 16000)
    with pytest.raises(DecodeError, match="no audio stream"):
        audio.load_audio(str(clips["silent_video"]), 16000)


# ------------------------------------------------------------------------- cache


def test_cache_entries_are_atomic_and_keyed_by_content(tmp_path: Path) -> None:
    store = cache.FeatureCache(tmp_path / "cache")
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    settings = {"fps": 10.0}
    key = store.key("video", str(a), settings)
    assert key == store.key("video", str(b), settings)  # content, not path
    assert key != store.key("audio", str(a), settings)
    assert key != store.key("video", str(a), {"fps": 12.0})

    assert store.load("video", key) is None
    store.store("video", key, {"frames": np.ones((2, 1, 4, 4), np.uint8)})
    loaded = store.load("video", key)
    assert loaded is not None and loaded["frames"].shape == (2, 1, 4, 4)
    entry = store.entry_path("video", key)
    assert entry is not None
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temp files left

    store.store_error("audio", key, "no audio stream")
    error = store.load("audio", key)
    assert error is not None and str(error[cache.ERROR_FIELD]) == "no audio stream"

    entry.write_bytes(b"torn")  # a damaged entry is a miss, and is removed
    assert store.load("video", key) is None
    assert not entry.exists()


def test_file_bytes_are_hashed_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3_000_000)
    opened: list[str] = []
    real_open = open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    first = cache.file_digest(str(path))
    assert cache.file_digest(str(path)) == first
    assert opened.count(str(path)) == 1
    path.write_bytes(b"y" * 10)  # changed on disk: hashed again
    assert cache.file_digest(str(path)) != first


def test_a_git_lfs_pointer_says_to_fetch_the_media(tmp_path: Path) -> None:
    """A corpus cloned without git-lfs (CREMA-D's repository) has a ~130-byte pointer
    under every media name: the reason says so and gives the command."""
    pointer = (
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
        "size 242856\n"
    )
    for name in ("1001_DFA_ANG_XX.flv", "1001_DFA_ANG_XX.wav"):
        (tmp_path / name).write_text(pointer)
    with pytest.raises(DecodeError, match=r"git-lfs pointer.*git lfs pull"):
        video.decode_frames(str(tmp_path / "1001_DFA_ANG_XX.flv"), 10.0, 8)
    with pytest.raises(DecodeError, match=r"git-lfs pointer.*git lfs pull"):
        audio.load_audio(str(tmp_path / "1001_DFA_ANG_XX.wav"), 16000)
    # A small file that is not a pointer still gets the decoder's own reason.
    (tmp_path / "tiny.wav").write_bytes(b"RIFF0000WAVE")
    with pytest.raises(DecodeError) as err:
        audio.load_audio(str(tmp_path / "tiny.wav"), 16000)
    assert "git-lfs" not in str(err.value)
