"""The CUDA extension: it compiles here (no GPU needed), a failing or hanging build falls back to the
PyTorch path with one warning, and, on a machine with a GPU, it matches the reference path."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from kernels import cuda_ext, filtered_lrelu

needs_toolchain = pytest.mark.skipif(
    shutil.which("nvcc") is None or torch.version.cuda is None,
    reason="needs nvcc and a CUDA build of torch to compile the extension",
)
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to run the extension")


@pytest.fixture
def fresh_state(monkeypatch, tmp_path):
    monkeypatch.setenv("CHARM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cuda_ext, "_state", {"status": "unbuilt", "module": None, "error": None, "thread": None})
    return tmp_path


@needs_toolchain
def test_extension_compiles(fresh_state, monkeypatch):
    if not torch.cuda.is_available():
        monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")  # no device to ask: build for Hopper
    lib = cuda_ext.compile_extension(timeout=900)
    assert lib.exists() and lib.parent == cuda_ext.build_dir()
    mod = cuda_ext._import_library(lib)
    assert callable(mod.filtered_lrelu_forward)
    # A second request reuses the cached build.
    assert cuda_ext.compile_extension(timeout=1) == lib


def test_hanging_build_falls_back_with_one_warning(fresh_state, monkeypatch):
    if torch.version.cuda is None:
        pytest.skip("this torch has no CUDA support; compile_extension refuses before building")
    monkeypatch.setattr(cuda_ext, "BUILD_TIMEOUT_S", 0.01)
    with pytest.warns(RuntimeWarning, match="CUDA filtered_lrelu unavailable"):
        ok = cuda_ext.ensure_built(timeout=0.01)
    assert not ok and cuda_ext._state["status"] == "failed"
    assert "longer than" in cuda_ext._state["error"]
    # Later calls neither rebuild nor warn again.
    assert cuda_ext.available() is False
    assert cuda_ext.ensure_built() is False


def test_cpu_tensors_never_use_cuda_path():
    x = torch.randn(1, 2, 8, 8)
    y = filtered_lrelu(x, b=torch.zeros(2), impl="cuda")  # quietly the fast path on CPU
    torch.testing.assert_close(y, filtered_lrelu(x, b=torch.zeros(2), impl="ref"))


@needs_gpu
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-3), (torch.float16, 1e-2)])
@pytest.mark.parametrize("up,down,radial", [(2, 2, False), (4, 2, False), (2, 2, True), (1, 1, False)])
def test_cuda_matches_reference(dtype, tol, up, down, radial):
    from engine.networks.filters import design_lowpass_filter

    assert cuda_ext.ensure_built()
    fu = design_lowpass_filter(6 * up, 4.0, 6.0, 16 * up) if up > 1 else None
    fd = design_lowpass_filter(6 * down, 4.0, 6.0, 16 * up, radial=radial) if down > 1 else None
    x = torch.randn(2, 16, 40, 40, device="cuda")
    b = torch.randn(16, device="cuda")
    kw = dict(
        fu=None if fu is None else fu.cuda(),
        fd=None if fd is None else fd.cuda(),
        up=up,
        down=down,
        padding=[-3, -4, -3, -4],
        gain=math.sqrt(2) if up > 1 else 1,
        slope=0.2 if up > 1 else 1,
        clamp=256,
    )
    ref = filtered_lrelu(x, b=b, impl="ref", **kw)
    out = filtered_lrelu(x.to(dtype), b=b, impl="cuda", **kw).float()
    assert float((out - ref).norm() / ref.norm()) <= tol
    xg = x.clone().requires_grad_(True)
    filtered_lrelu(xg, b=b, impl="cuda", **kw).square().sum().backward()
    xr = x.clone().requires_grad_(True)
    filtered_lrelu(xr, b=b, impl="ref", **kw).square().sum().backward()
    assert float((xg.grad - xr.grad).norm() / xr.grad.norm()) <= 1e-3
