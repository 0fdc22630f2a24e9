"""Benchmark: our StyleGAN3 synthesis against NVIDIA's release code in the same run, same weights and
latents (the speed issue's side-by-side).

The release code is never part of this repository. Copy NVIDIA's repository (github.com/NVlabs/stylegan3;
only ``dnnlib/``, ``torch_utils/`` and ``training/`` are imported) into the git-ignored folder
``third_party/stylegan3`` (or pass ``--release-dir``), e.g.::

    git clone --depth 1 https://github.com/NVlabs/stylegan3 third_party/stylegan3

Then, plain script, prints a table::

    python3 bench/vs_release.py --device cuda --configs T1024,R1024 --batches 1,8 --precisions fp32,fp16
    python3 bench/vs_release.py --device cpu --configs T256 --batches 1 --precisions fp32 --repeat 1

Each config's generator is built once with random weights (fixed seed; ``bench/_networks.py``), and the
release's ``Generator`` of the same configuration loads its ``state_dict`` (the names are the same).
Both render the same ``ws`` (mapped once by ours). Times are medians of ``--repeat`` synthesis passes
after a warm-up pass (CUDA: synchronised). ``fp16`` runs both with the release's fp16 layers
(``num_fp16_res``; on CUDA only), ``fp32`` with ``force_fp32``. The table says which kernels each side
really used: the release builds its CUDA plugins on first use and silently falls back to its reference
ops when that fails, and ours falls back to the PyTorch path while its extension is unavailable; a row
that compares against a fallback is marked so. Parity: relative L2 of our image against the release's.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.openmp import configure_openmp  # noqa: E402

configure_openmp()

DEFAULT_RELEASE_DIR = ROOT / "third_party" / "stylegan3"


def _shim_old_setuptools() -> None:
    """The release code imports ``pkg_resources.parse_version`` and ``distutils.util.strtobool``, which
    newer Pythons and setuptools no longer ship; stand-ins for those two names only."""
    try:
        importlib.import_module("pkg_resources")
    except ImportError:
        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)  # type: ignore[assignment]
    try:
        importlib.import_module("distutils.util")
    except ImportError:

        def strtobool(v: str) -> int:
            v = v.lower()
            if v in ("y", "yes", "t", "true", "on", "1"):
                return 1
            if v in ("n", "no", "f", "false", "off", "0"):
                return 0
            raise ValueError(f"invalid truth value {v!r}")

        util = types.ModuleType("distutils.util")
        util.strtobool = strtobool  # type: ignore[attr-defined]
        pkg = types.ModuleType("distutils")
        pkg.util = util  # type: ignore[attr-defined]
        sys.modules.setdefault("distutils", pkg)
        sys.modules["distutils.util"] = util


def load_release(release_dir: Path) -> types.ModuleType:
    """The release's ``training.networks_stylegan3`` module, imported from ``release_dir``."""
    if not (release_dir / "training" / "networks_stylegan3.py").is_file():
        raise SystemExit(
            f"no release code in {release_dir}: clone github.com/NVlabs/stylegan3 there "
            "(it is git-ignored; never commit it) or pass --release-dir"
        )
    _shim_old_setuptools()
    sys.path.insert(0, str(release_dir))
    return importlib.import_module("training.networks_stylegan3")


def release_kernels_used() -> str:
    """Which of the release's CUDA plugins are loaded (after a forward pass)."""
    names = []
    for op in ("filtered_lrelu", "bias_act"):
        mod = sys.modules.get(f"torch_utils.ops.{op}")
        if mod is not None and getattr(mod, "_plugin", None) is not None:
            names.append(op)
    return "+".join(names) if names else "reference ops"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--configs", default="T1024,R1024")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--precisions", default="fp32,fp16", help="fp32 (force_fp32) and/or fp16 (release's fp16 layers)")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (the CPU smoke run)")
    ap.add_argument("--release-dir", type=Path, default=DEFAULT_RELEASE_DIR)
    args = ap.parse_args()

    import torch
    from _networks import RELEASE_CONFIGS, release_generator
    from _timing import median_times

    from kernels import _select

    release = load_release(args.release_dir)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        from kernels import cuda_ext

        ours_built = cuda_ext.ensure_built()
        where = torch.cuda.get_device_name(device)
    else:
        from kernels import cpu_ext

        ours_built = cpu_ext.ensure_built()
        where = platform.processor() or platform.machine()
    torch.backends.cudnn.benchmark = True

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    print(f"torch {torch.__version__}, {where}, release code {args.release_dir}")
    path = _select.select("filtered_lrelu", None, torch.zeros(1, device=device))
    print(f"our fused kernels built: {ours_built}; our filtered_lrelu path: {path}")
    print("| config | batch | layers | ours ms | release ms | release / ours | rel. L2 | release kernels |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for cfg in args.configs.split(","):
        res, extra = RELEASE_CONFIGS[cfg]
        torch.manual_seed(0)
        ours = release_generator(cfg).eval().requires_grad_(False).to(device)
        theirs = release.Generator(
            z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3, mapping_kwargs={"num_layers": 2}, **extra
        )
        theirs.load_state_dict(ours.state_dict())
        theirs = theirs.eval().requires_grad_(False).to(device)
        for batch in (int(b) for b in args.batches.split(",")):
            g = torch.Generator().manual_seed(batch)
            with torch.no_grad():
                ws = ours.mapping(torch.randn(batch, 512, generator=g).to(device), None, truncation_psi=0.7)
            for prec in args.precisions.split(","):
                if prec == "fp16" and not cuda:
                    continue
                fp32 = prec == "fp32"
                with torch.no_grad():
                    t_ours = median_times(lambda: (ours.synthesis(ws, force_fp32=fp32), sync()), args.repeat)[0]
                    t_theirs = median_times(lambda: (theirs.synthesis(ws, force_fp32=fp32), sync()), args.repeat)[0]
                    a = ours.synthesis(ws, force_fp32=fp32).double()
                    b = theirs.synthesis(ws, force_fp32=fp32).double()
                rel = float((a - b).norm() / b.norm())
                print(
                    f"| {cfg} | {batch} | {prec} | {t_ours * 1e3:.1f} | {t_theirs * 1e3:.1f} | "
                    f"{t_theirs / t_ours:.2f} | {rel:.1e} | {release_kernels_used()} |",
                    flush=True,
                )
        ours = theirs = None
        if cuda:
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
