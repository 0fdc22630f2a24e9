"""The fused C++ CPU filtered_lrelu (kernels/cpu_ext.py, kernels/cpu/filtered_lrelu.cpp): it builds
here, matches the reference on every golden generator layer and on random argument combinations,
its gradients are the Python chain's, a failing or hanging build falls back to the fast path with
one warning, and the demo generator renders the same with it."""

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


def test_small_layers_with_gradients_keep_autograd_through_the_python_chain(built, calls, monkeypatch):
    """Training and PTI steps: a small layer recording gradients runs the Python chain under autograd
    (a C++ forward plus a recomputed forward was slower per step), a big one the C++ forward."""
    monkeypatch.setattr(_fast, "RECOMPUTE_ELEMENTS", 100_000)  # "big" at a test's size
    g = torch.Generator().manual_seed(5)
    fu = torch.randn(12, generator=g)
    x = torch.randn(2, 4, 14, 15, generator=g, requires_grad=True)
    filtered_lrelu(x, fu=fu, fd=fu, up=2, down=2, padding=[7, 4, 6, 5], impl="fast")
    assert not calls
    big = torch.randn(1, 2, 300, 300, generator=g, requires_grad=True)
    assert _fast._upsampled_elements(big, 2, (7, 4, 6, 5)) > _fast.RECOMPUTE_ELEMENTS
    filtered_lrelu(big, fu=fu, fd=fu, up=2, down=2, padding=[7, 4, 6, 5], impl="fast")
    assert len(calls) == 1


@pytest.mark.parametrize("radial", [False, True])
def test_gradients_with_the_kernel_match_the_reference(built, calls, radial, monkeypatch):
    monkeypatch.setattr(_fast, "RECOMPUTE_ELEMENTS", 0)  # every layer takes the C++ forward + recompute
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
    assert calls  # the forward with gradients ran the C++ kernel
    for a, r in zip(grads["fast"], grads["ref"]):
        assert _rel(a, r) <= 1e-4


def test_second_order_gradients_with_the_kernel(built, calls, monkeypatch):
    """create_graph through the kernel's Function (e.g. a path-length penalty): the gradient of a
    gradient norm with respect to the backpropagated weights, against the reference."""
    monkeypatch.setattr(_fast, "RECOMPUTE_ELEMENTS", 0)
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
