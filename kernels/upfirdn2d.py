"""upfirdn2d: upsample (zero insertion), pad, FIR-filter and downsample a batch of images.

``upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1)``
x: [N,C,H,W]; f: None (identity), [taps] (separable: applied horizontally, then vertically) or
[th,tw]; up/down: int or (x, y); padding: int, (x, y) or (x0, x1, y0, y1), negative values crop.
The filter is flipped (true convolution) unless ``flip_filter``; ``gain`` scales the whole result
(split evenly between the two passes of a separable filter).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels._polyphase import resample_2d, resample_axis
from kernels._select import gpu_friendly, resolve_impl


def parse_scaling(s) -> tuple[int, int]:
    if isinstance(s, int):
        return s, s
    sx, sy = s
    return int(sx), int(sy)


def parse_padding(p) -> tuple[int, int, int, int]:
    if isinstance(p, int):
        return p, p, p, p
    if len(p) == 2:
        px, py = p
        return px, px, py, py
    x0, x1, y0, y1 = p
    return int(x0), int(x1), int(y0), int(y1)


def _prepare_filter(f: torch.Tensor | None, gain: float, flip_filter: bool, x: torch.Tensor):
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    f = f * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    return f.to(x.dtype)


def _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain):
    """The release's plain math: zero insertion, pad, depthwise convolution(s), then stride."""
    n, c, h, w = x.shape
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(n, c, h * upy, w * upx)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    f = _prepare_filter(f, gain, flip_filter, x)
    fw = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 2:
        x = F.conv2d(x, fw, groups=c)
    else:
        x = F.conv2d(x, fw.unsqueeze(2), groups=c)
        x = F.conv2d(x, fw.unsqueeze(3), groups=c)
    return x[:, :, ::downy, ::downx]


def _upfirdn2d_fast(x, f, up, down, padding, flip_filter, gain):
    """Polyphase: every phase is a short strided correlation on the original samples."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    f = _prepare_filter(f, gain, flip_filter, x)
    if f.ndim == 2:
        return resample_2d(x, f, up, down, padding)
    x = resample_axis(x, f, -1, upx, downx, px0, px1)
    return resample_axis(x, f, -2, upy, downy, py0, py1)


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up=1,
    down=1,
    padding=0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """See the module docstring. Returns [N,C,H',W'] in x's dtype."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects [N,C,H,W], got shape {tuple(x.shape)}")
    if f is not None and f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    up, down, padding = parse_scaling(up), parse_scaling(down), parse_padding(padding)
    which = gpu_friendly(resolve_impl(impl, x), x)
    if which == "ref":
        return _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)
    return _upfirdn2d_fast(x, f, up, down, padding, flip_filter, gain)
