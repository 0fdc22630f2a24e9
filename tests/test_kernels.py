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


def _random_axis_case(rng: random.Random):
    length, taps = rng.randint(1, 30), rng.randint(1, 25)
    return length, taps, rng.randint(1, 5), rng.randint(1, 4), rng.randint(-4, 12), rng.randint(-4, 12)


def test_banded_leading_axis_matches_polyphase_random():
    """The banded products (runs of blocks, a range of outputs, and the single batched product over a
    zero-margined buffer) give the per-tap polyphase result along the leading axis."""
    from kernels._polyphase import banded_plan, resample_axis, resample_leading, resample_leading_range

    rng = random.Random(11)
    checked = 0
    while checked < 300:
        length, taps, up, down, p0, p1 = _random_axis_case(rng)
        x = torch.randn(length, 3, 2, dtype=torch.float64)
        h = torch.randn(taps, dtype=torch.float64)
        if rng.random() < 0.2:
            h[rng.randrange(taps)] = 0  # a zero tap inside the filter
        ref = resample_axis(x.movedim(0, -1), h, -1, up, down, p0, p1).movedim(-1, 0)
        y = resample_leading(x, h, up, down, p0, p1)
        assert y.shape == ref.shape
        torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
        plan = banded_plan(tuple(h.tolist()), length, up, down, p0, p1)
        if plan.out_len == 0:
            continue
        o0 = rng.randrange(plan.out_len)
        o1 = rng.randint(o0 + 1, plan.out_len)
        torch.testing.assert_close(resample_leading_range(x, h, up, down, p0, o0, o1), ref[o0:o1])
        lo, hi = plan.margin_lo + rng.randint(0, 2), plan.margin_hi + rng.randint(0, 2)
        buf = torch.zeros(lo + length + hi, 3, 2, dtype=torch.float64)
        buf[lo : lo + length] = x
        whole = plan.apply_margined(buf, lo)
        assert whole.shape[0] == plan.blocks * plan.block >= plan.out_len
        torch.testing.assert_close(whole[: plan.out_len], ref, rtol=1e-12, atol=1e-12)
        k0 = rng.randrange(plan.blocks)
        k1 = rng.randint(k0 + 1, plan.blocks)
        torch.testing.assert_close(plan.apply_margined(buf, lo, k0, k1), whole[k0 * plan.block : k1 * plan.block])
        checked += 1
    plan = banded_plan((1.0, 2.0, 3.0), 8, 2, 1, 2, 2)  # output 0 reads a zero row before input 0
    assert plan.margin_lo == 1
    with pytest.raises(ValueError, match="margin"):
        plan.apply_margined(torch.zeros(8, 4, dtype=torch.float64), 0)


@pytest.mark.parametrize(
    "case",
    [(7, 5, 2, 1, 2, 1), (9, 12, 1, 2, 0, 0), (6, 24, 4, 2, -3, 5), (10, 6, 3, 2, 4, -2), (30, 12, 2, 1, 9, 8)],
)
def test_banded_leading_axis_gradients_first_and_second_order(case):
    """The banded pass's backward (its adjoint plan) is its exact gradient, and the adjoint's backward
    (the forward plan) is the adjoint's: gradcheck and gradgradcheck in float64."""
    from kernels._polyphase import resample_leading

    length, taps, up, down, p0, p1 = case
    g = torch.Generator().manual_seed(sum(case) + 200)
    x = torch.randn(length, 2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    h = torch.randn(taps, dtype=torch.float64, generator=g)
    fn = lambda t: resample_leading(t, h, up, down, p0, p1)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def _small_chunks(monkeypatch):
    """Force the fast filtered_lrelu to cut its work into several chunks of planes and bands of rows."""
    from kernels import _fast

    monkeypatch.setattr(_fast, "GEMM_BAND_ELEMENTS", 700)
    monkeypatch.setattr(_fast, "MIN_PLANES", 2)
    monkeypatch.setattr(_fast, "MAX_PLANES", 3)
    monkeypatch.setattr(_fast, "MIN_ROWS", 3)


@pytest.mark.parametrize("chunked", [False, True])
def test_filtered_lrelu_fast_special_chains(chunked, monkeypatch):
    """Chains the random cases rarely draw: no up filter at all (up 1, no padding), no down filter,
    a gain <= 0 (not folded into the filter), slope 1, no clamp, a clamp too large to act (which the
    no-grad chain skips), 2-D down filters of both kinds;
    with and without chunks and bands; forward and gradients of x and b against the reference."""
    if chunked:
        _small_chunks(monkeypatch)
    g = torch.Generator().manual_seed(5)
    f12, f24 = torch.randn(12, dtype=torch.float64, generator=g), torch.randn(24, dtype=torch.float64, generator=g)
    cases = [
        dict(fu=None, fd=f12, up=1, down=2, padding=0),
        dict(fu=f12, fd=None, up=2, down=1, padding=[7, 4, 5, 6]),
        dict(fu=f24, fd=f12, up=4, down=2, padding=[-6, -9, -6, -9], gain=-0.7),
        dict(fu=f24, fd=f12, up=4, down=2, padding=[3, 1, 2, 9], gain=0.0, slope=1.0),
        dict(fu=None, fd=None, up=1, down=1, padding=[2, 1, 0, 3]),
        dict(fu=f12, fd=f12, up=2, down=2, padding=[9, 8, 9, 8], clamp=0.5),
        dict(fu=f12, fd=f12, up=2, down=2, padding=[9, 8, 9, 8], clamp=1e4),  # provably idle: skipped
        # 2-D down filters: rows stored by phase (taps a multiple of down), and not (7 taps)
        dict(fu=None, fd=torch.randn(12, 12, dtype=torch.float64, generator=g), up=1, down=2, padding=0),
        dict(fu=f12, fd=torch.randn(7, 7, dtype=torch.float64, generator=g), up=2, down=2, padding=[5, 4, 6, 3]),
        dict(fu=f24, fd=torch.randn(12, 12, dtype=torch.float64, generator=g), up=4, down=2, padding=[-6, -9, 2, 1]),
    ]
    for kw in cases:
        x = torch.randn(2, 3, 17, 15, dtype=torch.float64, generator=g)
        b = torch.randn(3, dtype=torch.float64, generator=g)
        ref = filtered_lrelu(x, b=b, impl="ref", **kw)
        torch.testing.assert_close(filtered_lrelu(x, b=b, impl="fast", **kw), ref, rtol=1e-10, atol=1e-10)
        grads = []
        for impl in ("ref", "fast"):
            t, bb = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
            y = filtered_lrelu(t, b=bb, impl=impl, **kw)
            torch.testing.assert_close(y.detach(), ref, rtol=1e-10, atol=1e-10)
            (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
            grads.append((t.grad, bb.grad))
        for a, c in zip(*grads):
            torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-9)


def test_filtered_lrelu_fast_chunks_and_bands_match_ref_random(monkeypatch):
    """The chunk/band bookkeeping (margins of the batched products, overlapping bands, uneven last
    chunk) with tiny budgets, forward without and with gradients."""
    _small_chunks(monkeypatch)
    rng = random.Random(21)
    checked = 0
    while checked < 40:
        x, kw = _random_flrelu_case(rng)
        try:
            ref = filtered_lrelu(x, impl="ref", **kw)
        except RuntimeError:
            continue
        torch.testing.assert_close(filtered_lrelu(x, impl="fast", **kw), ref, rtol=1e-9, atol=1e-9)
        t = x.clone().requires_grad_(True)
        torch.testing.assert_close(filtered_lrelu(t, impl="fast", **kw).detach(), ref, rtol=1e-9, atol=1e-9)
        checked += 1


def test_polyphase_chain_still_matches_ref():
    """The per-phase polyphase chain (now the path of 2-D down filters and of other dtypes, and the
    'old' column of bench/small_kernels.py) on separable filters too."""
    from kernels import _fast
    from kernels._ref import FilteredLReluArgs, parse_padding

    rng = random.Random(31)
    checked = 0
    while checked < 30:
        x, kw = _random_flrelu_case(rng)
        try:
            ref = filtered_lrelu(x, impl="ref", **kw)
        except RuntimeError:
            continue
        args = FilteredLReluArgs(
            kw["up"], kw["down"], parse_padding(kw["padding"]), kw["gain"], kw["slope"], kw["clamp"], False
        )
        old = _fast._filtered_lrelu_bands(x, kw["fu"], kw["fd"], kw["b"], args)
        torch.testing.assert_close(old, ref, rtol=1e-9, atol=1e-9)
        checked += 1


def test_filtered_lrelu_fast_half_precision_takes_the_polyphase_path():
    """dtypes other than float32/float64 keep the polyphase chain (no BLAS products for them)."""
    from kernels import _fast

    fu = torch.randn(12)
    x = torch.randn(1, 2, 9, 9)
    y16 = filtered_lrelu(x.bfloat16(), fu=fu, fd=fu, up=2, down=2, padding=5, impl="fast")
    y32 = filtered_lrelu(x, fu=fu, fd=fu, up=2, down=2, padding=5, impl="fast")
    assert y16.dtype == torch.bfloat16 and float((y16.float() - y32).norm() / y32.norm()) < 3e-2
    assert torch.bfloat16 not in _fast.GEMM_DTYPES


def test_filtered_lrelu_fast_workspace_is_per_thread():
    """The no-grad chain's temporaries come from per-thread buffers kept between calls: calls of
    different sizes in a row, and two threads at once, give the same results as alone."""
    import threading

    from kernels import _fast

    g = torch.Generator().manual_seed(9)
    f12, f24 = torch.randn(12, generator=g), torch.randn(24, generator=g)
    cases = [
        (torch.randn(2, 8, 26, 26, generator=g), dict(fu=f12, fd=f12, up=2, down=2, padding=[9, 8, 9, 8])),
        (torch.randn(1, 5, 42, 42, generator=g), dict(fu=f24, fd=f12, up=4, down=2, padding=[6, 3, 6, 3])),
        (torch.randn(3, 4, 20, 20, generator=g), dict(fu=f12, fd=torch.randn(12, 12, generator=g), up=2, down=2)),
    ]
    with torch.no_grad():
        expected = [filtered_lrelu(x, impl="ref", **kw) for x, kw in cases]
    errors: list[str] = []

    def work(order: list[int]) -> None:
        try:
            with torch.no_grad():
                for _ in range(3):
                    for i in order:
                        got = filtered_lrelu(cases[i][0], impl="fast", **cases[i][1])
                        if float((got - expected[i]).norm() / expected[i].norm()) > 1e-6:
                            errors.append(f"case {i} differs")
        finally:
            _fast.release_workspace()

    threads = [threading.Thread(target=work, args=(o,)) for o in ([0, 1, 2], [2, 1, 0])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    work([1, 0, 2, 1])
    assert not errors
