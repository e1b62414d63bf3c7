"""Tiny media files made on the spot for the loader and guard tests (PyAV, soundfile).

What a test needs is a file with one property (an flv with an mp3 track or none,
no duration in its header, silent or still content), not a face: the guards and
the indexers never look for one. So frames are moving noise and audio is a
modulated tone, a few kilobytes each.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf


def moving_frames(seconds: float, fps: int, seed: int = 0, size: tuple[int, int] = (48, 64)):
    """uint8 RGB ``(T, H, W, 3)``: a blurred random texture drifting sideways."""
    rng = np.random.default_rng(seed)
    height, width = size
    texture = rng.integers(0, 256, (height, width * 4, 3)).astype(np.float32)
    texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, 1, 1)) / 3
    n = max(1, round(seconds * fps))
    return np.stack([np.roll(texture, -3 * t, axis=1)[:, :width] for t in range(n)]).astype(
        np.uint8
    )


def still_frames(seconds: float, fps: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """An error card: mid grey with a dark bar, the same on every frame."""
    height, width = size
    card = np.full((height, width, 3), 128, np.uint8)
    card[height // 3 : height // 2, width // 6 : -width // 6] = 40
    return np.repeat(card[None], max(1, round(seconds * fps)), axis=0)


def tone(seconds: float, rate: int, dbfs: float = -20.0) -> np.ndarray:
    """float32 mono: a 220 Hz tone with a syllable-rate swell, peaking at ``dbfs``."""
    t = np.arange(round(seconds * rate)) / rate
    swell = 0.5 - 0.5 * np.cos(2 * np.pi * 4 * t)
    return (10 ** (dbfs / 20) * swell * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio, rate, subtype="PCM_16")
    return path


class _Unseekable(io.RawIOBase):
    """A write-only sink: the muxer cannot go back to fill in the header's duration."""

    def __init__(self, sink: io.BufferedWriter) -> None:
        self.sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        return self.sink.write(data)


def write_media(
    path: Path,
    frames: np.ndarray | None,
    fps: int,
    audio: np.ndarray | None = None,
    rate: int = 22050,
    header_duration: bool = True,
) -> Path:
    """An flv (Flash video + mp3, as CREMA-D's VideoFlash), or an mp3 when ``frames`` is
    None. ``header_duration=False`` writes it as a stream, whose header states none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "mp3" if frames is None else "flv"
    with open(path, "wb") as raw:
        target = raw if header_duration else _Unseekable(raw)
        container = av.open(target, mode="w", format=fmt)
        try:
            vstream = astream = None
            if frames is not None:
                vstream = container.add_stream("flv", rate=fps)
                vstream.height, vstream.width = frames.shape[1:3]
                vstream.pix_fmt = "yuv420p"
            if audio is not None:
                astream = container.add_stream("libmp3lame", rate=rate, layout="mono")
            packets = []
            if vstream is not None:
                for i, rgb in enumerate(frames):
                    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                    frame.pts, frame.time_base = i, Fraction(1, fps)
                    packets += vstream.encode(frame)
                packets += vstream.encode(None)
            if astream is not None:
                step = 1152
                for start in range(0, len(audio), step):
                    chunk = np.ascontiguousarray(audio[None, start : start + step])
                    aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                    aframe.sample_rate, aframe.pts = rate, start
                    aframe.time_base = Fraction(1, rate)
                    packets += astream.encode(aframe)
                packets += astream.encode(None)
            # FLV wants its two streams interleaved in time order.
            packets.sort(key=lambda p: float(p.dts * p.time_base) if p.dts is not None else 0.0)
            for packet in packets:
                container.mux(packet)
        finally:
            container.close()
    return path
