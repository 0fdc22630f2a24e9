"""Build, load and call the fused C++ CPU filtered_lrelu (kernels/cpu/filtered_lrelu.cpp).

The kernel runs the whole chain (bias, polyphase up, leaky ReLU/gain/clamp, down filter computing
only the kept outputs) per plane and band of output rows in one thread's cache-sized buffers,
vectorised (AVX2/FMA where the CPU has them) and parallel with OpenMP. kernels._fast calls it for
float32 CPU tensors once it is built.

**Backward.** ``filtered_lrelu_backward`` takes the forward's arguments plus the output gradient and
returns gx = dL/dx, which is also dL/d(x + b) (the bias gradient is ``gx.sum((0, 2, 3))``): the
transposed down filter applied to gy, times the activation's derivative, then the transposed up
filter, fused the same way per plane and band of gx rows. The upsampled plane before the activation
is recomputed from x and b inside the kernel a row at a time, so nothing at full resolution is stored
or kept between the passes; gx does not depend on the thread count or the bands. On the released
1024 px generators at batch 1 (2 threads, 2-core VM) it takes about 1.6x the forward's time over
all filtered_lrelu layers (T-1024: forward 1.06 s, backward 1.68 s; R-1024: 3.3 s, 5.3 s). A whole
T-1024 synthesis forward + backward went from 26.5 s to 11.6 s with it (the rest is convolutions),
peak memory 6.6 -> 4.4 GB (bench/RESULTS.md, "Gradients").

**Build.** On first use, never at import time: ``available()`` never blocks (its first call starts
a background build and it reports False until the library is ready), ``ensure_built()`` blocks
(benchmarks, tests). The compiler runs under ninja (a generated ``build.ninja``; the ``ninja``
Python package or executable) in a child process group with a time limit (``CHARM_CPU_BUILD_TIMEOUT``,
default 120 s; the build takes about 1 s), killed as a whole when it is exceeded. The library is
cached per source hash, flags, compiler version and OpenMP runtime under ``$CHARM_CACHE_DIR/kernels``
(default ``~/.cache/charm-studio/kernels``, as kernels.cuda_ext). On failure one warning names the
reason and the fix, and the Python fast path is used. ``CHARM_CPU_KERNELS=0`` turns the kernel off;
``CXX`` picks the compiler (default ``g++``, then ``c++``).

**One OpenMP runtime.** torch ships its own ``libgomp.so.1`` (torch/lib). The library is linked with
``-fopenmp`` and an rpath to torch/lib, so its ``libgomp.so.1`` dependency resolves to the copy torch
already loaded (same soname): the process keeps one OpenMP thread pool (``openmp_runtimes()`` lists
the mapped ones; the tests check there is one). Each call uses ``torch.get_num_threads()`` threads.
ctypes releases the GIL during the call, so a GUI thread keeps running.

**Why C++ and not torch.compile** (2-core CPU, 2 threads, torch 2.14; one demo-generator layer,
x [8, 48, 26, 26], up 2, down 2, 12 taps): ``torch.compile`` of the reference chain took 14.6 s
to compile (cold cache, for that one shape; a generator has a dozen shapes, and each new batch
size compiles again unless dynamic shapes are used) and then ran in 5.0 ms, no faster than the
Python banded chain (4.6 ms): inductor keeps the zero-inserted upsampled plane and the
convolutions as they are. This kernel builds once, in about 1 s (g++ 12, -O3), for every shape and
runs that layer in 2.9 ms; on the 1024 px layers, where the Python chain's bookkeeping dominates,
it is several times faster (T-1024 synthesis 5.1 s -> 3.1 s, R-1024 10.9 s -> 6.0 s, batch 1).

Imports: nothing from kernels (plain ctypes over a raw-pointer C entry point).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

SOURCE = Path(__file__).with_name("cpu") / "filtered_lrelu.cpp"
LIB_STEM = "charm_cpu_filtered_lrelu"
ENV_SWITCH = "CHARM_CPU_KERNELS"
BUILD_TIMEOUT_S = float(os.environ.get("CHARM_CPU_BUILD_TIMEOUT", "120"))
BASE_FLAGS = ["-O3", "-fopenmp", "-fPIC", "-shared", "-std=c++17"]

# Process-wide build state: one build per process, shared by all callers.
_lock = threading.Lock()
_state: dict[str, Any] = {"status": "unbuilt", "lib": None, "error": None, "thread": None, "path": None}


def enabled() -> bool:
    """False when the environment switch turns the kernel off."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


def compiler() -> str:
    cxx = os.environ.get("CXX")
    if cxx:
        return cxx
    return shutil.which("g++") or shutil.which("c++") or "g++"


def cpu_flags() -> list[str]:
    """-mavx2 -mfma when /proc/cpuinfo lists both (else the compiler's baseline, SSE2 on x86-64)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    m = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    flags = set(m.group(1).split()) if m else set()
    return ["-mavx2", "-mfma"] if {"avx2", "fma"} <= flags else []


def torch_lib_dir() -> Path:
    return Path(torch.__file__).parent / "lib"


def flags() -> list[str]:
    """Compile and link flags: the base flags, the CPU's vector extensions, and an rpath to torch's lib
    folder so that the library's libgomp.so.1 is torch's copy when torch ships one."""
    out = BASE_FLAGS + cpu_flags()
    if (torch_lib_dir() / "libgomp.so.1").exists():
        out += [f"-Wl,-rpath,{torch_lib_dir()}", f"-L{torch_lib_dir()}"]
    return out


def _compiler_version(cxx: str) -> str:
    try:
        proc = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"the C++ compiler {cxx!r} cannot be run ({e})") from e
    if proc.returncode != 0:
        raise RuntimeError(f"the C++ compiler {cxx!r} cannot be run ({proc.stderr.strip()[:200]})")
    return proc.stdout.splitlines()[0] if proc.stdout else ""


def cache_root() -> Path:
    return Path(os.environ.get("CHARM_CACHE_DIR", Path.home() / ".cache" / "charm-studio")) / "kernels"


def build_dir(cxx: str | None = None) -> Path:
    """The cache folder of this source, flags, compiler version and OpenMP runtime."""
    cxx = cxx or compiler()
    h = hashlib.sha256(SOURCE.read_bytes())
    h.update(" ".join(flags()).encode())
    h.update(_compiler_version(cxx).encode())
    h.update(cxx.encode())
    return cache_root() / f"{LIB_STEM}_{h.hexdigest()[:16]}"


def _ninja_command() -> list[str]:
    exe = shutil.which("ninja")
    if exe:
        return [exe]
    return [sys.executable, "-m", "ninja"]


def _run_group(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; kill the whole group (ninja and the compiler) on timeout."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise RuntimeError(f"building the C++ CPU kernel took longer than {timeout:.0f} s and was stopped") from e
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def compile_library(timeout: float = BUILD_TIMEOUT_S) -> Path:
    """Compile (ninja, child process group, time limit) unless cached; return the shared library.
    Raises RuntimeError on failure."""
    cxx = compiler()
    out = build_dir(cxx)
    lib = out / f"{LIB_STEM}.so"
    if lib.exists():
        return lib
    out.mkdir(parents=True, exist_ok=True)
    # A per-process output name, renamed into place: concurrent builds never load a partial file.
    tmp = f"{LIB_STEM}.{os.getpid()}.{threading.get_ident()}.so"
    esc = [f.replace("$", "$$").replace(" ", "$ ") for f in flags()]
    (out / "build.ninja").write_text(
        "ninja_required_version = 1.3\n"
        f"cxx = {cxx}\n"
        f"flags = {' '.join(esc)}\n"
        "rule link\n"
        "  command = $cxx $flags $in -o $out\n"
        "  description = C++ $out\n"
        f"build {tmp}: link {str(SOURCE).replace(' ', '$ ')}\n"
    )
    try:
        proc = _run_group(_ninja_command() + ["-f", "build.ninja", tmp], out, timeout)
    except OSError as e:
        raise RuntimeError(f"ninja cannot be run ({e})") from e
    built = out / tmp
    if proc.returncode != 0 or not built.exists():
        tail = (proc.stdout or "").strip().splitlines()[-6:]
        built.unlink(missing_ok=True)
        raise RuntimeError("building the C++ CPU kernel failed: " + " | ".join(tail))
    os.replace(built, lib)
    return lib


def _load(lib: Path) -> ctypes.CDLL:
    dll = ctypes.CDLL(str(lib))
    p, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    # After the data pointers (x, y or x, gy, gx): the same arguments in both directions.
    rest: list[Any] = [p, i, i, i, i, p, p, i, i, i, i, p, i, p, i, i, i, i, i, i, i, f, f, f, i, i]
    fwd = dll.charm_filtered_lrelu_f32
    fwd.argtypes = [p, p, *rest]
    fwd.restype = ctypes.c_int
    bwd = dll.charm_filtered_lrelu_backward_f32
    bwd.argtypes = [p, p, p, *rest]
    bwd.restype = ctypes.c_int
    return dll


def openmp_runtimes() -> list[str]:
    """The OpenMP runtime files mapped into this process (one expected)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    names = {line.split()[-1] for line in maps.splitlines() if re.search(r"lib(g|i)?omp[^/]*\.so", line)}
    return sorted(os.path.realpath(n) for n in names)


def _build_now(timeout: float) -> None:
    try:
        if not enabled():
            raise RuntimeError(f"turned off by {ENV_SWITCH}={os.environ.get(ENV_SWITCH)}")
        path = compile_library(timeout=timeout)
        dll = _load(path)
        with _lock:
            _state.update(status="ready", lib=dll, path=path)
    except Exception as e:  # any failure means: use the Python fast path, say so once
        with _lock:
            _state.update(status="failed", error=str(e))
        if enabled():
            warnings.warn(
                f"C++ CPU filtered_lrelu unavailable, using the PyTorch fast path instead ({e}). "
                "Install a C++17 compiler with OpenMP (g++; or set CXX) and ninja (pip install ninja), "
                f"then delete {cache_root()} to retry; {ENV_SWITCH}=0 turns the kernel off.",
                RuntimeWarning,
                stacklevel=2,
            )


def ensure_built(timeout: float = BUILD_TIMEOUT_S) -> bool:
    """Build (or wait for the background build) and return whether the kernel is usable."""
    with _lock:
        status, thread = _state["status"], _state["thread"]
        if status == "unbuilt":
            _state["status"] = "building"
    if status == "unbuilt":
        _build_now(timeout)
    elif status == "building" and thread is not None:
        thread.join()
    return _state["status"] == "ready"


def available() -> bool:
    """Non-blocking: True once the kernel is built; the first call starts a background build."""
    if _state["status"] == "ready":
        return True
    with _lock:
        status = _state["status"]
        if status == "unbuilt":
            if not enabled():
                _state.update(status="failed", error=f"turned off by {ENV_SWITCH}")
                return False
            t = threading.Thread(target=_build_now, args=(BUILD_TIMEOUT_S,), daemon=True, name="charm-cpu-build")
            _state.update(status="building", thread=t)
            t.start()
            return False
    return status == "ready"


def _floats(values: Any) -> Any:
    flat = [float(v) for v in values]
    return (ctypes.c_float * len(flat))(*flat)


def _library() -> ctypes.CDLL:
    dll = _state["lib"]
    if dll is None:
        raise RuntimeError("the C++ CPU kernel is not built (call ensure_built() first)")
    return dll


def _chain_args(
    x: torch.Tensor,
    b: torch.Tensor | None,
    hv: tuple[float, ...] | None,
    hh: tuple[float, ...] | None,
    hd: tuple[float, ...] | None,
    hd2: tuple[tuple[float, ...], ...] | None,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    size: tuple[int, int, int, int],
    gain: float,
    slope: float,
    clamp: float | None,
    band: int,
) -> tuple[list[Any], torch.Tensor | None]:
    """The entry points' arguments after their data pointers (both directions take the same), and the
    bias tensor they point into (keep it alive during the call)."""
    n, c, h, w = x.shape
    hz, wz, ho, wo = size
    if hv is None or hh is None:
        if up != 1 or any(padding):
            raise ValueError("filtered_lrelu: upsampling or padding needs up taps")
        hv = hh = (1.0,)
    if hd is None and hd2 is None:
        if down != 1:
            raise ValueError("filtered_lrelu: downsampling needs down taps")
        hd = (1.0,)
    bias = None if b is None else b.detach().to(torch.float32).contiguous()
    px0, _px1, py0, _py1 = padding
    td2y = td2x = 0
    hd2_arr = None
    if hd2 is not None:
        td2y, td2x = len(hd2), len(hd2[0])
        hd2_arr = _floats(v for row in hd2 for v in row)
    hd_arr = None if hd is None else _floats(hd)
    args = [
        None if bias is None else bias.data_ptr(),
        n * c,
        c,
        h,
        w,
        _floats(hv),
        _floats(hh),
        len(hv),
        up,
        px0,
        py0,
        hd_arr,
        0 if hd is None else len(hd),
        hd2_arr,
        td2y,
        td2x,
        down,
        hz,
        wz,
        ho,
        wo,
        float(gain),
        float(slope),
        -1.0 if clamp is None or clamp < 0 else float(clamp),
        int(band),
        torch.get_num_threads(),
    ]
    return args, bias


def filtered_lrelu(
    x: torch.Tensor,
    b: torch.Tensor | None,
    hv: tuple[float, ...] | None,
    hh: tuple[float, ...] | None,
    hd: tuple[float, ...] | None,
    hd2: tuple[tuple[float, ...], ...] | None,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    size: tuple[int, int, int, int],
    gain: float,
    slope: float,
    clamp: float | None,
    band: int = 0,
) -> torch.Tensor:
    """The chain on a float32 CPU tensor x [N,C,H,W] with prepared taps (correlation order, gains
    folded in as kernels._fast's ``_Chain``): ``hv``/``hh`` vertical/horizontal up taps (None: no
    upsampling filter, then ``up`` must be 1 and ``padding`` zero), ``hd`` separable or ``hd2`` 2-D
    down taps (both None: no down filter, ``down`` must be 1), ``gain`` applied after the leaky ReLU,
    ``size`` = (hz, wz, ho, wo) as the caller computed them. ``band``: output rows per work item (0:
    automatic). Requires ``available()``."""
    dll = _library()
    n, c, _h, _w = x.shape
    _hz, _wz, ho, wo = size
    x = x.contiguous()
    y = x.new_empty((n, c, ho, wo))
    args, _bias = _chain_args(x, b, hv, hh, hd, hd2, up, down, padding, size, gain, slope, clamp, band)
    rc = dll.charm_filtered_lrelu_f32(x.data_ptr(), y.data_ptr(), *args)
    if rc != 0:
        raise ValueError(f"the C++ CPU filtered_lrelu refused its arguments (code {rc})")
    return y


def filtered_lrelu_backward(
    x: torch.Tensor,
    b: torch.Tensor | None,
    gy: torch.Tensor,
    hv: tuple[float, ...] | None,
    hh: tuple[float, ...] | None,
    hd: tuple[float, ...] | None,
    hd2: tuple[tuple[float, ...], ...] | None,
    up: int,
    down: int,
    padding: tuple[int, int, int, int],
    size: tuple[int, int, int, int],
    gain: float,
    slope: float,
    clamp: float | None,
    band: int = 0,
) -> torch.Tensor:
    """The gradient of :func:`filtered_lrelu` (same arguments) with respect to ``x`` for the output
    gradient ``gy`` [N,C,ho,wo]: gx [N,C,H,W], float32. It is also the gradient with respect to
    ``x + b``, so the bias gradient is ``gx.sum((0, 2, 3))``. The upsampled plane is recomputed from
    ``x`` and ``b`` inside the kernel, a band of rows at a time (nothing at full resolution is kept).
    ``band``: gx rows per work item (0: automatic); the result does not depend on it nor on the thread
    count. ``size``'s ho, wo must be what the down filter gives (as kernels._fast's ``_chain_plan``
    computes them). Requires ``available()``."""
    dll = _library()
    n, c, _h, _w = x.shape
    _hz, _wz, ho, wo = size
    if x.dtype != torch.float32 or gy.dtype != torch.float32 or x.device.type != "cpu" or gy.device.type != "cpu":
        raise ValueError("filtered_lrelu_backward: x and gy must be float32 CPU tensors")
    if tuple(gy.shape) != (n, c, ho, wo):
        raise ValueError(f"filtered_lrelu_backward: gy has shape {tuple(gy.shape)}, expected {(n, c, ho, wo)}")
    x = x.detach().contiguous()
    gy = gy.detach().contiguous()
    gx = torch.empty_like(x)
    args, _bias = _chain_args(x, b, hv, hh, hd, hd2, up, down, padding, size, gain, slope, clamp, band)
    rc = dll.charm_filtered_lrelu_backward_f32(x.data_ptr(), gy.data_ptr(), gx.data_ptr(), *args)
    if rc != 0:
        raise ValueError(f"the C++ CPU filtered_lrelu backward refused its arguments (code {rc})")
    return gx
