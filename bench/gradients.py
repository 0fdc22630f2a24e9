"""Benchmark: one gradient step of a released-size StyleGAN3 synthesis network on the CPU (what a PTI or
latent-optimisation step costs, without the loss network): forward with gradients, a scalar loss,
backward into the synthesis weights.

Plain script, prints a table::

    python3 bench/gradients.py [--configs T256,T1024] [--threads 2] [--repeat 2] [--variants cpp,python]

Variants: ``cpp`` = the fast path as shipped (the fused C++ filtered_lrelu forward and backward once
built); ``python`` = the same with ``CHARM_CPU_KERNELS=0`` (the PyTorch polyphase chain under autograd,
big layers recomputed in slices). Each case runs in its own child process (peak RSS is its own); times
are medians of ``--repeat`` steps after one warm-up step. Weights are random (fixed seed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.openmp import configure_openmp  # noqa: E402

configure_openmp()

VARIANTS = {"cpp": {}, "python": {"CHARM_CPU_KERNELS": "0"}}


def run_case(cfg: str, repeat: int, threads: int) -> dict:
    import torch
    from _networks import release_generator

    from kernels import cpu_ext

    torch.set_num_threads(threads)
    built = cpu_ext.ensure_built()
    torch.manual_seed(0)
    G = release_generator(cfg).eval()
    G.mapping.requires_grad_(False)
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, 512, generator=torch.Generator().manual_seed(1)), None, truncation_psi=0.7)
    target = torch.randn(1, 3, G.img_resolution, G.img_resolution, generator=torch.Generator().manual_seed(2))
    fwd, bwd = [], []
    for i in range(repeat + 1):
        G.zero_grad(set_to_none=True)
        t = time.perf_counter()
        loss = (G.synthesis(ws, impl="fast") - target).square().mean()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if i:
            fwd.append(t1 - t)
            bwd.append(t2 - t1)
    return {
        "forward_s": statistics.median(fwd),
        "backward_s": statistics.median(bwd),
        "step_s": statistics.median(a + b for a, b in zip(fwd, bwd)),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "cpu_kernel": built,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="T256,T1024")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--variants", default="cpp,python", help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--_case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._case:
        print(json.dumps(run_case(args._case, args.repeat, args.threads)))
        return 0
    print(
        f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, {args.threads} threads, "
        f"batch 1, median of {args.repeat} steps after a warm-up"
    )
    print("| config | variant | forward s | backward s | step s | peak RSS GB |")
    print("|---|---|---:|---:|---:|---:|")
    for cfg in args.configs.split(","):
        for variant in args.variants.split(","):
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), **VARIANTS[variant])
            cmd = [sys.executable, __file__, "--threads", str(args.threads), "--repeat", str(args.repeat)]
            proc = subprocess.run([*cmd, "--_case", cfg], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                print(f"| {cfg} | {variant} | failed: {proc.stderr.strip().splitlines()[-1][:100]} | | | |")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            name = variant if variant != "cpp" or r["cpu_kernel"] else "cpp (NOT BUILT: python chain ran)"
            print(
                f"| {cfg} | {name} | {r['forward_s']:.2f} | {r['backward_s']:.2f} | **{r['step_s']:.2f}** | "
                f"{r['peak_rss_gb']:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
