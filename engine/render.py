"""Rendering an edit state: the edits it stands for and the image they make.

:func:`state_edits` turns an :class:`engine.state.EditState` into :mod:`engine.editing` edits for a model
bundle; :func:`render_state` renders it (float32 [1,3,R,R] in ~[-1,1]) and :func:`render_picture` as a
picture ([R,R,3] uint8 RGB); :func:`render_seeds` renders random faces from seeds into files.
The generator is passed per call and never changed, so renders on
different threads do not interfere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from engine.editing import ChannelEdit, LatentEdit, edit_transform, render_edited
from engine.imageio import to_uint8, write_image
from engine.jobs import JobControl
from engine.state import EditState, ViewMode

if TYPE_CHECKING:
    from engine.models import ModelBundle
    from engine.networks.stylegan3 import Generator

__all__ = ["render_picture", "render_seeds", "render_state", "seed_z", "state_edits"]


def state_edits(state: EditState, bundle: ModelBundle) -> tuple[list[LatentEdit], list[ChannelEdit]]:
    """The :mod:`engine.editing` edits of ``state`` for ``bundle`` (an :class:`engine.models.ModelBundle`):
    (latent edits, channel edits). Directions the bundle lacks are ignored."""
    latent = [
        LatentEdit(bundle.directions[n].vector, v, bundle.directions[n].layers)
        for n, v in sorted(state.directions.items())
        if n in bundle.directions and v != 0
    ]
    channels = [ChannelEdit(layer, ch, v) for (layer, ch), v in sorted(state.channels.items()) if v != 0]
    return latent, channels


def render_state(
    state: EditState,
    bundle: ModelBundle,
    view: ViewMode | None = None,
    generator: torch.nn.Module | None = None,
    ctl: JobControl | None = None,
) -> torch.Tensor:
    """Render ``state`` with ``bundle``: float32 [1,3,R,R] (~[-1,1]).

    view: override ``state.view``; 'photo' uses ``state.face_transform`` (identity when unset).
    generator: the generator to use (e.g. ``state.generator_file`` loaded once by the caller);
    default the bundle's. Loading files is left to the caller so repeated renders stay fast.
    ctl: optional; gets a "Rendering" stage counted in layers (``G.num_ws`` of them) and is checked
    between layers: a cancelled control abandons the render (:class:`engine.jobs.Cancelled`).
    """
    if state.latent is None:
        raise ValueError("the state has no latent yet (invert a photo first)")
    G = cast("Generator", generator if generator is not None else bundle.generator)
    device = bundle.device
    ws = torch.from_numpy(np.array(state.latent)).to(device).unsqueeze(0)
    if ws.shape[1:] != (G.num_ws, G.w_dim):
        raise ValueError(
            f"the latent is {list(ws.shape[1:])} but model '{bundle.name}' needs "
            f"[{G.num_ws}, {G.w_dim}]; invert the photo again with this model"
        )
    base = None
    if (view or state.view) == "photo" and state.face_transform is not None:
        base = torch.from_numpy(np.array(state.face_transform)).to(device)
    transform = edit_transform(state.angle_deg, state.tx, state.ty, base=base, device=device)
    latent_edits, channel_edits = state_edits(state, bundle)
    if ctl is not None:
        ctl.stage("Rendering", total=G.num_ws)
    with torch.no_grad():
        return render_edited(G, ws, latent_edits, channel_edits, transform=transform, ctl=ctl)


def render_picture(
    state: EditState,
    bundle: ModelBundle,
    view: ViewMode | None = None,
    generator: torch.nn.Module | None = None,
    ctl: JobControl | None = None,
) -> np.ndarray:
    """:func:`render_state` as a picture: [R,R,3] uint8 RGB (``ctl`` as there)."""
    return to_uint8(render_state(state, bundle, view=view, generator=generator, ctl=ctl))[0]


def seed_z(seed: int, z_dim: int) -> torch.Tensor:
    """The release's latent for ``seed``: float32 [1,z_dim] from ``RandomState(seed).randn``."""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).to(torch.float32)


def render_seeds(
    G: Generator,
    seeds: Sequence[int],
    out: str | os.PathLike,
    *,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    transform: torch.Tensor | None = None,
    class_index: int | None = None,
    ctl: JobControl | None = None,
) -> list[Path]:
    """Render ``G`` at each seed and write ``out/seedNNNN.png``; returns the paths.

    As the release's gen_images: z from :func:`seed_z`, truncation toward w_avg, ``transform`` the
    user transform ([3,3], :func:`engine.transforms.make_transform`); ``class_index`` picks the class
    of a conditional model (required for one, ignored otherwise).
    """
    from engine.errors import CharmError

    ctl = ctl or JobControl()
    device = next(G.parameters()).device
    c_dim, z_dim = int(G.c_dim), int(G.z_dim)
    c = None
    if c_dim > 0:
        if class_index is None or not 0 <= class_index < c_dim:
            raise CharmError(f"this model is conditional: choose a class from 0 to {c_dim - 1}")
        c = torch.zeros(1, c_dim, device=device)
        c[0, class_index] = 1
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    ctl.stage("Rendering", total=len(seeds))
    for i, seed in enumerate(seeds):
        ctl.check()
        with torch.no_grad():
            img = G(
                seed_z(seed, z_dim).to(device),
                c,
                truncation_psi=truncation_psi,
                truncation_cutoff=truncation_cutoff,
                transform=transform,
            )
        paths.append(write_image(folder / f"seed{seed:04d}.png", img))
        ctl.progress(i + 1)
    return paths
