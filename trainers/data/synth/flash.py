"""Writing CREMA-D's release formats: Flash video (.flv) with mp3 audio, and .mp3 files.

Why it looks like this:

* CREMA-D ships its video as ``VideoFlash/<name>.flv`` and the audio the
  raters heard as ``AudioMP3/<name>.mp3``; a loader tuned on the generator's
  H.264/AAC mp4 has never met either. FLV1 (Sorenson Spark, FFmpeg's ``flv``
  encoder) is the codec of Flash-era ``.flv`` files and the one FFmpeg writes
  into that container; MP3 (``libmp3lame``) is the audio codec Flash video
  carried. The FLV container only knows 11.025, 22.05 and 44.1 kHz for MP3,
  so the 16 kHz signal is resampled to 44.1 kHz with the loaders' own soxr
  resampler (:func:`trainers.data.spectral.resample`).
* Deterministic like :mod:`trainers.data.synth.encode`: single-threaded
  encoders, timestamps set from frame and sample indices, ``+bitexact`` so no
  library version string lands in the file, and the temporary-name-then-rename
  write. LAME itself is deterministic, so the same seed gives the same bytes
  (tests/test_cremad.py checks it).
* Kept apart from ``encode.py``: these are CREMA-D's formats only, and the
  mp4/wav writer there serves every layout.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from trainers.data.spectral import resample
from trainers.data.synth.encode import atomic

# The rate both files carry: the highest of the three FLV allows for MP3.
MP3_SAMPLE_RATE = 44100
_MP3_FRAME = 1152  # samples per MPEG-1 layer III frame
_BITEXACT = {"fflags": "+bitexact"}


def _mp3_samples(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono int16 ``audio`` as float32 at :data:`MP3_SAMPLE_RATE`, clipped to -1..1."""
    if audio.dtype != np.int16 or audio.ndim != 1:
        raise ValueError("audio must be a 1-D int16 array")
    signal = audio.astype(np.float32) / 32768.0
    return np.clip(resample(signal, sample_rate, MP3_SAMPLE_RATE), -1.0, 1.0)


def _add_mp3(container: av.container.OutputContainer, bit_rate: int) -> av.audio.AudioStream:
    stream = container.add_stream("libmp3lame", rate=MP3_SAMPLE_RATE)
    stream.layout = "mono"
    stream.bit_rate = bit_rate
    stream.time_base = Fraction(1, MP3_SAMPLE_RATE)
    stream.codec_context.flags |= av.codec.context.Flags.bitexact
    return stream


def _mux_mp3(
    container: av.container.OutputContainer, stream: av.audio.AudioStream, signal: np.ndarray
) -> None:
    # Whole MP3 frames in, so the packet layout does not depend on the caller's chunks.
    for start in range(0, len(signal), _MP3_FRAME):
        chunk = signal[start : start + _MP3_FRAME]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = MP3_SAMPLE_RATE
        frame.pts = start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_mp3(path: Path, audio: np.ndarray, sample_rate: int, *, bit_rate: int = 64000) -> None:
    """Write mono int16 ``audio`` (at ``sample_rate``) as an MP3 file at 44.1 kHz."""
    signal = _mp3_samples(audio, sample_rate)
    with atomic(path) as tmp:
        container = av.open(str(tmp), mode="w", format="mp3", options=_BITEXACT)
        try:
            _mux_mp3(container, _add_mp3(container, bit_rate), signal)
        finally:
            container.close()


def write_flv(
    path: Path,
    frames: np.ndarray,
    fps: int,
    audio: np.ndarray | None,
    sample_rate: int,
    *,
    video_bit_rate: int = 600_000,
    audio_bit_rate: int = 64000,
) -> None:
    """Write RGB ``frames`` (T, H, W, 3) uint8 as FLV1 video, plus MP3 ``audio`` if given."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError("frames must be a (T, H, W, 3) uint8 array")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"frame size must be even, got {width}x{height}")
    signal = _mp3_samples(audio, sample_rate) if audio is not None else None
    with atomic(path) as tmp:
        container = av.open(str(tmp), mode="w", format="flv", options=_BITEXACT)
        try:
            vstream = container.add_stream("flv", rate=fps)
            vstream.width = width
            vstream.height = height
            vstream.pix_fmt = "yuv420p"
            vstream.bit_rate = video_bit_rate
            vstream.time_base = Fraction(1, fps)
            vstream.codec_context.thread_count = 1
            vstream.codec_context.flags |= av.codec.context.Flags.bitexact
            astream = _add_mp3(container, audio_bit_rate) if signal is not None else None
            for i, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                frame.pts = i  # in 1/fps; see encode.py on leaving frame.time_base unset
                container.mux(vstream.encode(frame))
            container.mux(vstream.encode(None))
            if astream is not None and signal is not None:
                _mux_mp3(container, astream, signal)
        finally:
            container.close()
