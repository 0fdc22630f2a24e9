"""Low-pass filter design for StyleGAN3 layers (used only when a network is built from scratch;
checkpoints carry their filters as buffers).

Separable filters are Kaiser-windowed sincs (scipy.signal.firwin). Radial filters (R configs) are
jinc functions times an outer product of Kaiser windows, normalised to unit sum.
"""

from __future__ import annotations

import numpy as np
import torch


def design_lowpass_filter(
    numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
) -> torch.Tensor | None:
    """[numtaps] (or [numtaps,numtaps] when radial) float32, or None for a single tap."""
    import scipy.signal
    import scipy.special

    assert numtaps >= 1
    if numtaps == 1:
        return None
    if not radial:
        taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(taps, dtype=torch.float32)
    pos = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(pos, pos))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f = f * np.outer(window, window)
    f = f / np.sum(f)
    return torch.as_tensor(f, dtype=torch.float32)
