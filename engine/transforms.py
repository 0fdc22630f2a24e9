"""User transforms for StyleGAN3's Fourier-feature input layer.

Convention (same as the official release, checked against ../shared/golden):
the *forward* matrix M = [[cos a, sin a, tx], [-sin a, cos a, ty], [0, 0, 1]] describes what the user
wants to happen to the picture: +tx moves the content right by tx * R pixels, +ty moves it down,
+a (degrees) turns it counter-clockwise on screen. The generator stores and consumes the *inverse*
of M (``synthesis.input.transform = inv(M)``); :func:`make_transform` returns that inverse, ready to be
passed as ``G.synthesis(ws, transform=...)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["forward_matrix", "make_transform", "transform_params", "compose"]


def forward_matrix(angle_deg: float = 0.0, tx: float = 0.0, ty: float = 0.0) -> np.ndarray:
    """The user-facing matrix M (float64 [3,3]); see the module docstring for the directions."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, s, tx], [-s, c, ty], [0.0, 0.0, 1.0]], dtype=np.float64)


def make_transform(
    angle_deg: float = 0.0, tx: float = 0.0, ty: float = 0.0, device: torch.device | str | None = None
) -> torch.Tensor:
    """The matrix to hand to ``G.synthesis(..., transform=)``: float32 [3,3] = inv(M).

    angle_deg: counter-clockwise rotation on screen, in degrees.
    tx, ty: translation of the content in units of the output width (+tx right, +ty down).
    """
    inv = np.linalg.inv(forward_matrix(angle_deg, tx, ty))
    return torch.from_numpy(inv.astype(np.float32)).to(device)


def transform_params(transform: torch.Tensor | np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`make_transform`: (angle_deg, tx, ty) of a stored (inverse) matrix.

    Any scale in the matrix is ignored for the angle; tx/ty are read from the forward matrix.
    """
    t = (
        transform.detach().cpu().double().numpy()
        if isinstance(transform, torch.Tensor)
        else np.asarray(transform, dtype=np.float64)
    )
    m = np.linalg.inv(t)
    angle = math.degrees(math.atan2(m[0, 1], m[0, 0]))
    return angle, float(m[0, 2]), float(m[1, 2])


def compose(*stored: torch.Tensor) -> torch.Tensor:
    """Compose stored (inverse) transforms so that the forward effects apply left to right.

    ``compose(a, b)`` first applies a's effect, then b's: inv(Mb @ Ma) = inv(Ma) @ inv(Mb).
    Works on [3,3] and batched [N,3,3] tensors.
    """
    out = stored[0]
    for t in stored[1:]:
        out = out @ t
    return out
