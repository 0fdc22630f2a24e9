"""Image-to-latent encoders: IR-SE backbones with pSp, e4e and ReStyle heads.

Stable entry point::

    from engine.encoders import build_encoder
    enc = build_encoder('restyle_psp', input_nc=6, n_styles=16, backbone='ir_se50')
    enc.load_state_dict(encoder_state_from_checkpoint(ckpt['state_dict']))
    codes = enc(x)   # x [N,6,256,256] in [-1,1] -> codes [N,16,512], before latent_avg / previous codes

Kinds: ``'restyle_psp'`` (``BackboneEncoder``), ``'restyle_e4e'`` (``ProgressiveBackboneEncoder``),
``'psp'`` (``GradualStyleEncoder``), ``'e4e'`` (``Encoder4Editing``), all subclasses of ``EncoderBase``.
Backbones: see ``BACKBONES``.
"""

from __future__ import annotations

from engine.encoders.backbone import BACKBONES, BackboneSpec, get_backbone_spec
from engine.encoders.heads import EqualLinear, StyleHead
from engine.encoders.models import (
    ENCODER_KINDS,
    BackboneEncoder,
    Encoder4Editing,
    EncoderBase,
    GradualStyleEncoder,
    ProgressiveBackboneEncoder,
    build_encoder,
    encoder_state_from_checkpoint,
)

__all__ = [
    "BACKBONES",
    "BackboneEncoder",
    "BackboneSpec",
    "ENCODER_KINDS",
    "Encoder4Editing",
    "EncoderBase",
    "EqualLinear",
    "GradualStyleEncoder",
    "ProgressiveBackboneEncoder",
    "StyleHead",
    "build_encoder",
    "encoder_state_from_checkpoint",
    "get_backbone_spec",
]
