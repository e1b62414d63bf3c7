"""Face boxes smoothed over a clip, and square crops; detectors live in face_detectors.

Why this shape:

* Detectors (:mod:`trainers.data.face_detectors`) jitter by a few pixels from
  frame to frame and sometimes fire on background texture. A running median
  over the detections removes single outliers, and linear interpolation fills
  the frames where the detector was not run (or found nothing), so the crop
  moves smoothly with the head.
* Crops grow the box by 15 %: Haar's box spans roughly brows to mouth, and the
  margin keeps the forehead wrinkles and the chin, which carry expression
  (MTCNN's box already reaches the chin; the margin then keeps the jaw line).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Growth of the detected box's side, to include brows and chin.
ENLARGE = 1.15
# Changing anything here changes every crop: bump it to invalidate cached video.
FACES_VERSION = "track-1"  # median of 3, linear interpolation, 15 % margin


@dataclass(frozen=True)
class Box:
    """A square face region: centre and side, in full-resolution pixels."""

    cx: float
    cy: float
    side: float


def smooth_track(detections: list[Box | None], positions: list[int], length: int) -> list[Box]:
    """One box per frame from sparse detections at ``positions`` (frame indices).

    Needs at least one non-None detection. A median over each detection and
    its two neighbours drops single-frame outliers; frames in between, and
    those before the first or after the last hit, are interpolated or held.
    """
    hits = [(pos, box) for pos, box in zip(positions, detections, strict=True) if box is not None]
    if not hits:
        raise ValueError("smooth_track needs at least one detection")
    where = np.array([pos for pos, _ in hits], dtype=np.float64)
    values = np.array([[b.cx, b.cy, b.side] for _, b in hits], dtype=np.float64)
    if len(values) >= 3:
        padded = np.concatenate([values[:1], values, values[-1:]])
        windows = np.stack([padded[:-2], padded[1:-1], padded[2:]])
        values = np.median(windows, axis=0)
    frames = np.arange(length, dtype=np.float64)
    track = np.stack([np.interp(frames, where, values[:, k]) for k in range(3)], axis=1)
    return [Box(float(cx), float(cy), float(side)) for cx, cy, side in track]


def crop_square(image: np.ndarray, box: Box, size: int, enlarge: float = ENLARGE) -> np.ndarray:
    """Crop ``box`` (grown by ``enlarge``) and resize to ``size`` x ``size``.

    A box running off the frame is shifted back inside rather than padded
    with black, so the crop always holds picture; it is shrunk only when it
    is larger than the frame itself.
    """
    height, width = image.shape[:2]
    side = min(box.side * enlarge, height, width)
    side_px = max(1, round(side))
    x0 = round(box.cx - side_px / 2)
    y0 = round(box.cy - side_px / 2)
    x0 = min(max(x0, 0), width - side_px)
    y0 = min(max(y0, 0), height - side_px)
    patch = image[y0 : y0 + side_px, x0 : x0 + side_px]
    interpolation = cv2.INTER_AREA if side_px >= size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def center_box(height: int, width: int) -> Box:
    """The fallback when no face is found: the largest centred square."""
    return Box(cx=width / 2, cy=height / 2, side=float(min(height, width)))
