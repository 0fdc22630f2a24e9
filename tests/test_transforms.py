"""The user transform moves content as documented: +tx right, +ty down, +angle counter-clockwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from golden import load_golden_generator, rel_l2

from engine import Generator, make_transform
from engine.transforms import compose, forward_matrix, transform_params


def test_matches_release_convention(golden_dir):
    data = np.load(golden_dir / "sg3_t128.npz")
    np.testing.assert_allclose(forward_matrix(12.0, 0.1, -0.05), data["transform_b_forward_f64"], atol=1e-9)
    np.testing.assert_allclose(make_transform(12.0, 0.1, -0.05).numpy(), data["transform_b"], atol=1e-6)


def test_params_round_trip_and_compose():
    t = make_transform(-17.0, 0.03, 0.2)
    a, tx, ty = transform_params(t)
    assert a == pytest.approx(-17.0, abs=1e-4) and tx == pytest.approx(0.03, abs=1e-6)
    assert ty == pytest.approx(0.2, abs=1e-6)
    # Two shifts compose into their sum; rotations add up.
    s = compose(make_transform(0, 0.1, 0), make_transform(0, 0.05, -0.02))
    assert transform_params(s)[1:] == pytest.approx((0.15, -0.02), abs=1e-6)
    r = compose(make_transform(10, 0, 0), make_transform(20, 0, 0))
    assert transform_params(r)[0] == pytest.approx(30.0, abs=1e-4)


@pytest.fixture(scope="module")
def small_generator():
    torch.manual_seed(0)
    return Generator(
        z_dim=16,
        c_dim=0,
        w_dim=16,
        img_resolution=32,
        img_channels=3,
        channel_base=256,
        channel_max=16,
        num_layers=4,
        num_critical=1,
        margin_size=4,
    ).eval()


def test_input_layer_shift_and_rotation(small_generator):
    """At the Fourier input, 1/sampling_rate of translation is exactly one pixel."""
    inp = small_generator.synthesis.input
    w = torch.randn(1, 16)
    step = 1.0 / inp.sampling_rate
    with torch.no_grad():
        base = inp(w, transform=make_transform(0, 0, 0))
        right = inp(w, transform=make_transform(0, step, 0))
        down = inp(w, transform=make_transform(0, 0, step))
        ccw = inp(w, transform=make_transform(90, 0, 0))
    torch.testing.assert_close(right[..., :, 1:], base[..., :, :-1], atol=1e-4, rtol=0)
    torch.testing.assert_close(down[..., 1:, :], base[..., :-1, :], atol=1e-4, rtol=0)
    torch.testing.assert_close(ccw, torch.rot90(base, k=1, dims=(2, 3)), atol=1e-4, rtol=0)


def test_generator_translation_moves_content_right_and_down(golden_dir):
    G, data, _ = load_golden_generator(golden_dir, "t128")
    ws = torch.from_numpy(data["ws"][:1])
    shift = 16  # pixels at 128 px
    with torch.no_grad():
        imgs = G.synthesis(
            ws.repeat(3, 1, 1),
            transform=torch.stack(
                [make_transform(0, 0, 0), make_transform(0, shift / 128, 0), make_transform(0, 0, shift / 128)]
            ),
        )
    base, right, down = imgs[0], imgs[1], imgs[2]
    m = 8  # ignore the borders, where new content enters
    moved = rel_l2(right[:, m:-m, shift + m : -m], base[:, m:-m, m : -m - shift])
    unmoved = rel_l2(right[:, m:-m, shift + m : -m], base[:, m:-m, shift + m : -m])
    assert moved < 0.01 and unmoved > 0.1
    moved = rel_l2(down[:, shift + m : -m, m:-m], base[:, m : -m - shift, m:-m])
    assert moved < 0.01
