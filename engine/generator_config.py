"""A StyleGAN3 generator's constructor arguments: which ones exist, how to read them off a state dict,
and the sizes every holder of a generator reports.

- :func:`infer_init_kwargs` recovers ``Generator(**init_kwargs)`` from the names and shapes of a
  state dict (for files that carry weights only).
- :func:`unknown_kwargs` lists the arguments our :class:`engine.Generator` does not take.
- :func:`plain_json` turns arguments holding NumPy or tensor values into plain JSON-able values.
- :class:`GeneratorSizes` gives a class with a ``generator`` its ``resolution``, ``w_dim`` and
  ``num_ws``; :func:`mapping_w_avg` is a generator's average w.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from engine.networks.stylegan3 import Generator

__all__ = [
    "DEFAULT_MAGNITUDE_EMA_BETA",
    "GeneratorSizes",
    "infer_init_kwargs",
    "mapping_w_avg",
    "plain_json",
    "unknown_kwargs",
]

# Batch 32 training value, the one every released StyleGAN3 network used; it only matters for training.
DEFAULT_MAGNITUDE_EMA_BETA = 0.5 ** (32 / 20000)

_LAYER_RE = re.compile(r"^synthesis\.L(\d+)_(\d+)_(\d+)\.weight$")
_FC_RE = re.compile(r"^mapping\.fc(\d+)\.weight$")

_GENERATOR_KWARGS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs"}
_SYNTHESIS_KWARGS = {
    "channel_base",
    "channel_max",
    "num_layers",
    "num_critical",
    "first_cutoff",
    "first_stopband",
    "last_stopband_rel",
    "margin_size",
    "output_scale",
    "num_fp16_res",
    "conv_kernel",
    "filter_size",
    "lrelu_upsampling",
    "use_radial_filters",
    "conv_clamp",
    "magnitude_ema_beta",
}
_MAPPING_KWARGS = {"num_layers", "lr_multiplier", "w_avg_beta"}


def unknown_kwargs(kwargs: dict[str, Any]) -> list[str]:
    """Names in ``kwargs`` that ``Generator`` does not take (``mapping_kwargs.<name>`` for its mapping)."""
    unknown = sorted(set(kwargs) - _GENERATOR_KWARGS - _SYNTHESIS_KWARGS)
    mapping = kwargs.get("mapping_kwargs") or {}
    return unknown + sorted(f"mapping_kwargs.{k}" for k in set(mapping) - _MAPPING_KWARGS)


def plain_json(value: Any) -> Any:
    """Deep copy of init kwargs / options as plain JSON-able Python values (NumPy and tensor values as lists
    or scalars)."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if hasattr(value, "tolist"):  # NumPy arrays and scalars, tensors
        return value.tolist()
    return value


class GeneratorSizes:
    """``resolution``, ``w_dim`` and ``num_ws`` of ``self.generator``, for classes that hold one."""

    generator: Generator

    @property
    def resolution(self) -> int:
        """Side of the generated images in pixels."""
        return int(self.generator.img_resolution)

    @property
    def w_dim(self) -> int:
        """Width of a latent row."""
        return int(self.generator.w_dim)

    @property
    def num_ws(self) -> int:
        """Rows of a W+ latent (one per synthesis layer input)."""
        return int(self.generator.num_ws)


def mapping_w_avg(generator: Generator) -> torch.Tensor:
    """The generator's average latent ``mapping.w_avg`` [w_dim] (a buffer, not a copy)."""
    w_avg = generator.mapping.w_avg
    if not isinstance(w_avg, torch.Tensor):
        raise TypeError(f"mapping.w_avg is a {type(w_avg).__name__}, not a tensor")
    return w_avg


# --------------------------------------------------------------------------------------------------
# Shape inference


def _schedule(
    img_resolution: int,
    num_layers: int,
    num_critical: int = 2,
    first_cutoff: float = 2,
    first_stopband: float = 2**2.1,
    last_stopband_rel: float = 2**0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """(cutoffs, sampling rates) per layer, as the synthesis network computes them."""
    last_cutoff = img_resolution / 2
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_cutoff * last_stopband_rel / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    return cutoffs, sampling_rates


def _channel_base(channels: np.ndarray, cutoffs: np.ndarray, channel_max: int) -> int | None:
    """A channel_base reproducing ``channels`` (without the RGB layer); powers of two preferred."""

    def fits(cb: float) -> bool:
        return bool(np.array_equal(np.rint(np.minimum((cb / 2) / cutoffs, channel_max)), channels))

    lo, hi = 0.0, math.inf
    for ch, c in zip(channels, cutoffs):
        if ch < channel_max:
            lo, hi = max(lo, 2 * c * (ch - 0.5)), min(hi, 2 * c * (ch + 0.5))
        else:
            lo = max(lo, 2 * c * (ch - 0.5))
    if hi == math.inf:
        hi = 2 * lo + 2
    if hi < lo - 1:
        return None
    lo_i, hi_i = max(1, math.floor(lo)), math.ceil(hi)
    for k in range(30, -1, -1):
        step = 2**k
        cb = -(-lo_i // step) * step
        tries = 0
        while cb <= hi_i and tries < 4096:
            if fits(cb):
                return cb
            cb += step
            tries += 1
    return None


def infer_init_kwargs(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Constructor arguments of a StyleGAN3 generator, read from its state dict's names and shapes.

    Infers z_dim, c_dim, w_dim, img_resolution, img_channels, mapping layers, num_layers, margin_size,
    conv_kernel, use_radial_filters, channel_base and channel_max (channel_base is the power of two, or
    the roundest number, that reproduces every layer's channel count). Arguments the shapes do not
    determine (num_fp16_res, conv_clamp, magnitude_ema_beta, ...) take the release's defaults.
    Raises ValueError when the names or shapes are not those of a StyleGAN3 generator.
    """
    sd = state_dict
    layers: dict[int, tuple[str, int, int]] = {}
    for key in sd:
        m = _LAYER_RE.match(key)
        if m:
            idx, size, ch = (int(g) for g in m.groups())
            if idx in layers:
                raise ValueError(f"two layers with index {idx}")
            layers[idx] = (key[len("synthesis.") : -len(".weight")], size, ch)
    if "synthesis.input.weight" not in sd or not layers:
        raise ValueError("no StyleGAN3 synthesis layers")
    n = len(layers)
    if sorted(layers) != list(range(n)) or n < 4:
        raise ValueError(f"synthesis layers are not numbered 0..{n - 1}")
    names = [layers[i][0] for i in range(n)]
    sizes = np.array([layers[i][1] for i in range(n)])
    channels = np.array([layers[i][2] for i in range(n)], dtype=np.float64)
    num_layers = n - 1
    img_resolution, img_channels = int(sizes[-1]), int(channels[-1])

    w_dim = int(sd["synthesis.input.affine.weight"].shape[1])
    fcs = sorted(int(m.group(1)) for m in map(_FC_RE.match, sd) if m)
    if not fcs or fcs != list(range(len(fcs))):
        raise ValueError("mapping layers mapping.fc0.. are missing")
    fc0_in = int(sd["mapping.fc0.weight"].shape[1])
    embed = sd.get("mapping.embed.weight")
    c_dim = int(embed.shape[1]) if embed is not None else 0
    z_dim = fc0_in - (w_dim if c_dim > 0 else 0)
    if z_dim <= 0:
        raise ValueError("mapping input width does not fit z_dim + embedding")

    first_weight = sd[f"synthesis.{names[0]}.weight"]
    if first_weight.ndim != 4:
        raise ValueError("synthesis weights are not 4-D")
    conv_kernel = int(first_weight.shape[-1])
    use_radial = any(getattr(sd.get(f"synthesis.{nm}.down_filter"), "ndim", 1) == 2 for nm in names)

    cutoffs, sampling_rates = _schedule(img_resolution, num_layers)
    margin2 = int(sizes[0]) - int(sampling_rates[0])
    margin_size = margin2 // 2 if num_layers >= 2 and margin2 >= 0 and margin2 % 2 == 0 else 10

    channel_max = int(channels[:-1].max())
    channel_base = _channel_base(channels[:-1], cutoffs[:-1], channel_max)
    if channel_base is None:
        raise ValueError("layer channel counts do not follow the StyleGAN3 schedule")

    kwargs: dict[str, Any] = dict(
        z_dim=z_dim,
        c_dim=c_dim,
        w_dim=w_dim,
        img_resolution=img_resolution,
        img_channels=img_channels,
        mapping_kwargs={"num_layers": len(fcs)},
        channel_base=channel_base,
        channel_max=channel_max,
        magnitude_ema_beta=DEFAULT_MAGNITUDE_EMA_BETA,
    )
    if conv_kernel != 3:
        kwargs["conv_kernel"] = conv_kernel
    if use_radial:
        kwargs["use_radial_filters"] = True
    if num_layers != 14:
        kwargs["num_layers"] = num_layers
    if margin_size != 10:
        kwargs["margin_size"] = margin_size
    return kwargs
