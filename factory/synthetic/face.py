"""Drawing one face scene (background, body, hair, shaded face and its features) onto a Canvas.

Everything is placed in the face frame of :mod:`factory.synthetic.geometry` and derived from the
landmarks, so features drawn here sit exactly where the returned landmarks say. Layers, back to front:
background, back hair, neck, clothes, ears, face skin with shading, wrinkles and folds, beard, nose,
mouth, eyes, brows, glasses, front hair.
"""

from __future__ import annotations

import colorsys
import math

import cv2
import numpy as np

from factory.synthetic.draw import Canvas, catmull_rom, ellipse_points
from factory.synthetic.geometry import FaceShape

__all__ = ["draw_face"]

_SKIN_KEYS = np.array(
    [[0.97, 0.82, 0.72], [0.86, 0.66, 0.52], [0.66, 0.46, 0.32], [0.45, 0.30, 0.20], [0.30, 0.19, 0.13]],
    dtype=np.float32,
)
_HAIR_KEYS = np.array(
    [[0.06, 0.05, 0.045], [0.20, 0.13, 0.08], [0.38, 0.26, 0.16], [0.60, 0.46, 0.30], [0.86, 0.75, 0.52]],
    dtype=np.float32,
)
_EYE_KEYS = np.array(
    [[0.22, 0.12, 0.06], [0.40, 0.24, 0.11], [0.42, 0.42, 0.20], [0.40, 0.52, 0.48], [0.36, 0.56, 0.80]],
    dtype=np.float32,
)


def _keys(keys: np.ndarray, t: float) -> np.ndarray:
    t = float(np.clip(t, 0.0, 1.0)) * (len(keys) - 1)
    i = min(int(t), len(keys) - 2)
    return keys[i] + (keys[i + 1] - keys[i]) * (t - i)


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return (np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t).astype(np.float32)


def _spow(c: np.ndarray, power: float = 2.5) -> np.ndarray:
    """Superellipse profile: the skull is a little squarer than an ellipse."""
    return np.sign(c) * np.abs(c) ** (2.0 / power)


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


class _Scene:
    """Colours and helper geometry of one face, shared by the drawing steps."""

    def __init__(self, f: dict[str, float], shape: FaceShape) -> None:
        self.f = f
        self.s = shape
        lm = shape.landmarks
        self.lm = lm
        self.W = shape.width
        self.ys = shape.yaw_shift
        self.yc = math.sqrt(1.0 - self.ys * self.ys)
        age = f["age"]
        skin = _keys(_SKIN_KEYS, f["skin_tone"])
        warm = _mix([1.04, 0.96, 0.97], [1.0, 1.0, 0.88], f["skin_warmth"])
        skin = skin * warm
        grey = float(skin.mean())
        self.skin = np.clip(_mix(skin, [grey] * 3, 0.12 * age), 0, 1)
        hair = _keys(_HAIR_KEYS, f["hair_lightness"])
        red = np.array([0.62, 0.25, 0.09], np.float32) * (0.7 + 0.6 * f["hair_lightness"])
        hair = _mix(hair, red, 0.75 * f["hair_red"])
        self.grey = float(np.clip((age - 0.2) / 0.75, 0.0, 1.0)) ** 1.4
        self.hair = np.clip(_mix(hair, [0.72, 0.71, 0.69], 0.88 * self.grey), 0, 1)
        # Brows stay darker than the head hair (dlib needs dark brows), even on blonds.
        brow = _mix(hair * 0.6, [0.09, 0.07, 0.05], 0.45)
        self.brow = np.clip(_mix(brow, [0.55, 0.54, 0.52], 0.5 * self.grey), 0, 1)
        self.light = float(f["light_dir"])
        self.gloss = 0.05 + 0.10 * f["skin_tone"]
        L = np.array([0.55 * self.light, -0.45, 0.85])
        self.L = (L / np.linalg.norm(L)).astype(np.float32)

    def yx(self, x: float | np.ndarray, z: float | np.ndarray) -> float | np.ndarray:
        """x of a point at depth z after the yaw projection."""
        return x * self.yc + z * self.ys

    def pts(self, xyz: list[tuple[float, float, float]]) -> np.ndarray:
        a = np.asarray(xyz, dtype=np.float64)
        return np.stack([self.yx(a[:, 0], a[:, 2]), a[:, 1]], axis=1)

    # -- colour fields ------------------------------------------------------------------------------
    def _lambert(self, nx: np.ndarray, ny: np.ndarray, nz: np.ndarray) -> np.ndarray:
        L = self.L
        return np.clip(nx * L[0] + ny * L[1] + nz * L[2], 0.0, 1.0)

    def skin_field(self, U: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Skin on an ellipsoidal head, lit by the key light; float32 [h,w,3]."""
        du = (U - np.float32(0.25 * self.ys)) / np.float32(self.W * 1.12)
        dv = (V - np.float32(0.35)) / np.float32(2.2)
        nz = np.sqrt(np.clip(1.0 - du * du - dv * dv, 0.03, 1.0))
        lam = self._lambert(du, dv * 0.8, nz)
        shade = 0.5 + 0.58 * lam
        base = self.skin
        # shadows get warmer and more saturated, as with real skin
        warm = np.float32(1.0) - shade
        H = self.L + np.array([0.0, 0.0, 1.0], np.float32)
        H /= np.linalg.norm(H)
        spec = np.clip(du * H[0] + dv * 0.8 * H[1] + nz * H[2], 0.0, 1.0) ** 12 * np.float32(self.gloss)
        r = base[0] * shade + spec
        g = base[1] * shade * (1.0 - 0.10 * warm) + spec
        b = base[2] * shade * (1.0 - 0.16 * warm) + spec * 0.95
        return np.stack([r, g, b], axis=-1)

    def neck_field(self, U: np.ndarray, V: np.ndarray) -> np.ndarray:
        du = np.clip(U / np.float32(0.75), -1.0, 1.0)
        nz = np.sqrt(np.clip(1.0 - du * du, 0.03, 1.0))
        lam = self._lambert(du, np.zeros_like(du), nz)
        shade = (0.45 + 0.4 * lam) * (0.9 + 0.04 * np.clip(V - 1.5, 0, 2))
        return self.skin[None, None, :] * shade[..., None] * np.array([1.0, 0.93, 0.88], np.float32)

    def hair_field(self, U: np.ndarray, V: np.ndarray) -> np.ndarray:
        du = U / np.float32(self.W + 0.4)
        dv = (V + np.float32(0.5)) / np.float32(2.0)
        nz = np.sqrt(np.clip(1.0 - du * du - dv * dv, 0.05, 1.0))
        lam = self._lambert(du, dv, nz)
        shade = 0.5 + 0.45 * lam
        # lengthwise gloss band across the crown
        gloss = np.exp(
            np.float32(-0.5) * (((V + np.float32(1.45)) * np.float32(1 / 0.14)) ** 2 + (U * np.float32(1 / 0.8)) ** 2)
        )
        col = self.hair[None, None, :] * shade[..., None]
        return np.minimum(col * (1.0 + 0.3 * gloss[..., None]) + 0.03 * gloss[..., None], 1.0)


# -- layers -----------------------------------------------------------------------------------------


def _background(cv: Canvas, sc: _Scene) -> None:
    f = sc.f
    v = 0.22 + 0.68 * f["bg_brightness"]
    a = 2 * math.pi * f["bg_layout"]
    c1 = _hsv(f["bg_hue"], 0.2 + 0.12 * (1.0 + math.cos(a)), v)
    c2 = _hsv(f["bg_hue"] + 0.07, 0.3, v * 0.62)
    ca, sa = np.float32(math.cos(a)), np.float32(math.sin(a))
    bx, by = 2.6 * math.cos(a + 2.2), 2.6 * math.sin(a + 2.2) - 0.5
    k = 0.22 * (f["bg_brightness"] - 0.45) * 2

    def field(U: np.ndarray, V: np.ndarray) -> np.ndarray:
        t = np.clip((U * ca + V * sa) / np.float32(7.0) + 0.5, 0.0, 1.0)
        t = t * t * (3 - 2 * t)
        blob = np.exp(-((U - bx) ** 2 + (V - by) ** 2) / np.float32(2 * 1.6**2))
        img = c1 * (1 - t[..., None]) + c2 * t[..., None]
        return img * (1.0 + k * blob)[..., None]

    cv.img[...] = np.clip(cv.field(field, cv.full_roi(), pitch=0.15), 0, 1)


def _hair_outline(sc: _Scene) -> tuple[np.ndarray, float, float]:
    """Silhouette of the hair mass (face frame), the y where the side hair ends, and its volume."""
    f = sc.f
    length = f["hair_length"]
    vol = 0.04 + 0.24 * f["hair_volume"] * (0.4 + 0.6 * min(1.0, length * 2.5))
    top_y = sc.s.head_top - 0.06 - 1.1 * vol
    y_end = -0.25 + 3.4 * max(0.0, length - 0.2) / 0.8
    rx = sc.W * 1.03 + vol
    cy = sc.s.jaw_top
    ry = cy - top_y
    t = np.linspace(math.pi, 2 * math.pi, 25)
    arc = np.stack([rx * _spow(np.cos(t)), cy + ry * _spow(np.sin(t))], axis=1)
    if y_end > cy:
        spread = (0.06 + 0.35 * f["hair_volume"]) * min(1.0, (y_end - cy) / 2.0)
        ys = np.linspace(cy, y_end, 6)[1:]
        xs = rx + spread * ((ys - cy) / max(y_end - cy, 1e-6)) ** 1.5
        right = np.stack([xs, ys], axis=1)
        left = np.stack([-xs, ys], axis=1)[::-1]
        # ragged ends
        bx = np.linspace(xs[-1] - 0.1, -xs[-1] + 0.1, 9)
        tail = np.stack([bx, y_end + 0.05 * np.cos(np.arange(9) * 2.3) - 0.04 * (np.abs(bx) / rx)], axis=1)
        outline = np.concatenate([left, arc, right, tail], axis=0)
    else:
        outline = arc
    outline[:, 0] = sc.yx(outline[:, 0], 0.0)
    return outline, y_end, vol


def _back_hair(cv: Canvas, sc: _Scene) -> None:
    outline, y_end, _ = _hair_outline(sc)
    if y_end <= sc.s.jaw_top:
        return
    cv.fill([outline], lambda U, V: sc.hair_field(U, V) * np.float32(0.8), soft=0.012)


def _neck(cv: Canvas, sc: _Scene) -> None:
    W = sc.W
    nw = 0.56 * W + 0.02
    neck = np.array(
        [
            [-nw, 0.8],
            [-nw * 0.97, 1.8],
            [-nw * 1.05, 2.4],
            [-nw * 1.3, 2.9],
            [nw * 1.3, 2.9],
            [nw * 1.05, 2.4],
            [nw * 0.97, 1.8],
            [nw, 0.8],
        ]
    )
    neck[:, 0] = sc.yx(neck[:, 0], -0.1)
    roi, m = cv.poly_mask([neck])
    cv.over(roi, m, sc.neck_field)
    # the jaw's shadow on the neck
    jaw = sc.lm[2:15].copy()
    jaw[:, 1] += 0.12
    shadow = np.concatenate([jaw, [[jaw[-1, 0], 0.5], [jaw[0, 0], 0.5]]], axis=0)
    if roi is not None:
        _, sm = cv.soft_mask([shadow], 0.07, roi)
        cv.multiply(roi, sm * m, 0.45)


def _body(cv: Canvas, sc: _Scene) -> None:
    """Shoulders in clothes with a neckline."""
    f = sc.f
    nw = 0.56 * sc.W + 0.02
    hue, bright = f["clothes_hue"], f["clothes_brightness"]
    col = _hsv(hue, 0.25 + 0.4 * (1 - abs(2 * bright - 1)), 0.12 + 0.72 * bright)
    yb = sc.s.chin + 0.45
    body = np.array(
        [
            [-nw * 1.25, yb],
            [-1.35, yb + 0.3],
            [-2.3, yb + 0.6],
            [-3.0, yb + 1.2],
            [-3.4, yb + 2.4],
            [-3.6, 12.0],
            [3.6, 12.0],
            [3.4, yb + 2.4],
            [3.0, yb + 1.2],
            [2.3, yb + 0.6],
            [1.35, yb + 0.3],
            [nw * 1.25, yb],
            [0.35, yb + 0.32],
            [0.0, yb + 0.5 + 0.2 * bright],
            [-0.35, yb + 0.32],
        ]
    )

    def cloth(U: np.ndarray, V: np.ndarray) -> np.ndarray:
        shade = 1.0 - 0.10 * np.clip(V - yb - 0.6, 0, 4) + 0.12 * sc.light * np.clip(U / 3.0, -1, 1)
        fold = 1.0 - 0.08 * np.exp(-0.5 * ((U - 1.0) / 0.25) ** 2) * (V > yb + 0.8)
        return col[None, None, :] * (shade * fold)[..., None]

    cv.fill([body], cloth, soft=0.006)
    # collar edge
    collar = body[[11, 12, 13, 14, 0]]
    roi, m = cv.stroke_mask(catmull_rom(collar, 6), 0.06, soft=0.02)
    cv.multiply(roi, m, 0.25)


def _ears(cv: Canvas, sc: _Scene) -> None:
    for side in (-1.0, 1.0):
        cx = sc.yx(side * (sc.W + 0.02), -0.15)
        c = np.array([cx, 0.30])
        ear = ellipse_points(c, 0.13, 0.29, 28, angle=side * 0.12, power=2.3)
        roi, m = cv.poly_mask([ear])
        cv.over(roi, m, lambda U, V: sc.skin_field(U, V) * np.float32(0.88))
        roi, g = cv.gauss(c + [side * 0.03, 0.02], 0.04, 0.13, angle=side * 0.12)
        if roi is not None:
            _, m2 = cv.poly_mask([ear], roi)
            cv.multiply(roi, g * m2, 0.35)


def _face_outline(sc: _Scene) -> np.ndarray:
    """Skin outline: the jaw through the landmarks, then the skull over the top (face frame)."""
    jaw = catmull_rom(sc.lm[0:17], 6)
    W, cy = sc.W, sc.s.jaw_top
    ry = cy - sc.s.head_top
    t = np.linspace(0.0, -math.pi, 21)[1:-1]
    top = np.stack([sc.yx(W * _spow(np.cos(t)), 0.0), cy + ry * _spow(np.sin(t))], axis=1)
    return np.concatenate([jaw, top], axis=0)


def _skin(cv: Canvas, sc: _Scene) -> None:
    outline = _face_outline(sc)
    cv.fill([outline], sc.skin_field)
    lm, ys = sc.lm, sc.ys
    # rim: the sides of the face turn away from the light
    roi, m = cv.poly_mask([outline])
    if roi is not None:
        inner = outline.copy()
        c = np.array([0.25 * ys, 0.55])
        inner = c + (inner - c) * np.array([0.80, 0.90])
        _, mi = cv.soft_mask([inner], 0.12, roi)
        cv.multiply(roi, m * (1.0 - mi), 0.22)

    smile, age = sc.s.smile, sc.f["age"]
    ld = sc.light
    blobs: list = []
    eyes_c = [lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)]
    for i, side in enumerate((-1.0, 1.0)):
        e = eyes_c[i]
        away = 1.0 - 0.4 * side * ld
        # eye socket and the inner corner next to the nose bridge
        blobs.append((e + [0.0, -0.07], 0.23, 0.12, 0.20 * away, (0.9, 1.0, 1.05)))
        blobs.append((lm[39 if side < 0 else 42] + [side * -0.08, -0.03], 0.06, 0.09, 0.22 * away, None))
        # brow ridge and cheekbone highlights
        blobs.append((lm[19 if side < 0 else 24] + [0.0, -0.12], 0.22, 0.09, -0.06, None))
        ch = sc.pts([(side * 0.62, 0.50 - 0.06 * smile, 0.5)])[0]
        blobs.append((ch, 0.20, 0.14, -(0.04 + 0.08 * smile) * (1 + 0.4 * side * ld), None))
        # blush
        blobs.append((ch + [side * 0.05, 0.08], 0.22, 0.15, 0.5, (0.0, 0.10, 0.10)))
        # nose side
        nb = 0.5 * (lm[28] + lm[29])
        blobs.append(
            (nb + [side * (0.13 + 0.02 * (1 - ld * side)), 0.08], 0.05, 0.24, 0.17 * (1.0 - 0.5 * side * ld), None)
        )
    # nose bridge highlight, tip highlight, shadow under the nose and the lower lip, chin highlight
    blobs.append((0.5 * (lm[28] + lm[29]) + [0.02 * ld, 0.0], 0.035, 0.2, -0.10, None))
    blobs.append((lm[30] + [0.03 * ld, -0.03], 0.06, 0.045, -0.14, None))
    blobs.append((lm[33] + [-0.02 * ld, 0.045], 0.16, 0.035, 0.28, None))
    blobs.append((lm[51] + [0.0, -0.07], 0.035, 0.045, 0.10, None))
    blobs.append((lm[57] + [0.0, 0.06], 0.17, 0.045, 0.22, None))
    blobs.append((lm[8] + [0.0, -0.26], 0.22, 0.12, -0.07, None))
    blobs.append((lm[48] + [-0.02, 0.0], 0.035, 0.04, 0.25, None))
    blobs.append((lm[54] + [0.02, 0.0], 0.035, 0.04, 0.25, None))

    cv.blobs(blobs)

    # nasolabial folds (deepen with smile and age)
    strength = 0.05 + 0.30 * smile + 0.22 * age
    for side, nose_pt, corner in ((-1, 31, 48), (1, 35, 54)):
        a = lm[nose_pt] + [side * 0.06, -0.04]
        b = lm[corner] + [side * (0.06 + 0.05 * smile), 0.12 - 0.04 * smile]
        mid = 0.5 * (a + b) + [side * 0.08, 0.0]
        curve = catmull_rom(np.array([a, mid, b]), 8)
        cv.shade_stroke(curve, 0.025, strength, soft=0.02)
        cv.shade_stroke(curve + [side * 0.045, -0.01], 0.05, -0.4 * strength, soft=0.03)
    if age > 0.05:
        _age_lines(cv, sc, age)


def _age_lines(cv: Canvas, sc: _Scene, age: float) -> None:
    lm = sc.lm
    raise_ = max(0.0, sc.f["brow_raise"])
    top = min(lm[17:27, 1].min(), -0.3)
    k = 0.22 * age + 0.10 * raise_ * age
    for i in range(3):
        y = top - 0.16 - 0.13 * i
        xs = np.linspace(-0.55 + 0.08 * i, 0.55 - 0.08 * i, 7)
        pts = sc.pts([(x, y - 0.03 * math.cos(x * 2.5), 0.7) for x in xs])
        cv.shade_stroke(pts, 0.014, k, soft=0.008)
    for side, corner in ((-1, 36), (1, 45)):
        c = lm[corner]
        for ang in (-0.4, 0.05, 0.45):
            d = np.array([side * math.cos(ang), math.sin(ang)])
            bend = np.array([0.0, 0.012])
            pts = np.array([c + d * 0.07, c + d * 0.105 + bend, c + d * 0.14])
            cv.shade_stroke(pts, 0.008, 0.22 * age, soft=0.008)
        # bags under the eyes
        e = lm[36:42] if side < 0 else lm[42:48]
        low = e[[3, 4, 5, 0]] if side < 0 else e[[0, 5, 4, 3]]
        bag = catmull_rom(low + [0.0, 0.075], 6)
        cv.shade_stroke(bag, 0.016, 0.35 * age, soft=0.012)
    for corner, side in ((48, -1), (54, 1)):
        a = lm[corner] + [side * 0.02, 0.05]
        b = a + [side * 0.04, 0.22]
        cv.shade_stroke(np.array([a, b]), 0.014, 0.3 * age, soft=0.01)


def _beard(cv: Canvas, sc: _Scene) -> None:
    b = sc.f["beard"]
    if b <= 0.02:
        return
    lm, W = sc.lm, sc.W
    # lower edge: the jaw pushed out by the beard's length (longest at the chin)
    grow = (0.015 + 0.12 * b) * np.sin(np.linspace(0.15, np.pi - 0.15, 13)) ** 2
    jaw = lm[2:15].copy()
    c = np.array([0.25 * sc.ys, 0.5])
    d = jaw - c
    jaw = jaw + d / np.linalg.norm(d, axis=1, keepdims=True) * grow[:, None]
    # upper edge: sideburn -> cheek line -> around the mouth corner -> moustache under the nose
    cheek = 0.48 - 0.10 * b
    right = np.array(
        [
            lm[16] + [0.0, 0.08],
            sc.pts([(W * 0.90, cheek - 0.05, 0.1)])[0],
            sc.pts([(0.60, cheek + 0.25, 0.45)])[0],
            lm[54] + [0.10, 0.0],
        ]
    )
    left = np.array(
        [
            lm[48] + [-0.10, 0.0],
            sc.pts([(-0.60, cheek + 0.25, 0.45)])[0],
            sc.pts([(-W * 0.90, cheek - 0.05, 0.1)])[0],
            lm[0] + [0.0, 0.08],
        ]
    )
    must = np.array(
        [
            lm[54] + [0.05, -0.05],
            lm[35] + [0.05, 0.06],
            lm[33] + [0.0, 0.045],
            lm[31] + [-0.05, 0.06],
            lm[48] + [-0.05, -0.05],
        ]
    )
    poly = catmull_rom(np.concatenate([jaw, right, must, left], axis=0), 4, closed=True)
    roi, m = cv.soft_mask([poly], 0.035 * (1.3 - b))
    if roi is None:
        return
    # keep a thin line of skin around the lips so that the mouth stays readable
    lips = lm[48:60]
    lc = lips.mean(axis=0)
    margin = lc + (lips - lc) * 1.06 + np.array([0.0, 0.012]) * np.sign(lips[:, 1:2] - lc[1]).repeat(2, 1)
    _, ml = cv.soft_mask([margin], 0.012, roi)
    col = _mix(sc.hair * 0.7, [0.07, 0.06, 0.05], 0.3 * (1 - sc.grey))
    alpha = min(1.0, 0.2 + 0.8 * b)
    below = lm[57] + [0.0, 0.09]

    def density(U: np.ndarray, V: np.ndarray) -> np.ndarray:
        # thinner on the upper cheeks and just under the lower lip
        dv = np.clip((V - np.float32(cheek)) / np.float32(0.5), 0.0, 1.0)
        patch = np.exp(-0.5 * (((U - below[0]) / 0.07) ** 2 + ((V - below[1]) / 0.05) ** 2))
        return (0.55 + 0.45 * dv) * (1.0 - 0.5 * patch)

    dens = cv.field(lambda U, V: density(U, V)[..., None], roi)[..., 0]
    a = m * (1.0 - ml) * dens

    def field(U: np.ndarray, V: np.ndarray) -> np.ndarray:
        sh = sc.skin_field(U, V).mean(axis=-1, keepdims=True) / max(float(sc.skin.mean()), 1e-3)
        return col[None, None, :] * (0.55 + 0.45 * np.clip(sh, 0, 1.3))

    cv.over(roi, a, field, alpha)


def _nose(cv: Canvas, sc: _Scene) -> None:
    lm = sc.lm
    dark = sc.skin * np.array([0.30, 0.20, 0.18], np.float32)
    for side, wing, nost in ((-1, 31, 32), (1, 35, 34)):
        # nostril
        c = 0.5 * (lm[wing] + lm[nost]) + [0.0, -0.005]
        hole = ellipse_points(c, 0.05, 0.024, 20, angle=side * 0.35)
        cv.fill([hole], dark, 0.85, soft=0.006)
        # alar crease: the wing's outline
        a = lm[wing] + [side * -0.015, 0.02]
        arc = np.array([a, lm[wing] + [side * 0.035, -0.07], lm[wing] + [side * -0.02, -0.14]])
        cv.shade_stroke(catmull_rom(arc, 6), 0.02, 0.32, soft=0.014)
    # columella / tip underside
    r, g = cv.gauss(lm[33] + [0.0, -0.02], 0.045, 0.02)
    cv.multiply(r, g, 0.12)


def _mouth(cv: Canvas, sc: _Scene) -> None:
    lm = sc.lm
    f = sc.f
    up_out = catmull_rom(lm[48:55], 5)
    lo_out = catmull_rom(np.concatenate([lm[54:60], lm[48:49]]), 5)
    up_in = catmull_rom(np.concatenate([lm[48:49], lm[60:65], lm[54:55]]), 5)
    lo_in = catmull_rom(np.concatenate([lm[54:55], lm[64:68], lm[60:61], lm[48:49]]), 5)
    dark = float(sc.f["skin_tone"])
    tint = _mix([0.95, 0.70, 0.72], [0.88, 0.42, 0.48], f["lip_color"]) * (1.0 - 0.22 * dark)
    redden = _mix([0.03, 0.0, 0.0], [0.10, 0.0, 0.02], f["lip_color"]) * (1 - dark)
    lip = np.clip(sc.skin * tint + redden, 0, 1)
    lip = _mix(lip, sc.skin, 0.25 * f["age"])
    upper = np.concatenate([up_out, up_in[::-1]], axis=0)
    mouth = np.concatenate([up_out, lo_out], axis=0)
    roi, m = cv.poly_mask([mouth])
    if roi is None:
        return

    def lip_field(U: np.ndarray, V: np.ndarray) -> np.ndarray:
        sh = sc.skin_field(U, V).mean(axis=-1, keepdims=True) / max(float(sc.skin.mean()), 1e-3)
        return lip[None, None, :] * np.clip(sh, 0.6, 1.25)

    cv.over(roi, m, lip_field)
    _, mu = cv.poly_mask([upper], roi)
    cv.multiply(roi, mu, 0.16)
    r, g = cv.gauss(lm[57] + [0.02 * sc.light, -0.55 * (lm[57, 1] - lm[66, 1])], 0.11, 0.025)
    cv.multiply(r, g, -0.22)
    opening = np.concatenate([up_in, lo_in], axis=0)
    if sc.s.mouth_open > 0.004:
        _, mo = cv.poly_mask([opening], roi)
        cv.over(roi, mo, (0.16, 0.05, 0.05))
        # upper teeth: the opening's upper part
        gap = lm[66, 1] - lm[62, 1]
        teeth = np.concatenate([up_in, (up_in + [0.0, 0.62 * gap])[::-1]], axis=0)
        _, mt = cv.poly_mask([teeth], roi)
        U, V = cv.grid(roi)
        mw = 0.5 * (lm[54, 0] - lm[48, 0])
        cx = 0.5 * (lm[54, 0] + lm[48, 0])
        shade = np.clip(1.0 - 0.55 * ((U - cx) / mw) ** 2, 0.3, 1.0)
        tcol = np.array([0.93, 0.90, 0.84], np.float32)[None, None, :] * shade[..., None]
        a = mt * mo
        x0, y0, x1, y1 = roi
        dst = cv.img[y0:y1, x0:x1]
        dst += (tcol - dst) * a[..., None]
    # the dark line between the lips (or the border of the opening)
    r, ml = cv.stroke_mask(up_in, 0.022, soft=0.006)
    cv.over(r, ml, lip * np.float32(0.35), 0.85)
    if sc.s.mouth_open > 0.004:
        r, ml = cv.stroke_mask(lo_in, 0.014, soft=0.006)
        cv.over(r, ml, lip * np.float32(0.4), 0.6)


def _eyes(cv: Canvas, sc: _Scene) -> None:
    lm = sc.lm
    f = sc.f
    iris_col = _keys(_EYE_KEYS, f["eye_color"])
    lash = np.array([0.06, 0.045, 0.04], np.float32)
    for side in (-1, 1):
        e = lm[36:42] if side < 0 else lm[42:48]
        if side < 0:
            outer, inner = e[0], e[3]
            up = catmull_rom(e[[0, 1, 2, 3]], 8)  # outer -> inner
            lo = catmull_rom(e[[3, 4, 5, 0]], 8)  # inner -> outer
        else:
            outer, inner = e[3], e[0]
            up = catmull_rom(e[[3, 2, 1, 0]], 8)
            lo = catmull_rom(e[[0, 5, 4, 3]], 8)
        eye = np.concatenate([up, lo], axis=0)
        ew = 0.5 * float(np.hypot(*(outer - inner)))
        ctr = 0.5 * (outer + inner) + [0.15 * 0.5 * sc.ys, 0.0]
        roi = cv.roi(cv.px(np.concatenate([eye, [ctr + [0, -0.35], ctr + [0, 0.25]]])), 3 + 0.08 * cv.scale)
        if roi is None:
            continue
        # crease above the upper lid
        crease = up[2:-3] + [0.0, -0.075]
        cv.shade_stroke(crease, 0.02, 0.28, soft=0.012)
        r, g = cv.gauss(0.5 * (up[len(up) // 2] + crease[len(crease) // 2]), 0.14, 0.03)
        cv.multiply(r, g, -0.06)
        _, me = cv.poly_mask([eye], roi)
        U, V = cv.grid(roi)
        dx = (U - np.float32(ctr[0])) / np.float32(ew)
        white = np.array([0.90, 0.87, 0.84], np.float32) * (0.75 + 0.25 * float(sc.skin.mean()) ** 0.3)
        sclera = white[None, None, :] * np.clip(1.0 - 0.18 * dx * dx, 0.7, 1.0)[..., None]
        x0, y0, x1, y1 = roi
        dst = cv.img[y0:y1, x0:x1]
        dst += (sclera - dst) * me[..., None]
        # iris, limbal ring, pupil, highlight (all clipped by the lids)
        ir = 0.42 * ew
        dist = np.sqrt((U - np.float32(ctr[0])) ** 2 + (V - np.float32(ctr[1] + 0.01)) ** 2)
        px = 1.0 / cv.scale
        cov_i = np.clip((ir - dist) / px + 0.5, 0.0, 1.0)
        rho = np.clip(dist / ir, 0, 1)
        icol = iris_col[None, None, :] * (1.15 - 0.75 * rho**3)[..., None]
        dst += (icol - dst) * (cov_i * me)[..., None]
        cov_p = np.clip((0.42 * ir - dist) / px + 0.5, 0.0, 1.0)
        dst += (np.float32(0.03) - dst) * (cov_p * me)[..., None]
        # shadow of the upper lid on the eyeball
        _, ms = cv.stroke_mask(up, 0.06, soft=0.025, roi=roi)
        cv.multiply(roi, ms * me, 0.45)
        hl = ctr + [0.35 * ir * (0.3 + 0.5 * sc.light), -0.35 * ir]
        _, g = cv.gauss(hl, 0.16 * ir, 0.16 * ir, roi=roi)
        dst += (np.float32(1.0) - dst) * (np.clip(g * 1.6, 0, 1) * me)[..., None] * 0.9
        # lash line: thick along the upper lid, with a small wing past the outer corner
        n = len(up)
        t = np.linspace(0.0, 1.0, n)  # 0 at the outer corner
        width = (0.022 + 0.012 * f["eye_size"]) * (0.35 + 0.9 * np.sin(np.pi * (0.15 + 0.8 * t)))
        wing = outer + (outer - inner) * 0.02 + [0.0, -0.01]
        lashes = np.concatenate([[wing], up[1:]], axis=0)
        lashes[:, 1] -= 0.45 * width
        r, m = cv.stroke_mask(lashes, width, soft=0.004)
        cv.over(r, m, lash, 0.95)
        # lower lid line
        r, m = cv.stroke_mask(lo + [0.0, 0.004], 0.011, soft=0.005)
        cv.over(r, m, sc.skin * np.float32(0.35), 0.55)


def _brows(cv: Canvas, sc: _Scene) -> None:
    lm = sc.lm
    th = sc.f["brow_thickness"]
    for pts, inner_first in ((lm[17:22], False), (lm[22:27], True)):
        line = catmull_rom(pts, 6)
        if inner_first:
            line = line[::-1]  # always outer -> inner
        t = np.linspace(0.0, 1.0, len(line))
        width = (0.035 + 0.06 * th) * (0.45 + 0.75 * t**0.7) * (1.0 - 0.25 * np.clip(t - 0.85, 0, 1) / 0.15)
        centre = line + np.stack([np.zeros_like(t), width * 0.1], axis=1)
        r, m = cv.stroke_mask(centre, width * 1.25, soft=0.012)
        cv.over(r, m, sc.brow, 0.45)
        r, m = cv.stroke_mask(centre, width, soft=0.005)
        cv.over(r, m, sc.brow, 0.9)


def _glasses(cv: Canvas, sc: _Scene) -> None:
    g = sc.f["glasses"]
    if g <= 0.02:
        return
    lm = sc.lm
    frame = np.array([0.10, 0.08, 0.07], np.float32)
    width = 0.016 + 0.022 * g
    op = min(1.0, 0.35 + 0.8 * g)
    d = lm[45] - lm[36]
    ang = math.atan2(d[1], d[0])
    rims = []
    for side in (-1, 1):
        e = (lm[36:42] if side < 0 else lm[42:48]).mean(axis=0)
        c = e + [side * 0.015, 0.025]
        rim = ellipse_points(c, 0.31, 0.235, 40, angle=ang, power=2.6)
        rims.append((c, rim))
        roi, m = cv.poly_mask([rim])
        cv.multiply(roi, m, 0.07 * op, (1.0, 0.9, 0.8))
        r, gg = cv.gauss(c + [0.1, -0.08], 0.08, 0.03, angle=ang - 0.6)
        cv.multiply(r, gg, -0.12 * op)
        r, m = cv.stroke_mask(rim, width, closed=True, soft=0.003)
        cv.over(r, m, frame, op)
        # temple arm towards the ear
        a = c + np.array([side * 0.29, -0.07])
        b = sc.pts([(side * (sc.W + 0.02), -0.02, -0.1)])[0]
        r, m = cv.stroke_mask(np.array([a, b]), width * 0.8, soft=0.003)
        cv.over(r, m, frame, op)
    (cl, _), (cr, _) = rims
    bridge = np.array([cl + [0.26, -0.07], 0.5 * (cl + cr) + [0.0, -0.10], cr + [-0.26, -0.07]])
    r, m = cv.stroke_mask(catmull_rom(bridge, 6), width * 0.9, soft=0.003)
    cv.over(r, m, frame, op)


def _front_hair(cv: Canvas, sc: _Scene) -> None:
    f = sc.f
    outline, y_end, _ = _hair_outline(sc)
    W, lm = sc.W, sc.lm
    length = f["hair_length"]
    brow_top = float(lm[17:27, 1].min())
    yh = -1.10 - 0.45 * f["hairline"] - 0.1 * f["age"] * f["hairline"]
    cover = 0.02 + 0.10 * min(1.0, max(0.0, (length - 0.25) / 0.5))  # how far side hair covers the face
    side_end = min(max(y_end, -0.1), 0.9)
    # The visible face region F: below the hairline and between the side strands, widening below the
    # strands' ends so that no front hair lies over the neck. Front hair = hair silhouette minus F.
    ys = np.linspace(side_end, -0.55, 5)
    edge = W * np.sqrt(np.clip(1 - ((ys - sc.s.jaw_top) / 2.0) ** 2, 0, 1)) - cover
    edge[0] += 0.04 * (side_end > 0.2)  # the strands' ends bend outwards
    right_in = np.stack([edge, ys], axis=1)
    hl = np.array(
        [(W * 0.93 - cover, -0.75), (0.62, yh + 0.16), (0.0, yh), (-0.62, yh + 0.16), (-W * 0.93 + cover, -0.75)]
    )
    left_in = right_in[::-1] * [-1, 1]
    inner = catmull_rom(np.concatenate([right_in, hl, left_in], axis=0), 5)
    big = W + 3.0
    visible = np.concatenate(
        [inner, [[-big, side_end + 0.3], [-big, 12.0], [big, 12.0], [big, side_end + 0.3]]], axis=0
    )
    visible[:, 0] = sc.yx(visible[:, 0], 0.3 * np.clip(-visible[:, 1], 0, 1))
    p = (f["hair_parting"] - 0.5) * 0.8
    soft = 0.012
    roi = cv.roi(cv.px(outline), 3 + 3 * soft * cv.scale)
    if roi is None:
        return
    _, ms = cv.poly_mask([outline], roi)
    _, mf = cv.poly_mask([visible], roi)
    front = ms * (1.0 - mf)
    if f["fringe"] > 0.12:
        yf = yh + (brow_top - 0.10 - yh) * f["fringe"]
        xs = np.linspace(-W * 0.92, W * 0.92, 13)
        slope = -0.12 * (p / 0.4)
        lower = [(x, min(yf + slope * x / W + 0.02 * ((i % 2) * 2 - 1), brow_top - 0.08)) for i, x in enumerate(xs)]
        lower = list(catmull_rom(np.array(lower), 4))
        fr = np.array(
            [(W * 0.95, -0.9), (W * 0.6, yh - 0.2), (0.0, yh - 0.3), (-W * 0.6, yh - 0.2), (-W * 0.95, -0.9)] + lower
        )
        fr[:, 0] = sc.yx(fr[:, 0], 0.4)
        _, mfr = cv.poly_mask([fr], roi)
        front = np.maximum(front, mfr * ms)
    sig = soft * cv.scale
    if sig > 0.3:
        front = cv2.GaussianBlur(front, (0, 0), sig)
    cv.over(roi, front, sc.hair_field)
    # parting and strands, kept on the hair
    part_top = sc.pts([(p * 0.6, -1.9, 0.0)])[0]
    part_end = sc.pts([(p, yh - 0.05, 0.3)])[0]
    _, mm = cv.stroke_mask(np.array([part_top, part_end]), 0.02, soft=0.015, roi=roi)
    cv.multiply(roi, mm * front, 0.35)
    n_strands = 8 if cv.scale * 0.018 * 0.2 >= 0.08 else 0  # invisible on thumbnails
    for k in range(n_strands):
        s = (k + 0.5) / 8.0
        side = -1.0 if s < 0.5 else 1.0
        frac = abs(s - 0.5) * 2
        a = (p + side * 0.08, -1.85 + 0.1 * frac)
        b = (side * (0.3 + 0.6 * frac) * W, yh - 0.1 + 0.3 * frac)
        c = (side * (W + 0.05 * frac), max(-0.4, min(side_end, 0.2 + 0.6 * frac)))
        curve = catmull_rom(sc.pts([(a[0], a[1], 0.0), (b[0], b[1], 0.2), (c[0], c[1], 0.0)]), 8)
        r, mm = cv.stroke_mask(curve, 0.018, soft=0.01)
        if r is not None:
            x0, y0, x1, y1 = r
            X0, Y0, X1, Y1 = roi
            if x0 >= X0 and y0 >= Y0 and x1 <= X1 and y1 <= Y1:
                cv.multiply(r, mm * front[y0 - Y0 : y1 - Y0, x0 - X0 : x1 - X0], 0.2)


def draw_face(cv: Canvas, f: dict[str, float], shape: FaceShape, scene: Canvas | None = None) -> None:
    """Draw the whole scene of face ``f`` (factor dict) with geometry ``shape`` onto ``cv``.

    scene: a canvas sharing ``cv``'s image but with its own camera, for the background and the body
    (a clip keeps them still while the head moves); None draws everything with ``cv``.
    """
    sc = _Scene(f, shape)
    _background(scene or cv, sc)
    _back_hair(cv, sc)
    _neck(cv, sc)
    _body(scene or cv, sc)
    _ears(cv, sc)
    _skin(cv, sc)
    _beard(cv, sc)
    _nose(cv, sc)
    _mouth(cv, sc)
    _eyes(cv, sc)
    _brows(cv, sc)
    _glasses(cv, sc)
    _front_hair(cv, sc)
