"""Assemble the demo bundle (``resources/models/demo/``) from the trainers' outputs.

Reads ``<train>/generator/generator.safetensors``, ``<train>/encoder/encoder.safetensors``,
``<train>/predictor/predictor.safetensors`` and ``<train>/directions/{directions.pt,stylespace.json}``
and writes them with the manifest through :func:`engine.models.save_bundle`. The encoder is stored
in float16 (half the size; loaded back as float32). The model card is written by hand (MODEL_CARD.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

__all__ = ["package_demo"]


def package_demo(train: Path, dest: Path, log=print) -> Path:
    """Write the bundle into ``dest``; returns the manifest path."""
    from engine.checkpoints import load_generator
    from engine.inversion import Inverter, load_inverter, save_inverter
    from engine.models import Direction, save_bundle
    from factory.training.common import load_state

    train, dest = Path(train), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    G = load_generator(train / "generator" / "generator.safetensors")
    inv = load_inverter(train / "encoder" / "encoder.safetensors")
    # The encoder file carries its own copy of the generator: make it the shipped one.
    inv = Inverter(inv.encoder, G, latent_avg=inv.latent_avg, kind=inv.kind, input_size=inv.input_size)
    save_inverter(inv, dest / "encoder.safetensors", dtype=torch.float16, source="charm demo encoder")
    shutil.copyfile(train / "predictor" / "predictor.safetensors", dest / "predictor.safetensors")
    state = load_state(train / "directions" / "directions.pt")
    directions = {
        n: Direction(n, d["vector"].float(), tuple(d["range"]), d["description"], None, d["attribute"])
        for n, d in state["directions"].items()
    }
    stylespace = {
        n: [tuple(r) for r in rows]
        for n, rows in json.loads((train / "directions" / "stylespace.json").read_text()).items()
    }
    from engine.predictor import load_predictor

    attrs = load_predictor(dest / "predictor.safetensors").attributes
    manifest = save_bundle(
        dest,
        G,
        directions,
        stylespace,
        name="demo",
        title=f"Charm demo faces, {G.img_resolution} px",
        description="Small StyleGAN3-T trained on Charm Studio's procedural faces (factory.synthetic); "
        "see MODEL_CARD.md",
        inverter_file="encoder.safetensors",
        predictor={"file": "predictor.safetensors", "loader": "engine.predictor:load_predictor", "attributes": attrs},
        model_card="MODEL_CARD.md" if (dest / "MODEL_CARD.md").exists() else None,
    )
    total = sum(p.stat().st_size for p in dest.iterdir() if p.is_file())
    log(f"wrote {manifest}; bundle {total / 1e6:.1f} MB")
    return manifest
