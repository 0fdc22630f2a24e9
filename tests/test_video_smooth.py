"""engine.video.smooth: temporal filters that keep every frame, leave lines alone and remove jitter."""

from __future__ import annotations

import numpy as np
import pytest

from engine.video.smooth import (
    PAPER_WEIGHTS,
    default_fine_from,
    fill_masked,
    filter_weights,
    smooth_latents,
    smooth_series,
    smooth_transforms,
)

METHODS = [("paper", 1.0), ("gaussian", 1.0), ("gaussian", 3.0)]


def test_weights_are_normalised_and_symmetric():
    w = filter_weights("paper")
    assert np.allclose(w, np.array(PAPER_WEIGHTS) / 3.0)
    g = filter_weights("gaussian", 2.0)
    assert len(g) == 2 * 6 + 1 and g.sum() == pytest.approx(1.0) and np.allclose(g, g[::-1])
    assert filter_weights("none").tolist() == [1.0]
    with pytest.raises(ValueError, match="unknown smoothing method 'box'"):
        filter_weights("box")
    with pytest.raises(ValueError, match="sigma"):
        filter_weights("gaussian", 0.0)


@pytest.mark.parametrize("method,sigma", METHODS)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 40])
def test_keeps_every_frame_and_lines_exactly(method, sigma, n):
    t = np.arange(n, dtype=np.float64)
    const = np.full((n, 2, 3), 0.7, dtype=np.float32)
    out = smooth_series(const, method, sigma)
    assert out.shape == const.shape and out.dtype == np.float32
    assert np.allclose(out, 0.7, atol=1e-6)
    # a ramp (a steady pan) stays the same ramp, the first and last frames included
    ramp = np.stack([2.0 * t - 3.0, -0.5 * t], axis=1)
    assert np.allclose(smooth_series(ramp, method, sigma), ramp, atol=1e-9)


@pytest.mark.parametrize("method,sigma", METHODS)
def test_removes_jitter_everywhere_including_the_ends(method, sigma):
    rng = np.random.default_rng(0)
    n, dims = 200, 64
    t = np.linspace(0, 1, n)[:, None]
    clean = np.sin(2 * np.pi * t) * np.ones((1, dims))  # slow motion: one cycle over the clip
    noise = rng.normal(0, 0.1, (n, dims))
    out = smooth_series(clean + noise, method, sigma)
    err = out - clean
    reduction = noise.std() / err.std()
    # white noise through normalised taps w: std scales by sqrt(sum w^2)
    expected = 1.0 / np.sqrt((filter_weights(method, sigma) ** 2).sum())
    assert reduction > 0.9 * expected
    assert expected > 1.5
    # the padded ends are smoothed too (not passed through): first/last 2 frames lose noise
    ends = np.r_[0:2, n - 2 : n]
    assert np.abs(err[ends]).mean() < 0.85 * np.abs(noise[ends]).mean()


def test_none_copies_and_rejects_empty():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = smooth_series(x, "none")
    assert np.array_equal(out, x) and out is not x
    with pytest.raises(ValueError, match="N >= 1"):
        smooth_series(np.zeros((0, 3)))


def test_mask_fills_bad_frames_without_pulling_the_others():
    t = np.arange(30, dtype=np.float64)
    x = 0.1 * t
    bad = x.copy()
    mask = np.ones(30, dtype=bool)
    mask[[0, 10, 11, 29]] = False
    bad[[0, 10, 11, 29]] = [50.0, -80.0, 99.0, 7.0]  # frames with no face: garbage values
    out = smooth_series(bad, "paper", mask=mask)
    # the garbage neither stays nor spreads: the middle is the line again; missing end frames are held
    # at the nearest good frame's value (not extrapolated), so the ends stay within a step of the line
    assert np.allclose(out[3:-3], x[3:-3], atol=1e-9)
    assert np.abs(out - x).max() < 0.1
    filled = fill_masked(bad, mask)
    assert filled[10] == pytest.approx(1.0) and filled[0] == pytest.approx(0.1) and filled[29] == pytest.approx(2.8)
    assert np.array_equal(smooth_series(bad, "none", mask=mask), filled)
    with pytest.raises(ValueError, match="selects no frame"):
        smooth_series(bad, mask=np.zeros(30, dtype=bool))
    with pytest.raises(ValueError, match=r"mask must be \[30\]"):
        smooth_series(bad, mask=np.ones(29, dtype=bool))


def test_latents_shape_dtype_and_fine_mean():
    rng = np.random.default_rng(1)
    lat = rng.normal(size=(12, 16, 8)).astype(np.float32)
    out = smooth_latents(lat)
    assert out.shape == lat.shape and out.dtype == np.float32
    assert default_fine_from(16) == 9 and default_fine_from(8) == 5
    fm = smooth_latents(lat, fine_mean=True)
    assert np.allclose(fm[:, :9], out[:, :9])
    assert np.allclose(fm[:, 9:], lat[:, 9:].mean(axis=0, keepdims=True), atol=1e-6)
    assert np.ptp(fm[:, 9:], axis=0).max() == 0  # the same fine styles in every frame
    part = smooth_latents(lat, "none", fine_mean=True, fine_from=14)
    assert np.array_equal(part[:, :14], lat[:, :14])
    mask = np.ones(12, dtype=bool)
    mask[3] = False
    masked = smooth_latents(lat, "none", fine_mean=True, mask=mask)
    assert np.allclose(masked[0, 9:], lat[mask, 9:].mean(axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="fine_from"):
        smooth_latents(lat, fine_mean=True, fine_from=16)
    with pytest.raises(ValueError, match="num_ws"):
        smooth_latents(lat[:, 0])


def test_transforms_unwrap_the_angle():
    # a head turning steadily through +-180 degrees
    angles = np.array([174.0, 176.0, 178.0, 180.0, -178.0, -176.0, -174.0])
    params = np.stack([angles, np.zeros(7), np.linspace(0, 0.06, 7)], axis=1)
    out = smooth_transforms(params)
    assert out.shape == (7, 3)
    assert np.allclose(np.unwrap(out[:, 0], period=360), np.arange(174.0, 187.0, 2.0), atol=1e-9)
    assert ((out[:, 0] >= -180) & (out[:, 0] < 180)).all()
    assert np.allclose(out[:, 2], params[:, 2])
    # filtering the wrapped angles directly would average 178 and -178 towards 0
    assert np.abs(smooth_series(params)[:, 0]).min() < 120
    jitter = params.copy()
    jitter[:, 0] += np.array([0.5, -0.5, 0.5, -0.5, 0.5, -0.5, 0.5])
    smoothed = np.unwrap(smooth_transforms(jitter)[:, 0], period=360) - np.arange(174.0, 187.0, 2.0)
    assert np.abs(smoothed[2:-2]).max() < 0.2
    with pytest.raises(ValueError, match=r"\[N,3\]"):
        smooth_transforms(np.zeros((4, 4)))
