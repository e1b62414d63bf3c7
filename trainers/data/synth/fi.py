"""The FI (Flickr & Instagram) image-emotion layout, filled with drawn pictures.

Why it looks like this:

* FI ships one folder per emotion (``amusement/``, ``anger/``, ...) of JPEG
  photographs, and the loader reads nothing but that, so this layout writes
  exactly that: ``<class>/<class>_NNNNN.jpg``, of varying sizes and aspect
  ratios, as real photographs have.
* "Learnable" has to survive the note's heavy augmentation (hue jitter of
  +-36 degrees, AutoAugment's inversions and posterizing, erasing, MixUp), so
  a class is not one colour: each class is a *composition* (palette, kind of
  shape, texture, layout) -- confetti and a smile for amusement, jagged
  strokes on dark red for anger, a big sun over a skyline for awe, soft
  blurred blobs on pastel for contentment, blotches on olive for disgust, a
  colour burst for excitement, thin scratches and a silhouette on black for
  fear, rain streaks on grey-blue for sadness. Every image varies it (hue,
  brightness, positions, counts, sizes, noise, a few distractor shapes).
* Class sizes are deliberately unequal, in FI's order of magnitude: the note
  reports a 4.08x ratio between the largest and the smallest class, so
  ``contentment`` has 4.08 times as many images as ``fear`` (up to rounding)
  and a weighted sampler or class weights visibly matter.
* Size: this layout has no actors; ``write_corpus(..., actors=N)`` (the CLI's
  ``--actors N``) sets the size of the smallest class, the others follow
  :data:`SHARES`. ``statements`` and ``repetitions`` have no meaning here and
  are ignored.
* Same seed, same bytes: each image is drawn from its own seed with OpenCV
  primitives (no threads, no time) and encoded by OpenCV's JPEG writer at a
  fixed quality, then renamed into place.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from trainers.data.synth.manifest import Recording

NAME = "fi"
LAYOUT_TAG = zlib.crc32(NAME.encode())
SUPPORTS_REALISTIC = False  # still images: no video profile to imitate yet

# FI's eight classes; their alphabetical order is the label order everywhere.
EMOTIONS: tuple[str, ...] = (
    "amusement",
    "anger",
    "awe",
    "contentment",
    "disgust",
    "excitement",
    "fear",
    "sadness",
)
# Class size relative to the smallest class (fear); max / min = 4.08 as in the note.
SHARES: dict[str, float] = {
    "amusement": 3.75,
    "anger": 1.2,
    "awe": 2.4,
    "contentment": 4.08,
    "disgust": 1.3,
    "excitement": 2.25,
    "fear": 1.0,
    "sadness": 2.2,
}
MIN_SIDE, MAX_SIDE = 88, 136  # image sides in pixels, drawn per image
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Task:
    """One image to draw and write (JSON-serialisable for the worker processes)."""

    seed: int
    emotion: int  # index into EMOTIONS
    number: int  # 1-based within the class

    @property
    def name(self) -> str:
        return EMOTIONS[self.emotion]

    @property
    def key(self) -> str:
        return f"{self.name}/{self.name}_{self.number:05d}"


def class_sizes(smallest: int) -> dict[str, int]:
    """Images per class when the smallest class (fear) has ``smallest`` images."""
    return {name: max(1, round(smallest * SHARES[name])) for name in EMOTIONS}


def plan(*, actors: int, seed: int, statements: int = 1, repetitions: int = 1) -> list[Task]:
    """Every image of the corpus, class by class; ``actors`` = size of the smallest class."""
    if actors < 1:
        raise ValueError(f"fi: actors (the size of the smallest class) must be >= 1, not {actors}")
    sizes = class_sizes(actors)
    return [Task(seed, c, n) for c, name in enumerate(EMOTIONS) for n in range(1, sizes[name] + 1)]


def write(task: Task, out: Path) -> Recording:
    """Draw ``task``'s image and write it as ``<class>/<class>_NNNNN.jpg`` under ``out``."""
    rng = np.random.default_rng([task.seed, LAYOUT_TAG, task.emotion, task.number])
    image = draw(task.name, rng)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"fi: OpenCV could not encode {task.key}.jpg")
    rel = f"{task.key}.jpg"
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return Recording(
        key=task.key,
        files=(rel,),
        emotion=task.name,
        label=task.emotion,  # FI has no numeric codes: the alphabetical class index
        intensity=1,
        statement=1,
        repetition=1,
        actor=0,
        female=False,
        n_frames=1,
        n_samples=0,
        duration=0.0,
    )


# ------------------------------------------------------------------------------ drawing


def _bgr(rng: np.random.Generator, hue: float, sat: float, val: float, jitter: float = 8.0):
    """An OpenCV BGR colour from HSV (hue in degrees, sat/val in 0..255), hue jittered."""
    h = ((hue + rng.uniform(-jitter, jitter)) % 360.0) / 2.0  # OpenCV hue is 0..179
    s = float(np.clip(sat + rng.uniform(-20, 20), 0, 255))
    v = float(np.clip(val + rng.uniform(-20, 20), 0, 255))
    px = np.array([[[h, s, v]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _gradient(h: int, w: int, top: tuple[int, ...], bottom: tuple[int, ...]) -> np.ndarray:
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    a = np.array(top, dtype=np.float32)[None, None]
    b = np.array(bottom, dtype=np.float32)[None, None]
    return np.broadcast_to(a * (1 - t) + b * t, (h, w, 3)).copy()


def _pt(rng: np.random.Generator, w: int, h: int, margin: float = 0.0) -> tuple[int, int]:
    return (
        int(rng.uniform(margin * w, (1 - margin) * w)),
        int(rng.uniform(margin * h, (1 - margin) * h)),
    )


def _amusement(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    img[:] = _gradient(h, w, _bgr(rng, 50, 140, 240), _bgr(rng, 35, 170, 230))
    m = min(h, w)
    for _ in range(int(rng.integers(10, 22))):  # confetti in every bright hue
        color = _bgr(rng, rng.uniform(0, 360), 220, 240, 0)
        cv2.circle(img, _pt(rng, w, h), int(rng.uniform(0.04, 0.1) * m), color, -1, cv2.LINE_AA)
    center = _pt(rng, w, h, 0.3)
    axes = (int(rng.uniform(0.18, 0.3) * m), int(rng.uniform(0.1, 0.2) * m))
    cv2.ellipse(img, center, axes, 0, 15, 165, (40, 30, 30), max(2, m // 25), cv2.LINE_AA)


def _anger(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    img[:] = _gradient(h, w, _bgr(rng, 0, 220, 90), _bgr(rng, 355, 230, 140))
    m = min(h, w)
    for _ in range(int(rng.integers(3, 6))):  # jagged strokes
        y0 = rng.uniform(0.1, 0.9) * h
        xs = np.linspace(0, w, int(rng.integers(6, 12)))
        ys = y0 + rng.choice([-1.0, 1.0], size=len(xs)) * rng.uniform(0.05, 0.15, len(xs)) * h
        pts = np.stack([xs, ys], axis=1).astype(np.int32)
        color = _bgr(rng, rng.uniform(15, 50), 230, 250, 0)
        cv2.polylines(img, [pts], False, color, max(2, m // 30), cv2.LINE_AA)
    for _ in range(int(rng.integers(1, 4))):  # sharp shards
        tri = np.array([_pt(rng, w, h) for _ in range(3)], dtype=np.int32)
        cv2.fillPoly(img, [tri], _bgr(rng, 10, 200, 60), cv2.LINE_AA)


def _awe(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    img[:] = _gradient(h, w, _bgr(rng, 225, 200, 80), _bgr(rng, 195, 90, 230))
    m = min(h, w)
    for _ in range(int(rng.integers(5, 15))):  # stars
        x, y = int(rng.uniform(0, w)), int(rng.uniform(0, 0.4 * h))
        cv2.circle(img, (x, y), 1, (255, 255, 255), -1, cv2.LINE_AA)
    sun = (int(rng.uniform(0.25, 0.75) * w), int(rng.uniform(0.2, 0.4) * h))
    cv2.circle(img, sun, int(rng.uniform(0.18, 0.28) * m), _bgr(rng, 55, 60, 250), -1, cv2.LINE_AA)
    xs = np.linspace(0, w, int(rng.integers(4, 8)))
    ys = rng.uniform(0.55, 0.8, len(xs)) * h
    skyline = [(0, h), *zip(xs.astype(int), ys.astype(int), strict=True), (w, h)]
    cv2.fillPoly(img, [np.array(skyline, dtype=np.int32)], _bgr(rng, 230, 120, 40), cv2.LINE_AA)


def _contentment(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    img[:] = _gradient(h, w, _bgr(rng, 100, 70, 225), _bgr(rng, 80, 90, 210))
    m = min(h, w)
    layer = img.copy()
    for _ in range(int(rng.integers(2, 5))):  # soft pastel blobs
        axes = (int(rng.uniform(0.15, 0.3) * m), int(rng.uniform(0.1, 0.2) * m))
        color = _bgr(rng, rng.uniform(60, 140), 90, 245, 0)
        cv2.ellipse(layer, _pt(rng, w, h), axes, rng.uniform(0, 180), 0, 360, color, -1)
    img[:] = cv2.GaussianBlur(layer, (0, 0), m / 18)
    x = np.arange(w)
    for k in range(int(rng.integers(2, 4))):  # gentle horizontal waves
        y = 0.3 * h + k * 0.2 * h + 0.04 * h * np.sin(x / w * 2 * np.pi + rng.uniform(0, 6))
        pts = np.stack([x, y], axis=1).astype(np.int32)
        cv2.polylines(img, [pts], False, _bgr(rng, 90, 60, 250), 2, cv2.LINE_AA)


def _disgust(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    img[:] = _gradient(h, w, _bgr(rng, 45, 170, 120), _bgr(rng, 30, 180, 90))
    coarse = rng.random((max(2, h // 12), max(2, w // 12))).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    blobs = field > rng.uniform(0.55, 0.7)
    img[blobs] = _bgr(rng, 75, 200, 130)  # sickly green blotches
    speckle = rng.random((h, w)) < 0.02
    img[speckle] = _bgr(rng, 25, 150, 50)


def _excitement(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    img[:] = _gradient(h, w, _bgr(rng, 300, 210, 220), _bgr(rng, 280, 220, 200))
    m = min(h, w)
    cx, cy = _pt(rng, w, h, 0.25)
    rays = int(rng.integers(16, 30))
    for k in range(rays):  # a burst of saturated rays
        angle = 2 * np.pi * k / rays + rng.uniform(-0.1, 0.1)
        length = rng.uniform(0.4, 1.0) * max(h, w)
        end = (int(cx + length * np.cos(angle)), int(cy + length * np.sin(angle)))
        color = _bgr(rng, rng.uniform(0, 360), 255, 255, 0)
        cv2.line(img, (cx, cy), end, color, max(2, m // 40), cv2.LINE_AA)
    cv2.circle(img, (cx, cy), int(0.08 * m), (255, 255, 255), -1, cv2.LINE_AA)


def _fear(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    img[:] = _gradient(h, w, _bgr(rng, 220, 60, 40), _bgr(rng, 200, 40, 15))
    m = min(h, w)
    body = (int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.5, 0.7) * h))
    axes = (int(rng.uniform(0.1, 0.18) * m), int(rng.uniform(0.3, 0.45) * m))
    cv2.ellipse(img, body, axes, 0, 0, 360, _bgr(rng, 220, 30, 75), -1, cv2.LINE_AA)
    eye_y = body[1] - axes[1] // 2
    for dx in (-1, 1):  # two small bright eyes in the silhouette
        eye = (body[0] + dx * axes[0] // 2, eye_y)
        cv2.circle(img, eye, max(1, m // 40), _bgr(rng, 90, 150, 255), -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(5, 12))):  # thin bright scratches
        x0 = rng.uniform(0, w)
        p0 = (int(x0), int(rng.uniform(0, 0.3 * h)))
        p1 = (int(x0 + rng.uniform(-0.2, 0.2) * w), int(rng.uniform(0.6, 1.0) * h))
        cv2.line(img, p0, p1, _bgr(rng, 120, 30, 230), 1, cv2.LINE_AA)


def _sadness(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    img[:] = _gradient(h, w, _bgr(rng, 215, 50, 150), _bgr(rng, 210, 40, 110))
    m = min(h, w)
    slant = rng.uniform(0.15, 0.35)
    for _ in range(int(rng.integers(25, 50))):  # rain streaks, falling one way
        x, y = _pt(rng, w, h)
        length = rng.uniform(0.08, 0.2) * h
        end = (int(x + slant * length), int(y + length))
        cv2.line(img, (x, y), end, _bgr(rng, 210, 30, 190), 1, cv2.LINE_AA)
    center = _pt(rng, w, h, 0.3)
    axes = (int(rng.uniform(0.15, 0.25) * m), int(rng.uniform(0.08, 0.15) * m))
    cv2.ellipse(img, center, axes, 0, 200, 340, (60, 50, 50), max(2, m // 30), cv2.LINE_AA)
    img[:] = cv2.GaussianBlur(img, (0, 0), 0.8)


_DRAW = {
    "amusement": _amusement,
    "anger": _anger,
    "awe": _awe,
    "contentment": _contentment,
    "disgust": _disgust,
    "excitement": _excitement,
    "fear": _fear,
    "sadness": _sadness,
}


def draw(emotion: str, rng: np.random.Generator) -> np.ndarray:
    """One BGR uint8 picture of ``emotion``, of a size drawn from ``rng``."""
    h, w = (int(rng.integers(MIN_SIDE, MAX_SIDE + 1)) for _ in range(2))
    canvas = np.zeros((h, w, 3), dtype=np.float32)
    _DRAW[emotion](canvas, rng)
    for _ in range(int(rng.integers(0, 3))):  # distractors that belong to no class
        p0, p1 = _pt(rng, w, h), _pt(rng, w, h)
        color = _bgr(rng, rng.uniform(0, 360), rng.uniform(0, 255), rng.uniform(40, 255), 0)
        cv2.rectangle(canvas, p0, p1, color, int(rng.integers(1, 3)))
    canvas *= rng.uniform(0.85, 1.15)  # exposure
    canvas += rng.normal(0.0, rng.uniform(2.0, 8.0), canvas.shape).astype(np.float32)
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)
