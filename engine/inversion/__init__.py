"""Inversion: from aligned faces to W+ latents, and pivotal tuning of the generator around them.

Stable imports::

    from engine.inversion import load_inverter, Inverter, optimize_latent, tune_generator, Cancelled
    inv = load_inverter("restyle_pSp_ffhq.pt")                  # or a file written by save_inverter
    res = inv.invert(aligned, n_iters=3, transform=face.transform)   # aligned [N,3,H,W] in [-1,1]
    res.latent            # [N,16,512]; res.images[i]: aligned render per iteration; res.unaligned
    pti = tune_generator(inv.generator, crop, res.latent, transform=face.transform, steps=350)
    pti.generator         # tuned copy; inv.generator is untouched

Every inverter (the encoder ``Inverter``, the encoder-free ``OptimizationInverter``) follows
``InverterProtocol`` and returns an ``InversionResult``.

Modules: :mod:`.protocol` (``InverterProtocol``, ``InversionResult``), :mod:`.restyle` (ReStyle / pSp /
e4e encoder inversion), :mod:`.inverter_files` (encoder checkpoints and our inverter files),
:mod:`.optimize` (optimization in W / W+, ``OptimizationInverter``), :mod:`.pti` (pivotal tuning),
:mod:`.common` (``Cancelled``, resizing, renders).
"""

from __future__ import annotations

from engine.inversion.common import Cancelled, resize_images
from engine.inversion.inverter_files import infer_encoder_config, load_inverter, save_inverter
from engine.inversion.optimize import OptimizationInverter, OptimizationResult, optimize_latent
from engine.inversion.protocol import InversionResult, InverterProtocol
from engine.inversion.pti import PTIResult, apply_weight_delta, tunable_parameter_names, tune_generator, weight_delta
from engine.inversion.restyle import EncoderConfig, Inverter

__all__ = [
    "Cancelled",
    "EncoderConfig",
    "InversionResult",
    "Inverter",
    "InverterProtocol",
    "OptimizationInverter",
    "OptimizationResult",
    "PTIResult",
    "apply_weight_delta",
    "infer_encoder_config",
    "load_inverter",
    "optimize_latent",
    "resize_images",
    "save_inverter",
    "tunable_parameter_names",
    "tune_generator",
    "weight_delta",
]
