"""Fast kernels against the reference math: random shapes, factors, paddings and filters, with
gradients (gradcheck in float64 on small sizes); and the implementation switch."""

from __future__ import annotations

import math
import random

import pytest
import torch

from kernels import bias_act, filtered_lrelu, upfirdn2d
from kernels._select import resolve_impl


def _random_upfirdn_case(rng: random.Random, dtype=torch.float64):
    sep = rng.random() < 0.6
    taps = rng.randint(1, 12)
    f = torch.randn(taps, dtype=dtype) if sep else torch.randn(taps, rng.randint(1, 8), dtype=dtype)
    x = torch.randn(rng.randint(1, 2), rng.randint(1, 3), rng.randint(6, 17), rng.randint(6, 17), dtype=dtype)
    kw = dict(
        up=(rng.choice([1, 2, 3, 4]), rng.choice([1, 2, 4])),
        down=(rng.choice([1, 2, 3]), rng.choice([1, 2])),
        padding=[rng.randint(-2, 7) for _ in range(4)],
        flip_filter=rng.random() < 0.5,
        gain=rng.choice([1.0, 4.0]),
    )
    return x, f, kw


def _random_flrelu_case(rng: random.Random, dtype=torch.float64):
    up, down = rng.choice([1, 2, 4]), rng.choice([1, 2])
    fu = torch.randn(6 * up, dtype=dtype) if up > 1 else None
    if down == 1:
        fd = None
    elif rng.random() < 0.5:
        fd = torch.randn(6 * down, dtype=dtype)
    else:
        fd = torch.randn(6 * down, 6 * down, dtype=dtype)  # radial (non-separable) down filter
    c = rng.randint(1, 4)
    x = torch.randn(rng.randint(1, 2), c, rng.randint(8, 16), rng.randint(8, 16), dtype=dtype)
    kw = dict(
        fu=fu,
        fd=fd,
        b=torch.randn(c, dtype=dtype),
        up=up,
        down=down,
        padding=[rng.randint(-1, 10) for _ in range(4)],
        gain=rng.choice([1.0, math.sqrt(2)]),
        slope=rng.choice([0.2, 1.0]),
        clamp=rng.choice([None, 0.7]),
    )
    return x, kw


def test_upfirdn2d_fast_matches_ref_random():
    rng = random.Random(1)
    checked = 0
    while checked < 150:
        x, f, kw = _random_upfirdn_case(rng)
        try:
            ref = upfirdn2d(x, f, impl="ref", **kw)
        except RuntimeError:  # the reference cannot express this case (empty output)
            continue
        fast = upfirdn2d(x, f, impl="fast", **kw)
        assert fast.shape == ref.shape, kw
        torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
        checked += 1


def test_filtered_lrelu_fast_matches_ref_random():
    rng = random.Random(2)
    checked = 0
    while checked < 100:
        x, kw = _random_flrelu_case(rng)
        try:
            ref = filtered_lrelu(x, impl="ref", **kw)
        except RuntimeError:
            continue
        fast = filtered_lrelu(x, impl="fast", **kw)
        assert fast.shape == ref.shape
        torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-9)
        checked += 1


def test_filtered_lrelu_float32_generator_layer_shapes():
    """A layer of a real configuration (4x up, 2x down, 12/24-tap filters) in float32."""
    from engine.networks.filters import design_lowpass_filter

    fu = design_lowpass_filter(24, cutoff=11.3, width=2 * 5.0, fs=128)
    fd = design_lowpass_filter(12, cutoff=16.0, width=2 * 12.0, fs=128)
    x = torch.randn(2, 8, 54, 54)
    b = torch.randn(8)
    kw = dict(fu=fu, fd=fd, b=b, up=4, down=2, padding=[-6, -9, -6, -9], clamp=256)
    ref = filtered_lrelu(x, impl="ref", **kw)
    fast = filtered_lrelu(x, impl="fast", **kw)
    assert ref.shape == (2, 8, 84, 84)
    assert float((fast - ref).norm() / ref.norm()) < 1e-6


@pytest.mark.parametrize("case", range(4))
def test_upfirdn2d_fast_gradcheck(case):
    rng = random.Random(100 + case)
    while True:
        x, f, kw = _random_upfirdn_case(rng)
        try:
            upfirdn2d(x, f, impl="ref", **kw)
            break
        except RuntimeError:
            continue
    x = x[:1, :1, :7, :7].clone().requires_grad_(True)
    try:
        upfirdn2d(x, f, impl="ref", **kw)
    except RuntimeError:
        pytest.skip("case has an empty output at the reduced size")
    assert torch.autograd.gradcheck(lambda t: upfirdn2d(t, f, impl="fast", **kw), (x,))


@pytest.mark.parametrize("case", range(4))
def test_filtered_lrelu_fast_gradcheck(case):
    rng = random.Random(200 + case)
    while True:
        x, kw = _random_flrelu_case(rng)
        x = x[:1, :, :8, :8].clone().requires_grad_(True)
        try:
            filtered_lrelu(x.detach(), impl="ref", **kw)
            break
        except RuntimeError:  # empty output at this size: draw another case
            continue
    b = kw.pop("b").clone().requires_grad_(True)
    kw["clamp"] = None if case % 2 else kw["clamp"]
    assert torch.autograd.gradcheck(
        lambda t, bb: filtered_lrelu(t, b=bb, impl="fast", **kw), (x, b), eps=1e-6, atol=1e-5
    )


def test_fast_and_ref_gradients_agree():
    rng = random.Random(7)
    x, kw = _random_flrelu_case(rng)
    grads = []
    for impl in ("ref", "fast"):
        t = x.clone().requires_grad_(True)
        y = filtered_lrelu(t, impl=impl, **kw)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        grads.append(t.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", range(3))
def test_filtered_lrelu_recomputed_backward_is_exact(case, monkeypatch):
    # Big layers record only their input and recompute channel slices in the backward pass; forcing
    # that path (threshold 0, so several slices) must give the plain fast path's output and gradients.
    from kernels import _fast  # the fast path reads the threshold at call time

    rng = random.Random(300 + case)
    x, kw = _random_flrelu_case(rng)
    while x.shape[1] < 2:  # several channel slices
        x, kw = _random_flrelu_case(rng)
    b = kw.pop("b")
    results = []
    for threshold in (_fast.RECOMPUTE_ELEMENTS, 0):
        monkeypatch.setattr(_fast, "RECOMPUTE_ELEMENTS", threshold)
        t, bb = x.clone().requires_grad_(True), b.clone().requires_grad_(case != 2)
        y = filtered_lrelu(t, b=bb, impl="fast", **kw)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        results.append((y.detach(), t.grad, bb.grad))
    assert (results[1][2] is None) == (case == 2)
    for a, c in zip(results[0], results[1]):
        if a is None:
            assert c is None
        else:
            torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)
    monkeypatch.setattr(_fast, "RECOMPUTE_ELEMENTS", 0)
    t = x[:1, :, :8, :8].clone().requires_grad_(True)
    try:
        filtered_lrelu(t.detach(), impl="ref", **kw)
    except RuntimeError:
        return  # empty output at the reduced size: the comparison above covers this case
    assert torch.autograd.gradcheck(lambda u: filtered_lrelu(u, impl="fast", **kw), (t,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("act", ["linear", "relu", "lrelu", "tanh", "sigmoid"])
def test_bias_act_fast_matches_ref(act):
    x = torch.randn(3, 5, 4, 4, dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    for clamp in (None, 0.5):
        ref = bias_act(x, b, act=act, clamp=clamp, impl="ref")
        torch.testing.assert_close(bias_act(x, b, act=act, clamp=clamp, impl="fast"), ref)
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: bias_act(t, b, act=act, impl="fast"), (xg,))


def test_impl_selection(monkeypatch):
    x = torch.zeros(1)
    monkeypatch.delenv("SG3_KERNELS", raising=False)
    assert resolve_impl(None, x) == "fast"
    assert resolve_impl("ref", x) == "ref"
    monkeypatch.setenv("SG3_KERNELS", "ref")
    assert resolve_impl(None, x) == "ref"
    assert resolve_impl("fast", x) == "fast"  # the call's choice wins over the environment
    assert resolve_impl("cuda", x) == "fast"  # CPU tensors never take the CUDA path
    monkeypatch.setenv("SG3_KERNELS", "bogus")
    with pytest.raises(ValueError, match="SG3_KERNELS"):
        resolve_impl(None, x)


def test_cuda_tensors_fall_back_to_the_reference_math(monkeypatch):
    """On a GPU the polyphase path is slow (13x slower than 'ref' on an H200), so CUDA tensors
    fall back to 'ref' while the extension is missing, and ops without a fused kernel run 'ref'."""
    from types import SimpleNamespace

    from kernels import cuda_ext
    from kernels._select import gpu_friendly

    monkeypatch.delenv("SG3_KERNELS", raising=False)
    gpu_tensor = SimpleNamespace(is_cuda=True, device=torch.device("cuda", 0))  # stands in for a CUDA tensor
    monkeypatch.setattr(cuda_ext, "available", lambda device=None: False)
    assert resolve_impl(None, gpu_tensor) == "ref"
    assert resolve_impl("cuda", gpu_tensor) == "ref"
    assert resolve_impl("fast", gpu_tensor) == "fast"  # an explicit choice is kept
    monkeypatch.setattr(cuda_ext, "available", lambda device=None: True)
    assert resolve_impl(None, gpu_tensor) == "cuda"
    assert gpu_friendly("cuda", gpu_tensor) == "ref"
    assert gpu_friendly("cuda", torch.zeros(1)) == "fast"
    assert gpu_friendly("fast", gpu_tensor) == "fast"


@pytest.mark.parametrize(
    "case",
    [
        (7, 5, 2, 1, 2, 1, -1),
        (9, 12, 1, 2, 0, 0, -2),
        (6, 24, 4, 2, -3, 5, -1),
        (10, 6, 3, 2, 4, -2, -2),
        (5, 1, 1, 1, 0, 0, -1),
    ],
)
def test_polyphase_adjoint_backward_first_and_second_order(case):
    """The polyphase resampler's hand-written adjoint is its exact gradient, and so is the adjoint's."""
    from kernels._polyphase import resample_axis

    length, taps, up, down, p0, p1, dim = case
    g = torch.Generator().manual_seed(sum(case) + 100)
    x = torch.randn(2, 3, length, length, dtype=torch.float64, generator=g, requires_grad=True)
    h = torch.randn(taps, dtype=torch.float64, generator=g)
    fn = lambda t: resample_axis(t, h, dim, up, down, p0, p1)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
