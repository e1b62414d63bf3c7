"""Drawn faces whose expression carries the emotion.

Why it looks like this:

* The loaders find faces before any model sees a pixel, first with OpenCV's
  frontal-face Haar cascade (``data.face_detector=haar``; MTCNN is the
  default now and finds these faces too, bench/faces.py), so the drawing is
  built around what that cascade keys on: a face brighter than what
  surrounds it, shaded towards its rim, dark eye sockets and brows under a
  lighter forehead, a lighter nose bridge between the eyes, and a darker
  mouth. Flat cartoon faces are not found;
  these are, in well over nine frames out of ten.
* The label must be learnable from the face alone and must transfer to
  actors never seen in training, so expression lives only in geometry that
  every actor shares (mouth curve and opening, brow height and tilt, eye
  opening, nose wrinkle, head motion), while identity lives only in things
  expression never touches (skin tone, face shape, hair, clothes,
  background). An actor's resting face differs a little from the next
  actor's, as real faces do, but far less than one emotion from another.
* Expression is a small vector (:class:`Expression`) mixed over time from
  neutral to the emotion's pose and back, so a clip looks like a performance
  (onset, apex, offset), and so layouts other than RAVDESS reuse the same
  poses under their own label names.
* Everything is drawn with OpenCV primitives on a float canvas at the final
  small size: a frame costs well under a millisecond, which is what makes a
  720-clip corpus take a minute instead of an hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

Color = tuple[float, float, float]  # BGR in 0..1


@dataclass(frozen=True)
class Expression:
    """A facial pose; every field is 0 for the neutral face except eye_open = 1."""

    smile: float = 0.0  # mouth corners up (+) or down (-), about -1..1
    mouth_open: float = 0.0  # jaw drop, 0..1
    mouth_width: float = 1.0  # relative mouth width (stretched > 1, rounded < 1)
    brow_raise: float = 0.0  # whole brow up (+) or down (-), about -1..1
    brow_tilt: float = 0.0  # inner ends up (+, sad/fear) or down (-, anger)
    eye_open: float = 1.0  # lid opening relative to rest, about 0.3..1.7
    sneer: float = 0.0  # upper lip raise, nose wrinkle, asymmetry, 0..1
    motion: float = 0.3  # head motion energy, 0..1

    def mix(self, other: Expression, amount: float) -> Expression:
        """Linear blend: ``amount`` 0 gives self, 1 gives ``other``."""
        a = float(amount)
        return Expression(
            *(
                (1.0 - a) * getattr(self, f) + a * getattr(other, f)
                for f in Expression.__dataclass_fields__
            )
        )

    def exaggerate(self, gain: float) -> Expression:
        """Scale every deviation from the neutral pose by ``gain``."""
        return NEUTRAL.mix(self, gain)


NEUTRAL = Expression()

# Apex poses of the eight canonical emotions (RAVDESS's set). Every pair
# differs by a clear margin in at least one field, neutral and calm included
# (calm: half-closed eyes, faint smile, still head).
EXPRESSIONS: dict[str, Expression] = {
    "neutral": NEUTRAL,
    "calm": Expression(smile=0.35, eye_open=0.5, brow_raise=-0.05, motion=0.1),
    "happy": Expression(smile=1.0, mouth_open=0.35, mouth_width=1.2, eye_open=0.8, brow_raise=0.2,
                        motion=0.6),
    "sad": Expression(smile=-0.8, brow_tilt=0.9, brow_raise=0.05, eye_open=0.65, motion=0.15),
    "angry": Expression(smile=-0.35, mouth_open=0.2, mouth_width=1.1, brow_raise=-0.8,
                        brow_tilt=-1.0, eye_open=0.6, motion=0.9),
    "fearful": Expression(smile=-0.4, mouth_open=0.45, mouth_width=1.25, brow_raise=0.7,
                          brow_tilt=0.7, eye_open=1.55, motion=0.8),
    "disgust": Expression(smile=-0.5, sneer=1.0, brow_raise=-0.45, brow_tilt=-0.3, eye_open=0.5,
                          motion=0.4),
    "surprised": Expression(mouth_open=0.65, mouth_width=0.7, brow_raise=1.2, brow_tilt=0.1,
                            eye_open=1.65, motion=0.5),
}  # fmt: skip


@dataclass(frozen=True)
class Look:
    """What makes one actor recognisable; never touched by expression."""

    skin: Color
    aspect: float  # face width / face height
    hair: Color
    hair_volume: float  # how far hair reaches beyond the face, 0..1
    hair_long: bool
    bg_top: Color
    bg_bottom: Color
    shirt: Color
    iris: Color
    lips: Color
    brow_weight: float  # eyebrow thickness factor
    rest: Expression  # this actor's resting face (small offsets from neutral)
    expressiveness: float  # how strongly this actor poses, around 1


def _color(b: float, g: float, r: float) -> Color:
    return (float(np.clip(b, 0.0, 1.0)), float(np.clip(g, 0.0, 1.0)), float(np.clip(r, 0.0, 1.0)))


def random_look(rng: np.random.Generator, female: bool) -> Look:
    """Draw an actor's appearance."""
    tone = rng.uniform(0.45, 0.95)  # dark to light skin
    warm = rng.uniform(0.0, 0.12)
    skin = _color(tone * (0.72 + warm * 0.3), tone * (0.82 + warm * 0.2), tone * (0.98 + warm))
    # Hair and backdrop stay darker than the face: the cascade needs a face
    # that stands out from what surrounds it.
    hair_l = min(rng.uniform(0.05, 0.45) * (1.0 if rng.random() < 0.85 else 1.8), 0.65 * tone)
    hair = _color(hair_l * rng.uniform(0.5, 0.8), hair_l * rng.uniform(0.6, 0.9), hair_l)
    bg_l = tone * rng.uniform(0.2, 0.6)
    hue = rng.uniform(0.7, 1.3, size=3) * bg_l
    bg_top = _color(*hue)
    bg_bottom = _color(*(np.asarray(bg_top) * rng.uniform(0.6, 1.1, size=3)))
    shirt = _color(*rng.uniform(0.1, 0.7, size=3))
    iris_l = rng.uniform(0.1, 0.35)
    iris = _color(iris_l * rng.uniform(0.6, 1.4), iris_l * rng.uniform(0.7, 1.1), iris_l * 0.8)
    lips = _color(skin[0] * 0.55, skin[1] * 0.5, skin[2] * rng.uniform(0.65, 0.8))
    rest = Expression(
        smile=rng.uniform(-0.1, 0.1),
        brow_raise=rng.uniform(-0.1, 0.1),
        eye_open=rng.uniform(0.92, 1.08),
        mouth_width=rng.uniform(0.92, 1.08),
        motion=rng.uniform(0.2, 0.35),
    )
    return Look(
        skin=skin,
        aspect=float(rng.uniform(0.70, 0.80) if female else rng.uniform(0.74, 0.86)),
        hair=hair,
        hair_volume=float(rng.uniform(0.1, 1.0)),
        hair_long=bool(rng.random() < (0.7 if female else 0.15)),
        bg_top=bg_top,
        bg_bottom=bg_bottom,
        shirt=shirt,
        iris=iris,
        lips=lips,
        brow_weight=float(rng.uniform(0.8, 1.25) * (0.85 if female else 1.1)),
        rest=rest,
        expressiveness=float(rng.uniform(0.9, 1.1)),
    )


def pose(look: Look, emotion: str, gain: float) -> Expression:
    """The apex pose of ``emotion`` for this actor at intensity ``gain``."""
    target = EXPRESSIONS[emotion]
    delta = gain * look.expressiveness
    fields = {}
    for f in Expression.__dataclass_fields__:
        base = getattr(NEUTRAL, f)
        fields[f] = getattr(look.rest, f) + delta * (getattr(target, f) - base)
    return replace(NEUTRAL, **fields)


def _pt(x: float, y: float) -> tuple[int, int]:
    # cv2 drawing with 4 fractional bits gives sub-pixel placement.
    return (round(x * 16), round(y * 16))


_SHIFT = 4


def _ellipse(
    img: np.ndarray,
    c: tuple[float, float],
    axes: tuple[float, float],
    angle: float,
    color: Color | float,
    thickness: int = -1,
    start: float = 0,
    end: float = 360,
) -> None:
    cv2.ellipse(
        img,
        _pt(*c),
        (max(1, round(axes[0] * 16)), max(1, round(axes[1] * 16))),
        angle,
        start,
        end,
        color,
        thickness,
        cv2.LINE_AA,
        _SHIFT,
    )


def _poly(img: np.ndarray, pts: np.ndarray, color: Color | float) -> None:
    cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], color, cv2.LINE_AA, _SHIFT)


def _line(img: np.ndarray, pts: np.ndarray, color: Color | float, thickness: float) -> None:
    cv2.polylines(
        img,
        [np.round(pts * 16).astype(np.int32)],
        False,
        color,
        max(1, round(thickness)),
        cv2.LINE_AA,
        _SHIFT,
    )


def background(look: Look, height: int, width: int) -> np.ndarray:
    """The actor's backdrop: a vertical gradient, float32 BGR (H, W, 3)."""
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    top = np.asarray(look.bg_top, np.float32)
    bottom = np.asarray(look.bg_bottom, np.float32)
    col = top * (1.0 - t) + bottom * t
    return np.broadcast_to(col, (height, width, 3)).copy()


def draw_face(
    canvas: np.ndarray,
    look: Look,
    center: tuple[float, float],
    face_h: float,
    expr: Expression,
    roll: float = 0.0,
    light: float = 0.0,
) -> None:
    """Draw a head at ``center`` (face ellipse centre) ``face_h`` pixels tall.

    ``canvas`` is float32 BGR in 0..1 and is drawn on in place. ``roll`` tilts
    the head (degrees); ``light`` shifts the shading side (-1..1).
    """
    cx, cy = center
    h = face_h
    w = face_h * look.aspect
    H, W = canvas.shape[:2]
    skin = np.asarray(look.skin, np.float32)

    # Shoulders and neck first, then hair behind the head.
    _ellipse(canvas, (cx, cy + 1.05 * h), (1.05 * w, 0.42 * h), 0, look.shirt)
    neck = np.array(
        [
            [cx - 0.24 * w, cy + 0.3 * h],
            [cx + 0.24 * w, cy + 0.3 * h],
            [cx + 0.27 * w, cy + 0.75 * h],
            [cx - 0.27 * w, cy + 0.75 * h],
        ]
    )
    _poly(canvas, neck, _color(*(skin * 0.72)))
    vol = look.hair_volume
    if look.hair_long:
        hair_back = (
            (cx, cy + 0.05 * h),
            ((0.58 + 0.1 * vol) * w, (0.62 + 0.05 * vol) * h),
        )
    else:
        hair_back = ((cx, cy - 0.12 * h), ((0.53 + 0.08 * vol) * w, (0.45 + 0.07 * vol) * h))
    _ellipse(canvas, hair_back[0], hair_back[1], roll, look.hair)

    # Face: a shaded ellipse, bright in the middle and darker towards the rim,
    # lit a little from one side.
    x0 = max(0, int(cx - w / 2 - 2))
    x1 = min(W, int(cx + w / 2 + 3))
    y0 = max(0, int(cy - h / 2 - 2))
    y1 = min(H, int(cy + h / 2 + 3))
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    r = math.radians(roll)
    dx = xx - cx
    dy = yy - cy
    u = (dx * math.cos(r) + dy * math.sin(r)) / (w / 2)
    v = (-dx * math.sin(r) + dy * math.cos(r)) / (h / 2)
    d2 = u * u + v * v
    inside = np.clip((1.0 - np.sqrt(d2)) * (h / 3.0), 0.0, 1.0)[..., None]  # AA rim
    shade = 1.08 - 0.38 * d2 + 0.12 * light * u - 0.05 * v
    face = skin[None, None, :] * np.clip(shade, 0.0, 1.3)[..., None]
    roi = canvas[y0:y1, x0:x1]
    roi[:] = roi * (1.0 - inside) + face * inside

    # Features are drawn in face coordinates, then rotated by ``roll``.
    cr, sr = math.cos(r), math.sin(r)

    def to_px(fx: float, fy: float) -> tuple[float, float]:
        """Face coordinates (fractions of w and h from the centre) to pixels."""
        px, py = fx * w, fy * h
        return (cx + px * cr - py * sr, cy + px * sr + py * cr)

    def to_pxs(pts: list[tuple[float, float]]) -> np.ndarray:
        return np.array([to_px(a, b) for a, b in pts], dtype=np.float64)

    # Hair over the top of the forehead, leaving the brow zone clear.
    cap_c = to_px(0.0, -0.47)
    _ellipse(canvas, cap_c, (0.5 * w, (0.13 + 0.04 * vol) * h), roll, look.hair)

    dark = _color(*(skin * 0.45))
    eye_y = -0.07
    eye_dx = 0.21
    # Eye sockets: soft dark pools that make the cascade's eye band.
    sock = _color(*(skin * 0.62))
    wide = max(0.0, expr.eye_open - 1.0)  # wide eyes: deeper, taller sockets
    for s in (-1, 1):
        centre = to_px(s * eye_dx, eye_y - 0.01 - 0.02 * wide)
        _ellipse(canvas, centre, (0.15 * w, (0.075 + 0.035 * wide) * h), roll, sock)

    # Nose bridge highlight between the eyes and nostrils below.
    bridge = _color(*(np.clip(skin * 1.12, 0, 1)))
    _poly(canvas, to_pxs([(-0.045, -0.1), (0.045, -0.1), (0.07, 0.1), (-0.07, 0.1)]), bridge)
    nose_dark = _color(*(skin * 0.55))
    for s in (-1, 1):
        _ellipse(canvas, to_px(s * 0.045, 0.125), (0.035 * w, 0.018 * h), roll, nose_dark)

    # Eyes: sclera opening scaled by eye_open, dark iris, heavy upper lid.
    eo = max(0.15, expr.eye_open)
    # Sclera kept close to the socket's tone: a bright white ring around the
    # iris would erase the dark eye band the cascade needs.
    sclera = _color(*(np.clip(skin * 0.45 + 0.3, 0, 1)))
    for s in (-1, 1):
        ec = to_px(s * eye_dx, eye_y)
        ax = 0.1 * w
        ay = 0.034 * h * eo
        _ellipse(canvas, ec, (ax, ay), roll, sclera)
        ir = 0.036 * h * (1.0 + 0.2 * wide)  # dilated pupils when afraid or startled
        _ellipse(canvas, ec, (min(ir, ax), min(ir, ay * 0.98)), roll, look.iris)
        _ellipse(canvas, ec, (min(ir, ax) * 0.45, min(ir, ay) * 0.45), roll, (0.05, 0.05, 0.05))
        lid = _color(*(skin * 0.3))
        _ellipse(canvas, ec, (ax * 1.05, ay * 1.05), roll, lid, max(1, round(0.014 * h)), 190, 350)

    # Brows: height from brow_raise, inner-end height from brow_tilt.
    bw = max(1.0, 0.03 * h * look.brow_weight)
    brow_col = _color(*(np.asarray(look.hair) * 0.8 + skin * 0.1))
    for s in (-1, 1):
        raise_ = expr.brow_raise * (0.06 if expr.brow_raise > 0 else 0.04)
        base_y = eye_y - 0.105 - raise_ - 0.03 * max(0.0, eo - 1.0)
        inner = base_y - expr.brow_tilt * (0.045 if expr.brow_tilt > 0 else 0.03)
        outer = base_y + 0.01 * expr.brow_tilt + 0.01
        mid = (inner + outer) / 2 - 0.02 - 0.01 * max(0.0, expr.brow_raise)
        # Brows never sink into the eyes, however angry.
        lowest = eye_y - 0.034 * eo - 0.025
        inner, mid, outer = (min(y, lowest) for y in (inner, mid, outer))
        pts = to_pxs([(s * 0.07, inner), (s * 0.19, mid), (s * 0.32, outer)])
        _line(canvas, pts, brow_col, bw)

    # Disgust: nose wrinkle lines.
    if expr.sneer > 0.15:
        wr = _color(*(skin * (1.0 - 0.45 * min(1.0, expr.sneer))))
        for k in (0, 1):
            y = -0.02 + 0.035 * k
            _line(canvas, to_pxs([(-0.06, y), (0.0, y - 0.01), (0.06, y)]), wr, max(1, 0.012 * h))

    # Mouth: a curve whose corners lift with smile, opening with mouth_open.
    mw = 0.19 * expr.mouth_width
    my = 0.27
    lift = 0.07 * expr.smile
    up = 0.035 * expr.sneer
    gap = 0.13 * max(0.0, expr.mouth_open)
    n = 13
    xs = np.linspace(-1.0, 1.0, n)
    asym = 0.025 * expr.sneer
    centre = my + lift * (0.35 - xs**2) - asym * xs
    upper = centre - 0.012 - up * (1.0 - xs**2) - 0.25 * gap * (1.0 - xs**2)
    lower = centre + 0.012 + gap * (1.0 - xs**2) ** 0.8
    outline = to_pxs(
        list(zip(xs * mw, upper, strict=True)) + list(zip(xs[::-1] * mw, lower[::-1], strict=True))
    )
    lips = look.lips
    _poly(canvas, outline, lips)
    inner_gap = gap + up * 0.6
    if inner_gap > 0.01:
        iu = centre - 0.3 * gap * (1.0 - xs**2) - up * 0.7 * (1.0 - xs**2)
        il = centre + 0.75 * gap * (1.0 - xs**2) ** 0.8
        ipts = to_pxs(
            list(zip(xs * mw * 0.9, iu, strict=True))
            + list(zip(xs[::-1] * mw * 0.9, il[::-1], strict=True))
        )
        _poly(canvas, ipts, (0.08, 0.06, 0.1))
        if expr.smile > 0.5 or expr.sneer > 0.5:
            teeth = to_pxs(
                list(zip(xs * mw * 0.75, iu + 0.004, strict=True))
                + list(zip(xs[::-1] * mw * 0.75, (iu + 0.3 * (il - iu))[::-1], strict=True))
            )
            _poly(canvas, teeth, (0.85, 0.88, 0.9))
    _line(canvas, to_pxs(list(zip(xs * mw, centre, strict=True))), dark, max(1, 0.012 * h))
