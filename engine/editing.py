"""Edits on StyleGAN3 latents: InterFaceGAN directions in W, single channels in StyleSpace, and the
input transform they are rendered with.

Pure functions on tensors; nothing here keeps state or knows about files or the GUI.

Shapes and ranges:

- ``ws``: float32 [N,num_ws,w_dim], one w per generator layer (``ws[:,0]`` drives the Fourier input).
- a direction: float32 [w_dim], unit length (InterFaceGAN boundary normal).
- ``styles``: ``G.synthesis.styles(ws)``, a dict layer name -> float32 [N,C] ('input' -> [N,4]).
- images: float32 [N,3,R,R], roughly in [-1,1]; :func:`engine.imageio.to_uint8` makes [N,R,R,3] uint8 RGB.
- transforms: float32 [3,3] in the generator's stored (inverse) convention, see :mod:`engine.transforms`.

InterFaceGAN (paper section on editing): ``w' = w + f * d`` on all layers, or only on chosen ones.
StyleSpace: ``s[layer][:, ch] += value`` on single channels, the most disentangled edit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from engine.transforms import compose, make_transform

if TYPE_CHECKING:
    from engine.jobs import JobControl
    from engine.networks.stylegan3 import Generator

__all__ = [
    "LatentEdit",
    "ChannelEdit",
    "edit_latent",
    "apply_latent_edits",
    "apply_channel_edits",
    "edit_transform",
    "render_edited",
]


@dataclass(frozen=True)
class LatentEdit:
    """``ws[:, layers] += strength * vector``; vector float32 [w_dim]; layers None = every layer."""

    vector: torch.Tensor
    strength: float
    layers: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ChannelEdit:
    """``styles[layer][:, channel] += value`` (raw StyleSpace units)."""

    layer: str
    channel: int
    value: float


def edit_latent(
    ws: torch.Tensor, vector: torch.Tensor, strength: float, layers: Sequence[int] | None = None
) -> torch.Tensor:
    """One InterFaceGAN edit: a new ws [N,num_ws,w_dim] = ws + strength * vector on ``layers``.

    vector: [w_dim] (any length; directions from a bundle are unit vectors). layers: indices into
    ``num_ws``; None edits all of them, as the paper does.
    """
    if ws.ndim != 3:
        raise ValueError(f"ws must be [N,num_ws,w_dim], got {tuple(ws.shape)}")
    if vector.shape != (ws.shape[2],):
        raise ValueError(f"direction must be [{ws.shape[2]}], got {tuple(vector.shape)}")
    delta = (float(strength) * vector.to(ws.device, ws.dtype)).view(1, 1, -1)
    if layers is None:
        return ws + delta
    idx = [int(i) for i in layers]
    bad = [i for i in idx if not 0 <= i < ws.shape[1]]
    if bad:
        raise ValueError(f"layer indices {bad} out of range 0..{ws.shape[1] - 1}")
    mask = torch.zeros(1, ws.shape[1], 1, dtype=ws.dtype, device=ws.device)
    mask[0, idx] = 1
    return ws + mask * delta


def apply_latent_edits(ws: torch.Tensor, edits: Iterable[LatentEdit]) -> torch.Tensor:
    """Sum of several InterFaceGAN edits (they commute); zero-strength edits are skipped."""
    out = ws
    for e in edits:
        if e.strength != 0:
            out = edit_latent(out, e.vector, e.strength, e.layers)
    return out


def apply_channel_edits(styles: dict[str, torch.Tensor], edits: Iterable[ChannelEdit]) -> dict[str, torch.Tensor]:
    """StyleSpace edits; returns a new dict (edited layers are copies, the others are shared)."""
    out = dict(styles)
    copied: set[str] = set()
    for e in edits:
        if e.value == 0:
            continue
        if e.layer not in out:
            raise KeyError(f"no StyleSpace layer {e.layer!r}; layers are {sorted(out)}")
        s = out[e.layer]
        if not 0 <= e.channel < s.shape[1]:
            raise IndexError(f"channel {e.channel} out of range for layer {e.layer!r} with {s.shape[1]} channels")
        if e.layer not in copied:
            s = s.clone()
            out[e.layer] = s
            copied.add(e.layer)
        s[:, e.channel] += float(e.value)
    return out


def edit_transform(
    angle_deg: float = 0.0,
    tx: float = 0.0,
    ty: float = 0.0,
    base: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The transform for a render: ``base`` (e.g. the face's aligned -> photo-framing transform, or
    None for the aligned view) followed by the user's rotation/translation on screen. Float32 [3,3]."""
    user = make_transform(angle_deg, tx, ty, device=device)
    if base is None:
        return user
    return compose(base.to(user), user)


def render_edited(
    G: Generator,
    ws: torch.Tensor,
    latent_edits: Iterable[LatentEdit] = (),
    channel_edits: Iterable[ChannelEdit] = (),
    transform: torch.Tensor | None = None,
    ctl: JobControl | None = None,
) -> torch.Tensor:
    """Render ws [N,num_ws,w_dim] with the edits applied -> images [N,3,R,R] (~[-1,1]).

    transform: [3,3] or [N,3,3], stored convention; None renders with the generator's own buffer.
    Channel edits go through StyleSpace (``G.synthesis(styles=...)``); without them the plain ws path
    runs. Call under ``torch.no_grad()`` when no gradients are needed.
    ctl: reports progress in layers (``ctl.progress(done, total)``, total = ``G.num_ws``: the input
    layer and every synthesis layer) and is checked before the render and after each layer, so a
    cancelled control abandons the render there (:class:`engine.jobs.Cancelled`). The image does not
    depend on it.
    """
    between_layers = None
    if ctl is not None:
        ctl.check()
        between_layers = _layer_hook(ctl)
    edited = apply_latent_edits(ws, latent_edits)
    channel_edits = [c for c in channel_edits if c.value != 0]
    if not channel_edits:
        return G.synthesis(edited, transform=transform, between_layers=between_layers)
    styles = apply_channel_edits(G.synthesis.styles(edited), channel_edits)
    return G.synthesis(ws=None, styles=styles, transform=transform, between_layers=between_layers)


def _layer_hook(ctl: JobControl) -> Callable[[int, int], None]:
    """A ``between_layers`` callback for the synthesis network: report, then stop if asked to."""

    def between_layers(done: int, total: int) -> None:
        ctl.progress(done, total)
        ctl.check()

    return between_layers
