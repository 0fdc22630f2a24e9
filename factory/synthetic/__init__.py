"""Procedural synthetic faces: the demo model's domain (our own renderer, no external data).

Stable entry points::

    from factory.synthetic import sample_factors, render, render_clip, FACTORS
    f = sample_factors(16, seed=0)                       # Factors, values float32 [16, len(FACTORS)]
    images, landmarks, labels = render(f, 256)           # uint8 [16,256,256,3], float32 [16,68,2], Factors
    photos, lm, labels = render(f, 256, aligned=False)   # with roll / shift / zoom applied

``FACTORS`` (see :mod:`factory.synthetic.factors`) is the single table of factor names, kinds
(identity | attribute | pose), ranges and meanings. Landmarks follow dlib's iBUG 68-point convention in
pixel-index coordinates; aligned renders are exactly the FFHQ alignment of the face (see
:mod:`factory.synthetic.geometry`).
"""

from __future__ import annotations

from factory.synthetic.factors import (
    FACTOR_NAMES,
    FACTORS,
    ROLL_DEGREES,
    SHIFT_FRACTION,
    YAW_DEGREES,
    ZOOM_RANGE,
    Factor,
    Factors,
    factor_index,
    factor_table,
    sample_factors,
)
from factory.synthetic.geometry import ffhq_quad
from factory.synthetic.render import render, render_clip, render_one, write_photo

__all__ = [
    "FACTORS",
    "FACTOR_NAMES",
    "Factor",
    "Factors",
    "factor_index",
    "factor_table",
    "sample_factors",
    "render",
    "render_one",
    "render_clip",
    "write_photo",
    "ffhq_quad",
    "ROLL_DEGREES",
    "YAW_DEGREES",
    "SHIFT_FRACTION",
    "ZOOM_RANGE",
]
