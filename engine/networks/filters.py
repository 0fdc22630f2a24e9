"""Low-pass filter design for StyleGAN3 layers (used only when a network is built from scratch;
checkpoints carry their filters as buffers).

Separable filters are Kaiser-windowed sincs (as scipy.signal.firwin designs them, in numpy). Radial
filters (R configs) are jinc functions times an outer product of Kaiser windows, normalised to unit sum.
"""

from __future__ import annotations

import numpy as np
import torch


def kaiser_beta_for(numtaps: int, width: float) -> float:
    """The Kaiser window's beta for a transition ``width`` (a fraction of Nyquist), as scipy.signal's
    ``kaiser_beta(kaiser_atten(numtaps, width))``: the stopband attenuation in dB, then Kaiser's formula."""
    atten = 2.285 * (numtaps - 1) * np.pi * width + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def firwin_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """A Kaiser-windowed sinc low-pass (float64 [numtaps]), as ``scipy.signal.firwin(numtaps, cutoff,
    width=width, fs=fs)``: the ideal response times the window, scaled to unit gain at 0 Hz. Written
    here so that building a network does not import scipy.signal (a second or more)."""
    nyq = fs / 2
    m = np.arange(numtaps) - (numtaps - 1) / 2
    c = cutoff / nyq
    h = c * np.sinc(c * m) * np.kaiser(numtaps, kaiser_beta_for(numtaps, width / nyq))
    return h / np.sum(h)


def design_lowpass_filter(
    numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
) -> torch.Tensor | None:
    """[numtaps] (or [numtaps,numtaps] when radial) float32, or None for a single tap."""
    assert numtaps >= 1
    if numtaps == 1:
        return None
    if not radial:
        return torch.as_tensor(firwin_lowpass(numtaps, cutoff, width, fs), dtype=torch.float32)
    import scipy.special

    pos = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(pos, pos))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    window = np.kaiser(numtaps, kaiser_beta_for(numtaps, width / (fs / 2)))
    f = f * np.outer(window, window)
    f = f / np.sum(f)
    return torch.as_tensor(f, dtype=torch.float32)
