"""The face detectors (data.face_detector) on a real photograph and on a drawn 720p face,
and what choosing one changes: its config errors, the video cache key, old configs.

The photograph is skimage.data.astronaut(), the portrait of astronaut Eileen Collins
that ships inside scikit-image. bench/faces.py measures both detectors at scale."""

from __future__ import annotations

import math
import typing

import cv2
import numpy as np
import pytest

from trainers.config import ConfigError, apply_saved, resolve
from trainers.data import audio, face_detectors, video
from trainers.data.config import FACE_DETECTORS, DataConfig
from trainers.data.faces import Box, crop_square
from trainers.data.synth import faces as drawn

skimage_data = pytest.importorskip("skimage.data")

# Her visible face in the 512 x 512 portrait (x0, y0, x1, y1): the fringe's lower edge
# to the chin, cheek to cheek; annotated by hand (bench/faces.py says how it was checked).
ASTRONAUT_FACE = (181, 76, 269, 182)


def square(x0: float, y0: float, x1: float, y1: float) -> Box:
    """The convention of bench/faces.py: centred on the face, side = its height."""
    return Box(cx=(x0 + x1) / 2, cy=(y0 + y1) / 2, side=y1 - y0)


def iou(a: Box, b: Box) -> float:
    ix = min(a.cx + a.side / 2, b.cx + b.side / 2) - max(a.cx - a.side / 2, b.cx - b.side / 2)
    iy = min(a.cy + a.side / 2, b.cy + b.side / 2) - max(a.cy - a.side / 2, b.cy - b.side / 2)
    inter = max(0.0, ix) * max(0.0, iy)
    return inter / (a.side**2 + b.side**2 - inter)


def drawn_720p_face() -> tuple[np.ndarray, Box]:
    """A generated actor's face, 300 px tall, rolled 6 degrees, in a 1280x720 RGB frame,
    and its visible face (from the hair cap's lower edge to the chin, as bench/faces.py)."""
    look = drawn.random_look(np.random.default_rng(4), female=True)
    canvas = drawn.background(look, 720, 1280)
    (cx, cy), face_h, roll = (700.0, 380.0), 300.0, 6.0
    drawn.draw_face(canvas, look, (cx, cy), face_h, drawn.pose(look, "happy", 1.0), roll=roll)
    frame = cv2.cvtColor((canvas * 255).clip(0, 255).astype(np.uint8), cv2.COLOR_BGR2RGB)
    top = -0.34 + 0.04 * look.hair_volume
    mid, r = (top + 0.5) / 2 * face_h, math.radians(roll)
    return frame, Box(
        cx=cx - mid * math.sin(r), cy=cy + mid * math.cos(r), side=(0.5 - top) * face_h
    )


@pytest.mark.parametrize("name", FACE_DETECTORS)
def test_each_detector_finds_the_face_in_a_real_photograph(name: str) -> None:
    rgb = skimage_data.astronaut()
    box = face_detectors.get_detector(name).detect(rgb)
    assert box is not None, f"{name}: no face found in skimage.data.astronaut()"
    truth = square(*ASTRONAUT_FACE)
    assert iou(box, truth) >= 0.5, (name, box)
    crop = crop_square(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), box, 112)
    # The crop is the face (skin, eyes), not the dark background or the white suit.
    assert 60 < float(np.mean(crop)) < 200


def test_mtcnn_finds_a_drawn_720p_face_in_colour_and_in_grey() -> None:
    frame, truth = drawn_720p_face()
    detector = face_detectors.get_detector("mtcnn")
    for image in (frame, cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)):  # grey: channel x3
        box = detector.detect(image)
        assert box is not None
        assert iou(box, truth) >= 0.5, (box, truth)


def test_mtcnn_batched_over_a_clip_gives_each_frames_own_box() -> None:
    """track_faces sends a clip's frames through MTCNN in one call (2.1x less CPU per
    detection, measured on realistic 720p takes); the boxes must be the per-frame ones."""
    frame, _ = drawn_720p_face()
    frames = [frame, np.ascontiguousarray(frame[:, ::-1]), np.full_like(frame, 90)]
    detector = face_detectors.get_detector("mtcnn")
    batched = detector.detect_many(frames)
    assert batched[2] is None and batched[0] is not None and batched[1] is not None
    for one, many in zip([detector.detect(f) for f in frames], batched, strict=True):
        # Batched convolutions round differently in the last float32 bits, no more.
        assert (one is None) == (many is None)
        if one is not None and many is not None:
            assert (
                max(abs(one.cx - many.cx), abs(one.cy - many.cy), abs(one.side - many.side)) < 1e-2
            )
    assert abs(batched[0].cx + batched[1].cx - 1280) < 20  # the mirrored frame's own face


@pytest.mark.parametrize("name", FACE_DETECTORS)
def test_no_face_in_a_picture_without_one(name: str) -> None:
    assert face_detectors.get_detector(name).detect(skimage_data.coffee()) is None


def test_config_names_and_detector_classes_agree() -> None:
    hint = typing.get_type_hints(DataConfig)["face_detector"]
    assert typing.get_args(hint) == FACE_DETECTORS == tuple(face_detectors.DETECTORS)
    assert DataConfig().face_detector == "mtcnn"  # chosen by bench/faces.py


def hybrid_config() -> typing.Any:
    from trainers.registry import get_entry

    return get_entry("hybrid-attention").default_config()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("yunet", "expected one of 'haar', 'mtcnn'"), ("mtcn", "did you mean 'mtcnn'?")],
)
def test_an_unknown_detector_is_a_config_error_naming_the_key(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(hybrid_config(), assignments=[f"data.face_detector={value}"])
    assert info.value.key == "data.face_detector"
    assert fragment in str(info.value)
    with pytest.raises(
        ValueError, match=r"data\.face_detector='yunet': must be one of haar, mtcnn"
    ):
        DataConfig(face_detector="yunet").validate()  # type: ignore[arg-type]


def test_configs_saved_before_the_key_existed_mean_haar() -> None:
    old = hybrid_config()
    apply_saved(old, {"data": {"fps": 10.0}, "train": {"epochs": 3}})
    assert old.data.face_detector == "haar"
    new = hybrid_config()
    apply_saved(new, {"data": {"fps": 10.0, "face_detector": "mtcnn"}})
    assert new.data.face_detector == "mtcnn"


def test_the_detector_keys_video_entries_only() -> None:
    haar, mtcnn = DataConfig(face_detector="haar"), DataConfig(face_detector="mtcnn")
    a, b = video.video_settings(haar), video.video_settings(mtcnn)
    assert {k for k in a if a[k] != b[k]} == {"face_detector", "detector_version"}
    assert b["detector_version"] == face_detectors.MtcnnDetector.version
    assert audio.audio_settings(haar) == audio.audio_settings(mtcnn)
    assert face_detectors.describe("mtcnn") == {
        "name": "mtcnn",
        "version": face_detectors.MtcnnDetector.version,
    }
