"""Field-of-view expansion: widen a frame's render with extra renders at shifted transforms, cross-faded.

StyleGAN3 renders a translated view of the same face when its input transform is translated (it is
translation-equivariant, approximately), so the picture beyond the render's borders can be rendered:
a tile to the right of the centre is the frame's transform followed by a shift of the content to the
left (``tx = -dx / R`` in :mod:`engine.transforms`' convention, +tx moving content right).

The canvas is (top + R + bottom) x (left + R + right) pixels for amounts (left, right, top, bottom),
each in 0..R-1. Along each axis the tiles are placed so that neighbours overlap by at least
``overlap`` pixels (one tile per side when the amount is at most R - overlap, as the release's shift of
exactly the amount; two when more). Where two tiles meet, a band ``overlap`` pixels wide inside the
tile nearer the centre cross-fades them with a raised-cosine ramp; the 1-D weights of each axis sum
to 1 everywhere and a tile's weight is their product, so the blend is a partition of unity (the
release pastes tiles hard, and every equivariance error shows as a seam).

What is guaranteed about the centre: the canvas region of the centre render equals it exactly (the
same uint8 values as :func:`engine.imageio.to_uint8` of it, or the uint8 picture passed in) except in
the bands, ``overlap`` pixels wide, along the sides with a non-zero amount; amounts (0, 0, 0, 0) give
exactly the centre render. The centre can be passed in (the frame's normal render), so it is not
rendered again; the other tiles are rendered in batches, the transform passed per call (the
generator is never changed, so renders on several threads do not interfere).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from engine.editing import ChannelEdit, LatentEdit, render_edited
from engine.transforms import compose, make_transform

if TYPE_CHECKING:
    from engine.jobs import JobControl
    from engine.networks.stylegan3 import Generator

__all__ = [
    "Tile",
    "blend_tiles",
    "canvas_size",
    "default_overlap",
    "expand_frame",
    "expansion_tiles",
    "seam_mismatch",
    "tile_transforms",
]

Amounts = tuple[int, int, int, int]  # (left, right, top, bottom) pixels


@dataclass(frozen=True, eq=False)
class Tile:
    """One render of an expanded frame.

    dx, dy: where the tile's top-left corner sits relative to the centre render's, in pixels (dx < 0:
    left of it, dy < 0: above); the centre tile is (0, 0). x0, y0: its top-left corner on the canvas.
    wx, wy: float64 [R], its blend weights along the canvas columns and rows it covers (the weight of
    pixel (row i, column j) of the tile is ``wy[i] * wx[j]``).
    """

    dx: int
    dy: int
    x0: int
    y0: int
    wx: np.ndarray
    wy: np.ndarray

    @property
    def is_centre(self) -> bool:
        return self.dx == 0 and self.dy == 0

    def shift(self, resolution: int) -> tuple[float, float]:
        """(tx, ty) of the shift that renders this tile: the content moves by -(dx, dy) pixels."""
        return -self.dx / resolution, -self.dy / resolution


def default_overlap(resolution: int) -> int:
    """The cross-fade band used when none is given: R/8 (8 px at 64, 128 at 1024)."""
    return max(1, resolution // 8)


def canvas_size(amounts: Sequence[int], resolution: int) -> tuple[int, int]:
    """(height, width) of the expanded frame."""
    left, right, top, bottom = _check_amounts(amounts, resolution)
    return top + resolution + bottom, left + resolution + right


def expansion_tiles(amounts: Sequence[int], resolution: int, overlap: int) -> list[Tile]:
    """The tiles of an expansion by ``amounts`` = (left, right, top, bottom) pixels (each 0..R-1) with
    cross-fade bands ``overlap`` pixels wide (0..R/2; 0 = hard seams at the centre's borders).

    The centre tile comes first, then the others row by row; only tiles that cover canvas pixels are
    listed (amounts (0, 0, 0, 0): the centre alone; (16, 0, 0, 0): two tiles).
    """
    left, right, top, bottom = _check_amounts(amounts, resolution)
    r = int(resolution)
    if not 0 <= overlap <= r // 2:
        raise ValueError(f"overlap must be in 0..{r // 2} pixels (half the resolution), got {overlap}")
    xs = _axis(left, right, r, overlap)
    ys = _axis(top, bottom, r, overlap)
    tiles = [Tile(dx, dy, left + dx, top + dy, wx, wy) for dy, wy in ys for dx, wx in xs]
    tiles.sort(key=lambda t: (not t.is_centre, t.dy, t.dx))
    return tiles


def tile_transforms(tiles: Sequence[Tile], transform: torch.Tensor, resolution: int) -> torch.Tensor:
    """float32 [len(tiles),3,3]: each tile's transform, the frame's ``transform`` [3,3] (stored
    convention) followed by the tile's shift on screen."""
    shifts = [make_transform(0.0, *t.shift(resolution), device=transform.device) for t in tiles]
    return compose(transform.to(torch.float32).unsqueeze(0), torch.stack(shifts))


def blend_tiles(tiles: Sequence[Tile], pictures: Sequence[np.ndarray], canvas: tuple[int, int]) -> np.ndarray:
    """Cross-fade tile pictures ([R,R,3] uint8 or float pixel values in [0,255], one per tile) onto a
    ``canvas`` (height, width); returns [height, width, 3] uint8.

    Blended values are truncated to integers (as :func:`engine.imageio.to_uint8`), so a pixel where a
    single tile has weight 1 keeps that tile's value exactly (truncated once).
    """
    if len(tiles) != len(pictures):
        raise ValueError(f"{len(tiles)} tiles but {len(pictures)} pictures")
    # float64, and a margin far below float32's spacing before truncating: weights that sum to 1 up to
    # rounding must not turn 200 into 199.99999 -> 199, and a lone tile's value must truncate as itself.
    acc = np.zeros((*canvas, 3), dtype=np.float64)
    for tile, pic in zip(tiles, pictures):
        r = len(tile.wx)
        if pic.shape != (r, r, 3):
            raise ValueError(f"a tile picture must be [{r},{r},3], got {pic.shape}")
        w = tile.wy[:, None, None] * tile.wx[None, :, None]
        acc[tile.y0 : tile.y0 + r, tile.x0 : tile.x0 + r] += w * pic
    return np.floor(np.clip(acc + 1e-9, 0, 255)).astype(np.uint8)


def seam_mismatch(tiles: Sequence[Tile], pictures: Sequence[np.ndarray]) -> float:
    """Mean absolute difference (pixel values 0..255) between tiles where they overlap, before
    blending: how far the renders are from lining up (0 for an exactly equivariant generator)."""
    total, count = 0.0, 0
    for i, a in enumerate(tiles):
        for j in range(i + 1, len(tiles)):
            b = tiles[j]
            r = len(a.wx)
            x0, x1 = max(a.x0, b.x0), min(a.x0, b.x0) + r
            y0, y1 = max(a.y0, b.y0), min(a.y0, b.y0) + r
            if x1 <= x0 or y1 <= y0:
                continue
            pa = pictures[i][y0 - a.y0 : y1 - a.y0, x0 - a.x0 : x1 - a.x0].astype(np.float64)
            pb = pictures[j][y0 - b.y0 : y1 - b.y0, x0 - b.x0 : x1 - b.x0].astype(np.float64)
            total += float(np.abs(pa - pb).sum())
            count += pa.size
    return total / count if count else 0.0


def expand_frame(
    G: torch.nn.Module,
    ws: torch.Tensor,
    transform: torch.Tensor,
    amounts: Sequence[int],
    *,
    centre: torch.Tensor | np.ndarray | None = None,
    overlap: int | None = None,
    latent_edits: Sequence[LatentEdit] = (),
    channel_edits: Sequence[ChannelEdit] = (),
    batch: int = 4,
    render: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ctl: JobControl | None = None,
) -> np.ndarray:
    """One expanded frame: [R + top + bottom, R + left + right, 3] uint8 RGB.

    G: the generator (:class:`engine.networks.stylegan3.Generator`). ws: [1,num_ws,w_dim], the frame's
    latent; latent_edits, channel_edits: the edits to render it with (as
    :func:`engine.editing.render_edited`). transform: float32 [3,3], the frame's transform in the
    stored convention of :mod:`engine.transforms` (user knobs included). amounts: (left, right, top,
    bottom) pixels, each 0..R-1. centre: the frame's normal render with the same latent, edits and
    transform (float [1,3,R,R] or [3,R,R] in ~[-1,1], or a picture [R,R,3] uint8); None renders it
    here. overlap: the cross-fade band (default :func:`default_overlap`). batch: tiles per generator
    call. render: optional renderer used instead of G/ws/edits, called once per tile with its
    transform [3,3] and returning [1,3,R,R] (tiles are then not batched). ctl: checked between
    generator calls (a cancelled control raises :class:`engine.jobs.Cancelled`); no progress is
    reported, the caller counts frames.
    """
    gen = cast("Generator", G)
    r = int(gen.img_resolution)
    if ws.ndim != 3 or ws.shape[0] != 1:
        raise ValueError(f"ws must be [1,num_ws,w_dim], got {tuple(ws.shape)}")
    if transform.shape != (3, 3):
        raise ValueError(f"transform must be [3,3], got {tuple(transform.shape)}")
    tiles = expansion_tiles(amounts, r, default_overlap(r) if overlap is None else int(overlap))
    pictures: list[np.ndarray | None] = [None] * len(tiles)
    if centre is not None:
        pictures[0] = _centre_picture(centre, r)
    todo = [i for i, p in enumerate(pictures) if p is None]
    if todo:
        transforms = tile_transforms([tiles[i] for i in todo], transform.to(ws.device), r)
        step = 1 if render is not None else max(1, int(batch))
        with torch.no_grad():
            for start in range(0, len(todo), step):
                if ctl is not None:
                    ctl.check()
                idx = todo[start : start + step]
                t = transforms[start : start + len(idx)]
                if render is not None:
                    images = render(t[0])
                else:
                    images = render_edited(gen, ws.expand(len(idx), -1, -1), latent_edits, channel_edits, transform=t)
                if images.shape != (len(idx), 3, r, r):
                    raise ValueError(f"a tile render must be [{len(idx)},3,{r},{r}], got {tuple(images.shape)}")
                for i, img in zip(idx, _pixel_values(images)):
                    pictures[i] = img
    return blend_tiles(tiles, [p for p in pictures if p is not None], canvas_size(amounts, r))


def _check_amounts(amounts: Sequence[int], resolution: int) -> Amounts:
    a = tuple(amounts)
    if len(a) != 4:
        raise ValueError(f"amounts are (left, right, top, bottom) pixels, got {a}")
    out = []
    for name, v in zip(("left", "right", "top", "bottom"), a):
        if isinstance(v, bool) or not float(v).is_integer() or not 0 <= v < resolution:
            raise ValueError(f"the {name} amount must be a whole number of pixels in 0..{resolution - 1}, got {v}")
        out.append(int(v))
    return out[0], out[1], out[2], out[3]


def _axis(before: int, after: int, r: int, overlap: int) -> list[tuple[int, np.ndarray]]:
    """The tiles along one axis: [(offset from the centre, float64 [R] weights)], offsets ascending.

    ``n = ceil(amount / (R - overlap))`` tiles per side, evenly spaced, the outermost flush with the
    canvas edge, so neighbours overlap by at least ``overlap``. Each boundary's band lies at the
    outer edge of the tile nearer the centre; weights there ramp between the two tiles.
    """
    step = r - overlap
    n_before = math.ceil(before / step) if before else 0
    n_after = math.ceil(after / step) if after else 0
    offsets = [-round(before * k / n_before) for k in range(n_before, 0, -1)] + [0]
    offsets += [round(after * k / n_after) for k in range(1, n_after + 1)]
    # band starts (in canvas coordinates relative to the centre) of the boundary between offsets[i] and [i+1]
    bands = [offsets[i + 1] if offsets[i + 1] <= 0 else offsets[i] + r - overlap for i in range(len(offsets) - 1)]
    ramp = _ramp(overlap)
    out = []
    for i, off in enumerate(offsets):
        pos = np.arange(off, off + r)
        w = np.ones(r, dtype=np.float64)
        if i > 0:  # fade in across the band shared with the tile before
            b = bands[i - 1]
            w[pos < b] = 0.0
            inside = (pos >= b) & (pos < b + overlap)
            w[inside] = ramp[pos[inside] - b]
        if i < len(offsets) - 1:  # fade out across the band shared with the tile after
            b = bands[i]
            w[pos >= b + overlap] = 0.0
            inside = (pos >= b) & (pos < b + overlap)
            w[inside] = 1.0 - ramp[pos[inside] - b]
        out.append((off, w))
    return out


def _ramp(n: int) -> np.ndarray:
    """float64 [n] rising from ~0 to ~1 (raised cosine at pixel centres); ramp + its mirror = 1."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _pixel_values(images: torch.Tensor) -> list[np.ndarray]:
    """Images [N,3,R,R] in ~[-1,1] -> float32 [R,R,3] pixel values clamped to [0,255], not rounded
    (to_uint8's scale; truncating one gives exactly its uint8 picture)."""
    x = (images.detach().to(torch.float32) * 127.5 + 128).clamp(0, 255)
    return list(x.permute(0, 2, 3, 1).cpu().numpy())


def _centre_picture(centre: torch.Tensor | np.ndarray, r: int) -> np.ndarray:
    if isinstance(centre, np.ndarray):
        if centre.dtype != np.uint8 or centre.shape != (r, r, 3):
            raise ValueError(f"a centre picture must be uint8 [{r},{r},3], got {centre.dtype} {centre.shape}")
        return centre
    c = centre if centre.ndim == 4 else centre.unsqueeze(0)
    if c.shape != (1, 3, r, r):
        raise ValueError(f"a centre render must be [1,3,{r},{r}] or [3,{r},{r}], got {tuple(centre.shape)}")
    return _pixel_values(c)[0]
