"""Small files in the official layouts, for tests without the internet.

- :func:`write_release_pickle`: a random-weight generator in NVIDIA's StyleGAN3 pickle layout
  (``G``, ``D``, ``G_ema`` persistent objects; crafted by ``test_checkpoints``'s pickler).
- :func:`write_released_encoder`: a ReStyle checkpoint in the stylegan3-editing ``.pt`` layout
  (``state_dict`` with ``encoder.*``/``decoder.*``, ``opts``, ``latent_avg``).
- :func:`write_boundary`: an InterFaceGAN boundary ``.npy`` ([1, w_dim] float64 unit vector).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from test_checkpoints import _network_pickle
from test_inversion import released_checkpoint

from engine import Generator

# 64 px, w 32: small enough for seconds-long tests, large enough for the photo pipeline.
TINY_KWARGS = dict(
    z_dim=16,
    c_dim=0,
    w_dim=32,
    img_resolution=64,
    img_channels=3,
    channel_base=1024,
    channel_max=32,
    num_layers=6,
    num_critical=2,
    margin_size=4,
    output_scale=1.0,
    num_fp16_res=0,
    mapping_kwargs={"num_layers": 2},
)


def tiny_generator(seed: int = 0) -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(**TINY_KWARGS).eval().requires_grad_(False)
        with torch.no_grad():
            G.mapping.w_avg.copy_(G.mapping(torch.randn(500, 16), None)[:, 0].mean(0))
    return G


def write_release_pickle(path: Path, G: Generator) -> Path:
    path.write_bytes(_network_pickle(G.state_dict(), G.init_kwargs, "raise SystemExit('module source executed')\n"))
    return path


def write_released_encoder(path: Path, G: Generator, kind: str = "restyle_psp") -> Path:
    with torch.random.fork_rng(devices=[]):
        released_checkpoint(path, kind, G)
    return path


def write_boundary(path: Path, w_dim: int, seed: int) -> Path:
    v = np.random.default_rng(seed).standard_normal((1, w_dim))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, v / np.linalg.norm(v))
    return path


def official_file_bytes(model_name: str, folder: Path, G: Generator | None = None) -> bytes:
    """The bytes of a small stand-in for known file ``model_name`` (engine.download.KNOWN_MODELS) in its
    official layout: NVIDIA pickle, stylegan3-editing generator/encoder .pt or boundary .npy."""
    from engine.download import KNOWN_MODELS

    m = KNOWN_MODELS[model_name]
    G = G or tiny_generator()
    path = folder / Path(m.filename).name
    folder.mkdir(parents=True, exist_ok=True)
    if m.kind == "boundary":
        write_boundary(path, int(G.w_dim), seed=sum(map(ord, model_name)))
    elif m.kind == "encoder":
        write_released_encoder(path, G, "restyle_e4e" if "e4e" in model_name else "restyle_psp")
    elif m.filename.endswith(".pkl"):
        write_release_pickle(path, G)
    else:  # the paper's generators: a plain G_ema state dict
        torch.save(G.state_dict(), path)
    return path.read_bytes()


def serve_kit(mirror, kit_name: str, folder: Path, G: Generator | None = None) -> dict[str, bytes]:
    """Put stand-ins of every file of kit ``kit_name`` on ``mirror`` (tests/model_mirror.py); returns them."""
    from engine.download import KNOWN_MODELS
    from engine.model_store import KITS

    out = {}
    for name in KITS[kit_name].files:
        data = official_file_bytes(name, folder, G)
        mirror.add(KNOWN_MODELS[name].filename, data)
        out[KNOWN_MODELS[name].filename] = data
    return out
