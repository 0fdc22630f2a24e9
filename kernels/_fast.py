"""Fast CPU path of the three ops, in PyTorch ops, with the same results as the reference math
(kernels._ref) up to float rounding.

``bias_act`` works in place when no gradient is recorded.

``upfirdn2d`` and ``filtered_lrelu`` resample with banded matrix products (kernels._polyphase,
``resample_leading`` and ``BandedPlan.apply_margined``): the planes (images x channels) are laid out
last, ``[rows, columns, planes]``, so that each pass along an axis is one batched BLAS product over
all planes at once, with a transpose between the vertical and the horizontal passes. No
multiplication by inserted zeros and no discarded output, as in the per-phase polyphase formulation,
but without its one elementwise op per tap: that bookkeeping (add_/mul/copy_/slice, thousands of
calls per forward) was most of the time of the demo generator (bench/RESULTS.md, "Small kernels").
A 2-D (radial) down filter runs as a bank of its row filters along x, then a sum along the diagonals.
The per-phase polyphase chain (``_filtered_lrelu_bands``) remains for dtypes other than float32 and
float64 and for 2-D down filters when gradients are recorded; ``upfirdn2d`` keeps its per-phase
strided convolutions for 2-D filters.

``filtered_lrelu`` processes a bounded number of planes and rows at a time through the whole chain,
so the 4x/16x upsampled temporaries of the big layers never exist for all channels at once. When it
records gradients for a big layer (more than ``RECOMPUTE_ELEMENTS`` upsampled elements), it keeps
only its input and recomputes a slice of channels at a time during the backward pass, so the memory
of a training or PTI step at 1024 px stays bounded (the same gradients).

Float32 CPU calls go to the fused C++ kernel (kernels.cpu_ext) once it is built: without gradients
``_chain`` calls it; recording gradients, ``_CppFilteredLReLU`` runs its forward and its backward
(which recomputes the upsampled pre-activation band by band, so it saves only x and b at any size).
Under create_graph the backward goes through the Python chain, differentiably. Until it is built,
when it is turned off or fails to build, and for other dtypes, the Python chains below run.

Arguments are normalised as in kernels._ref. Imports: kernels._ref, kernels._polyphase and
kernels.cpu_ext only.
"""

from __future__ import annotations

import math
import threading
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from kernels import _ref, cpu_ext
from kernels._polyphase import (
    BandedBank,
    banded_bank,
    banded_plan,
    resample_2d,
    resample_axis,
    resample_leading,
    resample_leading_range,
    resample_range,
)
from kernels._ref import FilteredLReluArgs, UpfirdnArgs

# Elements of one band of the upsampled plane (float32: 4 MiB). Larger
# bands spill to memory, smaller ones pay more Python overhead per band.
BAND_ELEMENTS = 1 << 20
# The same for the banded-product path: elements of one chunk's upsampled plane (float32: 8 MiB).
# 2^21 measured 0-8% faster than 2^20 on the demo generator (one chunk for a 48-channel layer at
# batch 1) and on a 1024 px layer; 2^22 no better, 2^18 1.2x and 2^16 2.3x slower.
GEMM_BAND_ELEMENTS = 1 << 21
# Fewest planes per chunk of the banded-product path before it cuts rows instead: its transposes move
# runs of this many contiguous values.
MIN_PLANES = 16
# Fewest output rows per band (when a chunk is cut into bands of rows).
MIN_ROWS = 32
# Most planes per chunk: the transposes into and out of the planes-last layout gather with a stride of
# this many values, which gets slow (cache associativity) for hundreds.
MAX_PLANES = 64
# dtypes the banded-product path runs (BLAS); others take the polyphase path.
GEMM_DTYPES = (torch.float32, torch.float64)
# Above this many elements of the upsampled plane (all channels), a call that records gradients keeps
# only its input and recomputes a slice of channels at a time in the backward pass: autograd would
# otherwise hold several upsampled planes (17 GB for one 1024 px StyleGAN3-R layer at batch 1).
RECOMPUTE_ELEMENTS = 1 << 26


def _records_grad(x: torch.Tensor, b: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))


def bias_act(
    x: torch.Tensor, b: torch.Tensor | None, dim: int, act: str, alpha: float, gain: float, clamp: float | None
) -> torch.Tensor:
    """The reference math with fewer temporaries: the bias add allocates, the rest works in place when
    no gradient is needed."""
    inplace = not _records_grad(x, b)
    if b is not None:
        x = x + _ref.broadcast_bias(b, dim, x.ndim)
    elif inplace:
        x = x.clone()
    if not inplace:
        return _ref.bias_act(x, None, dim, act, alpha, gain, clamp)
    if act == "lrelu":
        F.leaky_relu_(x, alpha)
    elif act == "relu":
        x.relu_()
    elif act != "linear":
        x = _ref.activate(x, act, alpha)
    if gain != 1:
        x.mul_(gain)
    if clamp is not None and clamp >= 0:
        x.clamp_(-clamp, clamp)
    return x


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, args: UpfirdnArgs) -> torch.Tensor:
    """Separable filters: banded products with the planes last (vertical pass, transpose, horizontal
    pass), a bounded number of planes at a time. 2-D filters: every phase is one strided convolution."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1), flip_filter, gain = args
    f = _ref.prepare_filter(f, gain, flip_filter, x)
    if f.ndim == 2:
        return resample_2d(x, f, args.up, args.down, args.padding)
    if x.dtype not in GEMM_DTYPES:
        x = resample_axis(x, f, -1, upx, downx, px0, px1)
        return resample_axis(x, f, -2, upy, downy, py0, py1)
    n, c, h, w = x.shape
    hl = tuple(f.tolist())
    planes = x.reshape(n * c, h * w)
    outs = []
    step = max(1, GEMM_BAND_ELEMENTS // max(1, (h * upy + py0 + py1) * (w * upx + px0 + px1)))
    for q in range(0, n * c, step):
        t = _planes_last(planes[q : q + step], h, w)
        t = resample_leading(t, hl, upy, downy, py0, py1)  # [H', W, p]
        t = resample_leading(t.transpose(0, 1).contiguous(), hl, upx, downx, px0, px1)  # [W', H', p]
        outs.append(t.permute(2, 1, 0))
    y = torch.cat(outs) if len(outs) > 1 else outs[0].contiguous()
    return y.reshape(n, c, y.shape[1], y.shape[2])


def _planes_last(planes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[p, h*w] -> [h, w, p] (contiguous)."""
    return planes.t().contiguous().view(h, w, planes.shape[0])


def _as_taps(f: torch.Tensor | None, gain: float, flip_filter: bool, dtype: torch.dtype) -> torch.Tensor | None:
    """Correlation taps with the per-pass gain folded in, rounded like the reference (None = identity)."""
    if f is None:
        return None
    f = (f * (gain ** (f.ndim / 2))).to(dtype)
    return f if flip_filter else f.flip(list(range(f.ndim)))


def _activate_(t: torch.Tensor, gain: float, slope: float, clamp: float | None, grad: bool) -> torch.Tensor:
    if grad:
        t = F.leaky_relu(t, slope) * gain if slope != 1 else t * gain
        return t.clamp(-clamp, clamp) if clamp is not None and clamp >= 0 else t
    if slope != 1:
        F.leaky_relu_(t, slope)
    if gain != 1:
        t.mul_(gain)
    if clamp is not None and clamp >= 0:
        t.clamp_(-clamp, clamp)
    return t


def _chain_taps(
    x: torch.Tensor,
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    flip_filter: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The up and down taps of a filtered_lrelu chain (the up filter carries the up**2 gain); a single
    tap stands in for a missing filter where the chain still resamples or pads."""
    if fu is None and (up > 1 or any(padding)):
        fu = torch.ones(1)
    hu = _as_taps(fu, up**2, flip_filter, x.dtype)
    hd = _as_taps(fd, 1.0, flip_filter, x.dtype)
    if hd is None and down > 1:
        hd = torch.ones(1, dtype=x.dtype)
    return hu, hd


def _filtered_lrelu_bands(
    x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None, args: FilteredLReluArgs
) -> torch.Tensor:
    """The whole chain, a chunk of channels and a band of output rows at a time."""
    n, c, h, w = x.shape
    up, down, padding, gain, slope, clamp, flip_filter = args
    px0, px1, py0, py1 = padding
    hu, hd = _chain_taps(x, fu, fd, up, down, padding, flip_filter)
    grad = _records_grad(x, b)
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    elif not grad:
        x = x.clone()  # activated in place below
    x = x.reshape(1, n * c, h, w)
    if hu is None and hd is None:  # ToRGB: no resampling at all
        return _activate_(x, gain, slope, clamp, grad).reshape(n, c, h, w)

    tu = 1 if hu is None else hu.shape[0]
    td = 1 if hd is None else hd.shape[0]
    hz = h * up + py0 + py1 - tu + 1  # upsampled plane before decimation
    wz = w * up + px0 + px1 - tu + 1
    ho = -(-(hz - td + 1) // down)
    if ho <= 0 or -(-(wz - td + 1) // down) <= 0:
        raise ValueError(f"filtered_lrelu: a {h}x{w} input with padding {padding} gives an empty output")
    # Channels per chunk and output rows per band are sized so that one band of the upsampled
    # plane (the only full-resolution temporary) stays near the CPU caches.
    step = max(1, min(n * c, BAND_ELEMENTS // (wz * 32)))
    outs = []
    for c0 in range(0, n * c, step):
        t = x[:, c0 : c0 + step]
        if hu is not None:
            t = resample_axis(t, hu, -1, up, 1, px0, px1)
        rows = max(1, (BAND_ELEMENTS // (t.shape[1] * wz) - td) // down + 1)
        bands = []
        for o0 in range(0, ho, rows):
            o1 = min(ho, o0 + rows)
            z0, z1 = o0 * down, (o1 - 1) * down + td
            if hu is not None:
                zb = resample_range(t, hu, -2, up, 1, py0, z0, z1)
            else:
                zb = t[..., z0:z1, :].clone() if not grad else t[..., z0:z1, :]
            zb = _activate_(zb, gain, slope, clamp, grad)
            if hd is None:
                bands.append(zb)
            elif hd.ndim == 2:
                bands.append(resample_2d(zb, hd, (1, 1), (down, down), (0, 0, 0, 0)))
            else:
                zb = resample_axis(zb, hd, -2, 1, down, 0, 0)
                bands.append(resample_axis(zb, hd, -1, 1, down, 0, 0))
        outs.append(torch.cat(bands, dim=2) if len(bands) > 1 else bands[0])
    y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    return y.reshape(n, c, y.shape[2], y.shape[3])


class _Chain(NamedTuple):
    """The filtered_lrelu chain of one call in planes-last terms."""

    hv: tuple[float, ...] | None  # vertical up taps (the activation gain folded in when it is > 0)
    hh: tuple[float, ...] | None  # horizontal up taps
    hd: tuple[float, ...] | None  # down taps (both axes) of a separable down filter
    hd2: tuple[tuple[float, ...], ...] | None  # rows of a 2-D (radial) down filter
    gain: float  # what the activation still multiplies by
    growth: float  # |upsampled| <= growth * max|input + bias| (sum of |taps| of both up passes, gain)
    hz: int  # upsampled plane
    wz: int
    ho: int  # output
    wo: int
    step: int  # planes per chunk
    rows: int  # output rows per band


def _chain_plan(
    x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, args: FilteredLReluArgs
) -> _Chain | None:
    """None for a chain with no resampling (ToRGB)."""
    n, c, h, w = x.shape
    up, down, padding, gain, _slope, _clamp, flip_filter = args
    px0, px1, py0, py1 = padding
    hu, hd = _chain_taps(x, fu, fd, up, down, padding, flip_filter)
    if hu is None and hd is None:
        return None
    # The activation's gain goes into the vertical up taps (lrelu(g*z) = g*lrelu(z) for g > 0): one
    # pass over the upsampled plane less.
    fold = hu is not None and gain > 0
    hh = None if hu is None else tuple(hu.tolist())
    hv = None if hh is None else (tuple(v * gain for v in hh) if fold else hh)
    hdl = None if (hd is None or hd.ndim == 2) else tuple(hd.tolist())
    hd2 = tuple(tuple(row) for row in hd.tolist()) if (hd is not None and hd.ndim == 2) else None
    tu, td = (1 if hh is None else len(hh)), (1 if hd is None else hd.shape[0])
    hz, wz = h * up + py0 + py1 - tu + 1, w * up + px0 + px1 - tu + 1
    ho, wo = -(-(hz - td + 1) // down), -(-(wz - td + 1) // down)
    if ho <= 0 or wo <= 0:
        raise ValueError(f"filtered_lrelu: a {h}x{w} input with padding {padding} gives an empty output")
    # Chunks of planes, and bands of output rows when MIN_PLANES whole planes are over the budget, so
    # that a chunk's upsampled temporary stays near GEMM_BAND_ELEMENTS; chunks of equal size. Bands are at
    # least MIN_ROWS output rows tall (neighbouring bands recompute td - down upsampled rows).
    total = n * c
    budget = GEMM_BAND_ELEMENTS
    if hz * wz * min(total, MIN_PLANES) <= budget:
        step, rows = max(1, min(total, MAX_PLANES, budget // (hz * wz))), ho
    else:
        rows = (budget // (wz * min(total, MIN_PLANES)) - td) // down + 1
        rows = min(ho, max(rows, MIN_ROWS))
        step = max(1, min(total, MIN_PLANES, budget // (wz * ((rows - 1) * down + td))))
    step = -(-total // -(-total // step))
    growth = (sum(abs(v) for v in hv) * sum(abs(v) for v in hh)) if (hv is not None and hh is not None) else 1.0
    return _Chain(hv, hh, hdl, hd2, 1.0 if fold else gain, growth, hz, wz, ho, wo, step, rows)


# Per-thread buffers the no-grad chain carves its temporaries from, kept between calls: memory the
# process has just been given back costs a page fault per first touch, and in the generator (where
# the convolutions' tensors come and go between the calls) that was a third of a layer's time (13.5k
# of 18k page faults per demo forward at batch 8 were in filtered_lrelu; 1.9k with the workspace, its
# outputs). Bounded by GEMM_BAND_ELEMENTS: about 7 buffers of at most that many elements (plus
# margins), ~30 MB per thread in float32 at most; release_workspace() frees the calling thread's.
_workspace = threading.local()


def _scratch(role: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised contiguous ``shape`` tensor of ``like``'s dtype and device for the temporary
    ``role`` of this thread's current call (only valid until the same role is asked for again)."""
    bufs = getattr(_workspace, "bufs", None)
    if bufs is None:
        bufs = _workspace.bufs = {}
    numel = math.prod(shape)
    key = (role, like.dtype, like.device)
    buf = bufs.get(key)
    if buf is None or buf.numel() < numel:
        buf = bufs[key] = like.new_empty(numel)
    return buf[:numel].view(shape)


def release_workspace() -> None:
    """Free this thread's workspace (the buffers come back, at their first use, on the next call)."""
    _workspace.bufs = {}


def _margined(
    like: torch.Tensor, rows: int, lo: int, hi: int, rest: tuple[int, ...], role: str | None = None
) -> torch.Tensor:
    """An uninitialised [lo + rows + hi, *rest] buffer whose first ``lo`` and last ``hi`` rows are zero
    (the workspace's ``role`` buffer if given)."""
    shape = (lo + rows + hi,) + rest
    buf = like.new_empty(shape) if role is None else _scratch(role, shape, like)
    if lo:
        buf[:lo].zero_()
    if hi:
        buf[lo + rows :].zero_()
    return buf


def _filtered_lrelu_gemm(
    x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None, args: FilteredLReluArgs
) -> torch.Tensor:
    """The whole chain with banded products, planes last: per chunk of planes (and band of output
    rows when a plane is big) vertical up, transpose, horizontal up, activation, horizontal down,
    transpose, vertical down. Separable down filters only; float32/float64.

    Without gradients, every intermediate is written into a buffer with the zero rows the next pass
    reads around it, so each pass is a single batched product (kernels._polyphase.BandedPlan.
    apply_margined), all blocks alike, which also splits evenly over threads. With gradients, the
    passes are autograd functions (``resample_leading``) and the activation works out of place."""
    n, c, h, w = x.shape
    up, down, padding, gain, slope, clamp, _flip = args
    px0, px1, py0, py1 = padding
    grad = _records_grad(x, b)
    ch = _chain_plan(x, fu, fd, args)
    if ch is None:  # ToRGB: no resampling at all
        if b is not None:
            x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
        elif not grad:
            x = x.clone()  # activated in place below
        return _activate_(x, gain, slope, clamp, grad)
    if grad:
        if ch.hd2 is not None:  # 2-D down filters record gradients through the polyphase chain
            return _filtered_lrelu_bands(x, fu, fd, b, args)
        return _gemm_chain_grad(x, b, ch, args)
    total = n * c
    td = len(ch.hd2) if ch.hd2 is not None else (1 if ch.hd is None else len(ch.hd))
    planes = x.reshape(total, h * w)
    bias = None if b is None else b.to(x.dtype).repeat(n)
    pv = None if ch.hv is None else banded_plan(ch.hv, h, up, 1, py0, py1)
    ph = None if ch.hh is None else banded_plan(ch.hh, w, up, 1, px0, px1)
    # A 2-D down filter: the upsampled rows are stored by phase (row mod down) and each phase gets the
    # bank of the filter rows that read it, so that no product makes rows that no output reads.
    phased = ch.hd2 is not None and td % down == 0
    banks = [] if ch.hd2 is None else [banded_bank(ch.hd2[f::down], ch.wz, 1, down, 0, 0) for f in range(down)]
    if ch.hd2 is not None and not phased:
        banks = [banded_bank(ch.hd2, ch.wz, 1, down, 0, 0)]
    pdh = banks[0].plan if banks else (None if ch.hd is None else banded_plan(ch.hd, ch.wz, 1, down, 0, 0))
    out = x.new_empty((total, ch.ho, ch.wo))
    for q in range(0, total, ch.step):
        pc = planes[q : q + ch.step]
        p_ = pc.shape[0]
        lo_v, hi_v = (0, 0) if pv is None else (pv.margin_lo, pv.margin_hi)
        t_in = _margined(x, h, lo_v, hi_v, (w, p_), "in")  # [h, w, p] and pv's margins
        inner = t_in[lo_v : lo_v + h].view(h * w, p_)
        inner.copy_(pc.t())
        if bias is not None:  # along the contiguous last axis: faster than fused into the transpose
            inner.add_(bias[q : q + ch.step])
        # The clamp is skipped when it cannot act: |lrelu(z)| <= |z| <= growth * max|input| (a NaN fails
        # the test and keeps it). For the demo generator's conv_clamp 256 it never acts: one pass less.
        chunk_clamp = clamp
        if clamp is not None and clamp >= 0 and abs(slope) <= 1:
            lo_in, hi_in = torch.aminmax(inner)
            if max(-float(lo_in), float(hi_in)) * ch.growth * abs(ch.gain) <= clamp:
                chunk_clamp = None
        for o0 in range(0, ch.ho, ch.rows):
            o1 = min(ch.ho, o0 + ch.rows)
            z0, z1 = o0 * down, (o1 - 1) * down + td  # upsampled rows this band reads
            zb = z1 - z0
            hi_dh = 0 if pdh is None else pdh.margin_hi
            if pv is not None and ph is not None:
                k0, k1 = z0 // pv.block, -(-z1 // pv.block)
                t = _scratch("vup", ((k1 - k0) * pv.block, w, p_), x)
                t = pv.apply_margined(t_in, lo_v, k0, k1, out=t)[z0 - k0 * pv.block : z1 - k0 * pv.block]  # [zb, w, p]
                t2 = _margined(x, w, ph.margin_lo, ph.margin_hi, (zb, p_), "hin")
                if phased:  # [w, phase, zb/down, p]
                    phases = t.view(zb // down, down, w, p_).permute(2, 1, 0, 3)
                    t2[ph.margin_lo : ph.margin_lo + w].view(w, down, zb // down, p_).copy_(phases)
                else:
                    t2[ph.margin_lo : ph.margin_lo + w].copy_(t.transpose(0, 1))
                t = _scratch("hup", (max(ph.blocks * ph.block, ch.wz + hi_dh), zb, p_), x)
                ph.apply_margined(t2, ph.margin_lo, out=t)  # [wz, zb, p] and rows for pdh's margin
                if hi_dh:
                    t[ch.wz : ch.wz + hi_dh].zero_()
            else:  # no up filter: the input rows themselves
                t = _margined(x, w, 0, hi_dh, (zb, p_), "hup")
                if phased:
                    t[:w].view(w, down, zb // down, p_).copy_(
                        t_in[z0:z1].view(zb // down, down, w, p_).permute(2, 1, 0, 3)
                    )
                else:
                    t[:w].copy_(t_in[z0:z1].transpose(0, 1))
            _activate_(t[: ch.wz], ch.gain, slope, chunk_clamp, False)
            if pdh is None:
                out[q : q + p_, o0:o1].copy_(t[: ch.wz].permute(2, 1, 0))
                continue
            if banks:  # 2-D down filter: its row filters along x, then the sums along the diagonals
                out[q : q + p_, o0:o1].copy_(_diagonal_sums(t, banks, ch.wo, o1 - o0, zb, p_, down, phased))
                continue
            t = pdh.apply_margined(t, 0, out=_scratch("hdown", (pdh.blocks * pdh.block, zb, p_), x))[: ch.wo]
            pdv = banded_plan(ch.hd, zb, 1, down, 0, 0)  # [wo, zb, p] above, vertically now
            t3 = _margined(x, zb, 0, pdv.margin_hi, (ch.wo, p_), "vin")
            t3[:zb].copy_(t.transpose(0, 1))
            t = pdv.apply_margined(t3, 0, out=_scratch("vdown", (pdv.blocks * pdv.block, ch.wo, p_), x))
            t = t[: o1 - o0]  # [ob, wo, p]
            out[q : q + p_, o0:o1].copy_(t.permute(2, 0, 1))
    return out.reshape(n, c, ch.ho, ch.wo)


def _diagonal_sums(
    t: torch.Tensor, banks: list[BandedBank], wo: int, ob: int, zb: int, p: int, down: int, phased: bool
) -> torch.Tensor:
    """A 2-D down filter on the activated rows ``t`` [wz (+ margin), zb, p] -> [p, ob, wo]: filter
    row ``ty`` along x gives c[jx, ty, z] and ``y[jy, jx] = sum_ty c[jx, ty, down*jy + ty]``.

    ``phased``: ``t``'s zb rows are stored by phase, [wz, down, zb/down, p], and ``banks[f]`` holds
    the filter rows ``f, f + down, ...``, which read phase ``f`` only (z = down*(jy + m) + f)."""
    if not phased:
        (bank,) = banks
        td = bank.filters
        c = bank.apply_margined(t, 0)[: wo * td]  # [wo * td, zb, p]: (column, filter row)
        n = zb * p
        diag = c.as_strided((wo, ob, td, p), (td * n, down * p, n + p, 1), c.storage_offset())
        return diag.sum(dim=2).permute(2, 1, 0)
    zp = zb // down
    y = None
    for f, bank in enumerate(banks):
        m = bank.filters  # filter rows f + down*i, i < m, all reading phase f
        c = bank.apply_margined(t, 0, (f * zp * p, (f + 1) * zp * p))[: wo * m]  # [wo * m, zp * p]
        diag = c.as_strided((wo, ob, m, p), (m * zp * p, p, zp * p + p, 1), c.storage_offset())
        y = diag.sum(dim=2) if y is None else y.add_(diag.sum(dim=2))
    assert y is not None
    return y.permute(2, 1, 0)


def _gemm_chain_grad(x: torch.Tensor, b: torch.Tensor | None, ch: _Chain, args: FilteredLReluArgs) -> torch.Tensor:
    """:func:`_filtered_lrelu_gemm` recording gradients: the same passes as autograd functions (their
    backward is the adjoint pass), the bias add, transposes and activation out of place."""
    n, c, h, w = x.shape
    up, down, (px0, px1, py0, py1), _gain, slope, clamp, _flip = args
    total, td = n * c, (1 if ch.hd is None else len(ch.hd))
    planes = (x if b is None else x + b.to(x.dtype).reshape(1, -1, 1, 1)).reshape(total, h * w)
    chunks = []
    for q in range(0, total, ch.step):
        t_in = planes[q : q + ch.step].t().contiguous()
        t_in = t_in.view(h, w, t_in.shape[1])  # [h, w, p]
        bands = []
        for o0 in range(0, ch.ho, ch.rows):
            o1 = min(ch.ho, o0 + ch.rows)
            z0, z1 = o0 * down, (o1 - 1) * down + td
            if ch.hv is not None and ch.hh is not None:
                t = resample_leading_range(t_in, ch.hv, up, 1, py0, z0, z1)  # [zb, w, p]
                t = resample_leading(t.transpose(0, 1).contiguous(), ch.hh, up, 1, px0, px1)  # [wz, zb, p]
            else:
                t = t_in[z0:z1].transpose(0, 1).contiguous()
            t = _activate_(t, ch.gain, slope, clamp, True)
            if ch.hd is not None:
                t = resample_leading(t, ch.hd, 1, down, 0, 0)  # [wo, zb, p]
            t = t.transpose(0, 1).contiguous()  # [zb, wo, p]
            if ch.hd is not None:
                t = resample_leading(t, ch.hd, 1, down, 0, 0)  # [ob, wo, p]
            bands.append(t.permute(2, 0, 1))
        chunks.append(torch.cat(bands, dim=1) if len(bands) > 1 else bands[0])
    y = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    return y.reshape(n, c, ch.ho, ch.wo)


def _uses_cpp(x: torch.Tensor) -> bool:
    """Whether a float32 CPU call goes to the fused C++ kernel (built and not turned off); the first
    such call starts its background build (kernels.cpu_ext.available never blocks)."""
    return x.dtype == torch.float32 and x.device.type == "cpu" and cpu_ext.available()


def _cpp_plan(
    x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, args: FilteredLReluArgs
) -> _Chain | None:
    """The chain's prepared taps for the fused C++ kernel (the same taps and gain folding as the banded
    chain); None for a chain with no resampling (ToRGB: the Python activation is as fast) and for
    factors the kernel does not take (up other than 1, 2, 4 or down other than 1, 2)."""
    if args.up not in (1, 2, 4) or args.down not in (1, 2):
        return None
    return _chain_plan(x, fu, fd, args)


def _cpp_forward(x: torch.Tensor, b: torch.Tensor | None, ch: _Chain, args: FilteredLReluArgs) -> torch.Tensor:
    size = (ch.hz, ch.wz, ch.ho, ch.wo)
    return cpu_ext.filtered_lrelu(
        x, b, ch.hv, ch.hh, ch.hd, ch.hd2, args.up, args.down, args.padding, size, ch.gain, args.slope, args.clamp
    )


def _cpp_chain(
    x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None, args: FilteredLReluArgs
) -> torch.Tensor | None:
    """The fused C++ kernel, or None where it does not apply (``_cpp_plan``)."""
    ch = _cpp_plan(x, fu, fd, args)
    return None if ch is None else _cpp_forward(x, b, ch, args)


def _chain(
    x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None, args: FilteredLReluArgs
) -> torch.Tensor:
    """The fused C++ kernel for float32 CPU tensors without gradients (once built), else the
    banded-product chain where it applies, else the per-phase polyphase chain."""
    if not _records_grad(x, b) and _uses_cpp(x):
        y = _cpp_chain(x, fu, fd, b, args)
        if y is not None:
            return y
    return _python_chain(x, fu, fd, b, args)


def _python_chain(
    x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None, args: FilteredLReluArgs
) -> torch.Tensor:
    """The banded-product chain where it applies, else the per-phase polyphase chain."""
    if x.dtype in GEMM_DTYPES and (fd is None or fd.ndim == 1 or not _records_grad(x, b)):
        return _filtered_lrelu_gemm(x, fu, fd, b, args)
    return _filtered_lrelu_bands(x, fu, fd, b, args)


def _differentiable_grads(
    x: torch.Tensor,
    b: torch.Tensor | None,
    need: tuple[bool, bool],
    fu: torch.Tensor | None,
    fd: torch.Tensor | None,
    args: FilteredLReluArgs,
    gy: torch.Tensor,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The backward under create_graph (higher-order gradients): autograd through the Python chain,
    all channels at once, differentiably."""
    inputs = [t for t, n in ((x, need[0]), (b, need[1])) if n and t is not None]
    grads = list(torch.autograd.grad(_python_chain(x, fu, fd, b, args), inputs, gy, create_graph=True))
    return (grads.pop(0) if need[0] else None), (grads.pop(0) if need[1] else None)


class _CppFilteredLReLU(torch.autograd.Function):
    """The fused C++ forward and backward (float32 CPU). Saves x and b only: the C++ backward
    recomputes the upsampled pre-activation band by band (bounded memory at any size) and returns
    d/dx, whose sum over images and pixels is d/db."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        b: torch.Tensor | None,
        fu: torch.Tensor | None,
        fd: torch.Tensor | None,
        args: FilteredLReluArgs,
        ch: _Chain,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, b)
        ctx.args = fu, fd, args, ch
        return _cpp_forward(x, b, ch, args)

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, b = ctx.saved_tensors
        fu, fd, args, ch = ctx.args
        need_x, need_b = ctx.needs_input_grad[0], b is not None and ctx.needs_input_grad[1]
        if torch.is_grad_enabled():
            gx, gb = _differentiable_grads(x, b, (need_x, need_b), fu, fd, args, gy)
            return gx, gb, None, None, None, None
        size = (ch.hz, ch.wz, ch.ho, ch.wo)
        up, down, padding, _gain, slope, clamp, _flip = args
        taps = ch.hv, ch.hh, ch.hd, ch.hd2
        g = cpu_ext.filtered_lrelu_backward(x, b, gy, *taps, up, down, padding, size, ch.gain, slope, clamp)
        return (g if need_x else None), (g.sum(dim=(0, 2, 3)) if need_b else None), None, None, None, None


class _RecomputedFilteredLReLU(torch.autograd.Function):
    """The banded chain (or the C++ kernel) with a memory-bounded backward: saves x and b only; the
    backward recomputes the Python chain for a slice of channels at a time (channels are independent)
    and backpropagates through it; under create_graph, for all channels at once and differentiably."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        b: torch.Tensor | None,
        fu: torch.Tensor | None,
        fd: torch.Tensor | None,
        args: FilteredLReluArgs,
        chunk: int,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, b)
        ctx.args = fu, fd, args, chunk
        with torch.no_grad():
            return _chain(x, fu, fd, b, args)

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, b = ctx.saved_tensors
        fu, fd, args, chunk = ctx.args
        need_x, need_b = ctx.needs_input_grad[0], b is not None and ctx.needs_input_grad[1]
        if torch.is_grad_enabled():
            gx, gb = _differentiable_grads(x, b, (need_x, need_b), fu, fd, args, gy)
            return gx, gb, None, None, None, None
        gx = torch.empty_like(x) if need_x else None
        gb = torch.zeros_like(b) if need_b else None
        for c0 in range(0, x.shape[1], chunk):
            c1 = min(x.shape[1], c0 + chunk)
            with torch.enable_grad():
                xs = x[:, c0:c1].detach().requires_grad_(need_x)
                bs = None if b is None else b[c0:c1].detach().requires_grad_(need_b)
                ys = _python_chain(xs, fu, fd, bs, args)
                inputs = [t for t, need in ((xs, need_x), (bs, need_b)) if need and t is not None]
                grads = list(torch.autograd.grad(ys, inputs, gy[:, c0:c1]))
            if gx is not None:
                gx[:, c0:c1] = grads.pop(0)
            if gb is not None:
                gb[c0:c1] = grads.pop(0)
        return gx, gb, None, None, None, None


def _upsampled_elements(x: torch.Tensor, up: int, padding: tuple[int, int, int, int]) -> int:
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    return n * c * (h * up + py0 + py1) * (w * up + px0 + px1)


def filtered_lrelu(
    x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None, args: FilteredLReluArgs
) -> torch.Tensor:
    """The fused C++ kernel (once built, float32 CPU) forward and backward, with or without gradients.
    Otherwise the Python chains: without gradients as they are; recording gradients, big layers run
    the forward once and recompute channel slices in the backward (bounded memory), smaller ones run
    under plain autograd."""
    elements = _upsampled_elements(x, args.up, args.padding)
    if _records_grad(x, b):
        ch = _cpp_plan(x, fu, fd, args) if _uses_cpp(x) else None
        if ch is not None:
            return _CppFilteredLReLU.apply(x, b, fu, fd, args, ch)
        if elements > RECOMPUTE_ELEMENTS:
            per_channel = max(1, elements // x.shape[1])
            chunk = max(1, min(x.shape[1], RECOMPUTE_ELEMENTS // (4 * per_channel)))
            return _RecomputedFilteredLReLU.apply(x, b, fu, fd, args, chunk)
        return _python_chain(x, fu, fd, b, args)
    return _chain(x, fu, fd, b, args)
