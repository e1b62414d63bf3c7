"""Decoding video with PyAV into fixed-rate face-crop sequences.

Frames are sampled by presentation time, not by index: target instants are
``k / fps`` seconds after the first frame, and each takes the frame on screen
at that instant (sample and hold). A 30 fps and a 15 fps encoding of the same
clip therefore give the same number of frames with the same time spacing,
which is what a temporal model needs to compare clips.

When a clip holds more than ``max_frames`` samples, the middle ones are kept:
corpus clips start and end with a neutral face around the utterance, so the
middle carries the expression. Where the container states a duration the
window is chosen before decoding and decoding stops after it, so long clips
never hold more than ``max_frames`` frames in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

from trainers.data import faces
from trainers.data.config import DataConfig, DecodeError
from trainers.data.face_detectors import FaceDetector, detector_class, get_detector
from trainers.data.media import check_media_file

# Bump when sampling or cropping changes, so cached video entries are rebuilt. The
# detector's own version is a separate key (video_settings): changing detector
# re-decodes video and nothing else.
VIDEO_VERSION = f"video-2/{faces.FACES_VERSION}"
# Slack when comparing timestamps, well below any real frame interval.
_EPS = 1e-6


def check_complete(decoded: float, declared: float | None) -> None:
    """Raise when a stream ends well before the duration its container declares.

    A file cut short but whose index sits at the front (``+faststart``, as
    most encoders write for the web) opens and decodes without any error, just
    fewer frames; only the declared duration gives it away. The slack (0.5 s
    or 10 %) absorbs encoder delay and rounding in honest files.
    """
    if declared and declared - decoded > max(0.5, 0.1 * declared):
        raise DecodeError(f"truncated: decoded {decoded:.2f} s of {declared:.2f} s")


@dataclass
class FaceClip:
    """Face crops of one clip, uint8 ``(T, C, S, S)``, and whether a face was ever found."""

    frames: np.ndarray
    face_found: bool
    detections: int  # sampled frames on which the detector found a face
    times: np.ndarray  # float32 (T,), seconds from the first frame


def video_settings(cfg: DataConfig) -> dict[str, object]:
    """Everything in ``cfg`` that changes the crops (the video cache key)."""
    return {
        "fps": cfg.fps,
        "max_frames": cfg.max_frames,
        "face_size": cfg.face_size,
        "grayscale": cfg.grayscale,
        "detect_every": cfg.detect_every,
        "face_detector": cfg.face_detector,
        "detector_version": detector_class(cfg.face_detector).version,
        "version": VIDEO_VERSION,
    }


def _open(path: str) -> av.container.InputContainer:
    check_media_file(path)
    try:
        return av.open(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise DecodeError(f"cannot open: {exc}") from exc


def decode_frames(
    path: str,
    fps: float,
    max_frames: int,
    pixel_format: Literal["gray", "rgb24"] = "gray",
    threads: int = 0,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Frames sampled at ``fps`` (at most ``max_frames``, the middle ones) and their times.

    ``threads`` is the decoder's thread count (0: FFmpeg picks); preparation
    workers pass 1 because they already use every core between them.
    Raises DecodeError for unreadable files, files without a video stream and
    streams that break off mid-way.
    """
    container = _open(path)
    try:
        if not container.streams.video:
            raise DecodeError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        step = 1.0 / fps
        rate = float(stream.average_rate) if stream.average_rate else 0.0

        # Choose the middle window up front when the duration is known.
        first_k, last_k = 0, math.inf
        declared = None  # this stream's own duration: the only one a truncation check may trust
        if stream.duration is not None and stream.time_base is not None:
            declared = float(stream.duration * stream.time_base)
        duration = declared
        if duration is None and container.duration is not None:
            duration = container.duration / av.time_base  # may include a longer audio track
        if duration:
            expected = math.ceil(duration * fps - _EPS)
            if expected > max_frames:
                first_k = (expected - max_frames) // 2
                last_k = first_k + max_frames

        picked: list[tuple[float, av.VideoFrame]] = []
        held: av.VideoFrame | None = None
        held_time = 0.0
        next_k = first_k
        t0: float | None = None
        index = -1
        try:
            for frame in container.decode(stream):
                index += 1
                t = frame.time
                if t is None:
                    t = index / rate if rate else index * step
                if t0 is None:
                    t0 = t
                rel = t - t0
                while held is not None and next_k < last_k and next_k * step < rel - _EPS:
                    picked.append((next_k * step, held))
                    next_k += 1
                if next_k >= last_k:
                    break
                held, held_time = frame, rel
        except (av.error.FFmpegError, OSError) as exc:
            raise DecodeError(f"decode failed after {index + 1} frames: {exc}") from exc
        if held is None:
            raise DecodeError("no decodable video frames")
        if next_k < last_k:
            # The last frame stays on screen for one frame interval.
            if held.duration and held.time_base is not None:
                shown = float(held.duration * held.time_base)
            else:
                shown = 1.0 / rate if rate else step
            end = held_time + shown
            check_complete(end, declared)
            while next_k < last_k and next_k * step < end - _EPS:
                picked.append((next_k * step, held))
                next_k += 1
    finally:
        container.close()

    if len(picked) > max_frames:  # the duration was unknown or wrong
        start = (len(picked) - max_frames) // 2
        picked = picked[start : start + max_frames]
    arrays: list[np.ndarray] = []
    converted: dict[int, np.ndarray] = {}  # a held frame repeats when fps > source rate
    for _, frame in picked:
        key = id(frame)
        if key not in converted:
            converted[key] = frame.to_ndarray(format=pixel_format)
        arrays.append(converted[key])
    times = np.array([t for t, _ in picked], dtype=np.float32)
    return arrays, times


def track_faces(
    images: list[np.ndarray], detect_every: int, detector: FaceDetector
) -> tuple[list[faces.Box], int]:
    """One face box per image, and on how many of the detector's frames it found one.

    The detector runs on every ``detect_every``-th image; :func:`faces.smooth_track`
    fills the rest. With no face found at all, every box is the centre square.
    """
    positions = list(range(0, len(images), detect_every))
    many = getattr(detector, "detect_many", None)  # batched where the detector can
    if many is not None:
        detections = many([images[pos] for pos in positions])
    else:
        detections = [detector.detect(images[pos]) for pos in positions]
    found = sum(box is not None for box in detections)
    if found:
        return faces.smooth_track(detections, positions, len(images)), found
    height, width = images[0].shape[:2]
    return [faces.center_box(height, width)] * len(images), 0


def extract_faces(path: str, cfg: DataConfig, threads: int = 0) -> FaceClip:
    """Decode ``path`` and crop the face, or the centre when no face is ever found."""
    pixel_format: Literal["gray", "rgb24"] = "gray" if cfg.grayscale else "rgb24"
    images, times = decode_frames(path, cfg.fps, cfg.max_frames, pixel_format, threads)
    track, found = track_faces(images, cfg.detect_every, get_detector(cfg.face_detector))
    crops = np.stack(
        [faces.crop_square(img, box, cfg.face_size) for img, box in zip(images, track, strict=True)]
    )
    # Grayscale (T, S, S) -> (T, 1, S, S); RGB (T, S, S, 3) -> (T, 3, S, S).
    crops = crops[:, None] if crops.ndim == 3 else crops.transpose(0, 3, 1, 2)
    return FaceClip(
        frames=np.ascontiguousarray(crops, dtype=np.uint8),
        face_found=found > 0,
        detections=found,
        times=times,
    )
