"""GANSpace directions: the principal components of W, so every model has sliders.

GANSpace (Härkönen et al. 2020) samples latents, maps them to W and takes the principal components of
the W codes; moving along a component on a chosen range of layers gives interpretable edits (the first
components on the coarse layers change pose and face shape, later ones on the fine layers change
lighting and colour). Charm Studio uses them for models that come without InterFaceGAN boundaries.

Each component is a unit vector in W. Its slider range is plus or minus two standard deviations of the
sampled codes along it, and it is tagged with the layers it is applied to, by rank: the first third of
the components act on the coarse layers, the next third on the middle ones, the rest on the fine ones
(:func:`component_layers`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from engine.jobs import JobControl

if TYPE_CHECKING:
    from engine.models import Direction
    from engine.networks.stylegan3 import Generator

__all__ = ["DEFAULT_COMPONENTS", "DEFAULT_SAMPLES", "component_layers", "ganspace_directions"]

DEFAULT_SAMPLES = 10_000
DEFAULT_COMPONENTS = 9
_BATCH = 1000

# (share of the components, first layer, end layer) as fractions of num_ws, coarse to fine.
_GROUPS = ((1 / 3, 0.0, 6 / 16, "coarse: pose and face shape"), (2 / 3, 3 / 16, 10 / 16, "middle: features"))
_FINE = (8 / 16, 1.0, "fine: colour and lighting")


def component_layers(rank: int, n_components: int, num_ws: int) -> tuple[tuple[int, ...], str]:
    """The ws indices component ``rank`` (0-based) is applied to, and what that layer range controls."""
    share = (rank + 0.5) / max(1, n_components)
    lo, hi, what = _FINE
    for limit, a, b, text in _GROUPS:
        if share < limit:
            lo, hi, what = a, b, text
            break
    first = min(num_ws - 1, int(round(lo * num_ws)))
    end = max(first + 1, int(round(hi * num_ws)))
    return tuple(range(first, min(end, num_ws))), what


@torch.no_grad()
def ganspace_directions(
    generator: Generator,
    n_samples: int = DEFAULT_SAMPLES,
    n_components: int = DEFAULT_COMPONENTS,
    seed: int = 0,
    ctl: JobControl | None = None,
) -> dict[str, Direction]:
    """Directions "component 1" ... "component K" of ``generator`` (no class conditioning).

    Samples ``n_samples`` z (seeded, so the same generator gives the same directions), maps them to
    W (first ws entry, no truncation) and takes the top principal components. A component's sign is
    arbitrary; a fixed rule keeps it stable: its largest-magnitude entry is positive.
    """
    from engine.models import Direction

    ctl = ctl or JobControl()
    mapping = generator.mapping
    device = next(generator.parameters()).device
    z_dim, w_dim, num_ws = int(generator.z_dim), int(generator.w_dim), int(generator.num_ws)
    c_dim = int(getattr(generator, "c_dim", 0))
    if n_samples < 2 * n_components:
        raise ValueError(f"need at least {2 * n_components} samples for {n_components} components")
    gen = torch.Generator().manual_seed(int(seed))
    ws = []
    ctl.stage("Finding directions (GANSpace)", total=n_samples)
    for start in range(0, n_samples, _BATCH):
        ctl.check()
        n = min(_BATCH, n_samples - start)
        z = torch.randn(n, z_dim, generator=gen).to(device)
        c = torch.zeros(n, c_dim, device=device)
        ws.append(mapping(z, c)[:, 0].to("cpu", torch.float64))
        ctl.progress(start + n)
    w = torch.cat(ws)
    centred = w - w.mean(dim=0)
    # Right singular vectors of the centred codes are the principal axes; S / sqrt(N-1) their spread.
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    k = min(n_components, w_dim)
    sd = s[:k] / (len(w) - 1) ** 0.5
    out: dict[str, Direction] = {}
    for i in range(k):
        v = vh[i]
        if v[int(v.abs().argmax())] < 0:
            v = -v
        layers, what = component_layers(i, k, num_ws)
        spread = float(2.0 * sd[i])
        name = f"component {i + 1}"
        out[name] = Direction(
            name=name,
            vector=v.to(torch.float32).to(device),
            range=(-round(spread, 2), round(spread, 2)),
            description=(
                f"principal component {i + 1} of W (GANSpace), on layers {layers[0]}-{layers[-1]} ({what}); "
                "its meaning depends on the model"
            ),
            layers=layers,
            attribute=None,
        )
    return out
