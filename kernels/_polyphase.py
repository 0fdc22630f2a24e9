"""Polyphase resampling: upsample, pad, FIR-filter and downsample in one step, computing only the
samples that survive the downsampling and never multiplying inserted zeros.

Semantics (one axis, same as the reference ``upfirdn2d``): insert ``up-1`` zeros after every input
sample, pad with ``p0``/``p1`` zeros (negative values crop), correlate with ``h`` (the already
flipped and gain-scaled filter), keep every ``down``-th sample starting at 0.

Derivation: output ``j`` reads the upsampled signal at ``u = j*down - p0 + t`` for taps ``t``; only
``u`` that are multiples of ``up`` hold input samples. With ``b = (p0 - j*down) mod up`` the taps
used are ``h[b], h[b+up], h[b+2*up], ...`` applied to consecutive inputs starting at
``i0 = (j*down - p0 + b) / up``. Outputs ``j`` and ``j + up/gcd(up,down)`` share ``b``, and their
``i0`` differ by ``down/gcd(up,down)``, so each phase is a strided correlation with a short filter.

These are the building blocks of the fast CPU path (kernels._fast); this module imports nothing from
``kernels``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _phases(length: int, taps: int, up: int, down: int, p0: int, p1: int):
    """Yield (first output j0, output step P, tap offset b, first input i0, input step S, n outputs)
    for every phase, and return the output length via the first item of the tuple."""
    out_len = max(0, -(-(length * up + p0 + p1 - taps + 1) // down))
    g = math.gcd(up, down)
    step_out, step_in = up // g, down // g
    phases = []
    for j0 in range(min(step_out, out_len)):
        u0 = j0 * down - p0
        b = (-u0) % up
        i0 = (u0 + b) // up
        n = len(range(j0, out_len, step_out))
        phases.append((j0, b, i0, n))
    return out_len, step_out, step_in, phases


def resample_axis(
    x: torch.Tensor, h: torch.Tensor | list, dim: int, up: int = 1, down: int = 1, p0: int = 0, p1: int = 0
) -> torch.Tensor:
    """Resample ``x`` along ``dim`` (-1 or -2) with the 1-D correlation filter ``h`` [taps].

    ``h`` must already be flipped (true convolution) and carry the gain. Returns a new tensor.
    Differentiable (any order): the backward pass is the explicit adjoint, :func:`_adjoint_axis`.
    """
    hl = tuple(float(v) for v in (h.tolist() if isinstance(h, torch.Tensor) else h))
    if torch.is_grad_enabled() and x.requires_grad:
        return _ResampleAxis.apply(x, hl, dim, up, down, p0, p1)
    return _resample_axis(x, hl, dim, up, down, p0, p1)


def _resample_axis(x: torch.Tensor, hl: tuple, dim: int, up: int, down: int, p0: int, p1: int) -> torch.Tensor:
    taps = len(hl)
    length = x.shape[dim]
    out_len, step_out, step_in, phases = _phases(length, taps, up, down, p0, p1)
    pad_lo, pad_hi = _padding(length, taps, up, step_in, phases)
    if pad_lo or pad_hi:
        pad = [pad_lo, pad_hi] if dim == -1 else [0, 0, pad_lo, pad_hi]
        x = F.pad(x, pad)
    shape = list(x.shape)
    shape[dim] = out_len
    if len(phases) == 1 and step_out == 1:
        out = None  # single phase: the accumulator is the output
    else:
        out = x.new_empty(shape)
    for j0, b, i0, n in phases:
        acc = None
        for m, t in enumerate(range(b, taps, up)):
            start = pad_lo + i0 + m
            sl = _slice(x, dim, start, start + (n - 1) * step_in + 1, step_in)
            if acc is None:
                acc = sl * hl[t]
            else:
                acc.add_(sl, alpha=hl[t])
        if acc is None:  # this phase sees only inserted zeros
            zshape = list(x.shape)
            zshape[dim] = n
            acc = x.new_zeros(zshape)
        if out is None:
            out = acc
        else:
            _slice(out, dim, j0, out_len, step_out).copy_(acc)
    assert out is not None  # a single phase always runs the loop above
    return out


def _padding(length: int, taps: int, up: int, step_in: int, phases) -> tuple[int, int]:
    """Zero padding (low, high) that keeps every slice of :func:`_resample_axis` inside the tensor."""
    lo = min((i0 for _, _, i0, _ in phases), default=0)
    hi = max((i0 + (n - 1) * step_in + len(range(b, taps, up)) - 1 for _, b, i0, n in phases), default=0)
    return max(0, -lo), max(0, hi - (length - 1))


def _adjoint_axis(
    gy: torch.Tensor, length: int, hl: tuple, dim: int, up: int, down: int, p0: int, p1: int
) -> torch.Tensor:
    """Adjoint of :func:`_resample_axis` (the gradient with respect to its input): every tap's strided
    slice of the input receives the matching output samples times the tap, accumulated in place.

    Autograd through the forward's slices would allocate and clear one input-sized tensor per tap
    instead; this is what made the CPU backward pass slow."""
    taps = len(hl)
    out_len, step_out, step_in, phases = _phases(length, taps, up, down, p0, p1)
    pad_lo, pad_hi = _padding(length, taps, up, step_in, phases)
    shape = list(gy.shape)
    shape[dim] = length + pad_lo + pad_hi
    gx = gy.new_zeros(shape)
    for j0, b, i0, n in phases:
        g = gy if (len(phases) == 1 and step_out == 1) else _slice(gy, dim, j0, out_len, step_out)
        for m, t in enumerate(range(b, taps, up)):
            start = pad_lo + i0 + m
            _slice(gx, dim, start, start + (n - 1) * step_in + 1, step_in).add_(g, alpha=hl[t])
    return _slice(gx, dim, pad_lo, pad_lo + length, 1) if (pad_lo or pad_hi) else gx


class _ResampleAxis(torch.autograd.Function):
    """:func:`_resample_axis` with the explicit adjoint as its backward."""

    @staticmethod
    def forward(ctx, x, hl, dim, up, down, p0, p1):
        ctx.args = (x.shape[dim], hl, dim, up, down, p0, p1)
        return _resample_axis(x, hl, dim, up, down, p0, p1)

    @staticmethod
    def backward(ctx, gy):
        return (_AdjointAxis.apply(gy.contiguous(), *ctx.args),) + (None,) * 6


class _AdjointAxis(torch.autograd.Function):
    """:func:`_adjoint_axis`, whose own backward is the forward resampling (for higher-order gradients)."""

    @staticmethod
    def forward(ctx, gy, length, hl, dim, up, down, p0, p1):
        ctx.args = (hl, dim, up, down, p0, p1)
        return _adjoint_axis(gy, length, hl, dim, up, down, p0, p1)

    @staticmethod
    def backward(ctx, ggx):
        hl, dim, up, down, p0, p1 = ctx.args
        return (_ResampleAxis.apply(ggx.contiguous(), hl, dim, up, down, p0, p1),) + (None,) * 7


def resample_range(
    x: torch.Tensor, h: torch.Tensor | list, dim: int, up: int, down: int, p0: int, o0: int, o1: int
) -> torch.Tensor:
    """Outputs ``o0 <= j < o1`` of ``resample_axis(x, h, dim, up, down, p0, ...)`` along ``dim``.

    Only the inputs those outputs read are touched, so a large plane can be processed in bands.
    """
    hl = h.tolist() if isinstance(h, torch.Tensor) else list(h)
    taps, length = len(hl), x.shape[dim]
    # Output j reads inputs i with 0 <= i*up - j*down + p0 < taps.
    i_lo = max(0, -((p0 - o0 * down) // up))
    i_hi = min(length - 1, ((o1 - 1) * down - p0 + taps - 1) // up)
    if i_hi < i_lo:
        shape = list(x.shape)
        shape[dim] = o1 - o0
        return x.new_zeros(shape)
    xs = _slice(x, dim, i_lo, i_hi + 1, 1)
    q0 = p0 - o0 * down + i_lo * up
    q1 = (o1 - o0 - 1) * down + taps - (i_hi - i_lo + 1) * up - q0
    return resample_axis(xs, hl, dim, up, down, q0, q1)


def resample_2d(
    x: torch.Tensor, h: torch.Tensor, up: tuple[int, int], down: tuple[int, int], pad: tuple[int, int, int, int]
) -> torch.Tensor:
    """Resample [N,C,H,W] with a non-separable correlation filter ``h`` [th,tw] (flipped, with gain).

    up/down are (x, y) factors and pad is (x0, x1, y0, y1), as in ``upfirdn2d``. Every phase is one
    strided 2-D convolution with the phase's sub-filter.
    """
    n_, c_, hh, ww = x.shape
    th, tw = h.shape
    ux, uy = up
    dx, dy = down
    px0, px1, py0, py1 = pad
    oh, sy_out, sy_in, ph_y = _phases(hh, th, uy, dy, py0, py1)
    ow, sx_out, sx_in, ph_x = _phases(ww, tw, ux, dx, px0, px1)
    lo_y = min((i0 for *_, i0, _ in ph_y), default=0)
    lo_x = min((i0 for *_, i0, _ in ph_x), default=0)
    hi_y = max((i0 + (n - 1) * sy_in + len(range(b, th, uy)) - 1 for _, b, i0, n in ph_y), default=0)
    hi_x = max((i0 + (n - 1) * sx_in + len(range(b, tw, ux)) - 1 for _, b, i0, n in ph_x), default=0)
    ply, phy = max(0, -lo_y), max(0, hi_y - (hh - 1))
    plx, phx = max(0, -lo_x), max(0, hi_x - (ww - 1))
    xp = F.pad(x, [plx, phx, ply, phy]).reshape(n_ * c_, 1, hh + ply + phy, ww + plx + phx)
    out = x.new_empty([n_ * c_, 1, oh, ow]) if (sy_out > 1 or sx_out > 1) else None
    for jy, by, iy, ny in ph_y:
        for jx, bx, ix, nx in ph_x:
            sub = h[by::uy, bx::ux]
            my, mx = sub.shape
            if my == 0 or mx == 0:  # this phase sees only inserted zeros
                r = xp.new_zeros([n_ * c_, 1, ny, nx])
            else:
                y0, x0 = ply + iy, plx + ix
                patch = xp[:, :, y0 : y0 + (ny - 1) * sy_in + my, x0 : x0 + (nx - 1) * sx_in + mx]
                r = F.conv2d(patch, sub[None, None].to(x.dtype), stride=(sy_in, sx_in))
            if out is None:
                out = r
            else:
                out[:, :, jy::sy_out, jx::sx_out] = r
    if out is None:  # no phase at all: the output is empty
        out = x.new_empty([n_ * c_, 1, oh, ow])
    return out.reshape(n_, c_, oh, ow)


def _slice(x: torch.Tensor, dim: int, start: int, stop: int, step: int) -> torch.Tensor:
    if dim == -1:
        return x[..., start:stop:step]
    return x[..., start:stop:step, :]
