"""Anti-aliased drawing primitives for the face renderer, in face-frame coordinates.

A :class:`Canvas` owns a float32 [H, W, 3] image in [0, 1] and a 2x3 similarity ``A`` that maps
face-frame points (x right, y down, unit ~ the eye-centre distance) to pixel-index coordinates
(the centre of pixel (row i, column j) is at (x=j, y=i)). Every primitive takes face-frame geometry,
so the same scene renders at any resolution and under any roll/shift/zoom without resampling.

Filled shapes use cv2's anti-aliased polygon fill with 4 bits of sub-pixel precision. cv2 paints every
pixel whose centre is inside fully and adds an anti-aliased fringe outside, which grows shapes by about
a third of a pixel; polygons are inset by that much so that sizes stay right at small resolutions.
Work is restricted to the bounding box of each shape.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import cv2
import numpy as np

__all__ = ["Canvas", "catmull_rom", "ellipse_points"]

_SHIFT = 4
_ONE = 1 << _SHIFT
_AA_GROWTH = 0.35  # pixels cv2's LINE_AA fill adds around a polygon

Roi = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
ColorField = Callable[[np.ndarray, np.ndarray], np.ndarray]


@functools.lru_cache(maxsize=16)
def _cr_basis(n: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n, endpoint=False)
    T = np.stack([np.ones_like(t), t, t * t, t * t * t], axis=1)
    M = 0.5 * np.array([[0, 2, 0, 0], [-1, 0, 1, 0], [2, -5, 4, -1], [-1, 3, -3, 1]], dtype=np.float64)
    return T @ M


def catmull_rom(pts: np.ndarray, n_per_seg: int = 8, closed: bool = False) -> np.ndarray:
    """Uniform Catmull-Rom curve through ``pts`` (float [K,2]) -> float [M,2]."""
    p = np.asarray(pts, dtype=np.float64)
    if closed:
        ext = np.concatenate([p[-1:], p, p[:2]], axis=0)
        nseg = len(p)
    else:
        ext = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]], axis=0)
        nseg = len(p) - 1
    idx = np.arange(nseg)[:, None] + np.arange(4)[None, :]
    out = np.einsum("tk,skd->std", _cr_basis(n_per_seg), ext[idx]).reshape(-1, 2)
    return out if closed else np.concatenate([out, p[-1:]], axis=0)


def ellipse_points(
    center: np.ndarray, rx: float, ry: float, n: int = 32, angle: float = 0.0, power: float = 2.0
) -> np.ndarray:
    """Points on a closed (super)ellipse, float [n,2]; ``power`` > 2 gives a rounded rectangle."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / power
    x = rx * np.sign(c) * np.abs(c) ** e
    y = ry * np.sign(s) * np.abs(s) ** e
    ca, sa = np.cos(angle), np.sin(angle)
    return np.stack([center[0] + ca * x - sa * y, center[1] + sa * x + ca * y], axis=1)


def _inset(poly: np.ndarray, d: float) -> np.ndarray:
    """Move the vertices of a closed polygon (pixels, float [K,2]) inwards by ``d`` pixels."""
    if len(poly) < 3 or d == 0:
        return poly
    prev = np.concatenate([poly[-1:], poly[:-1]], axis=0)
    nxt = np.concatenate([poly[1:], poly[:1]], axis=0)
    tangent = nxt - prev
    norm = np.hypot(tangent[:, 0], tangent[:, 1])[:, None]
    tangent = tangent / np.maximum(norm, 1e-9)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    area = 0.5 * np.sum(poly[:, 0] * nxt[:, 1] - nxt[:, 0] * poly[:, 1])
    # For positive signed area (clockwise on screen, y down) (ty, -tx) points outwards.
    return poly - np.sign(area) * d * normal


class Canvas:
    """An image being drawn, with the face-frame -> pixel similarity ``A`` (float64 [2,3])."""

    def __init__(self, size: int, A: np.ndarray, img: np.ndarray | None = None) -> None:
        self.size = int(size)
        # ``img`` lets two canvases with different cameras draw into one picture
        self.img = np.zeros((self.size, self.size, 3), dtype=np.float32) if img is None else img
        self.A = np.asarray(A, dtype=np.float64)
        self.scale = float(np.sqrt(abs(np.linalg.det(self.A[:, :2]))))  # pixels per face unit
        self.angle = float(np.arctan2(self.A[1, 0], self.A[0, 0]))  # face frame -> screen rotation
        Ainv = np.linalg.inv(np.vstack([self.A, [0.0, 0.0, 1.0]]))
        self.Ainv = Ainv[:2]

    # -- geometry ---------------------------------------------------------------------------------
    def px(self, pts: np.ndarray) -> np.ndarray:
        """Face-frame points float [...,2] -> pixel coordinates float [...,2]."""
        p = np.asarray(pts, dtype=np.float64)
        return p @ self.A[:, :2].T + self.A[:, 2]

    def roi(self, pts_px: np.ndarray, pad: float = 2.0) -> Roi | None:
        lo = np.floor(pts_px.reshape(-1, 2).min(axis=0) - pad).astype(int)
        hi = np.ceil(pts_px.reshape(-1, 2).max(axis=0) + pad).astype(int) + 1
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], self.size), min(hi[1], self.size)
        if x1 <= x0 or y1 <= y0:
            return None
        return int(x0), int(y0), int(x1), int(y1)

    def full_roi(self) -> Roi:
        return 0, 0, self.size, self.size

    def grid(self, roi: Roi) -> tuple[np.ndarray, np.ndarray]:
        """Face-frame coordinates (U, V), float32 [h,w] each, of the pixel centres in ``roi``."""
        x0, y0, x1, y1 = roi
        return self._grid_at(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))

    def _grid_at(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = self.Ainv.astype(np.float32)
        U = (a[0, 0] * xs)[None, :] + (a[0, 1] * ys)[:, None] + a[0, 2]
        V = (a[1, 0] * xs)[None, :] + (a[1, 1] * ys)[:, None] + a[1, 2]
        return U, V

    def field(self, fn: ColorField, roi: Roi, pitch: float = 0.05) -> np.ndarray:
        """A smooth colour field fn(U, V) -> [h,w,3] over ``roi``, evaluated on a grid of about
        ``pitch`` face units and interpolated bilinearly (exactly at the pixel centres otherwise)."""
        x0, y0, x1, y1 = roi
        w, h = x1 - x0, y1 - y0
        step = int(pitch * self.scale)
        if step <= 1 or w < 4 * step or h < 4 * step:
            return fn(*self.grid(roi))
        nw, nh = -(-w // step) + 1, -(-h // step) + 1
        # cv2.resize maps output pixel x to source (x + 0.5) * nw / w - 0.5; sample where that lands
        xs = (np.arange(nw, dtype=np.float32) + 0.5) * (w / nw) - 0.5 + x0
        ys = (np.arange(nh, dtype=np.float32) + 0.5) * (h / nh) - 0.5 + y0
        small = np.ascontiguousarray(fn(*self._grid_at(xs, ys)), dtype=np.float32)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        return out.reshape(h, w, *small.shape[2:])

    # -- masks ------------------------------------------------------------------------------------
    def poly_mask(
        self, polys: list[np.ndarray], roi: Roi | None = None, inset: float = _AA_GROWTH
    ) -> tuple[Roi | None, np.ndarray | None]:
        """Anti-aliased coverage of the union of face-frame polygons: (roi, float32 [h,w] in [0,1])."""
        pp = [_inset(self.px(p), inset) for p in polys if len(p) >= 3]
        if not pp:
            return None, None
        if roi is None:
            roi = self.roi(np.concatenate(pp, axis=0))
            if roi is None:
                return None, None
        x0, y0, x1, y1 = roi
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
        off = np.array([x0, y0], dtype=np.float64)
        cv2.fillPoly(mask, [np.round((p - off) * _ONE).astype(np.int32) for p in pp], 255, cv2.LINE_AA, _SHIFT)
        return roi, mask.astype(np.float32) * (1.0 / 255.0)

    def stroke_polys(self, pts: np.ndarray, width: float | np.ndarray) -> np.ndarray:
        """Outline polygon (face frame) of a polyline with per-vertex ``width`` (face units)."""
        p = np.asarray(pts, dtype=np.float64)
        d = np.gradient(p, axis=0)
        d /= np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
        n = np.stack([-d[:, 1], d[:, 0]], axis=1)
        w = np.broadcast_to(np.asarray(width, dtype=np.float64), (len(p),))[:, None] * 0.5
        return np.concatenate([p + n * w, (p - n * w)[::-1]], axis=0)

    def stroke_mask(
        self,
        pts: np.ndarray,
        width: float | np.ndarray,
        soft: float = 0.0,
        closed: bool = False,
        roi: Roi | None = None,
    ) -> tuple[Roi | None, np.ndarray | None]:
        """Coverage of a polyline of ``width`` face units, blurred by ``soft`` face units (sigma).

        Strokes narrower than ~1.2 px are drawn 1 px wide with proportionally lower coverage, so thin
        lines fade out instead of becoming too bold at small sizes.
        """
        p = np.asarray(pts, dtype=np.float64)
        if closed:
            p = np.concatenate([p, p[:1]], axis=0)
        w = np.asarray(width, dtype=np.float64)
        w_mean = (float(w) if w.ndim == 0 else float(w.mean())) * self.scale
        w_max = (float(w) if w.ndim == 0 else float(w.max())) * self.scale
        sig = soft * self.scale
        pp = self.px(p)
        if roi is None:
            roi = self.roi(pp, 2.0 + w_max + 3.0 * sig)
        if roi is None:
            return None, None
        if w_mean >= 1.2:
            roi, m = self.poly_mask([self.stroke_polys(p, width)], roi)
        else:
            x0, y0, x1, y1 = roi
            mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
            q = np.round((pp - np.array([x0, y0])) * _ONE).astype(np.int32)
            cv2.polylines(mask, [q], False, 255, 1, cv2.LINE_AA, _SHIFT)
            m = mask.astype(np.float32) * np.float32(w_mean / 1.2 / 255.0)
        if sig > 0.3:
            m = cv2.GaussianBlur(m, (0, 0), sig)
        return roi, m

    def shade_stroke(self, pts: np.ndarray, width: float | np.ndarray, amount: float, soft: float = 0.0) -> None:
        """Darken (amount > 0) or lighten along a polyline; skipped when it would move less than
        ~4% of a pixel's worth of ink (fine wrinkles at thumbnail sizes)."""
        w = float(np.mean(width)) if np.ndim(width) else float(width)
        if w * self.scale * abs(amount) < 0.04:
            return
        r, m = self.stroke_mask(pts, width, soft=soft)
        self.multiply(r, m, amount)

    def gauss(
        self, center: np.ndarray, rx: float, ry: float, angle: float = 0.0, cut: float = 3.0, roi: Roi | None = None
    ) -> tuple[Roi | None, np.ndarray | None]:
        """Elliptical Gaussian (sigmas rx, ry face units, rotated ``angle`` rad in the face frame)."""
        if roi is None:
            c = self.px(np.asarray(center, dtype=np.float64))
            r = cut * max(rx, ry) * self.scale + 1.0
            roi = self.roi(np.array([c - r, c + r]), 0.0)
        if roi is None:
            return None, None
        U, V = self.grid(roi)
        du, dv = U - np.float32(center[0]), V - np.float32(center[1])
        ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        a = (ca * du + sa * dv) / np.float32(rx)
        b = (-sa * du + ca * dv) / np.float32(ry)
        return roi, np.exp(-0.5 * (a * a + b * b))

    def blobs(self, specs: list[tuple[np.ndarray, float, float, float, tuple[float, float, float] | None]]) -> None:
        """Multiply the image by ``1 - amount * gaussian * tint`` for each (centre, rx, ry, amount, tint).

        Small faces evaluate all blobs on one shared grid (fewer, larger array operations); large ones
        blob by blob inside each blob's own box. The result is the same product either way.
        """
        if not specs:
            return
        boxes = []
        for c, rx, ry, _, _ in specs:
            cp = self.px(np.asarray(c, dtype=np.float64))
            r = 3.0 * max(rx, ry) * self.scale + 1.0
            boxes.append(np.array([cp - r, cp + r]))
        roi = self.roi(np.concatenate(boxes, axis=0), 0.0)
        if roi is None:
            return
        x0, y0, x1, y1 = roi
        if (x1 - x0) * (y1 - y0) * len(specs) > 150_000:
            for c, rx, ry, amount, tint in specs:
                r, g = self.gauss(c, rx, ry)
                self.multiply(r, g, amount, tint or (1.0, 1.0, 1.0))
            return
        U, V = self.grid(roi)
        F = np.ones((y1 - y0, x1 - x0, 3), dtype=np.float32)
        for c, rx, ry, amount, tint in specs:
            a = (U - np.float32(c[0])) * np.float32(1.0 / rx)
            b = (V - np.float32(c[1])) * np.float32(1.0 / ry)
            g = np.exp(np.float32(-0.5) * (a * a + b * b)) * np.float32(amount)
            if tint is None:
                F *= (np.float32(1.0) - g)[..., None]
            else:
                F *= np.float32(1.0) - g[..., None] * np.asarray(tint, dtype=np.float32)
        self.img[y0:y1, x0:x1] *= F

    # -- compositing ------------------------------------------------------------------------------
    def over(
        self,
        roi: Roi | None,
        alpha: np.ndarray | None,
        color: np.ndarray | ColorField | tuple[float, float, float],
        opacity: float = 1.0,
    ) -> None:
        """Paint ``color`` (RGB [3], a field [h,w,3], or a function of (U, V)) with coverage ``alpha``."""
        if roi is None or alpha is None or opacity <= 0:
            return
        x0, y0, x1, y1 = roi
        a = alpha if opacity >= 1 else alpha * np.float32(opacity)
        if callable(color):
            col = self.field(color, roi)
        else:
            col = np.asarray(color, dtype=np.float32)
        dst = self.img[y0:y1, x0:x1]
        dst += (col - dst) * a[..., None]

    def multiply(
        self,
        roi: Roi | None,
        alpha: np.ndarray | None,
        amount: float,
        tint: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        """Darken (amount > 0) or lighten (amount < 0) by ``1 - amount * alpha`` per channel * tint."""
        if roi is None or alpha is None or amount == 0:
            return
        x0, y0, x1, y1 = roi
        dst = self.img[y0:y1, x0:x1]
        if tint == (1.0, 1.0, 1.0):
            f = np.float32(1.0) - np.float32(amount) * alpha
            np.multiply(dst, f[..., None], out=dst)
        else:
            t = np.asarray(tint, dtype=np.float32)
            f = np.float32(1.0) - (np.float32(amount) * alpha)[..., None] * t
            np.multiply(dst, f, out=dst)

    def fill(
        self,
        polys: list[np.ndarray],
        color: np.ndarray | ColorField | tuple[float, float, float],
        opacity: float = 1.0,
        soft: float = 0.0,
    ) -> None:
        roi, m = self.soft_mask(polys, soft) if soft > 0 else self.poly_mask(polys)
        self.over(roi, m, color, opacity)

    def soft_mask(
        self, polys: list[np.ndarray], soft: float, roi: Roi | None = None
    ) -> tuple[Roi | None, np.ndarray | None]:
        """Polygon coverage blurred by ``soft`` face units (sigma)."""
        sig = soft * self.scale
        if roi is None:
            roi = self.roi(np.concatenate([self.px(p) for p in polys], axis=0), 3 * sig + 2)
        if roi is None:
            return None, None
        k = int(sig / 2.0)
        if k >= 2:
            # a wide blur: rasterise and blur at 1/k resolution, then interpolate back
            x0, y0, x1, y1 = roi
            w, h = x1 - x0, y1 - y0
            sw, sh = -(-w // k), -(-h // k)
            small = np.zeros((sh, sw), dtype=np.uint8)
            off = np.array([x0, y0], dtype=np.float64)
            # small pixel j covers big pixels [j*k, j*k+k): centre at j*k + (k-1)/2
            pts = [np.round(((self.px(p) - off - (k - 1) / 2.0) / k) * _ONE).astype(np.int32) for p in polys]
            cv2.fillPoly(small, pts, 255, cv2.LINE_AA, _SHIFT)
            sm = cv2.GaussianBlur(small.astype(np.float32) * (1.0 / 255.0), (0, 0), sig / k)
            big = cv2.resize(sm, (sw * k, sh * k), interpolation=cv2.INTER_LINEAR)
            return roi, np.ascontiguousarray(big[:h, :w])
        roi, m = self.poly_mask(polys, roi)
        if m is not None and sig > 0.3:
            m = cv2.GaussianBlur(m, (0, 0), sig)
        return roi, m

    def to_uint8(self) -> np.ndarray:
        return np.clip(self.img * 255.0 + 0.5, 0, 255).astype(np.uint8)
