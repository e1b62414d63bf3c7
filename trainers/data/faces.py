"""Face boxes from OpenCV's bundled Haar cascade, smoothed over a clip, and square crops.

Why this shape:

* The cascade is loaded once per process (it parses a 900 kB XML file) and
  detection runs on a downscaled, equalized grayscale copy: faces in
  emotion corpora fill a good part of the frame, so a 320 px image (a
  sixteenth of a 720p frame's pixels) still finds them, and equalization
  keeps dim or over-exposed clips detectable. Crops are still cut from the
  full-resolution frame.
* Haar boxes jitter by a few pixels from frame to frame and sometimes fire on
  background texture. A running median over the detections removes single
  outliers, and linear interpolation fills the frames where the detector was
  not run (or found nothing), so the crop moves smoothly with the head.
* A Haar box spans roughly brows to mouth; enlarging it by 15 % keeps the
  forehead wrinkles and the chin, which carry expression.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

CASCADE_FILE = "haarcascade_frontalface_default.xml"
# Longest image side the detector sees; larger frames are shrunk first.
DETECT_MAX_SIDE = 320
# Growth of the detected box's side, to include brows and chin.
ENLARGE = 1.15
# Faces smaller than this share of the image's shorter side are ignored (background faces).
MIN_FACE_FRACTION = 0.12
# Changing any constant above changes the crops: bump it to invalidate cached video.
FACES_VERSION = "haar-1"  # scale step 1.15, 5 neighbours

_cascade: cv2.CascadeClassifier | None = None
_cascade_lock = threading.Lock()


@dataclass(frozen=True)
class Box:
    """A square face region: centre and side, in full-resolution pixels."""

    cx: float
    cy: float
    side: float


def cascade() -> cv2.CascadeClassifier:
    global _cascade
    with _cascade_lock:
        if _cascade is None:
            path = cv2.data.haarcascades + CASCADE_FILE
            classifier = cv2.CascadeClassifier(path)
            if classifier.empty():
                raise RuntimeError(f"cannot load the Haar face cascade from {path}")
            _cascade = classifier
        return _cascade


def detect_largest(gray: np.ndarray) -> Box | None:
    """The largest frontal face in a uint8 grayscale image, or None."""
    height, width = gray.shape[:2]
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    small = gray
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    small = cv2.equalizeHist(small)
    min_side = max(20, int(MIN_FACE_FRACTION * min(small.shape[:2])))
    found = cascade().detectMultiScale(
        small, scaleFactor=1.15, minNeighbors=5, minSize=(min_side, min_side)
    )
    if len(found) == 0:
        return None
    x, y, w, h = max((tuple(int(v) for v in box) for box in found), key=lambda b: b[2] * b[3])
    return Box(cx=(x + w / 2) / scale, cy=(y + h / 2) / scale, side=max(w, h) / scale)


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
