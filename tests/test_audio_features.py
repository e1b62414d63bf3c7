"""trainers.data.spectral against librosa, the reference the features were defined with.

librosa is only a dev dependency now; every parameter the old
``compute_features`` relied on as a default is spelled out here, so a change
of default in a later librosa cannot move the reference.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from trainers.data import spectral
from trainers.data.audio import LOGMEL_TOP_DB, center_crop, compute_features, frame_params
from trainers.data.config import DataConfig
from trainers.data.synth import voice

ROOT = Path(__file__).resolve().parents[1]

# Largest differences measured against librosa 0.11 were 7.6e-6 dB (log-mel, float32
# rounding of the same sums) and 3.7e-4 (MFCC: scipy's float32 DCT vs a float32 matrix
# product, on coefficients in the hundreds); resampling was bit-identical.
LOGMEL_ATOL = 1e-4
MFCC_ATOL = 2e-3

CONFIGS = {
    "defaults": DataConfig(),
    "defaults-trim": DataConfig(trim_silence=True),
    "22k-wide": DataConfig(
        sample_rate=22050, n_mels=40, n_mfcc=13, hop_ms=12.5, win_ms=50.0, trim_silence=True
    ),
    "8k-cropped": DataConfig(
        sample_rate=8000, n_mels=32, n_mfcc=20, hop_ms=8.0, win_ms=32.0, max_audio_frames=60
    ),
}


def _signals(rate: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    noise = 0.1 * rng.standard_normal(rate)
    # Half a second of silence, a warbling tone, then faint noise: trimming cuts both ends.
    half = t[: rate // 2]
    burst = 0.5 * np.sin(2 * np.pi * 200 * half) * (1 + 0.5 * np.sin(6 * np.pi * half))
    padded = np.concatenate([np.zeros(rate // 2), burst, 1e-4 * rng.standard_normal(rate // 3)])
    short = 0.2 * np.sin(2 * np.pi * 300 * np.arange(150) / rate)  # under one window
    speaker = voice.random_voice(rng, female=True)
    timing = voice.plan_timing(voice.scaled("angry", 1.0), speaker, 1, rng, 0.5)
    speech = voice.synthesize(speaker, "angry", 1.0, 1, timing, rng).audio
    silence = np.zeros(rate // 2)
    clips = {"tone": tone, "noise": noise, "padded": padded, "short": short, "speech": speech}
    clips["silence"] = silence
    return {name: clip.astype(np.float32) for name, clip in clips.items()}


def _librosa_features(signal: np.ndarray, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """The previous compute_features, librosa calls with their defaults made explicit."""
    import librosa  # here, not at the top: every xdist worker collects this file

    params = frame_params(cfg)
    if cfg.trim_silence:
        trimmed, _ = librosa.effects.trim(
            signal,
            top_db=cfg.top_db,
            ref=np.max,
            frame_length=params["win_length"],
            hop_length=params["hop_length"],
        )
        if len(trimmed) >= params["win_length"]:
            signal = trimmed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_fft larger than the short clip
        power = librosa.feature.melspectrogram(
            y=signal,
            sr=cfg.sample_rate,
            n_mels=cfg.n_mels,
            power=2.0,
            window="hann",
            center=True,
            pad_mode="constant",
            fmin=0.0,
            fmax=cfg.sample_rate / 2,
            htk=False,
            norm="slaney",
            **params,
        )
    logmel = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=LOGMEL_TOP_DB)
    mfcc = librosa.feature.mfcc(S=logmel, n_mfcc=cfg.n_mfcc, dct_type=2, norm="ortho", lifter=0)
    return (
        center_crop(logmel.T, cfg.max_audio_frames),
        center_crop(mfcc.T, cfg.max_audio_frames),
    )


@pytest.mark.parametrize("config", CONFIGS)
def test_features_match_librosa(config: str) -> None:
    cfg = CONFIGS[config]
    for name, signal in _signals(cfg.sample_rate).items():
        ours = compute_features(signal, cfg)
        logmel, mfcc = _librosa_features(signal, cfg)
        assert ours.logmel.shape == logmel.shape, name
        assert ours.mfcc.shape == mfcc.shape, name
        assert ours.logmel.dtype == ours.mfcc.dtype == np.float32
        np.testing.assert_allclose(ours.logmel, logmel, rtol=0, atol=LOGMEL_ATOL, err_msg=name)
        np.testing.assert_allclose(ours.mfcc, mfcc, rtol=0, atol=MFCC_ATOL, err_msg=name)


@pytest.mark.parametrize("config", ["defaults-trim", "22k-wide", "8k-cropped"])
def test_trim_range_matches_librosa(config: str) -> None:
    import librosa  # here, not at the top: every xdist worker collects this file

    cfg = CONFIGS[config]
    params = frame_params(cfg)
    trimmed_any = False
    for name, signal in _signals(cfg.sample_rate).items():
        for top_db in (cfg.top_db, 60.0):
            _, (start, end) = librosa.effects.trim(
                signal,
                top_db=top_db,
                ref=np.max,
                frame_length=params["win_length"],
                hop_length=params["hop_length"],
            )
            got = spectral.nonsilent_range(
                signal, top_db, params["win_length"], params["hop_length"]
            )
            assert got == (start, end), (name, top_db)
            trimmed_any |= end - start < len(signal)
    assert trimmed_any  # the padded clip and the speech have silence to cut


def test_all_zero_clip_is_kept_whole() -> None:
    cfg = DataConfig(trim_silence=True)
    features = compute_features(np.zeros(8000, np.float32), cfg)
    assert features.logmel.shape == (1 + 8000 // 160, cfg.n_mels)
    assert np.all(features.logmel == -100.0)  # 10 * log10(amin)


@pytest.mark.parametrize(("source", "target"), [(44100, 16000), (8000, 16000), (22050, 16000)])
def test_resample_matches_librosa(source: int, target: int) -> None:
    import librosa  # here, not at the top: every xdist worker collects this file

    rng = np.random.default_rng(source)
    for n in (source, source + 37, 1001):
        signal = (0.1 * rng.standard_normal(n)).astype(np.float32)
        reference = librosa.resample(signal, orig_sr=source, target_sr=target, res_type="soxr_hq")
        ours = spectral.resample(signal, source, target)
        assert ours.shape == reference.shape
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)


def test_mel_filterbank_matches_librosa() -> None:
    import librosa  # here, not at the top: every xdist worker collects this file

    for rate, n_fft, n_mels in [(16000, 512, 64), (22050, 2048, 40), (8000, 256, 32)]:
        reference = librosa.filters.mel(
            sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, htk=False, norm="slaney"
        )
        np.testing.assert_allclose(
            spectral.mel_filterbank(rate, n_fft, n_mels).T, reference, rtol=1e-6, atol=1e-9
        )


def test_feature_path_imports_neither_librosa_nor_numba() -> None:
    code = (
        "import json, sys; import numpy as np\n"
        "from trainers.data.audio import compute_features\n"
        "from trainers.data.config import DataConfig\n"
        "compute_features(np.ones(16000, np.float32), DataConfig(trim_silence=True))\n"
        "print(json.dumps([m for m in ('librosa', 'numba', 'scipy') if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    # scipy too: importing scipy.fft alone costs 0.3-0.5 s in every decoding process.
    assert json.loads(result.stdout) == []
