"""The StyleGAN3 generator (T and R configs), written from the published description.

Module tree, constructor keywords and ``state_dict()`` names, shapes and order equal the official
release's ``G_ema``, so ``Generator(**init_kwargs).load_state_dict(official_state_dict)`` works and
renders the same images (see ../shared/spec/stylegan3.md and tests/test_generator_golden.py).

Shapes: z [N,z_dim]; c [N,c_dim]; ws [N,num_ws,w_dim] (num_ws = num_layers + 2 = 16 by default);
images [N,img_channels,R,R] float32, roughly in [-1,1] (no clamping, no tanh).
``ws[:,0]`` drives the Fourier input layer, ``ws[:,i+1]`` drives layer ``L{i}``.

Every forward pass (``Generator``, ``mapping``, ``synthesis``, and the layers and ``styles`` methods
below them) takes ``impl``, the kernel implementation ('ref', 'fast', 'cuda' or None for automatic,
see kernels._select), and hands it to every ``bias_act`` and ``filtered_lrelu`` call it makes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from engine.networks.filters import design_lowpass_filter
from kernels import bias_act, filtered_lrelu

__all__ = ["Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisInput", "SynthesisLayer", "FullyConnectedLayer"]


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalized learning rate: weight * lr_multiplier / sqrt(in_features)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "linear",
        bias: bool = True,
        lr_multiplier: float = 1.0,
        weight_init: float = 1.0,
        bias_init=0.0,
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        bias_init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = nn.Parameter(torch.from_numpy(bias_init / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor, impl: str | None = None) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b: torch.Tensor | None = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation, impl=impl)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class MappingNetwork(nn.Module):
    """z (and c) -> ws [N,num_ws,w_dim], with a running average ``w_avg`` for truncation."""

    w_avg: torch.Tensor

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 2,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.998,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        for idx in range(num_layers):
            setattr(
                self,
                f"fc{idx}",
                FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier),
            )
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
        impl: str | None = None,
    ) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N,{self.z_dim}], got {tuple(z.shape)}")
        x = normalize_2nd_moment(z.to(torch.float32))
        if self.embed is not None:  # conditional (c_dim > 0)
            if c is None or c.shape[-1] != self.c_dim:
                raise ValueError(f"this generator is conditional: pass c of shape [N,{self.c_dim}]")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32), impl=impl))
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x, impl=impl)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x


def _batched_transform(transform: torch.Tensor, n: int) -> torch.Tensor:
    if transform.ndim == 2:
        transform = transform.unsqueeze(0)
    if transform.shape[-2:] != (3, 3) or transform.shape[0] not in (1, n):
        raise ValueError(f"transform must be [3,3] or [{n},3,3], got {tuple(transform.shape)}")
    return transform.expand(n, 3, 3)


class SynthesisInput(nn.Module):
    """Fourier features, rotated/translated per sample by ``affine(w)`` and by the user transform."""

    transform: torch.Tensor
    freqs: torch.Tensor
    phases: torch.Tensor

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels = w_dim, channels
        self.size = int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand([channels]) - 0.5
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def styles(self, w: torch.Tensor, impl: str | None = None) -> torch.Tensor:
        """w [N,w_dim] -> styles [N,4] = affine(w) (rotation and translation parameters)."""
        return self.affine(w, impl=impl)

    def forward(
        self,
        w: torch.Tensor | None = None,
        transform: torch.Tensor | None = None,
        styles: torch.Tensor | None = None,
        impl: str | None = None,
    ) -> torch.Tensor:
        """w [N,w_dim] (or styles [N,4] = affine(w)) -> features [N,C,size,size]."""
        t = _given_styles(self, w, styles, impl)
        n = t.shape[0]
        user = _batched_transform(self.transform if transform is None else transform.to(t), n)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        zero, one = torch.zeros_like(t[:, 0]), torch.ones_like(t[:, 0])
        m_r = torch.stack([t[:, 0], -t[:, 1], zero, t[:, 1], t[:, 0], zero, zero, zero, one], 1).view(n, 3, 3)
        m_t = torch.stack([one, zero, -t[:, 2], zero, one, -t[:, 3], zero, zero, one], 1).view(n, 3, 3)
        tr = m_r @ m_t @ user
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ tr[:, :2, 2:]).squeeze(2)
        freqs = self.freqs.unsqueeze(0) @ tr[:, :2, :2]  # [N,C,2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        # Pixel j sits at (j + 0.5 - size/2) / sampling_rate; x runs along columns, y down rows.
        coords = (
            torch.arange(self.size, device=t.device, dtype=torch.float32) + 0.5 - self.size / 2
        ) / self.sampling_rate
        gy, gx = torch.meshgrid(coords, coords, indexing="ij")
        grid = torch.stack([gx, gy], dim=-1).reshape(1, -1, 2)  # [1,H*W,2]
        x = grid @ freqs.transpose(1, 2)  # [N,H*W,C]
        x = x + phases.unsqueeze(1)
        x = torch.sin(x * (2 * math.pi)) * amplitudes.unsqueeze(1)
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.transpose(1, 2).reshape(n, self.channels, self.size, self.size)

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
            f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}"
        )


def _given_styles(
    module: SynthesisInput | SynthesisLayer, w: torch.Tensor | None, styles: torch.Tensor | None, impl: str | None
) -> torch.Tensor:
    """A layer's StyleSpace input: ``styles`` when given, else ``module.styles(w)``."""
    if styles is not None:
        return styles
    if w is None:
        raise ValueError("pass w or styles")
    return module.styles(w, impl=impl)


# CPU convolutions of at least this many multiply-adds per image (or planes of at least WINOGRAD_PIXELS)
# run as NNPACK's Winograd transform: 1.4-3.7x faster than oneDNN's direct convolution for the 3x3
# layers of the released configs at batch 1 (2-core EPYC, 2 threads: 512 ch at 148 px 712 -> 193 ms;
# 32 ch at 276 px 20 -> 13 ms), slower for small layers (the demo model's 48 ch at <= 74 px: 0.5-0.7x).
# Relative error 3e-6..5e-6 per layer against float64, oneDNN's 1e-6 (bench/RESULTS.md, "Convolutions").
WINOGRAD_MACS = 1e9
WINOGRAD_PIXELS = 128 * 128


def conv2d(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """``F.conv2d(x, weight, padding=padding)`` (stride 1, no bias), x [N,I,H,W], weight [O,I,k,k].

    On CPU in float32 the algorithm is chosen by shape: 1x1 kernels are one matrix product (oneDNN's
    1x1 convolution was 1.1-4.7x slower on the R configs' large planes); big 3x3 layers use
    Winograd (NNPACK), one image at a time (its batched mode is slower); the rest use oneDNN.
    """
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return F.conv2d(x, weight, padding=padding)
    n, i, h, w = x.shape
    o, _, kh, kw = weight.shape
    if kh == kw == 1 and padding == 0:
        return torch.matmul(weight.reshape(o, i), x.reshape(n, i, h * w)).reshape(n, o, h, w)
    if (
        kh == kw == 3
        and padding <= kh - 1
        and (i * o * kh * kw * h * w >= WINOGRAD_MACS or (h * w >= WINOGRAD_PIXELS and i >= 16))
        and torch._nnpack_available()
    ):
        if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
            return _WinogradConv2d.apply(x, weight, padding)
        return _winograd(x, weight, padding)
    return F.conv2d(x, weight, padding=padding)


def _winograd(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """NNPACK's Winograd convolution without autograd, one image at a time."""
    pad = [padding, padding]
    if x.shape[0] == 1:
        return torch._nnpack_spatial_convolution(x, weight, None, pad)
    return torch.cat([torch._nnpack_spatial_convolution(x[k : k + 1], weight, None, pad) for k in range(x.shape[0])])


class _WinogradConv2d(torch.autograd.Function):
    """The Winograd convolution with a Winograd backward for the input: the gradient of a stride-1
    convolution is the convolution of the output gradient with the flipped, transposed kernel and
    padding k - 1 - p (PyTorch's generic backward for NNPACK's op runs the direct algorithm: 2.4x
    slower on the T configs' 3x3 layers). The weight gradient is PyTorch's (oneDNN); under
    create_graph the backward goes through F.conv2d, differentiably."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return _winograd(x, weight, padding)

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight = ctx.saved_tensors
        p = ctx.padding
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if torch.is_grad_enabled():
            inputs = [t for t, need in ((x, need_x), (weight, need_w)) if need]
            with torch.enable_grad():
                y = F.conv2d(x, weight, padding=p)
            grads = list(torch.autograd.grad(y, inputs, gy, create_graph=True))
            return (grads.pop(0) if need_x else None), (grads.pop(0) if need_w else None), None
        gy = gy.contiguous()
        gx = _winograd(gy, weight.transpose(0, 1).flip(2, 3).contiguous(), weight.shape[2] - 1 - p) if need_x else None
        gw = None
        if need_w:
            mask = [False, True, False]
            gw = torch.ops.aten.convolution_backward(
                gy, x, weight, None, [1, 1], [p, p], [1, 1], False, [0, 0], 1, mask
            )[1]
        return gx, gw, None


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    padding: int,
    demodulate: bool,
    input_gain: torch.Tensor | None,
) -> torch.Tensor:
    """x [N,I,H,W], weight [O,I,k,k], styles [N,I] -> [N,O,H',W'].

    Batch 1 runs as the release does (modulate the weights, one convolution). Larger batches scale
    the activations instead, so one shared-weight convolution serves the whole batch; the two are
    the same product reordered (float32 rounding differences only).
    """
    n = x.shape[0]
    o, i, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    if n == 1:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, i, 1, 1)
        if demodulate:
            w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, o, 1, 1, 1)
        if input_gain is not None:
            w = w * input_gain
        return conv2d(x, w.reshape(o, i, kh, kw).to(x.dtype), padding)
    scale = None
    if demodulate:
        # sum_ikk (W s)^2 = (W^2 summed over k) @ s^2
        scale = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N,O]
    if input_gain is not None:
        scale = input_gain.expand(n, o) if scale is None else scale * input_gain
    y = conv2d(x * styles.reshape(n, i, 1, 1).to(x.dtype), weight.to(x.dtype), padding)
    if scale is not None:
        y = y * scale.reshape(n, o, 1, 1).to(y.dtype)
    return y


class SynthesisLayer(nn.Module):
    """Modulated convolution followed by the alias-free filtered leaky ReLU (or ToRGB when last)."""

    magnitude_ema: torch.Tensor
    up_filter: torch.Tensor | None
    down_filter: torch.Tensor | None

    def __init__(
        self,
        w_dim: int,
        is_torgb: bool,
        is_critically_sampled: bool,
        use_fp16: bool,
        in_channels: int,
        out_channels: int,
        in_size,
        out_size,
        in_sampling_rate: float,
        out_sampling_rate: float,
        in_cutoff: float,
        out_cutoff: float,
        in_half_width: float,
        out_half_width: float,
        conv_kernel: int = 3,
        filter_size: int = 6,
        lrelu_upsampling: int = 2,
        use_radial_filters: bool = False,
        conv_clamp: float | None = 256,
        magnitude_ema_beta: float = 0.999,
    ):
        super().__init__()
        self.w_dim, self.is_torgb = w_dim, is_torgb
        self.is_critically_sampled, self.use_fp16 = is_critically_sampled, use_fp16
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff = in_cutoff, out_cutoff
        self.in_half_width, self.out_half_width = in_half_width, out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        assert in_sampling_rate * self.up_factor == self.tmp_sampling_rate
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer(
            "up_filter",
            design_lowpass_filter(
                numtaps=self.up_taps, cutoff=in_cutoff, width=in_half_width * 2, fs=self.tmp_sampling_rate
            ),
        )
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        assert out_sampling_rate * self.down_factor == self.tmp_sampling_rate
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer(
            "down_filter",
            design_lowpass_filter(
                numtaps=self.down_taps,
                cutoff=out_cutoff,
                width=out_half_width * 2,
                fs=self.tmp_sampling_rate,
                radial=self.down_radial,
            ),
        )

        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [int(pad_lo[0]), int(pad_hi[0]), int(pad_lo[1]), int(pad_hi[1])]

    def styles(self, w: torch.Tensor, impl: str | None = None) -> torch.Tensor:
        """w [N,w_dim] -> styles [N,in_channels] (ToRGB's weight gain included)."""
        s = self.affine(w, impl=impl)
        if self.is_torgb:
            s = s * (1 / math.sqrt(self.in_channels * self.conv_kernel**2))
        return s

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor | None = None,
        styles: torch.Tensor | None = None,
        update_emas: bool = False,
        force_fp32: bool = True,
        impl: str | None = None,
    ) -> torch.Tensor:
        x = self.convolve(x, w, styles, update_emas, force_fp32, impl)
        return self.activate(x, impl)

    def convolve(
        self,
        x: torch.Tensor,
        w: torch.Tensor | None = None,
        styles: torch.Tensor | None = None,
        update_emas: bool = False,
        force_fp32: bool = True,
        impl: str | None = None,
    ) -> torch.Tensor:
        """The first half of ``forward``: the modulated convolution (before bias, filters, activation)."""
        if update_emas:
            with torch.no_grad():
                cur = x.detach().to(torch.float32).square().mean()
                self.magnitude_ema.copy_(cur.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        s = _given_styles(self, w, styles, impl)
        dtype = torch.float16 if (self.use_fp16 and not force_fp32 and x.device.type == "cuda") else torch.float32
        return modulated_conv2d(
            x.to(dtype),
            self.weight,
            s,
            padding=self.conv_kernel - 1,
            demodulate=not self.is_torgb,
            input_gain=input_gain,
        )

    def activate(self, x: torch.Tensor, impl: str | None = None) -> torch.Tensor:
        """The second half of ``forward``: bias, up filter, leaky ReLU, down filter (filtered_lrelu)."""
        gain = 1.0 if self.is_torgb else math.sqrt(2)
        slope = 1.0 if self.is_torgb else 0.2
        x = filtered_lrelu(
            x,
            fu=self.up_filter,
            fd=self.down_filter,
            b=self.bias.to(x.dtype),
            up=self.up_factor,
            down=self.down_factor,
            padding=self.padding,
            gain=gain,
            slope=slope,
            clamp=self.conv_clamp,
            impl=impl,
        )
        return x

    def extra_repr(self) -> str:
        return (
            f"in={self.in_channels}@{int(self.in_size[0])}, out={self.out_channels}@{int(self.out_size[0])}, "
            f"up={self.up_factor}, down={self.down_factor}, torgb={self.is_torgb}"
        )


class SynthesisNetwork(nn.Module):
    """ws [N,num_ws,w_dim] -> images [N,img_channels,R,R]."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_layers: int = 14,
        num_critical: int = 2,
        first_cutoff: float = 2,
        first_stopband: float = 2**2.1,
        last_stopband_rel: float = 2**0.3,
        margin_size: int = 10,
        output_scale: float = 0.25,
        num_fp16_res: int = 4,
        **layer_kwargs,
    ):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = num_layers + 2
        self.num_layers, self.num_critical = num_layers, num_critical
        self.margin_size, self.output_scale, self.num_fp16_res = margin_size, output_scale, num_fp16_res

        # Schedule of cutoffs, stopbands, sampling rates and channel counts (one entry per layer).
        last_cutoff = img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
        sizes = sampling_rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels

        self.input = SynthesisInput(
            w_dim=w_dim,
            channels=int(channels[0]),
            size=int(sizes[0]),
            sampling_rate=sampling_rates[0],
            bandwidth=cutoffs[0],
        )
        self.layer_names = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            is_torgb = idx == num_layers
            is_critically_sampled = idx >= num_layers - num_critical
            use_fp16 = bool(sampling_rates[idx] * (2**num_fp16_res) > img_resolution)
            layer = SynthesisLayer(
                w_dim=w_dim,
                is_torgb=is_torgb,
                is_critically_sampled=is_critically_sampled,
                use_fp16=use_fp16,
                in_channels=int(channels[prev]),
                out_channels=int(channels[idx]),
                in_size=int(sizes[prev]),
                out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]),
                out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev],
                out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev],
                out_half_width=half_widths[idx],
                **layer_kwargs,
            )
            name = f"L{idx}_{layer.out_size[0]}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def layers(self) -> list[SynthesisLayer]:
        return [getattr(self, name) for name in self.layer_names]

    def styles(
        self, ws: torch.Tensor, input_from_mean: bool = False, impl: str | None = None
    ) -> dict[str, torch.Tensor]:
        """StyleSpace: {'input': [N,4], layer name: [N,in_channels], ...} for ws [N,num_ws,w_dim]."""
        self._check_ws(ws)
        ws = ws.to(torch.float32)
        w_in = ws[:, 1:].mean(dim=1) if input_from_mean else ws[:, 0]
        out = {"input": self.input.styles(w_in, impl=impl)}
        for idx, layer in enumerate(self.layers()):
            out[self.layer_names[idx]] = layer.styles(ws[:, idx + 1], impl=impl)
        return out

    def _check_ws(self, ws: torch.Tensor) -> None:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N,{self.num_ws},{self.w_dim}], got {tuple(ws.shape)}")

    def forward(
        self,
        ws: torch.Tensor | None = None,
        transform: torch.Tensor | None = None,
        styles: dict[str, torch.Tensor] | None = None,
        input_from_mean: bool = False,
        update_emas: bool = False,
        force_fp32: bool = True,
        impl: str | None = None,
        checkpoint_layers: bool = False,
        between_layers: Callable[[int, int], None] | None = None,
        **_ignored,
    ) -> torch.Tensor:
        """Render images [N,C,R,R] from ws (or from StyleSpace ``styles``).

        transform: None (the stored ``synthesis.input.transform`` buffer), [3,3] or [N,3,3], in the
        stored inverse convention (see engine.transforms.make_transform).
        input_from_mean: feed mean(ws[:,1:]) to the input layer (the paper's unaligned-generator trick).
        checkpoint_layers: when gradients are recorded, keep only each layer's output and recompute
            its inside during backward (gradient checkpointing: the 1024 px backward pass then needs a
            fraction of the memory for about one more forward pass; results are identical).
        between_layers: called as ``between_layers(done, total)`` after the input layer (done 1) and
            after each synthesis layer (done 2 .. total, total = ``num_layers + 2``); it may raise
            (e.g. :class:`engine.jobs.Cancelled`) to abandon the render there. Per call: nothing is
            stored on the module, so threads sharing a generator do not see each other's hooks.
        """
        ckpt = checkpoint_layers and torch.is_grad_enabled() and not update_emas
        total = len(self.layer_names) + 1

        def run(layer: SynthesisLayer, box: list[torch.Tensor], **kw) -> None:
            """Replace the activations in ``box`` by ``layer``'s output. The box holds the only
            reference, so the input is let go between the convolution and the filters (one big
            tensor less held while filtered_lrelu runs: peak memory at 1024 px)."""
            x = box.pop()
            if ckpt:
                box.append(
                    torch.utils.checkpoint.checkpoint(
                        layer, x, use_reentrant=False, force_fp32=force_fp32, impl=impl, **kw
                    )
                )
                return
            h = layer.convolve(x, update_emas=update_emas, force_fp32=force_fp32, impl=impl, **kw)
            del x
            box.append(layer.activate(h, impl=impl))

        if styles is None:
            if ws is None:
                raise ValueError("pass ws or styles")
            self._check_ws(ws)
            ws = ws.to(torch.float32)
            w_in = ws[:, 1:].mean(dim=1) if input_from_mean else ws[:, 0]
            box = [self.input(w_in, transform=transform, impl=impl)]
            if between_layers is not None:
                between_layers(1, total)
            for idx, layer in enumerate(self.layers()):
                run(layer, box, w=ws[:, idx + 1])
                if between_layers is not None:
                    between_layers(idx + 2, total)
        else:
            box = [self.input(styles=styles["input"].to(torch.float32), transform=transform, impl=impl)]
            if between_layers is not None:
                between_layers(1, total)
            for idx, (name, layer) in enumerate(zip(self.layer_names, self.layers())):
                run(layer, box, styles=styles[name].to(torch.float32))
                if between_layers is not None:
                    between_layers(idx + 2, total)
        x = box.pop()
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)


class Generator(nn.Module):
    """StyleGAN3 generator: ``mapping`` (z -> ws) then ``synthesis`` (ws -> image)."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        mapping_kwargs: dict | None = None,
        **synthesis_kwargs,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.init_kwargs = dict(
            z_dim=z_dim,
            c_dim=c_dim,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            mapping_kwargs=dict(mapping_kwargs or {}),
            **synthesis_kwargs,
        )
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **(mapping_kwargs or {})
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        transform: torch.Tensor | None = None,
        update_emas: bool = False,
        impl: str | None = None,
        **synthesis_kwargs,
    ) -> torch.Tensor:
        """z [N,z_dim] -> images; ``impl`` picks the kernels of both networks, the other keywords go
        to ``synthesis``."""
        ws = self.mapping(
            z,
            c,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
            update_emas=update_emas,
            impl=impl,
        )
        return self.synthesis(ws, transform=transform, update_emas=update_emas, impl=impl, **synthesis_kwargs)
