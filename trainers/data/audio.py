"""Loading speech from wav files or mp4 audio tracks and turning it into frame features.

Why it looks like this:

* Both sources go through the same path after decoding: channels are
  averaged (not FFmpeg's downmix, whose -3 dB centre gain would make the
  mp4 track of a recording quieter than its wav), then resampled to one
  rate, so a recording gives the same features whichever file served it.
* Log-mel uses an absolute reference (``ref=1.0``), not the clip's peak:
  loudness is an emotion cue (anger is loud, sadness soft) that per-clip
  peak normalization would erase. Scale differences are taken out later by
  the train-split feature normalization.
* MFCCs are the DCT of the same log-mel, so both are computed together and
  cached side by side; switching ``audio_features`` never re-decodes.
* The features are librosa's recipe (Slaney mel filters, power_to_db, DCT-II
  MFCCs, RMS trimming, soxr resampling) computed by :mod:`trainers.data.spectral`
  in numpy: librosa's import costs about 4 s of CPU (scipy.signal, numba) in
  every process that decodes audio, plus 30-40 s compiling numba kernels on a
  fresh environment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import av
import numpy as np
import soundfile as sf

from trainers.data import spectral
from trainers.data.config import DataConfig, DecodeError
from trainers.data.media import check_media_file
from trainers.data.video import check_complete

# Bump when feature extraction changes, so cached audio entries are rebuilt.
AUDIO_VERSION = "audio-2"
# Lowest log-mel value relative to the clip's loudest bin, in dB (librosa's default).
LOGMEL_TOP_DB = 80.0


@dataclass
class AudioFeatures:
    """Per-frame features of one clip, each float32 ``(T, F)``."""

    logmel: np.ndarray
    mfcc: np.ndarray

    def select(self, kind: str) -> np.ndarray:
        return self.mfcc if kind == "mfcc" else self.logmel


def audio_settings(cfg: DataConfig) -> dict[str, object]:
    """Everything in ``cfg`` that changes the features (the audio cache key)."""
    return {
        "sample_rate": cfg.sample_rate,
        "n_mels": cfg.n_mels,
        "n_mfcc": cfg.n_mfcc,
        "hop_ms": cfg.hop_ms,
        "win_ms": cfg.win_ms,
        "max_audio_frames": cfg.max_audio_frames,
        "trim_silence": cfg.trim_silence,
        "top_db": cfg.top_db,
        "version": AUDIO_VERSION,
    }


def _load_soundfile(path: str, sample_rate: int) -> np.ndarray:
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    return spectral.resample(data.mean(axis=1), int(rate), sample_rate)


def _load_av(path: str, sample_rate: int) -> np.ndarray:
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise DecodeError(f"cannot open: {exc}") from exc
    try:
        if not container.streams.audio:
            raise DecodeError("no audio stream")
        stream = container.streams.audio[0]
        declared = None
        if stream.duration is not None and stream.time_base is not None:
            declared = float(stream.duration * stream.time_base)
        # Planar float keeps the channels apart, so they are averaged like the wav path.
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray() for out in resampler.resample(None))
        except (av.error.FFmpegError, OSError) as exc:
            raise DecodeError(f"audio decode failed: {exc}") from exc
    finally:
        container.close()
    if not chunks:
        raise DecodeError("no decodable audio frames")
    signal = np.concatenate(chunks, axis=1).mean(axis=0).astype(np.float32)
    check_complete(len(signal) / sample_rate, declared)
    return signal


def load_audio(path: str, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at ``sample_rate`` from a wav or any container FFmpeg reads.

    Wav files go through libsndfile; when it refuses one, FFmpeg gets a try
    before the file is declared bad (its error is the one reported).
    """
    check_media_file(path)
    if path.lower().endswith((".wav", ".flac", ".ogg")):
        try:
            signal = _load_soundfile(path, sample_rate)
        except (sf.SoundFileError, RuntimeError, OSError) as exc:
            try:
                signal = _load_av(path, sample_rate)
            except DecodeError:
                raise DecodeError(f"cannot open: {exc}") from exc
    else:
        signal = _load_av(path, sample_rate)
    if signal.size == 0:
        raise DecodeError("empty audio")
    if not np.all(np.isfinite(signal)):
        raise DecodeError("audio holds NaN or infinite samples")
    return np.ascontiguousarray(signal, dtype=np.float32)


def frame_params(cfg: DataConfig) -> dict[str, int]:
    """STFT sizes in samples: hop and window from milliseconds, FFT the next power of two."""
    hop = max(1, round(cfg.sample_rate * cfg.hop_ms / 1000))
    win = max(hop, round(cfg.sample_rate * cfg.win_ms / 1000))
    return {"hop_length": hop, "win_length": win, "n_fft": 2 ** math.ceil(math.log2(win))}


def center_crop(array: np.ndarray, length: int) -> np.ndarray:
    """The middle ``length`` rows: speech sits mid-clip, silence at both ends."""
    if len(array) <= length:
        return array
    start = (len(array) - length) // 2
    return array[start : start + length]


def compute_features(signal: np.ndarray, cfg: DataConfig) -> AudioFeatures:
    """Log-mel and MFCC frames of mono ``signal`` (at ``cfg.sample_rate``), centre-cropped."""
    params = frame_params(cfg)
    if cfg.trim_silence:
        start, end = spectral.nonsilent_range(
            signal, cfg.top_db, params["win_length"], params["hop_length"]
        )
        # An all-quiet clip trims to nothing; keeping it whole beats failing.
        if end - start >= params["win_length"]:
            signal = signal[start:end]
    logmel = spectral.log_mel(signal, cfg.sample_rate, cfg.n_mels, top_db=LOGMEL_TOP_DB, **params)
    # Cropped before the DCT (MFCCs are per frame); the top_db floor was the whole clip's.
    logmel = center_crop(logmel, cfg.max_audio_frames)
    return AudioFeatures(
        logmel=np.ascontiguousarray(logmel, np.float32),
        mfcc=np.ascontiguousarray(spectral.mfcc(logmel, cfg.n_mfcc), np.float32),
    )


def extract_audio(path: str, cfg: DataConfig) -> AudioFeatures:
    """Features of the audio in ``path``; DecodeError (with the reason) when there is none."""
    return compute_features(load_audio(path, cfg.sample_rate), cfg)
