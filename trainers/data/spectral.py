"""Log-mel, MFCC, silence trimming and resampling in plain numpy (and soxr).

Why this exists instead of librosa:

* These few functions are all the trainer used of librosa, and importing its
  feature module costs about 4 s of CPU (scipy.signal, numba) in every
  process that decodes audio; on a fresh environment its numba kernels first
  compile for another 30-40 s. Here the import is numpy and soxr only.
* They reproduce the librosa (0.10+) defaults the features were defined with,
  so the numbers stay those of the literature's recipes:
  tests/test_audio_features.py compares them with librosa itself.
* numpy.fft, not scipy.fft (which librosa uses): both are pocketfft and agree
  to rounding, but importing scipy.fft costs 0.3-0.5 s (scipy.special, the
  array-API layer). For the same reason the DCT is a small cached matrix.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import soxr
from numpy.lib.stride_tricks import sliding_window_view


def _frames(signal: np.ndarray, length: int, hop: int) -> np.ndarray:
    """``(T, length)`` view of frames centred on multiples of ``hop`` (zero padded at both ends).

    librosa's ``center=True`` with its 0.10+ default ``pad_mode="constant"``;
    the frame count is ``1 + len // hop`` for even lengths.
    """
    padded = np.pad(signal, length // 2)
    return sliding_window_view(padded, length)[::hop]


@functools.lru_cache(maxsize=16)
def _window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``win_length`` centred in ``n_fft`` zeros (librosa's STFT window)."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    left = (n_fft - win_length) // 2
    window = np.pad(window, (left, n_fft - win_length - left))
    window.flags.writeable = False
    return window


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (librosa's ``htk=False``): linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_step = math.log(6.4) / 27.0
    linear = hz / (200.0 / 3)
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    log_step = math.log(6.4) / 27.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(log_step * (mel - 15.0)), mel * (200.0 / 3))


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """float32 ``(n_fft // 2 + 1, n_mels)``: triangular Slaney filters from 0 Hz to Nyquist.

    Area-normalized (librosa's ``norm="slaney"``): each filter is scaled by
    2 / its bandwidth, so wide high-frequency bands do not dominate.
    """
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    bank = np.ascontiguousarray(weights.T, dtype=np.float32)
    bank.flags.writeable = False
    return bank


@functools.lru_cache(maxsize=16)
def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """float32 ``(n_in, n_out)``: the first ``n_out`` orthonormal DCT-II basis vectors."""
    k = np.arange(n_out)[None, :]
    n = np.arange(n_in)[:, None]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)
    basis[:, 0] /= math.sqrt(2.0)
    basis = basis.astype(np.float32)
    basis.flags.writeable = False
    return basis


def log_mel(
    signal: np.ndarray,
    sample_rate: int,
    n_mels: int,
    n_fft: int,
    hop_length: int,
    win_length: int,
    top_db: float,
) -> np.ndarray:
    """float32 ``(T, n_mels)`` log-mel power in dB, relative to 1.0 (not the clip's peak).

    librosa's ``power_to_db(melspectrogram(power=2), ref=1.0, amin=1e-10, top_db)``:
    values below the clip's loudest bin minus ``top_db`` are raised to it.
    """
    frames = _frames(signal, n_fft, hop_length)
    window = _window(win_length, n_fft)
    bank = mel_filterbank(sample_rate, n_fft, n_mels)
    mel = np.empty((len(frames), n_mels), np.float32)
    # In blocks of about 0.5 MB of windowed frames, as librosa's STFT does: each block's
    # temporaries stay in cache (a 6 s clip in one piece took 3x as long).
    step = max(1, 2**16 // n_fft)
    for start in range(0, len(frames), step):
        spectrum = np.fft.rfft(frames[start : start + step] * window, axis=1)
        power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
        np.matmul(power, bank, out=mel[start : start + step])
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(db, db.max() - top_db)


def mfcc(logmel: np.ndarray, n_mfcc: int) -> np.ndarray:
    """float32 ``(T, n_mfcc)``: orthonormal DCT-II of each log-mel frame, first ``n_mfcc`` terms."""
    return logmel @ _dct_matrix(logmel.shape[1], n_mfcc)


def nonsilent_range(
    signal: np.ndarray, top_db: float, frame_length: int, hop_length: int
) -> tuple[int, int]:
    """``(start, end)`` samples from the first to the last frame within ``top_db`` of the loudest.

    librosa's ``effects.trim``: frame RMS (centred frames, zero padded), in dB
    relative to the loudest frame; the range ends one hop after the last loud
    frame starts. ``(0, 0)`` when nothing is loud (only possible for NaN input).
    """
    frames = _frames(signal, frame_length, hop_length)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float32), axis=1))
    power = np.maximum(rms**2, 1e-10)
    db = 10.0 * np.log10(power) - 10.0 * np.log10(power.max())
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return 0, 0
    return int(loud[0]) * hop_length, min(len(signal), (int(loud[-1]) + 1) * hop_length)


def resample(signal: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """``signal`` at ``target_rate`` with soxr's high-quality filter (librosa's ``soxr_hq``).

    Cut or zero padded to ``ceil(len * target / source)`` samples, as
    librosa's ``resample(fix=True)`` does, so lengths match the old features.
    """
    if source_rate == target_rate:
        return signal
    size = int(np.ceil(signal.shape[-1] * (float(target_rate) / source_rate)))
    out = soxr.resample(signal, source_rate, target_rate, quality="HQ")[:size]
    return np.pad(out, (0, size - len(out))).astype(signal.dtype, copy=False)
