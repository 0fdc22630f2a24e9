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

The second half of the module computes the same resampling as banded matrix products
(:func:`resample_leading`, :class:`BandedPlan`): along one axis the operation is a matrix ``M``
[L_in, L_out] with ``y = M^T x``, zero outside a band. The outputs are cut into blocks of a few rows;
each block reads a short window of consecutive inputs, so it is one small dense matrix times a window
of input rows, and since the pattern repeats with the phases, consecutive blocks share their matrix
and their windows advance by a constant step: a whole run of blocks is one batched product
(``torch.bmm`` with the windows as an overlapping strided view, nothing copied). Over an input with
zero rows around it (:meth:`BandedPlan.apply_margined`) the first and last blocks are like the others
and the whole pass is one product. The resampled axis is the leading one and everything else (other
axis, planes) is the product's long dimension, so a pass over a whole batch of planes is one BLAS
call instead of one elementwise op per tap. The blocks multiply some zeros inside their band (about
1.2-1.5x the exact taps with the block sizes below), which BLAS more than pays for.

These are the building blocks of the fast CPU path (kernels._fast); this module imports nothing from
``kernels``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, NamedTuple

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


# ----------------------------------------------------------------------------------------------------
# Banded matrix products along the leading axis.

# Output rows per block, by the kind of pass. A block of B outputs reads about (B-1)*down/up + taps/up
# inputs, so larger blocks multiply more zeros of the band, while smaller ones run BLAS at a lower rate
# (a short dimension of B). Measured on the 2-core AMD EPYC VM, one thread, one batched product over a
# zero-margined buffer for one image's 48 planes of the demo generator's layer 4
# (`python3 bench/small_kernels.py --no-layers --batches 1 --threads 1 --block-sweep`, bench/RESULTS.md,
# "Small kernels"): the 2x upsampling pass took 0.83 ms with 8 rows (0.84 with 4, 0.98 with 16, 1.06
# with 2, 1.56 with 32), the 2x downsampling pass 0.69 ms with 4 rows (0.68 with 2, 0.91 with 8, 1.91
# with 16).
UP_BLOCK_ROWS = 8  # passes that make more outputs than inputs (and the adjoints of downsampling)
DOWN_BLOCK_ROWS = 4  # passes that make fewer outputs than inputs (and the adjoints of upsampling)


class _Run(NamedTuple):
    """Consecutive blocks of output rows computed with one matrix: block ``k < n`` writes rows
    ``r0 + k*rows ... + rows - 1`` from input rows ``x0 + k*stride ... + width - 1``."""

    r0: int
    n: int  # blocks
    rows: int
    x0: int
    width: int
    stride: int
    a: torch.Tensor | None  # [rows, width] float64; None: these outputs read only zeros


def _block_runs(m: torch.Tensor, block: int) -> tuple[_Run, ...]:
    """Runs of blocks computing ``y = m^T x`` for ``m`` [L_in, L_out] (float64). A block reads the
    input rows between the first and the last nonzero entry of its columns (zero taps add nothing)."""
    length_out = m.shape[1]
    support = m != 0
    runs: list[_Run] = []
    for r0 in range(0, length_out, block):
        r1 = min(length_out, r0 + block)
        used = torch.nonzero(support[:, r0:r1].any(dim=1)).flatten()
        if used.numel() == 0:
            x0, width, a = 0, 0, None
        else:
            x0, x1 = int(used[0]), int(used[-1]) + 1
            width, a = x1 - x0, m[x0:x1, r0:r1].t().contiguous()
        if runs:
            last = runs[-1]
            same = last.rows == r1 - r0 and last.width == width and (last.a is None) == (a is None)
            if same and a is not None:
                assert last.a is not None
                same = torch.equal(last.a, a)
            step = x0 - (last.x0 + (last.n - 1) * last.stride)
            if same and (a is None or (step >= 0 and (last.n == 1 or step == last.stride))):
                runs[-1] = last._replace(n=last.n + 1, stride=0 if a is None else step)
                continue
        runs.append(_Run(r0, 1, r1 - r0, x0, width, 0, a))
    return tuple(runs)


class BandedPlan:
    """One resampling of one axis as runs of banded blocks, forward (``in_len -> out_len``) and
    adjoint (``out_len -> in_len``), with the blocks' matrices kept per dtype. ``block`` overrides the
    forward blocks' rows (benchmarks); it is rounded to a multiple of the phase period."""

    def __init__(
        self, hl: tuple[float, ...], length: int, up: int, down: int, p0: int, p1: int, block: int | None = None
    ) -> None:
        taps = len(hl)
        out_len = max(0, -(-(length * up + p0 + p1 - taps + 1) // down))
        # Output j = sum_i x[i] * h[i*up + p0 - j*down] over the taps inside the filter.
        t = torch.arange(length)[:, None] * up + p0 - torch.arange(out_len)[None, :] * down
        inside = (t >= 0) & (t < taps)
        h = torch.tensor(hl, dtype=torch.float64) if taps else torch.zeros(1, dtype=torch.float64)
        m = torch.where(inside, h[t.clamp(0, max(taps - 1, 0))], torch.zeros((), dtype=torch.float64))
        g = math.gcd(up, down)
        block = _rows(block or (UP_BLOCK_ROWS if up >= down else DOWN_BLOCK_ROWS), up // g)
        self.in_len, self.out_len = length, out_len
        self.runs = _block_runs(m, block)
        self.adjoint_runs = _block_runs(m.t(), _rows(UP_BLOCK_ROWS if down > up else DOWN_BLOCK_ROWS, down // g))
        self._mats: dict[tuple[torch.dtype, bool], list[torch.Tensor | None]] = {}
        # The same pass over an input with zero rows around it (see apply_margined): every block, the
        # first and the last included, reads a full window, so all blocks share one matrix. Block k
        # writes outputs k*block ... and reads inputs first + k*step ... + width - 1.
        self.block, self.blocks = block, -(-out_len // block)
        self.step = block * down // up
        self.first = -(p0 // up)  # ceil(-p0 / up): the first input output 0 reads
        self.width = ((block - 1) * down - p0 + taps - 1) // up - self.first + 1
        self.margin_lo = max(0, -self.first)
        self.margin_hi = max(0, self.first + (self.blocks - 1) * self.step + self.width - length)
        w = torch.arange(self.width)[None, :]
        tu = (self.first + w) * up + p0 - torch.arange(block)[:, None] * down
        ok = (tu >= 0) & (tu < taps)
        self._uniform = torch.where(ok, h[tu.clamp(0, max(taps - 1, 0))], torch.zeros((), dtype=torch.float64))
        self._uniform_as: dict[torch.dtype, torch.Tensor] = {}

    def _matrices(self, dtype: torch.dtype, adjoint: bool) -> list[torch.Tensor | None]:
        mats = self._mats.get((dtype, adjoint))
        if mats is None:
            runs = self.adjoint_runs if adjoint else self.runs
            mats = [None if r.a is None else r.a.to(dtype) for r in runs]
            self._mats[(dtype, adjoint)] = mats
        return mats

    def apply(self, x: torch.Tensor, adjoint: bool = False) -> torch.Tensor:
        """``x`` [L, ...] (contiguous) -> [L', ...]: the pass (or its adjoint) along the leading axis."""
        runs = self.adjoint_runs if adjoint else self.runs
        length_in, length_out = (self.out_len, self.in_len) if adjoint else (self.in_len, self.out_len)
        if x.shape[0] != length_in:
            raise ValueError(f"banded pass expects {length_in} rows, got {x.shape[0]}")
        n = math.prod(x.shape[1:])
        x2 = x.reshape(length_in, n)
        y = x2.new_empty((length_out, n))
        if n == 0 or length_out == 0:
            return y.view((length_out,) + tuple(x.shape[1:]))
        x2 = x2.contiguous()
        base = x2.storage_offset()
        for run, a in zip(runs, self._matrices(x.dtype, adjoint)):
            ys = y[run.r0 : run.r0 + run.n * run.rows]
            if a is None:
                ys.zero_()
            elif run.n == 1:
                torch.mm(a, x2[run.x0 : run.x0 + run.width], out=ys)
            else:  # overlapping input windows as a strided batch: no copy
                windows = x2.as_strided((run.n, run.width, n), (run.stride * n, n, 1), base + run.x0 * n)
                torch.bmm(a.expand(run.n, run.rows, run.width), windows, out=ys.view(run.n, run.rows, n))
        return y.view((length_out,) + tuple(x.shape[1:]))

    def uniform_matrix(self, dtype: torch.dtype) -> torch.Tensor:
        """The matrix all blocks of :meth:`apply_margined` share, [block, width], in ``dtype``."""
        a = self._uniform_as.get(dtype)
        if a is None:
            a = self._uniform_as[dtype] = self._uniform.to(dtype)
        return a

    def apply_margined(
        self, buf: torch.Tensor, offset: int, k0: int = 0, k1: int | None = None, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Blocks ``k0 <= k < k1`` of the pass (output rows ``k0*block ... k1*block - 1``, the last
        block's rows past ``out_len`` included) as one batched product, no copy.

        ``buf`` [R, ...] (contiguous) holds input row ``i`` at row ``offset + i``, and zeros in the
        rows around them that the blocks read (``margin_lo`` before row 0 and ``margin_hi`` after the
        last for all blocks). ``out``, if given, is [>= (k1-k0)*block, ...] contiguous and receives
        the rows first; returned is the [(k1-k0)*block, ...] result."""
        return _margined_product(self, self.uniform_matrix(buf.dtype), buf, offset, k0, k1, out)


class BandedBank:
    """Several filters of one length applied along one axis in one product, as :class:`BandedPlan`'s
    margined pass: output row ``j``, filter ``f`` lands in row ``j*len(filters) + f`` (the row filters
    of a 2-D filter, see kernels._fast)."""

    def __init__(
        self, filters: tuple[tuple[float, ...], ...], length: int, up: int, down: int, p0: int, p1: int
    ) -> None:
        plans = [banded_plan(hl, length, up, down, p0, p1) for hl in filters]
        self.plan, self.filters = plans[0], len(filters)
        block, width = self.plan.block, self.plan.width
        self._matrix = torch.stack([q._uniform for q in plans], dim=1).reshape(block * self.filters, width)
        self._as: dict[torch.dtype, torch.Tensor] = {}

    def apply_margined(self, buf: torch.Tensor, offset: int, columns: tuple[int, int] | None = None) -> torch.Tensor:
        """As :meth:`BandedPlan.apply_margined` (all blocks), with ``len(filters)`` rows per output
        row, on the columns ``columns`` = (start, stop) of ``buf`` viewed as [R, -1] (all if None):
        returns [blocks * block * len(filters), stop - start]."""
        a = self._as.get(buf.dtype)
        if a is None:
            a = self._as[buf.dtype] = self._matrix.to(buf.dtype)
        return _margined_product(self.plan, a, buf, offset, 0, None, None, columns)


@lru_cache(maxsize=128)
def banded_bank(
    filters: tuple[tuple[float, ...], ...], length: int, up: int, down: int, p0: int, p1: int
) -> BandedBank:
    """The (cached) :class:`BandedBank` of these filters."""
    return BandedBank(filters, length, up, down, p0, p1)


def _margined_product(
    plan: BandedPlan,
    a: torch.Tensor,
    buf: torch.Tensor,
    offset: int,
    k0: int,
    k1: int | None,
    out: torch.Tensor | None,
    columns: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Blocks ``k0 <= k < k1`` of ``plan``'s uniform pass with the block matrix ``a`` [rows, width]
    (on the columns ``columns`` of ``buf`` viewed as [R, -1]: then the result is 2-D)."""
    k1 = plan.blocks if k1 is None else k1
    count = max(0, k1 - k0)
    n = math.prod(buf.shape[1:])
    c0, c1 = (0, n) if columns is None else columns
    per_block = a.shape[0]
    shape = tuple(buf.shape[1:]) if columns is None else (c1 - c0,)
    y = buf.new_empty((count * per_block,) + shape) if out is None else out[: count * per_block]
    if count == 0 or c1 <= c0:
        return y
    start = offset + plan.first + k0 * plan.step
    if start < 0 or start + (count - 1) * plan.step + plan.width > buf.shape[0]:
        raise ValueError("banded pass: the input buffer lacks the margin rows the blocks read")
    x2 = buf.view(buf.shape[0], n)
    windows = x2.as_strided((count, plan.width, c1 - c0), (plan.step * n, n, 1), x2.storage_offset() + start * n + c0)
    torch.bmm(a.expand(count, per_block, plan.width), windows, out=y.view(count, per_block, c1 - c0))
    return y


def _rows(target: int, period: int) -> int:
    """Block rows: a multiple of the phase period (so that blocks repeat), near ``target``."""
    return period * max(1, round(target / period))


@lru_cache(maxsize=512)
def banded_plan(hl: tuple[float, ...], length: int, up: int, down: int, p0: int, p1: int) -> BandedPlan:
    """The (cached) plan of one axis resampling: same arguments and semantics as :func:`resample_axis`."""
    return BandedPlan(hl, length, up, down, p0, p1)


def resample_leading(
    x: torch.Tensor, h: torch.Tensor | list | tuple, up: int = 1, down: int = 1, p0: int = 0, p1: int = 0
) -> torch.Tensor:
    """Resample ``x`` [L, ...] along its leading axis: the same result as :func:`resample_axis` along
    that axis, as banded matrix products (see the module docstring). Differentiable (any order): the
    backward pass is the adjoint plan, whose backward is the forward plan."""
    hl = tuple(float(v) for v in (h.tolist() if isinstance(h, torch.Tensor) else h))
    plan = banded_plan(hl, int(x.shape[0]), up, down, p0, p1)
    if torch.is_grad_enabled() and x.requires_grad:
        return _BandedPass.apply(x, plan, False)
    return plan.apply(x)


def resample_leading_range(
    x: torch.Tensor, h: torch.Tensor | list | tuple, up: int, down: int, p0: int, o0: int, o1: int
) -> torch.Tensor:
    """Outputs ``o0 <= j < o1`` of :func:`resample_leading` (see :func:`resample_range`): only the input
    rows those outputs read are touched, so a large plane can be processed in bands of rows."""
    hl = tuple(float(v) for v in (h.tolist() if isinstance(h, torch.Tensor) else h))
    taps, length = len(hl), x.shape[0]
    i_lo = max(0, -((p0 - o0 * down) // up))
    i_hi = min(length - 1, ((o1 - 1) * down - p0 + taps - 1) // up)
    if i_hi < i_lo:
        return x.new_zeros((o1 - o0,) + tuple(x.shape[1:]))
    q0 = p0 - o0 * down + i_lo * up
    q1 = (o1 - o0 - 1) * down + taps - (i_hi - i_lo + 1) * up - q0
    return resample_leading(x[i_lo : i_hi + 1], hl, up, down, q0, q1)


class _BandedPass(torch.autograd.Function):
    """A plan's pass (``adjoint`` False) or its adjoint; the backward of either is the other."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, plan: BandedPlan, adjoint: bool) -> torch.Tensor:
        ctx.plan, ctx.adjoint = plan, adjoint
        return plan.apply(x, adjoint)

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        return _BandedPass.apply(gy.contiguous(), ctx.plan, not ctx.adjoint), None, None
