"""The fused C++ CPU filtered_lrelu (kernels/cpu_ext.py, kernels/cpu/filtered_lrelu.cpp): it builds
here, matches the reference on every golden generator layer and on random argument combinations,
training steps run its forward and backward, a failing or hanging build falls back to the fast path with
one warning, and the demo generator renders the same with it. Its backward
(``cpu_ext.filtered_lrelu_backward``) matches autograd through the reference in float64 and does not
depend on the thread count or the bands."""

from __future__ import annotations

import math
import random
import sys
import time

import pytest
import torch

from kernels import _fast, _ref, cpu_ext, filtered_lrelu
from kernels._ref import FilteredLReluArgs

TOL = 1e-5


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.fixture(scope="module")
def built():
    t = time.perf_counter()
    if not cpu_ext.ensure_built():
        pytest.fail(f"the C++ CPU kernel did not build: {cpu_ext._state['error']}")
    return time.perf_counter() - t


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls that reach the C++ kernel."""
    seen: list[int] = []
    real = cpu_ext.filtered_lrelu

    def spy(*args, **kwargs):
        seen.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(cpu_ext, "filtered_lrelu", spy)
    return seen


def _ref64(x, fu, fd, b, args):
    d = lambda t: None if t is None else t.double()  # noqa: E731
    return _ref.filtered_lrelu(x.double(), d(fu), d(fd), d(b), args)


def test_one_openmp_runtime(built):
    runtimes = cpu_ext.openmp_runtimes()
    assert len(runtimes) <= 1, runtimes


def test_golden_generators_with_the_kernel(built, calls, golden_dir):
    """Every filtered_lrelu call of the golden generators (t128, r128: separable and radial down
    filters, up 2 and 4) against the reference math, and the images against the release's."""
    from golden import load_golden_generator, rel_l2

    for cfg in ("t128", "r128"):
        G, data, meta = load_golden_generator(golden_dir, cfg)
        captured = []
        real = _fast.filtered_lrelu

        def spy(x, fu, fd, b, args, real=real, captured=captured):
            captured.append((x.clone(), fu, fd, b, args))
            return real(x, fu, fd, b, args)

        sb = meta["synth_batch"]
        _fast.filtered_lrelu = spy
        try:
            with torch.no_grad():
                img = G.synthesis(torch.from_numpy(data["ws"][:sb]), impl="fast")
        finally:
            _fast.filtered_lrelu = real
        assert rel_l2(img, data["img_identity"]) <= TOL, cfg
        used = 0
        for x, fu, fd, b, args in captured:
            # Planes are independent: a slice of channels keeps the float64 reference quick.
            x, b = x[:1, :16], None if b is None else b[:16]
            with torch.no_grad():
                y = _fast._cpp_chain(x, fu, fd, b, args)
            if y is None:  # ToRGB: no resampling, the Python activation
                continue
            used += 1
            assert _rel(y, _ref64(x, fu, fd, b, args)) <= TOL, (cfg, tuple(x.shape), args)
        assert used >= len(captured) - 1
    assert calls


def _random_case(rng: random.Random):
    up, down = rng.choice([1, 2, 4]), rng.choice([1, 2])
    tu = rng.randint(1, 6) * up if rng.random() < 0.85 else rng.randint(1, 7)
    fu = torch.randn(tu) if (up > 1 or rng.random() < 0.7) else None
    radial = rng.random() < 0.3
    td = rng.randint(1, 6) * down if rng.random() < 0.8 else rng.randint(1, 7)
    fd = None
    if down > 1 or rng.random() < 0.7:
        fd = torch.randn(td, td) if radial else torch.randn(td)
    h, w = rng.randint(2, 27), rng.randint(2, 27)
    padding = tuple(rng.randint(-3, 9) for _ in range(4))
    if fu is None and up == 1:
        padding = (0, 0, 0, 0)
    args = FilteredLReluArgs(
        up,
        down,
        padding,
        rng.choice([1.0, math.sqrt(2), -0.5, 0.0]),
        rng.choice([0.2, 1.0, -0.3]),
        rng.choice([None, 0.5, -1.0, 256.0]),
        rng.random() < 0.5,
    )
    c = rng.randint(1, 5)
    x = torch.randn(rng.randint(1, 3), c, h, w)
    if rng.random() < 0.2:  # non-contiguous input
        x = torch.randn(x.shape[0], c, w, h).transpose(2, 3)
    b = torch.randn(c) if rng.random() < 0.7 else None
    return x, fu, fd, b, args


def test_random_cases_match_the_reference(built):
    rng = random.Random(7)
    checked = 0
    kinds = set()
    while checked < 150:
        x, fu, fd, b, args = _random_case(rng)
        try:
            ref = _ref64(x, fu, fd, b, args)
        except RuntimeError:  # the reference refuses (empty output)
            continue
        with torch.no_grad():
            y = _fast._cpp_chain(x, fu, fd, b, args)
        if y is None:
            continue
        assert y.shape == ref.shape
        assert _rel(y, ref) <= TOL, (tuple(x.shape), fu, fd, b is not None, args)
        kinds.add((args.up, args.down, fd is not None and fd.ndim == 2))
        checked += 1
    assert len(kinds) >= 8


def test_dispatch_uses_the_kernel_for_float32_only(built, calls):
    fu = torch.randn(12)
    x = torch.randn(2, 3, 11, 13)
    kw = dict(fu=fu, fd=fu, b=torch.randn(3), up=2, down=2, padding=[5, 4, 6, 3], clamp=0.7)
    ref = filtered_lrelu(
        x.double(), impl="ref", **{k: (v.double() if torch.is_tensor(v) else v) for k, v in kw.items()}
    )
    assert _rel(filtered_lrelu(x, impl="fast", **kw), ref) <= TOL
    assert len(calls) == 1
    filtered_lrelu(x.double(), impl="fast", **{k: (v.double() if torch.is_tensor(v) else v) for k, v in kw.items()})
    assert len(calls) == 1  # float64 keeps the Python chain


def test_layers_with_gradients_run_the_kernel_forward_and_backward(built, calls, monkeypatch):
    """Training and PTI steps: every float32 layer recording gradients, small or big, runs the C++
    forward and the C++ backward (no Python chain, no autograd graph of the chain's temporaries)."""
    backward_calls: list[int] = []
    real_backward = cpu_ext.filtered_lrelu_backward
    monkeypatch.setattr(
        cpu_ext, "filtered_lrelu_backward", lambda *a, **k: backward_calls.append(1) or real_backward(*a, **k)
    )
    monkeypatch.setattr(_fast, "_python_chain", lambda *a, **k: pytest.fail("the Python chain ran"))
    g = torch.Generator().manual_seed(5)
    fu = torch.randn(12, generator=g)
    for shape in ((2, 4, 14, 15), (1, 2, 300, 300)):
        x = torch.randn(*shape, generator=g, requires_grad=True)
        b = torch.randn(shape[1], generator=g, requires_grad=True)
        y = filtered_lrelu(x, fu=fu, fd=fu, b=b, up=2, down=2, padding=[7, 4, 6, 5], impl="fast")
        y.sum().backward()
        assert x.grad is not None and b.grad is not None
    assert len(calls) == 2 and len(backward_calls) == 2


@pytest.mark.parametrize("radial", [False, True])
def test_gradients_with_the_kernel_match_the_reference(built, calls, radial):
    g = torch.Generator().manual_seed(3)
    fu = torch.randn(12, generator=g)
    fd = torch.randn(12, 12, generator=g) if radial else torch.randn(12, generator=g)
    x0 = torch.randn(2, 4, 14, 15, generator=g)
    b0 = torch.randn(4, generator=g)
    kw = dict(fu=fu, fd=fd, up=2, down=2, padding=[7, 4, 6, 5], clamp=1.5)
    grads = {}
    for impl in ("ref", "fast"):
        x, b = x0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        y = filtered_lrelu(x, b=b, impl=impl, **kw)
        w = torch.linspace(-1, 1, y.numel()).view_as(y)
        (y * w).sum().backward()
        grads[impl] = (y.detach(), x.grad, b.grad)
    assert calls  # the forward with gradients ran the C++ kernel (and its backward, see above)
    for a, r in zip(grads["fast"], grads["ref"]):
        assert _rel(a, r) <= 1e-4


def test_second_order_gradients_with_the_kernel(built, calls):
    """create_graph through the kernel's Function (e.g. a path-length penalty; its backward then runs
    the Python chain, differentiably): the gradient of a gradient norm with respect to the
    backpropagated weights, against the reference."""
    g = torch.Generator().manual_seed(4)
    fu = torch.randn(12, generator=g)
    x0 = torch.randn(1, 3, 10, 9, generator=g)
    kw = dict(fu=fu, fd=fu, up=2, down=2, padding=[6, 5, 6, 5])
    out = {}
    for impl in ("ref", "fast"):
        x = x0.clone().requires_grad_(True)
        y = filtered_lrelu(x, impl=impl, **kw)
        w = torch.linspace(-1, 1, y.numel()).view_as(y).requires_grad_(True)
        (gx,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
        (gx**2).sum().backward()
        out[impl] = w.grad
    assert calls
    assert _rel(out["fast"], out["ref"]) <= 1e-4


def _fresh(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(
        cpu_ext, "_state", {"status": "unbuilt", "lib": None, "error": None, "thread": None, "path": None}
    )


def test_failing_compiler_falls_back_with_one_warning(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.warns(RuntimeWarning, match="C\\+\\+ CPU filtered_lrelu unavailable") as record:
        assert cpu_ext.ensure_built() is False
    assert len(record) == 1 and "CXX" in str(record[0].message)
    assert cpu_ext.available() is False and cpu_ext.ensure_built() is False  # no rebuild, no second warning
    fu = torch.randn(12)
    x = torch.randn(1, 3, 9, 10)
    y = filtered_lrelu(x, fu=fu, fd=fu, up=2, down=2, padding=5, impl="fast")
    assert (
        _rel(y, _ref64(x, fu, fu, None, FilteredLReluArgs(2, 2, (5, 5, 5, 5), math.sqrt(2), 0.2, None, False))) <= TOL
    )


def test_compile_error_falls_back(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    bad = tmp_path / "bad.cpp"
    bad.write_text("this is not C++\n")
    monkeypatch.setattr(cpu_ext, "SOURCE", bad)
    with pytest.warns(RuntimeWarning, match="failed"):
        assert cpu_ext.ensure_built() is False


def test_hanging_build_is_killed_at_the_time_limit(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    monkeypatch.setattr(cpu_ext, "_ninja_command", lambda: [sys.executable, "-c", "import time; time.sleep(60)", "--"])
    t = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="longer than"):
        assert cpu_ext.ensure_built(timeout=1.0) is False
    assert time.perf_counter() - t < 15


def test_environment_switch_turns_it_off(monkeypatch, tmp_path):
    _fresh(monkeypatch, tmp_path)
    monkeypatch.setenv(cpu_ext.ENV_SWITCH, "0")
    assert cpu_ext.available() is False
    assert cpu_ext.ensure_built() is False
    assert not list(tmp_path.iterdir())  # nothing built


def test_build_is_cached(built):
    lib = cpu_ext.compile_library(timeout=1)  # cached: no compiler run
    assert lib.exists() and lib.parent == cpu_ext.build_dir()


def test_demo_generator_renders_the_same(built, calls, monkeypatch):
    from engine.models import load_bundle

    G = load_bundle("demo").generator.eval()
    with torch.no_grad():
        z = torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(0))
        ws = G.mapping(z, None, truncation_psi=0.7)
        cpp = G.synthesis(ws)
        assert calls
        monkeypatch.setattr(_fast, "_uses_cpp", lambda x: False)
        py = G.synthesis(ws)
    # Bit for bit on the dev VM (same taps, same order), but BLAS blocking may differ on other CPUs.
    assert _rel(cpp, py) <= TOL


# --- The backward: cpu_ext.filtered_lrelu_backward against autograd through the reference (float64).


def _prepared(x, fu, fd, args):
    """The wrapper's keyword arguments for a call: the taps as kernels._fast prepares them."""
    ch = _fast._chain_plan(x, fu, fd, args)
    assert ch is not None
    return dict(
        hv=ch.hv,
        hh=ch.hh,
        hd=ch.hd,
        hd2=ch.hd2,
        up=args.up,
        down=args.down,
        padding=args.padding,
        size=(ch.hz, ch.wz, ch.ho, ch.wo),
        gain=ch.gain,
        slope=args.slope,
        clamp=args.clamp,
    )


def _cpp_grads(x, fu, fd, b, args, gy, band=0):
    gx = cpu_ext.filtered_lrelu_backward(x, b, gy, band=band, **_prepared(x, fu, fd, args))
    return gx, (None if b is None else gx.sum((0, 2, 3)))


def _ref_grads(x, fu, fd, b, args, gy):
    d = lambda t: None if t is None else t.double()  # noqa: E731
    xd = x.detach().double().requires_grad_(True)
    bd = None if b is None else b.detach().double().requires_grad_(True)
    y = _ref.filtered_lrelu(xd, d(fu), d(fd), bd, args)
    grads = torch.autograd.grad(y, [t for t in (xd, bd) if t is not None], gy.double())
    return grads[0], (None if b is None else grads[1])


def _check_grads(x, fu, fd, b, args, band=0, seed=0, cancelling=False):
    """gx and the bias gradient (gx summed) against the reference. ``cancelling``: the filters are
    random signed taps, whose DC gains can cancel the bias gradient to almost nothing (then no float32
    gx sums it to 1e-5 relative); its error is measured against 1% of the sum of |gx| at least."""
    with torch.no_grad():
        y = _fast._cpp_chain(x, fu, fd, b, args)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
    gx, gb = _cpp_grads(x, fu, fd, b, args, gy, band)
    rx, rb = _ref_grads(x, fu, fd, b, args, gy)
    assert gx.shape == x.shape and gx.dtype == torch.float32
    assert _rel(gx, rx) <= TOL, ("gx", _rel(gx, rx))
    if b is not None:
        scale = float(rb.norm())
        if cancelling:
            scale = max(scale, 1e-2 * float(rx.abs().sum((0, 2, 3)).norm()))
        err = float((gb.double() - rb).norm())
        assert err <= TOL * scale, ("gb", err / max(scale, 1e-30))
    return rx, gy


def _radial(n: int, fs: float = 4.0) -> torch.Tensor:
    from engine.networks.filters import design_lowpass_filter

    return design_lowpass_filter(numtaps=n, cutoff=fs / 4, width=fs / 4, fs=fs, radial=True)


# (N, C, H, W), taps up, up, taps down (2-D: "r<n>"), down, padding, gain, slope, clamp, bias, band, threads
BACKWARD_CASES = [
    ((2, 3, 11, 13), 12, 2, 12, 2, (9, 8, 9, 8), math.sqrt(2), 0.2, None, True, 0, 2),
    ((1, 2, 13, 12), 12, 2, "r12", 2, (11, 10, 11, 10), math.sqrt(2), 0.2, 0.3, True, 3, 1),
    ((1, 3, 17, 15), 24, 4, 12, 2, (-6, -9, -6, -9), math.sqrt(2), 0.2, 0.5, False, 2, 2),
    ((2, 2, 13, 14), 24, 4, "r12", 2, (-2, -5, -2, -5), math.sqrt(2), 0.2, None, True, 0, 2),
    ((1, 3, 31, 29), 12, 2, 12, 2, (-11, -12, -11, -12), math.sqrt(2), 0.2, 256.0, True, 4, 2),
    ((2, 2, 9, 11), 5, 1, 3, 1, (2, 1, 0, 3), -0.5, 1.0, None, False, 0, 2),
    ((1, 4, 8, 13), 8, 2, None, 1, (3, 4, 5, 2), 1.0, 0.2, 0.7, True, 1, 2),
    ((1, 2, 15, 14), None, 1, "r6", 2, (0, 0, 0, 0), 2.0, 0.2, None, True, 0, 1),
    ((3, 1, 7, 9), 8, 4, 5, 1, (7, -2, -3, 6), math.sqrt(2), 1.0, 1.0, True, 0, 2),
    ((1, 2, 14, 17), 7, 1, 6, 2, (4, -1, 2, 5), 0.7, 0.0, 0.4, True, 2, 1),
]


@pytest.mark.parametrize("case", range(len(BACKWARD_CASES)))
def test_backward_matches_reference_autograd(built, case):
    shape, tu, up, td, down, padding, gain, slope, clamp, bias, band, threads = BACKWARD_CASES[case]
    g = torch.Generator().manual_seed(case)
    x = torch.randn(shape, generator=g)
    fu = None if tu is None else torch.rand(tu, generator=g) + 0.1
    if isinstance(td, str):
        fd = _radial(int(td[1:]))
    else:
        fd = None if td is None else torch.rand(td, generator=g) + 0.1
    b = torch.randn(shape[1], generator=g) if bias else None
    args = FilteredLReluArgs(up, down, padding, gain, slope, clamp, False)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rx, gy = _check_grads(x, fu, fd, b, args, band=band, seed=case)
    finally:
        torch.set_num_threads(saved)
    if clamp is not None and clamp < 1:  # the clamp really cuts gradients here
        unclamped, _ = _ref_grads(x, fu, fd, b, args._replace(clamp=None), gy)
        assert _rel(rx, unclamped) > 1e-2


def test_backward_random_cases_match_the_reference(built):
    """The forward's random argument combinations (up 1/2/4, down 1/2, separable and 2-D down filters,
    negative padding, flipped filters, unfolded gains, non-contiguous inputs), random bands."""
    rng = random.Random(11)
    checked = 0
    kinds = set()
    with torch.random.fork_rng():  # _random_case draws from torch's global generator
        torch.manual_seed(11)
        while checked < 60:
            x, fu, fd, b, args = _random_case(rng)
            try:
                if _fast._chain_plan(x, fu, fd, args) is None:
                    continue
            except ValueError:  # empty output
                continue
            _check_grads(x, fu, fd, b, args, band=rng.choice([0, 1, 2, 5]), seed=checked, cancelling=True)
            kinds.add((args.up, args.down, fd is not None and fd.ndim == 2))
            checked += 1
    assert len(kinds) >= 8


@pytest.mark.parametrize("config", ["T", "R"])
def test_backward_on_stylegan3_layers(built, config):
    """The filtered_lrelu layers of small T and R generators (their filters, factors and paddings: up 2
    and 4, radial down filters, the critically sampled last layers), two channels each."""
    from engine import Generator

    extra = dict(conv_kernel=1, use_radial_filters=True) if config == "R" else {}
    torch.manual_seed(0)
    G = Generator(
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=64,
        img_channels=3,
        mapping_kwargs={"num_layers": 1},
        channel_base=64,
        channel_max=4,
        **extra,
    )
    seen = set()
    g = torch.Generator().manual_seed(1)
    for idx, layer in enumerate(G.synthesis.layers()):
        if layer.is_torgb:
            continue
        size = int(layer.in_size[0]) + layer.conv_kernel - 1
        fd = layer.down_filter
        key = (layer.up_factor, layer.down_factor, tuple(layer.padding), size, None if fd is None else fd.ndim)
        if key in seen:
            continue
        seen.add(key)
        # The layer's conv_clamp (256: never cuts) and, every other layer, a clamp that cuts.
        clamp = layer.conv_clamp if idx % 2 == 0 else 0.5
        args = FilteredLReluArgs(
            layer.up_factor, layer.down_factor, tuple(layer.padding), math.sqrt(2), 0.2, clamp, False
        )
        x = torch.randn(1, 2, size, size, generator=g)
        _check_grads(x, layer.up_filter, fd, torch.randn(2, generator=g) * 0.3, args, seed=idx)
    kinds = {(k[0], k[4]) for k in seen}
    assert (4, 2 if config == "R" else 1) in kinds and (2, 1) in kinds


def test_backward_does_not_depend_on_threads_or_bands(built):
    g = torch.Generator().manual_seed(8)
    fu = torch.rand(12, generator=g)
    for fd in (torch.rand(12, generator=g), _radial(12)):
        x = torch.randn(2, 3, 41, 37, generator=g)
        b = torch.randn(3, generator=g)
        args = FilteredLReluArgs(2, 2, (9, 8, 9, 8), math.sqrt(2), 0.2, 0.8, False)
        kw = _prepared(x, fu, fd, args)
        hz, wz, ho, wo = kw["size"]
        gy = torch.randn(2, 3, ho, wo, generator=g)
        saved = torch.get_num_threads()
        out = []
        try:
            for threads, band in ((1, 0), (2, 0), (2, 5), (1, 1)):
                torch.set_num_threads(threads)
                out.append(cpu_ext.filtered_lrelu_backward(x, b, gy, band=band, **kw))
        finally:
            torch.set_num_threads(saved)
        for gx in out[1:]:
            assert torch.equal(gx, out[0])


def test_backward_refuses_bad_arguments(built):
    x = torch.randn(1, 2, 9, 9)
    fu = torch.rand(12)
    args = FilteredLReluArgs(2, 2, (9, 8, 9, 8), math.sqrt(2), 0.2, None, False)
    kw = _prepared(x, fu, fu, args)
    hz, wz, ho, wo = kw["size"]
    with pytest.raises(ValueError, match="shape"):
        cpu_ext.filtered_lrelu_backward(x, None, torch.randn(1, 2, ho + 1, wo), **kw)
    with pytest.raises(ValueError, match="float32"):
        cpu_ext.filtered_lrelu_backward(x.double(), None, torch.randn(1, 2, ho, wo).double(), **kw)
    kw["size"] = (hz, wz, ho + 1, wo)  # not what the down filter gives
    with pytest.raises(ValueError, match="refused"):
        cpu_ext.filtered_lrelu_backward(x, None, torch.randn(1, 2, ho + 1, wo), **kw)


@pytest.mark.parametrize("up", [2, 4])
def test_wide_radial_layers_span_several_tiles(built, up):
    """The 2-D down filter works along x in tiles (1024 upsampled columns): rows wide enough for
    several, with a radial (symmetric) and an asymmetric 2-D filter, match the reference, and the
    forward does not depend on the thread count or the bands."""
    g = torch.Generator().manual_seed(11)
    w = 540 if up == 2 else 270  # over 512 output columns: 2 tiles
    padding = (11, 10, 11, 10) if up == 2 else (-2, -5, -2, -5)
    fu = torch.rand(6 * up, generator=g)
    for fd in (_radial(12), torch.randn(12, 12, generator=g)):
        x = torch.randn(1, 2, 12, w, generator=g)
        b = torch.randn(2, generator=g)
        args = FilteredLReluArgs(up, 2, padding, math.sqrt(2), 0.2, 256.0, False)
        kw = _prepared(x, fu, fd, args)
        ref = _ref64(x, fu, fd, b, args)
        saved = torch.get_num_threads()
        out = []
        try:
            for threads, band in ((2, 0), (1, 0), (2, 1), (1, 3)):
                torch.set_num_threads(threads)
                out.append(cpu_ext.filtered_lrelu(x, b, band=band, **kw))
        finally:
            torch.set_num_threads(saved)
        assert out[0].shape == ref.shape and out[0].shape[-1] > 512
        assert _rel(out[0], ref) <= TOL
        for y in out[1:]:
            assert torch.equal(y, out[0])
