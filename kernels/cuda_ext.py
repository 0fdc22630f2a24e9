"""Build, load and call the fused CUDA filtered_lrelu.

The extension is compiled with ninja through ``torch.utils.cpp_extension`` on first use on a CUDA
device, never at import time. The compiler runs in a child process with a time limit, so a failing
or hanging toolchain (the reference's most reported problem) cannot freeze the caller: on failure
the reference PyTorch path is used and one warning says why and how to retry. The build is cached per
torch/CUDA version and source hash under ``$CHARM_CACHE_DIR/kernels`` (default
``~/.cache/charm-studio/kernels``).

``available(device)`` never blocks: it starts a background build and reports False until it is
ready. ``ensure_built()`` blocks (benchmarks, tests). Forward runs the fused kernel; backward
recomputes through the reference PyTorch math (GPU-friendly, see kernels/_select.py), so gradients
need no extra saved memory.

``OPS`` names the ops this extension fuses; the implementation selector (kernels._select) reads it
and ``available()``, and the dispatching function kernels.filtered_lrelu calls ``filtered_lrelu``
here. This module depends only on the reference math (kernels._ref), never on the dispatchers.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from kernels import _ref
from kernels._ref import FilteredLReluArgs

# The ops with a fused kernel here; on CUDA tensors the others run the reference math.
OPS = frozenset({"filtered_lrelu"})

SOURCES = [Path(__file__).with_name("cuda") / name for name in ("filtered_lrelu.cpp", "filtered_lrelu.cu")]
HEADERS = [Path(__file__).with_name("cuda") / "filtered_lrelu.h"]
BUILD_TIMEOUT_S = float(os.environ.get("CHARM_CUDA_BUILD_TIMEOUT", "900"))

# Process-wide build state: one build per process, shared by all callers.
_lock = threading.Lock()
_state: dict[str, Any] = {"status": "unbuilt", "module": None, "error": None, "thread": None}


def _source_hash() -> str:
    h = hashlib.sha256()
    for src in SOURCES + HEADERS:
        h.update(src.read_bytes())
    h.update(torch.__version__.encode())
    h.update(str(torch.version.cuda).encode())
    h.update(os.environ.get("TORCH_CUDA_ARCH_LIST", "").encode())
    return h.hexdigest()[:16]


def module_name() -> str:
    return f"charm_filtered_lrelu_{_source_hash()}"


def build_dir() -> Path:
    root = Path(os.environ.get("CHARM_CACHE_DIR", Path.home() / ".cache" / "charm-studio"))
    return root / "kernels" / module_name()


def compile_extension(timeout: float = BUILD_TIMEOUT_S, verbose: bool = False) -> Path:
    """Compile in a child process; return the built shared library. Raises RuntimeError on failure."""
    if torch.version.cuda is None:
        raise RuntimeError("this PyTorch build has no CUDA support")
    out = build_dir()
    out.mkdir(parents=True, exist_ok=True)
    lib = out / f"{module_name()}.so"
    if lib.exists():
        return lib
    script = (
        "import sys, torch.utils.cpp_extension as ce;"
        f"ce.load(name={module_name()!r}, sources={[str(s) for s in SOURCES]!r}, build_directory={str(out)!r},"
        f" extra_include_paths={_extra_include_paths()!r},"
        " extra_cuda_cflags=['-O3'], extra_cflags=['-O3'], verbose=bool(int(sys.argv[1])),"
        " is_python_module=False)"
    )
    env = dict(os.environ)
    if "CUDA_HOME" not in env and Path("/usr/local/cuda/bin/nvcc").exists():
        env["CUDA_HOME"] = "/usr/local/cuda"
    # is_python_module=False builds and loads as a plain library: nothing is imported into the child.
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, "1" if verbose else "0"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"building the CUDA kernels took longer than {timeout:.0f} s and was stopped") from e
    if proc.returncode != 0 or not lib.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
        raise RuntimeError("building the CUDA kernels failed: " + " | ".join(tail))
    return lib


def _extra_include_paths() -> list[str]:
    """CUDA headers shipped by the nvidia-* wheels that a pip-installed torch depends on."""
    paths = []
    for entry in sys.path:
        root = Path(entry) / "nvidia"
        if root.is_dir():
            paths += [str(p) for p in sorted(root.glob("*/include")) if p.is_dir()]
    return paths


def _import_library(lib: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(module_name(), str(lib))
    spec = importlib.util.spec_from_file_location(module_name(), str(lib), loader=loader)
    if spec is None:
        raise ImportError(f"cannot load the built CUDA kernels from {lib}")
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def _build_now(timeout: float, verbose: bool) -> None:
    try:
        mod = _import_library(compile_extension(timeout=timeout, verbose=verbose))
        with _lock:
            _state.update(status="ready", module=mod)
    except Exception as e:  # any failure means: use the PyTorch path, say so once
        with _lock:
            _state.update(status="failed", error=str(e))
        warnings.warn(
            f"CUDA filtered_lrelu unavailable, using the PyTorch path instead ({e}). "
            f"Check that nvcc matches torch's CUDA {torch.version.cuda} and that ninja is installed, "
            f"then delete {build_dir()} to retry.",
            RuntimeWarning,
            stacklevel=2,
        )


def ensure_built(timeout: float = BUILD_TIMEOUT_S, verbose: bool = False) -> bool:
    """Build (or wait for the background build) and return whether the extension is usable."""
    with _lock:
        status, thread = _state["status"], _state["thread"]
        if status == "unbuilt":
            _state["status"] = "building"
    if status == "unbuilt":
        _build_now(timeout, verbose)
    elif status == "building" and thread is not None:
        thread.join()
    return _state["status"] == "ready"


def available(device: torch.device | None = None) -> bool:
    """Non-blocking: True once the extension is built; the first call starts a background build."""
    with _lock:
        status = _state["status"]
        if status == "unbuilt":
            t = threading.Thread(target=_build_now, args=(BUILD_TIMEOUT_S, False), daemon=True, name="charm-cuda-build")
            _state.update(status="building", thread=t)
            t.start()
            return False
    return status == "ready"


class _FilteredLReluCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, fu, fd, args: FilteredLReluArgs):
        up, down, padding, gain, slope, clamp, flip_filter = args
        ctx.args = args
        ctx.fu, ctx.fd = fu, fd
        ctx.save_for_backward(x, b)
        hu = _taps(fu, up**2, flip_filter, x.device)
        hd = _taps(fd, 1.0, flip_filter, x.device)
        bias = b.float().contiguous() if b is not None else torch.empty(0, device=x.device)
        px0, px1, py0, py1 = padding
        return _state["module"].filtered_lrelu_forward(
            x.contiguous(),
            bias,
            hu,
            hd,
            up,
            down,
            px0,
            px1,
            py0,
            py1,
            float(gain),
            float(slope),
            -1.0 if clamp is None else float(clamp),
        )

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        with torch.enable_grad():
            xr = x.detach().requires_grad_(ctx.needs_input_grad[0])
            br = b.detach().requires_grad_(ctx.needs_input_grad[1]) if b is not None else None
            y = _ref.filtered_lrelu(xr, ctx.fu, ctx.fd, br, ctx.args)
            inputs = [t for t in (xr, br) if t is not None and t.requires_grad]
            grads = torch.autograd.grad(y, inputs, dy) if inputs else []
        it = iter(grads)
        dx = next(it) if ctx.needs_input_grad[0] else None
        db = next(it) if (b is not None and ctx.needs_input_grad[1]) else None
        return dx, db, None, None, None


def _taps(f: torch.Tensor | None, gain: float, flip_filter: bool, device) -> torch.Tensor:
    if f is None:
        return torch.ones(1, dtype=torch.float32, device=device)
    f = f.to(device=device, dtype=torch.float32) * (gain ** (f.ndim / 2))
    return (f if flip_filter else f.flip(list(range(f.ndim)))).contiguous()


def filtered_lrelu(
    x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None, args: FilteredLReluArgs
) -> torch.Tensor:
    """Same contract as kernels._ref.filtered_lrelu (normalised arguments), x on a CUDA device; the
    reference math while the extension is not ready and for what the kernel does not cover."""
    if _state["status"] != "ready" or x.dtype == torch.float64 or (fu is not None and fu.ndim != 1):
        return _ref.filtered_lrelu(x, fu, fd, b, args)
    return _FilteredLReluCuda.apply(x, b, fu, fd, args)
