"""engine.video.expand: field-of-view expansion with overlapping, cross-faded tiles, on the demo model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.editing import ChannelEdit, LatentEdit, render_edited
from engine.imageio import to_uint8
from engine.jobs import Cancelled, JobControl
from engine.models import load_bundle
from engine.transforms import compose, make_transform
from engine.video.expand import (
    blend_tiles,
    canvas_size,
    expand_frame,
    expansion_tiles,
    seam_mismatch,
    tile_transforms,
)

R = 64


@pytest.fixture(scope="module")
def G(one_torch_thread):
    return load_bundle("demo", with_inverter=False).generator


@pytest.fixture(scope="module")
def ws(G):
    with torch.no_grad():
        return G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(3)), None, truncation_psi=0.7)


@pytest.fixture(scope="module")
def frame_transform():
    return make_transform(12.0, 0.04, -0.03)  # a tracked face: turned and off-centre


def weight_sum(tiles, canvas):
    acc = np.zeros(canvas)
    covered = np.zeros(canvas, dtype=bool)
    for t in tiles:
        acc[t.y0 : t.y0 + R, t.x0 : t.x0 + R] += t.wy[:, None] * t.wx[None, :]
        covered[t.y0 : t.y0 + R, t.x0 : t.x0 + R] = True
    return acc, covered


@pytest.mark.parametrize(
    "amounts,count",
    [((0, 0, 0, 0), 1), ((16, 0, 0, 0), 2), ((3, 10, 0, 7), 6), ((16, 16, 16, 16), 9), ((60, 0, 0, 0), 3)],
)
def test_tiles_cover_the_canvas_with_weights_summing_to_one(amounts, count):
    tiles = expansion_tiles(amounts, R, 8)
    assert len(tiles) == count and tiles[0].is_centre
    h, w = canvas_size(amounts, R)
    assert (h, w) == (amounts[2] + R + amounts[3], amounts[0] + R + amounts[1])
    acc, covered = weight_sum(tiles, (h, w))
    assert covered.all() and np.allclose(acc, 1.0, atol=1e-12)
    for t in tiles:
        assert 0 <= t.x0 and t.x0 + R <= w and 0 <= t.y0 and t.y0 + R <= h
        assert t.wx.min() >= 0 and t.wx.max() <= 1 and t.wy.min() >= 0 and t.wy.max() <= 1
    # amounts beyond R - overlap take two tiles on that side, spaced so that they overlap by >= 8 px
    if amounts == (60, 0, 0, 0):
        assert sorted(t.dx for t in tiles) == [-60, -30, 0]


def test_centre_weight_is_one_outside_the_bands():
    left, right, top = 16, 5, 9
    tiles = expansion_tiles((left, right, top, 0), R, 8)
    c = tiles[0]
    assert (c.x0, c.y0) == (left, top)
    assert np.array_equal(np.flatnonzero(c.wx < 1), np.r_[0:8, R - 8 : R])
    assert np.array_equal(np.flatnonzero(c.wy < 1), np.r_[0:8])  # no bottom tile: full weight to the edge
    # a hard paste (overlap 0): the centre keeps its whole area
    hard = expansion_tiles((left, right, top, 0), R, 0)
    assert (hard[0].wx == 1).all() and (hard[0].wy == 1).all()


@pytest.mark.parametrize("amounts", [(64, 0, 0, 0), (-1, 0, 0, 0), (1, 2, 3), (1.5, 0, 0, 0)])
def test_bad_amounts(amounts):
    with pytest.raises(ValueError, match="amount"):
        expansion_tiles(amounts, R, 8)


def test_bad_overlap():
    with pytest.raises(ValueError, match="overlap must be in 0..32"):
        expansion_tiles((8, 8, 8, 8), R, 33)


def test_blend_of_exact_tiles_is_the_world():
    """Tiles cut from one bigger picture blend back into exactly that picture (no seam, no drift)."""
    amounts = (20, 12, 7, 30)
    h, w = canvas_size(amounts, R)
    yy, xx = np.mgrid[0:h, 0:w]
    world = np.stack([(xx * 2) % 256, (yy * 3) % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    tiles = expansion_tiles(amounts, R, 8)
    pics = [world[t.y0 : t.y0 + R, t.x0 : t.x0 + R] for t in tiles]
    assert np.array_equal(blend_tiles(tiles, pics, (h, w)), world)
    assert seam_mismatch(tiles, pics) == 0.0


def test_blend_spreads_a_mismatch_instead_of_a_step():
    """Tiles that disagree by 24 levels: a hard paste makes a 24-level step; the cross-fade spreads it
    over the band (raised cosine: the steepest step is 24 * pi / (2 * 8) ~ 4.7 levels per pixel)."""
    amounts = (16, 0, 0, 0)
    h, w = canvas_size(amounts, R)
    flat = np.full((R, R, 3), 100, dtype=np.uint8)
    for overlap, worst in ((0, 24), (8, 5)):
        tiles = expansion_tiles(amounts, R, overlap)
        out = blend_tiles(tiles, [flat, flat + 24], (h, w)).astype(int)  # the left tile is brighter
        steps = np.abs(np.diff(out[:, :, 0], axis=1)).max()
        assert steps == worst if overlap == 0 else steps <= worst
        assert out[0, 0, 0] == 124 and out[0, -1, 0] == 100


def test_zero_amounts_give_exactly_the_centre_render(G, ws, frame_transform):
    w = ws[:1]
    with torch.no_grad():
        centre = G.synthesis(w, transform=frame_transform)
    expected = to_uint8(centre)[0]
    assert np.array_equal(expand_frame(G, w, frame_transform, (0, 0, 0, 0), centre=centre), expected)
    assert np.array_equal(expand_frame(G, w, frame_transform, (0, 0, 0, 0), centre=expected), expected)
    assert np.array_equal(expand_frame(G, w, frame_transform, (0, 0, 0, 0)), expected)  # rendered here


def test_expanded_frame_keeps_the_centre_outside_the_bands(G, ws, frame_transform):
    w = ws[1:]
    before = G.synthesis.input.transform.clone()
    with torch.no_grad():
        centre = G.synthesis(w, transform=frame_transform)
    pic = to_uint8(centre)[0]
    left, right, top, bottom = 16, 9, 5, 12
    out = expand_frame(G, w, frame_transform, (left, right, top, bottom), centre=centre, overlap=6)
    assert out.shape == (top + R + bottom, left + R + right, 3) and out.dtype == np.uint8
    inner = out[top + 6 : top + R - 6, left + 6 : left + R - 6]
    assert np.array_equal(inner, pic[6:-6, 6:-6])
    # the centre passed in is reused, not rendered again: a different centre shows in the canvas
    other = np.zeros_like(pic)
    out2 = expand_frame(G, w, frame_transform, (left, right, top, bottom), centre=other, overlap=6)
    assert (out2[top + 6 : top + R - 6, left + 6 : left + R - 6] == 0).all()
    assert np.array_equal(out2[:top], out[:top])  # the other tiles are the same renders
    assert torch.equal(G.synthesis.input.transform, before)  # the generator is never changed


def test_tiles_line_up_with_the_centre_and_the_shift_sign(G, ws, frame_transform):
    """A tile to the right shows what is right of the face: the frame's transform, then the content
    moved left (tx = -dx/R), lines up with the centre where they overlap; the other sign, or the shift
    applied before the frame's rotation, does not."""
    w = ws[:1]
    tiles = expansion_tiles((16, 16, 16, 16), R, 8)
    with torch.no_grad():
        imgs = render_edited(G, w.expand(len(tiles), -1, -1), transform=tile_transforms(tiles, frame_transform, R))
        pics = list(to_uint8(imgs))
        d = 16
        centre = pics[0].astype(float)
        right = next(p for t, p in zip(tiles, pics) if (t.dx, t.dy) == (d, 0)).astype(float)
        wrong_sign = to_uint8(G.synthesis(w, transform=compose(frame_transform, make_transform(0, d / R, 0))))[0]
        wrong_order = to_uint8(G.synthesis(w, transform=compose(make_transform(0, -d / R, 0), frame_transform)))[0]
    mismatch = seam_mismatch(tiles, pics)
    spread = centre.std()
    assert mismatch < 2.5 < spread / 10  # measured 0.8-1.5 levels on the demo model, image std ~30-45
    assert np.abs(right[:, : R - d] - centre[:, d:]).mean() < 2.5
    assert np.abs(wrong_sign[:, : R - d].astype(float) - centre[:, d:]).mean() > 5 * mismatch
    assert np.abs(wrong_order[:, : R - d].astype(float) - centre[:, d:]).mean() > 3 * mismatch


def test_no_seam_at_tile_boundaries(G, ws, frame_transform):
    """Across the left tile/centre boundary, what the cross-fade adds to the centre render changes by
    less per pixel than the picture itself does: the boundary's gradient is not larger than elsewhere.
    (The demo model's tiles disagree by ~1 level, so even a hard paste shows no visible step; the
    spreading of a larger mismatch is checked with synthetic tiles above.)"""
    w = ws[:1]
    left = 16
    with torch.no_grad():
        centre = G.synthesis(w, transform=frame_transform)
    pic = to_uint8(centre)[0].astype(float)
    soft = expand_frame(G, w, frame_transform, (left, 0, 0, 0), centre=centre, overlap=8).astype(float)
    excess = soft[:, left:] - pic  # what the blend adds to the centre render: 0 outside the band
    assert (excess[:, 8:] == 0).all()
    assert np.abs(excess).max() <= 8  # a cross-fade between two renders of the same content
    step = np.abs(np.diff(excess, axis=1)).mean(axis=(0, 2))
    own = np.abs(np.diff(pic, axis=1)).mean(axis=(0, 2))
    assert step.max() < np.median(own)
    column_gradient = np.abs(np.diff(soft, axis=1)).mean(axis=(0, 2))
    band = column_gradient[left - 1 : left + 8]
    assert band.max() <= column_gradient[left + 8 :].max()


def test_edits_reach_every_tile_batched_or_not(G, ws, frame_transform):
    w = ws[:1]
    latent = [LatentEdit(torch.ones(G.w_dim) / G.w_dim**0.5, 1.5)]
    channel = [ChannelEdit("L2_40_48", 5, 3.0)]
    amounts = (8, 8, 0, 0)
    with torch.no_grad():
        edited = render_edited(G, w, latent, channel, transform=frame_transform)
    out = expand_frame(G, w, frame_transform, amounts, latent_edits=latent, channel_edits=channel, overlap=4, batch=1)
    assert np.array_equal(out[:, 8 + 4 : 8 + R - 4], to_uint8(edited)[0][:, 4:-4])
    tiles = expansion_tiles(amounts, R, 4)
    pics = []
    with torch.no_grad():  # the side tiles are edited too: the same as rendering each edited tile
        for t in tile_transforms(tiles, frame_transform, R):
            img = render_edited(G, w, latent, channel, transform=t)
            pics.append((img * 127.5 + 128).clamp(0, 255)[0].permute(1, 2, 0).numpy())  # unrounded pixel values
    assert np.array_equal(out, blend_tiles(tiles, pics, canvas_size(amounts, R)))
    # batched tiles: the same picture up to float rounding in the batched convolutions
    batched = expand_frame(G, w, frame_transform, amounts, latent_edits=latent, channel_edits=channel, overlap=4)
    assert np.abs(batched.astype(int) - out).max() <= 1
    # a caller's own renderer, one tile per call
    calls = []

    def render(t):
        calls.append(tuple(t.shape))
        return render_edited(G, w, latent, channel, transform=t)

    assert np.array_equal(expand_frame(G, w, frame_transform, amounts, overlap=4, render=render), out)
    assert calls == [(3, 3)] * 3


def test_expand_frame_errors_and_cancel(G, ws, frame_transform):
    w = ws[:1]
    with pytest.raises(Cancelled):
        expand_frame(G, w, frame_transform, (8, 0, 0, 0), ctl=JobControl(cancelled=lambda: True))
    with pytest.raises(ValueError, match="ws must be"):
        expand_frame(G, ws, frame_transform, (8, 0, 0, 0))
    with pytest.raises(ValueError, match="centre picture"):
        expand_frame(G, w, frame_transform, (8, 0, 0, 0), centre=np.zeros((R, R, 3)))
    with pytest.raises(ValueError, match="right amount"):
        expand_frame(G, w, frame_transform, (0, R, 0, 0))
