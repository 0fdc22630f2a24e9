"""engine.editing: InterFaceGAN and StyleSpace edits on tensors, and the transform they render with."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.editing import (
    ChannelEdit,
    LatentEdit,
    apply_channel_edits,
    apply_latent_edits,
    edit_latent,
    edit_transform,
    render_edited,
)
from engine.imageio import to_uint8
from engine.models import ensure_random_bundle, load_bundle
from engine.transforms import make_transform


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(ensure_random_bundle(tmp_path_factory.getbasetemp() / "bundles"))


@pytest.fixture(scope="module")
def ws(bundle):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        return bundle.generator.mapping(torch.randn(2, bundle.generator.z_dim, generator=g))


def test_edit_latent_all_and_chosen_layers(ws):
    d = torch.zeros(ws.shape[2])
    d[3] = 1.0
    out = edit_latent(ws, d, 2.5)
    assert torch.allclose(out - ws, (2.5 * d).expand_as(ws))
    part = edit_latent(ws, d, -1.0, layers=[0, 2])
    delta = part - ws
    assert torch.allclose(delta[:, [0, 2], 3], torch.full((2, 2), -1.0))
    assert delta[:, [1] + list(range(3, ws.shape[1]))].abs().max() == 0
    with pytest.raises(ValueError):
        edit_latent(ws, d, 1.0, layers=[ws.shape[1]])
    with pytest.raises(ValueError):
        edit_latent(ws, d[:-1], 1.0)


def test_latent_edits_sum_and_commute(ws):
    a, b = torch.randn(ws.shape[2]), torch.randn(ws.shape[2])
    e1, e2 = LatentEdit(a, 1.5), LatentEdit(b, -0.5, (1,))
    x = apply_latent_edits(ws, [e1, e2])
    y = apply_latent_edits(ws, [e2, e1])
    assert torch.allclose(x, y, atol=1e-6)
    assert torch.equal(apply_latent_edits(ws, [LatentEdit(a, 0.0)]), ws)


def test_channel_edits_touch_one_channel(bundle, ws):
    styles = bundle.generator.synthesis.styles(ws)
    layer = bundle.generator.synthesis.layer_names[2]
    before = styles[layer].clone()
    out = apply_channel_edits(styles, [ChannelEdit(layer, 5, 3.0)])
    assert torch.equal(styles[layer], before), "the input dict must not change"
    diff = out[layer] - before
    assert torch.allclose(diff[:, 5], torch.full((2,), 3.0))
    diff[:, 5] = 0
    assert diff.abs().max() == 0
    assert out["input"] is styles["input"]
    with pytest.raises(KeyError):
        apply_channel_edits(styles, [ChannelEdit("nope", 0, 1.0)])
    with pytest.raises(IndexError):
        apply_channel_edits(styles, [ChannelEdit(layer, 10_000, 1.0)])


def test_render_edited_paths(bundle, ws):
    G = bundle.generator
    with torch.no_grad():
        plain = G.synthesis(ws, transform=make_transform())
        same = render_edited(G, ws, [], [ChannelEdit(G.synthesis.layer_names[1], 0, 0.0)], transform=make_transform())
        via_styles = G.synthesis(ws=None, styles=G.synthesis.styles(ws), transform=make_transform())
        edited = render_edited(G, ws, [], [ChannelEdit(G.synthesis.layer_names[1], 0, 5.0)], transform=make_transform())
        moved = render_edited(G, ws, [LatentEdit(bundle.directions["smile"].vector, 3.0)], transform=make_transform())
    assert torch.equal(plain, same)
    assert torch.allclose(plain, via_styles, atol=1e-5)
    assert (edited - plain).abs().mean() > 1e-3
    assert (moved - plain).abs().mean() > 1e-3


def _best_shift(a: torch.Tensor, b: torch.Tensor, r: int = 20) -> tuple[int, int]:
    n = a.shape[-1]
    best = None
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            pa = a[..., max(0, -dy) : n - max(0, dy), max(0, -dx) : n - max(0, dx)]
            pb = b[..., max(0, dy) : n - max(0, -dy), max(0, dx) : n - max(0, -dx)]
            err = float((pa - pb).square().mean())
            if best is None or err < best[0]:
                best = (err, dx, dy)
    return best[1], best[2]


def test_transform_translation_moves_content(bundle, ws):
    G = bundle.generator
    n = G.img_resolution
    with torch.no_grad():
        a = G.synthesis(ws[:1], transform=edit_transform())
        right = G.synthesis(ws[:1], transform=edit_transform(tx=0.25))
        down = G.synthesis(ws[:1], transform=edit_transform(ty=0.125))
    assert _best_shift(a, right) == (n // 4, 0)
    assert _best_shift(a, down) == (0, n // 8)


def test_edit_transform_composes_after_base():
    base = make_transform(10.0, 0.1, -0.05)
    out = edit_transform(30.0, 0.2, 0.0, base=base)
    assert torch.allclose(out, base @ make_transform(30.0, 0.2, 0.0), atol=1e-6)
    assert torch.equal(edit_transform(5.0), make_transform(5.0))


def test_to_uint8_range_and_layout():
    x = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(1, 1, 2, 2).repeat(1, 3, 1, 1)
    u = to_uint8(x)
    assert u.shape == (1, 2, 2, 3) and u.dtype == np.uint8
    assert u[0, :, :, 0].ravel().tolist() == [0, 128, 255, 255]
