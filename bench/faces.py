"""Face detectors against known face boxes: recall at IoU 0.5, mean IoU and CPU time
per frame, for drawn faces and a real photograph, at 192x144 and 1280x720.

Frames (seeded, the same frames for every detector):

* drawn: the generator's own faces (``trainers.data.synth.faces``: ``random_look``,
  ``pose``, ``background``, ``draw_face``), one new actor per frame, at a random
  position, size, roll (+-15 degrees), emotion and intensity, light side,
  brightness (x0.55-1.25), blur and sensor noise.
* photo: the face of ``skimage.data.astronaut()`` (a real portrait, 512x512), cut
  with her hair and shoulders under a soft elliptical mask, scaled, rolled and
  pasted at a random place on a random background (scikit-image's coffee, rocket,
  brick, grass, gravel and hubble pictures, or a gradient), with the same
  brightness, blur and noise changes.
* empty: the same backgrounds without a face, for false alarms.

Face sizes: the face's height is 18-60 % of the frame's height (RAVDESS at 720p:
about 40 %; a detector's floor is 12 % of the shorter side).

Ground truth, one convention for both: the VISIBLE FACE, hairline (or fringe) to
chin and cheek to cheek, as a square centred on it whose side is its height
(the pipeline crops squares, so detector boxes are squares too). For a drawn
face that is its ellipse from the lower edge of the hair cap (0.30-0.34 of the
ellipse height below its top, from the look's hair volume) to the chin; for the
astronaut it is the hand-annotated rectangle ``ASTRONAUT_FACE`` (columns 181-269,
rows 76-182 of the 512x512 image: the fringe's lower edge to the chin, cheek to
cheek at eye level; checked by drawing it on a 4x enlargement and viewing it).
Detectors do not share it: Haar's box spans about brows to mouth, MTCNN's about
forehead to chin; the IoU columns measure each against the face, and the
"offset" columns say how its box sits on the face (centre shift down and side,
in face heights; medians over hits).

Timing: CPU time (``time.process_time``) of one thread (``torch.set_num_threads(1)``,
``cv2.setNumThreads(1)``, PyAV's decoder at one thread), per frame including the
shrink to the working size (320 px), and again on frames already at that size.
CPU time rather than wall time because this runs on shared machines, where wall time
stretches with the other processes' load and CPU time much less; the ratios between
detectors, measured in the same run, are the figures to compare.

    uv run python bench/faces.py [--frames 80] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainers.data.face_detectors import (  # noqa: E402
    DETECT_MAX_SIDE,
    FaceDetector,
    HaarDetector,
    MtcnnDetector,
    downscale,
)
from trainers.data.faces import Box, smooth_track  # noqa: E402
from trainers.data.synth import faces as drawn  # noqa: E402

# The astronaut's visible face in skimage.data.astronaut(): x0, y0, x1, y1 (see above).
ASTRONAUT_FACE = (181, 76, 269, 182)
SIZES = {"192x144": (144, 192), "1280x720": (720, 1280)}
FACE_FRACTION = (0.18, 0.60)  # face height / frame height
ROLL = 15.0  # degrees, either way
TIMED_AT_WORKING_SIZE = 20  # frames timed again, already shrunk to the working size


@dataclass
class Frame:
    rgb: np.ndarray  # uint8 (H, W, 3)
    face: Box | None  # ground truth (None: no face)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two square boxes."""
    ix = min(a.cx + a.side / 2, b.cx + b.side / 2) - max(a.cx - a.side / 2, b.cx - b.side / 2)
    iy = min(a.cy + a.side / 2, b.cy + b.side / 2) - max(a.cy - a.side / 2, b.cy - b.side / 2)
    inter = max(0.0, ix) * max(0.0, iy)
    return inter / (a.side**2 + b.side**2 - inter)


# ----------------------------------------------------------------------- frames


def _finish(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur, brightness and sensor noise on a float BGR canvas in 0..1 -> uint8 RGB."""
    canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.4, 1.2))
    canvas = canvas * rng.uniform(0.55, 1.25)
    canvas = canvas + rng.standard_normal(canvas.shape, dtype=np.float32) * rng.uniform(0.005, 0.03)
    out = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


# A head's displacement from its place in a still: (right, down) in face heights, roll in
# degrees, size factor. Frames of one clip share a seed and differ only by this.
Motion = tuple[float, float, float, float]
STILL: Motion = (0.0, 0.0, 0.0, 1.0)


def drawn_frame(rng: np.random.Generator, height: int, width: int, motion: Motion = STILL) -> Frame:
    look = drawn.random_look(rng, female=bool(rng.random() < 0.5))
    emotion = str(rng.choice(list(drawn.EXPRESSIONS)))
    expr = drawn.pose(look, emotion, float(rng.uniform(0.6, 1.2)))
    expr = replace(expr, mouth_open=expr.mouth_open + float(rng.uniform(0.0, 0.25)))
    # Visible face: from the hair cap's lower edge (-0.47 + 0.13 + 0.04 * volume of the
    # ellipse height, from its centre) to the chin (+0.5), cheek to cheek.
    top = -0.34 + 0.04 * look.hair_volume
    visible = (0.5 - top) * 1.0
    face_px = rng.uniform(*FACE_FRACTION) * height
    face_h = face_px / visible
    roll = float(rng.uniform(-ROLL, ROLL))
    margin_x = 0.5 * face_h * look.aspect + 2
    cx = float(rng.uniform(margin_x, width - margin_x))
    cy = float(rng.uniform(0.5 * face_h + 2, height - 0.5 * face_h - 2))
    cx, cy = cx + motion[0] * face_px, cy + motion[1] * face_px
    roll, face_h, face_px = roll + motion[2], face_h * motion[3], face_px * motion[3]
    canvas = drawn.background(look, height, width)
    drawn.draw_face(canvas, look, (cx, cy), face_h, expr, roll=roll, light=rng.uniform(-1, 1))
    # The visible face's centre, rotated with the head like every drawn feature.
    mid = (top + 0.5) / 2 * face_h
    r = math.radians(roll)
    gt = Box(cx=cx - mid * math.sin(r), cy=cy + mid * math.cos(r), side=face_px)
    return Frame(_finish(canvas, rng), gt)


def backgrounds() -> list[np.ndarray]:
    """Float BGR pictures without a face, from scikit-image's sample data."""
    from skimage import data

    out = []
    for name in ("coffee", "rocket", "brick", "grass", "gravel", "hubble_deep_field"):
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        out.append(cv2.cvtColor(image[:, :, :3], cv2.COLOR_RGB2BGR).astype(np.float32) / 255)
    return out


def background_frame(
    rng: np.random.Generator, height: int, width: int, pictures: list[np.ndarray]
) -> np.ndarray:
    pick = int(rng.integers(len(pictures) + 1))
    if pick == len(pictures):  # a plain gradient, like a studio backdrop
        look = drawn.random_look(rng, female=False)
        return drawn.background(look, height, width)
    image = pictures[pick]
    ih, iw = image.shape[:2]
    zoom = rng.uniform(1.0, 2.0)
    ch = min(ih, round(ih / zoom))
    cw = min(iw, round(ch * width / height))
    ch = min(ch, round(cw * height / width))
    y0 = int(rng.integers(0, ih - ch + 1))
    x0 = int(rng.integers(0, iw - cw + 1))
    part = image[y0 : y0 + ch, x0 : x0 + cw]
    return cv2.resize(part, (width, height), interpolation=cv2.INTER_LINEAR)


def astronaut_patch() -> tuple[np.ndarray, np.ndarray, tuple[float, float], float]:
    """Her head and shoulders (float BGR), a soft elliptical mask, the face's centre and
    height in the patch's pixels."""
    from skimage import data

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR).astype(np.float32) / 255
    x0, y0, x1, y1 = ASTRONAUT_FACE
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, float(y1 - y0)
    half = round(1.1 * side)
    top, left = round(cy) - half, round(cx) - half
    patch = image[top : top + 2 * half, left : left + 2 * half]
    yy, xx = np.mgrid[0 : 2 * half, 0 : 2 * half].astype(np.float32)
    d = np.sqrt(((xx - half) / (0.95 * half)) ** 2 + ((yy - half) / (0.98 * half)) ** 2)
    mask = np.clip((1.0 - d) / 0.12, 0.0, 1.0)
    return patch, mask, (cx - left, cy - top), side


def photo_frame(
    rng: np.random.Generator,
    height: int,
    width: int,
    pictures: list[np.ndarray],
    astronaut: tuple[np.ndarray, np.ndarray, tuple[float, float], float],
    motion: Motion = STILL,
) -> Frame:
    patch, mask, (fx, fy), side = astronaut
    canvas = background_frame(rng, height, width, pictures)
    face_px = rng.uniform(*FACE_FRACTION) * height
    roll = float(rng.uniform(-ROLL, ROLL))
    cx = float(rng.uniform(0.5 * face_px + 2, width - 0.5 * face_px - 2))
    cy = float(rng.uniform(0.5 * face_px + 2, height - 0.5 * face_px - 2))
    cx, cy = cx + motion[0] * face_px, cy + motion[1] * face_px
    roll, face_px = roll + motion[2], face_px * motion[3]
    s = face_px / side
    # Scale and roll about the face centre, then move it to (cx, cy).
    m = cv2.getRotationMatrix2D((fx, fy), roll, s)
    m[:, 2] += (cx - fx, cy - fy)
    warped = cv2.warpAffine(patch, m, (width, height), flags=cv2.INTER_AREA)
    alpha = cv2.warpAffine(mask, m, (width, height), flags=cv2.INTER_LINEAR)[..., None]
    light = rng.uniform(0.6, 1.3)  # the face lit differently from the backdrop
    canvas = canvas * (1.0 - alpha) + np.clip(warped * light, 0, 1) * alpha
    return Frame(_finish(canvas.astype(np.float32), rng), Box(cx=cx, cy=cy, side=face_px))


def empty_frame(
    rng: np.random.Generator, height: int, width: int, pictures: list[np.ndarray]
) -> Frame:
    return Frame(_finish(background_frame(rng, height, width, pictures), rng), None)


def frame_sets(count: int, seed: int) -> Iterator[tuple[str, str, list[Frame]]]:
    pictures = backgrounds()
    astronaut = astronaut_patch()
    for size, (h, w) in SIZES.items():
        rng = np.random.default_rng([seed, h])
        yield size, "drawn", [drawn_frame(rng, h, w) for _ in range(count)]
        yield size, "photo", [photo_frame(rng, h, w, pictures, astronaut) for _ in range(count)]
        yield size, "empty", [empty_frame(rng, h, w, pictures) for _ in range(count // 2)]


# ----------------------------------------------------------------------- scoring


@dataclass
class Score:
    recall: float  # share of faces found at IoU >= 0.5
    iou_hits: float  # mean IoU over those
    iou_all: float  # mean IoU over every face (misses count 0)
    false_alarms: float  # share of empty frames with a box
    ms: float  # per frame, from the source frame
    ms_working: float  # per frame, from a frame already at the working size
    shift: float  # median (detected centre - face centre) downwards, in face heights
    scale: float  # median detected side / face side


def timed(
    detect: Callable[[np.ndarray], Box | None], frames: list[np.ndarray]
) -> tuple[list[Box | None], float]:
    start = time.process_time()
    found = [detect(f) for f in frames]
    return found, (time.process_time() - start) * 1000 / max(1, len(frames))


def score(
    detector: FaceDetector,
    faces: list[Frame],
    empty: list[Frame],
    convert: Callable[[np.ndarray], np.ndarray],
) -> Score:
    images = [convert(f.rgb) for f in faces]
    found, ms = timed(detector.detect, images)
    working = [downscale(img, DETECT_MAX_SIDE)[0] for img in images[:TIMED_AT_WORKING_SIZE]]
    _, ms_working = timed(detector.detect, working)
    ious, shifts, scales = [], [], []
    for frame, box in zip(faces, found, strict=True):
        assert frame.face is not None
        value = iou(box, frame.face) if box is not None else 0.0
        ious.append(value)
        if box is not None and value >= 0.5:
            shifts.append((box.cy - frame.face.cy) / frame.face.side)
            scales.append(box.side / frame.face.side)
    hits = [v for v in ious if v >= 0.5]
    alarms = [detector.detect(convert(f.rgb)) is not None for f in empty]
    return Score(
        recall=len(hits) / len(ious),
        iou_hits=float(np.mean(hits)) if hits else 0.0,
        iou_all=float(np.mean(ious)),
        false_alarms=float(np.mean(alarms)) if alarms else 0.0,
        ms=ms,
        ms_working=ms_working,
        shift=float(np.median(shifts)) if shifts else math.nan,
        scale=float(np.median(scales)) if scales else math.nan,
    )


def as_rgb(rgb: np.ndarray) -> np.ndarray:
    return rgb


def as_gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


# ----------------------------------------------------------------------- clips

CLIP_SECONDS = 3.6  # a RAVDESS sentence is 3-5 s
SAMPLE_FPS = 10.0  # data.fps's default


def moving_clip(
    kind: str, seed: int, fps: float, pictures: list[np.ndarray], astronaut: Any
) -> list[Frame]:
    """A 1280x720 head swaying (+-0.12 face heights), nodding (+-0.06), rolling (+-8
    degrees) and moving closer or further (+-5 %) at 0.2-0.6 Hz, one frame per 1/fps s."""
    params = np.random.default_rng([seed, 99])
    phase = params.uniform(0, 2 * np.pi, 4)
    freq = params.uniform(0.2, 0.6, 4)
    amp = np.array([0.12, 0.06, 8.0, 0.05])
    frames = []
    for i in range(round(CLIP_SECONDS * fps)):
        wave = amp * np.sin(2 * np.pi * freq * i / fps + phase)
        motion: Motion = (float(wave[0]), float(wave[1]), float(wave[2]), 1.0 + float(wave[3]))
        rng = np.random.default_rng([seed, 7])  # the same scene in every frame
        if kind == "drawn":
            frames.append(drawn_frame(rng, 720, 1280, motion))
        else:
            frames.append(photo_frame(rng, 720, 1280, pictures, astronaut, motion))
    return frames


def track_iou(detections: list[Box | None], truth: list[Box], every: int) -> tuple[float, float]:
    """Mean IoU of the smoothed track (detector on every ``every``-th frame) with the
    face, and the share of frames where it is >= 0.5; as extract_faces tracks."""
    positions = list(range(0, len(truth), every))
    picked = [detections[p] for p in positions]
    if not any(box is not None for box in picked):
        return 0.0, 0.0
    track = smooth_track(picked, positions, len(truth))
    ious = [iou(a, b) for a, b in zip(track, truth, strict=True)]
    return float(np.mean(ious)), float(np.mean([v >= 0.5 for v in ious]))


def write_clip(frames: list[Frame], path: Path, fps: int = 30) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame.rgb, "rgb24")))
        container.mux(stream.encode(None))


def per_recording(
    detectors: dict[str, FaceDetector], pictures: list[np.ndarray], astronaut: Any, seed: int
) -> None:
    """Seconds per recording in prepare: decoding alone against decoding + detection +
    crops (extract_faces), on one 1280x720 30 fps H.264 clip, one thread."""
    import tempfile

    from trainers.data import video
    from trainers.data.config import DataConfig

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        write_clip(moving_clip("drawn", seed + 1000, 30.0, pictures, astronaut), path)

        def best(fn: Callable[[], object], rounds: int = 2) -> float:
            times = []
            for _ in range(rounds):
                start = time.process_time()
                fn()
                times.append(time.process_time() - start)
            return min(times)

        defaults = DataConfig()
        decode = best(lambda: video.decode_frames(str(path), defaults.fps, defaults.max_frames,
                                                  "gray", threads=1))  # fmt: skip
        print(
            f"\n(c) one recording in prepare: {CLIP_SECONDS} s, 1280x720 30 fps H.264, "
            f"data.fps={defaults.fps:g}, grayscale, one thread, best of 2"
        )
        print(f"  {'decode only':<22} {decode:>6.2f} s")
        for name in detectors:
            for every in (3, 6):
                cfg = DataConfig(face_detector=name, detect_every=every)  # type: ignore[arg-type]
                took = best(lambda cfg=cfg: video.extract_faces(str(path), cfg, threads=1))
                runs = math.ceil(round(CLIP_SECONDS * defaults.fps) / every)
                print(
                    f"  {name + f' every {every}':<22} {took:>6.2f} s  {took / decode:>5.2f}x "
                    f"decode  ({runs} detections)"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=80, help="faces per cell")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    t0 = time.perf_counter()
    mtcnn = MtcnnDetector()
    mtcnn.model()
    load_s = time.perf_counter() - t0
    haar = HaarDetector()
    detectors: list[tuple[str, FaceDetector, Callable[[np.ndarray], np.ndarray]]] = [
        ("haar (gray)", haar, as_gray),
        ("mtcnn (rgb)", mtcnn, as_rgb),
        ("mtcnn (gray x3)", mtcnn, as_gray),
    ]
    sets: dict[tuple[str, str], list[Frame]] = {}
    t0 = time.perf_counter()
    for size, kind, frames in frame_sets(args.frames, args.seed):
        sets[size, kind] = frames
    print(
        f"{args.frames} faces per cell, seed {args.seed}; frames made in "
        f"{time.perf_counter() - t0:.1f} s; MTCNN loaded in {load_s:.1f} s "
        f"(torch + facenet-pytorch import and weights); one thread"
    )
    header = (
        f"  {'detector':<16} {'frames':<7} {'size':<9} {'recall':>6} {'IoU hit':>7} "
        f"{'IoU all':>7} {'false':>6} {'ms src':>7} {'ms 320':>7} {'shift':>6} {'side':>5}"
    )
    print("\n(a) detectors x faces x frame size\n" + header)
    results: dict[tuple[str, str, str], Score] = {}
    for name, detector, convert in detectors:
        for size in SIZES:
            for kind in ("drawn", "photo"):
                # False alarms once per detector and size: the photo row repeats them.
                empty = sets[size, "empty"] if kind == "drawn" else []
                s = score(detector, sets[size, kind], empty, convert)
                if kind == "photo":
                    s.false_alarms = results[name, size, "drawn"].false_alarms
                results[name, size, kind] = s
                print(
                    f"  {name:<16} {kind:<7} {size:<9} {s.recall:>6.3f} {s.iou_hits:>7.3f} "
                    f"{s.iou_all:>7.3f} {s.false_alarms:>6.3f} {s.ms:>7.1f} {s.ms_working:>7.1f} "
                    f"{s.shift:>+6.2f} {s.scale:>5.2f}",
                    flush=True,
                )
    print(
        "  recall: IoU >= 0.5 with the visible face (square, side = its height); false: "
        "share of\n  face-free frames with a box; ms 320: on frames already at the working "
        "size;\n  shift/side: median of the box centre below the face's centre and of its "
        "side, in\n  face heights, over hits."
    )
    print("\n  target for the default detector: recall >= 0.98 at 1280x720 on drawn and photo")
    for name, *_ in detectors:
        got = [results[name, "1280x720", k].recall for k in ("drawn", "photo")]
        verdict = "met" if min(got) >= 0.98 else "NOT met"
        print(f"  {name:<16} drawn {got[0]:.3f}  photo {got[1]:.3f}  {verdict}")

    half = max(1, args.frames // 2)
    print(f"\n(b) MTCNN's working size (longest side) at 1280x720, rgb, {half} faces each")
    print(f"  {'side':>5} {'drawn':>6} {'photo':>6} {'IoU all':>7} {'ms src':>7}")
    for side in (240, 320, 480):
        sized = MtcnnDetector(max_side=side)
        sized._model = mtcnn.model()  # the same weights, loaded once
        cells = [
            score(sized, sets["1280x720", kind][:half], [], as_rgb) for kind in ("drawn", "photo")
        ]
        print(
            f"  {side:>5} {cells[0].recall:>6.3f} {cells[1].recall:>6.3f} "
            f"{np.mean([c.iou_all for c in cells]):>7.3f} {np.mean([c.ms for c in cells]):>7.1f}"
        )

    pictures, astronaut = backgrounds(), astronaut_patch()
    per_recording({"haar": haar, "mtcnn": mtcnn}, pictures, astronaut, args.seed)

    clips = [(kind, args.seed + i) for i in range(2) for kind in ("drawn", "photo")]
    print(
        f"\n(d) data.detect_every on moving heads: {len(clips)} clips (2 drawn, 2 photo) of "
        f"{CLIP_SECONDS} s at {SAMPLE_FPS:g} fps, 1280x720; the smoothed track against the face"
    )
    print(f"  {'detector':<8} {'every':>5} {'IoU mean':>8} {'IoU>=0.5':>8}")
    made = [moving_clip(kind, seed, SAMPLE_FPS, pictures, astronaut) for kind, seed in clips]
    for name, detector in (("haar", haar), ("mtcnn", mtcnn)):
        found = [[detector.detect(f.rgb) for f in frames] for frames in made]
        for every in (1, 3, 6):
            pairs = [
                track_iou(dets, [f.face for f in frames if f.face], every)
                for dets, frames in zip(found, made, strict=True)
            ]
            print(
                f"  {name:<8} {every:>5} {np.mean([p[0] for p in pairs]):>8.3f} "
                f"{np.mean([p[1] for p in pairs]):>8.3f}"
            )
    print(f"\nbench took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
