"""The Haar face detector on a real photograph: skimage.data.astronaut(), the
portrait of astronaut Eileen Collins that ships inside scikit-image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from trainers.data.faces import crop_square, detect_largest

skimage_data = pytest.importorskip("skimage.data")

# Where her face is in the 512 x 512 portrait (rows and columns, by eye, generous):
# between the hair line and the chin, between the ears.
FACE_ROWS = (50, 180)
FACE_COLS = (160, 290)


def test_the_detector_finds_the_face_in_a_real_photograph():
    gray = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)
    box = detect_largest(gray)
    assert box is not None, "no face found in skimage.data.astronaut()"
    assert FACE_COLS[0] < box.cx < FACE_COLS[1] and FACE_ROWS[0] < box.cy < FACE_ROWS[1], box
    assert 50 < box.side < 200, box  # a face, not the whole picture or a button
    crop = crop_square(gray, box, 112)
    assert crop.shape[:2] == (112, 112)
    # The crop is the face (skin, eyes), not the dark background or the white suit.
    assert 60 < float(np.mean(crop)) < 200


def test_no_face_in_a_picture_without_one():
    gray = cv2.cvtColor(skimage_data.coffee(), cv2.COLOR_RGB2GRAY)
    assert detect_largest(gray) is None
