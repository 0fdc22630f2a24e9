"""Exporting an edited photo: which images, in which format, written where.

:func:`export_images` renders a state and writes the chosen kinds of image, each atomically:
``aligned`` (the edited aligned face), ``framed`` (the edited face in the photo's own framing) and
``pasted`` (the framed render pasted back into the full original photo).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from engine.align import paste_back
from engine.imageio import WRITE_FORMATS, encode_image, write_bytes
from engine.render import render_picture
from engine.state import EditState

if TYPE_CHECKING:
    from engine.models import ModelBundle

__all__ = ["EXPORT_KINDS", "ExportOptions", "export_images"]

EXPORT_KINDS = ("aligned", "framed", "pasted")


@dataclass(frozen=True)
class ExportOptions:
    """folder and basename of the files (``BASENAME_KIND.png``); fmt: 'png' or 'jpg'."""

    folder: str
    basename: str
    fmt: str = "png"
    kinds: tuple[str, ...] = EXPORT_KINDS
    jpeg_quality: int = 95


def export_images(
    state: EditState,
    bundle: ModelBundle,
    photo: np.ndarray | None,
    options: ExportOptions,
    generator: torch.nn.Module | None = None,
) -> list[Path]:
    """Render ``state`` and write the export files; returns their paths.

    photo: the original photo ([H,W,3] uint8 RGB), needed for 'pasted' (skipped without it or without
    ``state.crop_quad``). generator: a tuned generator to render with instead of the bundle's.
    """
    fmt = WRITE_FORMATS.get("." + options.fmt.lower().lstrip("."))
    if fmt is None:
        raise ValueError(f"unknown export format {options.fmt!r}; use png or jpg")
    for kind in options.kinds:
        if kind not in EXPORT_KINDS:
            raise ValueError(f"unknown export kind {kind!r}; use one of {', '.join(EXPORT_KINDS)}")
    folder = Path(options.folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    framed: np.ndarray | None = None
    for kind in options.kinds:
        if kind == "aligned":
            img = render_picture(state, bundle, view="aligned", generator=generator)
        else:
            if framed is None:
                framed = render_picture(state, bundle, view="photo", generator=generator)
            img = framed
            if kind == "pasted":
                if photo is None or state.crop_quad is None:
                    continue
                img = paste_back(photo, framed, np.array(state.crop_quad))
        path = folder / f"{options.basename}_{kind}.{fmt}"
        out.append(write_bytes(path, encode_image(img, fmt, options.jpeg_quality)))
    return out
