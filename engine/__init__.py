"""Charm Studio's engine: networks, checkpoints, alignment, inversion, editing and video.

The engine never imports Qt, so it runs headless (CLI, batch jobs, tests). Stable imports::

    from engine import Generator, load_generator, make_transform
"""

from __future__ import annotations

__all__ = ["Generator", "load_generator", "make_transform"]


def __getattr__(name: str):
    # Imported lazily so that light users (the CLI's --help) do not pay for torch and the networks.
    if name == "make_transform":
        from engine.transforms import make_transform

        return make_transform
    if name == "Generator":
        from engine.networks.stylegan3 import Generator

        return Generator
    if name == "load_generator":
        from engine.checkpoints import load_generator

        return load_generator
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
