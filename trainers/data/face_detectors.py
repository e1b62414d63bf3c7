"""Face detectors behind one interface, chosen by ``data.face_detector``.

Each detector answers one question: where is the largest face in this frame?
It returns a square :class:`~trainers.data.faces.Box` in full-resolution
pixels, or None. Smoothing the boxes over a clip and cropping stay in
:mod:`trainers.data.faces`, shared by every detector.

Why this shape:

* A detector's ``name`` and ``version`` are class attributes, known without
  loading anything: the parent process builds video cache keys from them
  (:func:`trainers.data.video.video_settings`) and must not import torch to
  do it. ``version`` changes whenever the boxes a detector returns change, so
  a changed detector re-decodes video and reuses every audio entry.
* One instance per process (:func:`get_detector`), its model loaded on first
  use under a lock: preparation workers are processes, but predict and tests
  may call from threads. OpenCV's cascade and a torch module in inference
  mode are both safe to share between threads once loaded.
* Both look at a downscaled copy (longest side :data:`DETECT_MAX_SIDE`):
  faces in emotion corpora fill a good part of the frame, so a 320 px image
  (a sixteenth of a 720p frame's pixels) still finds them, and the time per
  frame no longer grows with the source resolution.
* Torch sizes its thread pool for the whole machine. Preparation runs one
  worker process per core, so each worker calls :func:`limit_threads` (1)
  before MTCNN is loaded; otherwise N workers each start N threads.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, ClassVar, Protocol

import cv2
import numpy as np

from trainers.data.faces import Box

# Longest image side the detectors see; larger frames are shrunk first.
DETECT_MAX_SIDE = 320
# Faces smaller than this share of the image's shorter side are ignored (background faces).
MIN_FACE_FRACTION = 0.12


class FaceDetector(Protocol):
    """The largest face in a frame, as a square box in the frame's own pixels."""

    name: ClassVar[str]  # the data.face_detector value
    version: ClassVar[str]  # part of the video cache key: bump when boxes change
    preload: ClassVar[tuple[str, ...]]  # modules worth importing before workers fork

    def detect(self, frame: np.ndarray) -> Box | None:
        """``frame``: uint8 grayscale (H, W) or RGB (H, W, 3)."""
        ...


def downscale(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``image`` shrunk so its longest side is at most ``max_side``, and the factor used."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def _min_side(image: np.ndarray) -> int:
    return max(20, int(MIN_FACE_FRACTION * min(image.shape[:2])))


class HaarDetector:
    """OpenCV's bundled frontal-face Haar cascade, on an equalized grayscale copy.

    Equalization keeps dim or over-exposed clips detectable. Its box spans
    roughly brows to mouth (measured in bench/faces.py); it is returned as
    found, because checkpoints trained on these crops must keep getting them.
    """

    name: ClassVar[str] = "haar"
    version: ClassVar[str] = "haar-1"  # scale step 1.15, 5 neighbours, 320 px, min 12 %
    preload: ClassVar[tuple[str, ...]] = ()
    CASCADE_FILE: ClassVar[str] = "haarcascade_frontalface_default.xml"

    def __init__(self, max_side: int = DETECT_MAX_SIDE) -> None:
        self.max_side = max_side
        self._cascade: cv2.CascadeClassifier | None = None
        self._lock = threading.Lock()

    def cascade(self) -> cv2.CascadeClassifier:
        """Loaded once (it parses a 900 kB XML file)."""
        with self._lock:
            if self._cascade is None:
                path = cv2.data.haarcascades + self.CASCADE_FILE
                classifier = cv2.CascadeClassifier(path)
                if classifier.empty():
                    raise RuntimeError(f"cannot load the Haar face cascade from {path}")
                self._cascade = classifier
            return self._cascade

    def detect(self, frame: np.ndarray) -> Box | None:
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        small, scale = downscale(gray, self.max_side)
        small = cv2.equalizeHist(small)
        side = _min_side(small)
        found = self.cascade().detectMultiScale(
            small, scaleFactor=1.15, minNeighbors=5, minSize=(side, side)
        )
        if len(found) == 0:
            return None
        x, y, w, h = max((tuple(int(v) for v in b) for b in found), key=lambda b: b[2] * b[3])
        return Box(cx=(x + w / 2) / scale, cy=(y + h / 2) / scale, side=max(w, h) / scale)


class MtcnnDetector:
    """MTCNN (Zhang et al. 2016) from facenet-pytorch, whose wheel ships its weights.

    Fed RGB; a grayscale frame is given as three equal channels (measured in
    bench/faces.py against the same frames in colour). Runs on the CPU: the
    three small networks on a 320 px frame take tens of milliseconds, less
    than moving the frame to a GPU and back would save.
    """

    name: ClassVar[str] = "mtcnn"
    version: ClassVar[str] = "mtcnn-1/facenet-pytorch-2.5.3"  # 320 px, min 12 %, default thresholds
    # torch and torchvision take seconds to import: preparation's forkserver imports them
    # once and every worker forks with them loaded (no thread pool exists before a fork).
    preload: ClassVar[tuple[str, ...]] = ("facenet_pytorch",)

    def __init__(self, max_side: int = DETECT_MAX_SIDE) -> None:
        self.max_side = max_side
        self._model: Any = None
        self._lock = threading.Lock()

    def model(self) -> Any:
        """facenet-pytorch's MTCNN, built once; imports torch on first use only."""
        with self._lock:
            if self._model is None:
                import torch
                from facenet_pytorch import MTCNN

                if _torch_threads > 0:
                    torch.set_num_threads(_torch_threads)
                self._model = MTCNN(device="cpu").eval()
            return self._model

    def detect(self, frame: np.ndarray) -> Box | None:
        return self.detect_many([frame])[0]

    def detect_many(self, frames: list[np.ndarray]) -> list[Box | None]:
        """The largest face of each frame (all of one size), in one batched call.

        A clip's detections go through the three networks together: each stage is
        then one forward over every frame's candidates instead of one per frame,
        which is where MTCNN spends its time on small images (Python and tensor
        set-up per call, not arithmetic). Each frame's candidates are still
        suppressed on their own, so the boxes are the ones of frame-by-frame calls
        (to a thousandth of a pixel: batched convolutions round their last bits
        differently; 106 of 106 detections on realistic 720p takes agreed).
        """
        import torch
        from facenet_pytorch.models.utils.detect_face import detect_face

        if not frames:
            return []
        rgb = [np.repeat(f[:, :, None], 3, axis=2) if f.ndim == 2 else f for f in frames]
        shrunk = [downscale(image, self.max_side) for image in rgb]
        scale = shrunk[0][1]
        batch = np.stack([np.ascontiguousarray(small) for small, _ in shrunk])
        side = _min_side(batch[0])
        model = self.model()
        # The face-size floor sets the pyramid's largest scale: no time spent on faces
        # too small to keep. Called below MTCNN.detect, which reads it from the shared
        # instance, so that threads with different frame sizes cannot race.
        with torch.no_grad():
            found, _landmarks = detect_face(
                batch, side, model.pnet, model.rnet, model.onet,
                model.thresholds, model.factor, model.device,
            )  # fmt: skip
        return [_largest(per_frame, side, scale) for per_frame in found]


def _largest(found: Any, side: int, scale: float) -> Box | None:
    """The largest of one frame's MTCNN boxes (x0, y0, x1, y1, score), in frame pixels."""
    boxes = np.asarray(found, dtype=np.float64).reshape(-1, 5)
    if len(boxes) == 0:
        return None
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    largest = int(np.argmax(widths * heights))
    x0, y0, x1, y1 = (float(v) for v in boxes[largest, :4])
    w, h = x1 - x0, y1 - y0
    if max(w, h) < side:
        return None
    return Box(cx=(x0 + x1) / 2 / scale, cy=(y0 + y1) / 2 / scale, side=max(w, h) / scale)


DETECTORS: dict[str, type[HaarDetector] | type[MtcnnDetector]] = {
    HaarDetector.name: HaarDetector,
    MtcnnDetector.name: MtcnnDetector,
}

_instances: dict[str, FaceDetector] = {}
_instances_lock = threading.Lock()
_torch_threads = 0  # 0: leave torch's own thread count


def detector_class(name: str) -> type[HaarDetector] | type[MtcnnDetector]:
    """The class registered as ``name`` (its name and version, nothing loaded)."""
    try:
        return DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown face detector {name!r}; known: {', '.join(DETECTORS)}") from None


def get_detector(name: str) -> FaceDetector:
    """This process's detector ``name``; its model loads on the first ``detect``."""
    cls = detector_class(name)
    with _instances_lock:
        if name not in _instances:
            _instances[name] = cls()
        return _instances[name]


def describe(name: str) -> dict[str, str]:
    """What a checkpoint records about the detector its crops came from."""
    cls = detector_class(name)
    return {"name": cls.name, "version": cls.version}


def limit_threads(threads: int) -> None:
    """Cap torch's intra-op threads in this process, now if torch is loaded, else when a
    detector that needs torch loads it (so a Haar-only worker never imports torch)."""
    global _torch_threads
    _torch_threads = threads
    torch = sys.modules.get("torch")
    if torch is not None and threads > 0:
        torch.set_num_threads(threads)
