"""Fast CPU path of the three ops, in PyTorch ops, with the same results as the reference math
(kernels._ref) up to float rounding.

``bias_act`` works in place when no gradient is recorded. ``upfirdn2d`` resamples polyphase
(kernels._polyphase): no multiplication by inserted zeros, no discarded output computed.

``filtered_lrelu`` processes a bounded number of channels at a time through the whole chain with
polyphase filtering, so the 4x/16x upsampled temporaries of the big layers never exist for all
channels at once. When it records gradients for a big layer (more than ``RECOMPUTE_ELEMENTS``
upsampled elements), it keeps only its input and recomputes a slice of channels at a time during the
backward pass, so the memory of a training or PTI step at 1024 px stays bounded (the same gradients).

Arguments are normalised as in kernels._ref. Imports: kernels._ref and kernels._polyphase only.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from kernels import _ref
from kernels._polyphase import resample_2d, resample_axis, resample_range
from kernels._ref import FilteredLReluArgs, UpfirdnArgs

# Elements of one band of the upsampled plane (float32: 4 MiB). Larger
# bands spill to memory, smaller ones pay more Python overhead per band.
BAND_ELEMENTS = 1 << 20
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
    """Polyphase: every phase is a short strided correlation on the original samples."""
    (upx, upy), (downx, downy), (px0, px1, py0, py1), flip_filter, gain = args
    f = _ref.prepare_filter(f, gain, flip_filter, x)
    if f.ndim == 2:
        return resample_2d(x, f, args.up, args.down, args.padding)
    x = resample_axis(x, f, -1, upx, downx, px0, px1)
    return resample_axis(x, f, -2, upy, downy, py0, py1)


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


def _filtered_lrelu_bands(
    x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None, args: FilteredLReluArgs
) -> torch.Tensor:
    """The whole chain, a chunk of channels and a band of output rows at a time."""
    n, c, h, w = x.shape
    up, down, padding, gain, slope, clamp, flip_filter = args
    px0, px1, py0, py1 = padding
    if fu is None and (up > 1 or any(padding)):
        fu = torch.ones(1)
    hu = _as_taps(fu, up**2, flip_filter, x.dtype)
    hd = _as_taps(fd, 1.0, flip_filter, x.dtype)
    if hd is None and down > 1:
        hd = torch.ones(1, dtype=x.dtype)
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


class _RecomputedFilteredLReLU(torch.autograd.Function):
    """The banded chain with a memory-bounded backward: saves x and b only; the backward recomputes
    the chain for a slice of channels at a time (channels are independent) and backpropagates through
    it."""

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
            return _filtered_lrelu_bands(x, fu, fd, b, args)

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, b = ctx.saved_tensors
        fu, fd, args, chunk = ctx.args
        need_x, need_b = ctx.needs_input_grad[0], b is not None and ctx.needs_input_grad[1]
        gx = torch.empty_like(x) if need_x else None
        gb = torch.zeros_like(b) if need_b else None
        for c0 in range(0, x.shape[1], chunk):
            c1 = min(x.shape[1], c0 + chunk)
            with torch.enable_grad():
                xs = x[:, c0:c1].detach().requires_grad_(need_x)
                bs = None if b is None else b[c0:c1].detach().requires_grad_(need_b)
                ys = _filtered_lrelu_bands(xs, fu, fd, bs, args)
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
    """The banded chain; big layers that record gradients recompute channel slices in the backward."""
    elements = _upsampled_elements(x, args.up, args.padding)
    if _records_grad(x, b) and elements > RECOMPUTE_ELEMENTS:
        per_channel = max(1, elements // x.shape[1])
        chunk = max(1, min(x.shape[1], RECOMPUTE_ELEMENTS // (4 * per_channel)))
        return _RecomputedFilteredLReLU.apply(x, b, fu, fd, args, chunk)
    return _filtered_lrelu_bands(x, fu, fd, b, args)
