"""Temporal smoothing of per-frame latents and transforms, with no frame lost.

The paper's release filters latents (and the 3x3 transform matrices, entry by entry) with the 5 taps
(0.25, 0.75, 1, 0.75, 0.25)/3 in "valid" mode, so a clip of N frames comes back with N-4. Here every
filter keeps N frames: the series is padded at each end with the straight line fitted (least squares)
to the frames nearest that end, ``2 * radius + 1`` of them (radius: the kernel's half-width), then
filtered. Why a fitted line and not reflect or edge padding:

- constants and linear ramps (a steady pan, a slow turn of the head) come out exactly unchanged, first
  and last frames included; even reflection and edge padding bend a ramp at the ends (the end frames
  lag behind the motion), and odd reflection keeps ramps but never smooths the end frame at all;
- the end frames are still smoothed (their noise is averaged with their neighbours').

Transforms are smoothed as (angle_deg, tx, ty) series (:mod:`engine.transforms`), the angle unwrapped
first, so a rotation stays a rotation and crossing +-180 degrees does not average to 0.

Shapes: a series is [N, ...] (time first), float; outputs have the input's shape and float dtype.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "METHODS",
    "PAPER_WEIGHTS",
    "default_fine_from",
    "fill_masked",
    "filter_weights",
    "smooth_latents",
    "smooth_series",
    "smooth_transforms",
]

PAPER_WEIGHTS = (0.25, 0.75, 1.0, 0.75, 0.25)  # the release divides by 3; normalised here (sum 1)
METHODS = ("paper", "gaussian", "none")
GAUSS_TRUNCATE = 3.0  # Gaussian taps out to 3 sigma (the weight there is 1.1% of the centre's)


def filter_weights(method: str = "paper", sigma: float = 1.0) -> np.ndarray:
    """The normalised taps (float64 [2r+1], sum 1, symmetric) of ``method``: 'paper' (5 taps),
    'gaussian' (``sigma`` in frames, taps out to 3 sigma) or 'none' ([1.0])."""
    if method == "paper":
        w = np.asarray(PAPER_WEIGHTS, dtype=np.float64)
    elif method == "gaussian":
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number of frames, got {sigma}")
        r = max(1, math.ceil(GAUSS_TRUNCATE * sigma))
        t = np.arange(-r, r + 1, dtype=np.float64)
        w = np.exp(-0.5 * (t / sigma) ** 2)
    elif method == "none":
        w = np.ones(1, dtype=np.float64)
    else:
        raise ValueError(f"unknown smoothing method {method!r}; use one of {', '.join(METHODS)}")
    return w / w.sum()


def fill_masked(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``x`` [N,...] (float64 copy) with the frames where ``mask`` [N] is False replaced by values
    interpolated linearly in time from the nearest True frames (held constant beyond the first and
    last True frame)."""
    m = _check_mask(mask, x.shape[0])
    out = np.array(x, dtype=np.float64, copy=True)
    if m.all():
        return out
    good = np.flatnonzero(m)
    bad = np.flatnonzero(~m)
    flat = out.reshape(out.shape[0], -1)
    # Each missing frame lies between two kept frames (or beyond the outermost one): a linear blend.
    right = np.searchsorted(good, bad).clip(1, len(good) - 1) if len(good) > 1 else np.zeros_like(bad)
    left = right - 1 if len(good) > 1 else np.zeros_like(bad)
    g0, g1 = good[left], good[right]
    span = np.where(g1 > g0, g1 - g0, 1)
    t = ((bad - g0) / span).clip(0.0, 1.0)[:, None]
    flat[bad] = (1 - t) * flat[g0] + t * flat[g1]
    return out


def smooth_series(
    x: np.ndarray, method: str = "paper", sigma: float = 1.0, mask: np.ndarray | None = None
) -> np.ndarray:
    """Filter ``x`` [N,...] along axis 0 with the taps of :func:`filter_weights`; returns [N,...].

    The ends are padded with a least-squares line through the nearest frames (see the module
    docstring): constants and linear ramps come back unchanged, and no frame is dropped.
    mask: optional bool [N], the frames to trust. False frames (no face found, a passthrough frame)
    do not pull their neighbours: before filtering they are replaced by values interpolated from the
    True frames, and they come back with the smoothed interpolation. 'none' still fills them.
    Output dtype: ``x``'s when it is floating point, else float64.
    """
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"expected a series [N,...] with N >= 1, got shape {x.shape}")
    out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.dtype(np.float64)
    w = filter_weights(method, sigma)
    data = fill_masked(x, mask) if mask is not None else np.asarray(x, dtype=np.float64)
    if len(w) == 1:
        return data.astype(out_dtype, copy=True)
    n = data.shape[0]
    flat = data.reshape(n, -1)
    r = len(w) // 2
    padded = np.concatenate([_line_pad(flat, r, front=True), flat, _line_pad(flat, r, front=False)])
    out = np.zeros_like(flat)
    for k, wk in enumerate(w):
        out += wk * padded[k : k + n]
    return out.reshape(data.shape).astype(out_dtype, copy=False)


def default_fine_from(num_ws: int) -> int:
    """The first 'fine' layer: the paper's 9 of 16 scaled to ``num_ws`` (rounded up, so a smaller
    generator keeps at least the same share of its layers free)."""
    return min(num_ws - 1, math.ceil(9 * num_ws / 16))


def smooth_latents(
    latents: np.ndarray,
    method: str = "paper",
    sigma: float = 1.0,
    fine_mean: bool = False,
    fine_from: int | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Smooth per-frame W+ latents [N,num_ws,w_dim] over time; returns float32 [N,num_ws,w_dim].

    fine_mean: the paper's option: the layers from ``fine_from`` on (default
    :func:`default_fine_from`) become their mean over the clip (over the True frames of ``mask``), so
    the fine styles (texture, colour) are the same in every frame. mask: as :func:`smooth_series`.
    """
    latents = np.asarray(latents)
    if latents.ndim != 3:
        raise ValueError(f"latents must be [N,num_ws,w_dim], got shape {latents.shape}")
    out = smooth_series(latents.astype(np.float32, copy=False), method, sigma, mask)
    if fine_mean:
        num_ws = latents.shape[1]
        start = default_fine_from(num_ws) if fine_from is None else int(fine_from)
        if not 0 <= start < num_ws:
            raise ValueError(f"fine_from must be in 0..{num_ws - 1}, got {start}")
        keep = _check_mask(mask, latents.shape[0]) if mask is not None else np.ones(latents.shape[0], dtype=bool)
        if not keep.any():
            raise ValueError("the mask selects no frame")
        mean = latents[keep, start:].astype(np.float64).mean(axis=0)
        out[:, start:] = mean.astype(np.float32)
    return out


def smooth_transforms(
    params: np.ndarray, method: str = "paper", sigma: float = 1.0, mask: np.ndarray | None = None
) -> np.ndarray:
    """Smooth per-frame transform parameters [N,3] = (angle_deg, tx, ty) (as
    :func:`engine.transforms.transform_params`); returns [N,3] with angles in [-180,180).

    Angles are unwrapped before filtering (179 then -179 is a 2 degree turn, not 358), then wrapped
    back. mask: as :func:`smooth_series`.
    """
    params = np.asarray(params)
    if params.ndim != 2 or params.shape[1] != 3:
        raise ValueError(f"transform parameters must be [N,3] (angle_deg, tx, ty), got shape {params.shape}")
    p = params.astype(np.float64, copy=True)
    if mask is not None:
        # Unwrap across the trusted frames only: a bad frame's angle must not add a spurious turn.
        keep = _check_mask(mask, p.shape[0])
        if keep.any():
            p[keep, 0] = np.unwrap(p[keep, 0], period=360.0)
    else:
        p[:, 0] = np.unwrap(p[:, 0], period=360.0)
    out = smooth_series(p, method, sigma, mask)
    out[:, 0] = (out[:, 0] + 180.0) % 360.0 - 180.0
    return out.astype(params.dtype if np.issubdtype(params.dtype, np.floating) else np.float64)


def _check_mask(mask: np.ndarray | None, n: int) -> np.ndarray:
    m = np.asarray(mask)
    if m.shape != (n,):
        raise ValueError(f"mask must be [{n}] (one flag per frame), got shape {m.shape}")
    m = m.astype(bool)
    if not m.any():
        raise ValueError("the mask selects no frame")
    return m


def _line_pad(flat: np.ndarray, r: int, front: bool) -> np.ndarray:
    """``r`` frames [r,F] continuing ``flat`` [N,F] beyond its first (``front``) or last frame along
    the least-squares line through the ``2r+1`` frames nearest that end (one frame: held constant)."""
    n = flat.shape[0]
    m = min(n, 2 * r + 1)
    seg = flat[:m] if front else flat[n - m :][::-1]  # nearest frame first, counting away from the end
    if m == 1:
        return np.repeat(seg[:1], r, axis=0)
    t = np.arange(m, dtype=np.float64)
    tc = t - t.mean()
    mean = seg.mean(axis=0)
    slope = (tc[:, None] * (seg - mean)).sum(axis=0) / (tc**2).sum()
    steps = -np.arange(r, 0, -1, dtype=np.float64) if front else -np.arange(1, r + 1, dtype=np.float64)
    # value at step s from the end frame (s < 0: outside): mean + slope * (s - t.mean())
    return mean + slope * (steps[:, None] - t.mean())
