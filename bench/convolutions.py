"""Benchmark: the generator's convolutions on CPU, oneDNN's direct convolution (``F.conv2d``) against
the algorithm ``engine.networks.stylegan3.conv2d`` picks for each shape (matrix product for 1x1,
NNPACK Winograd for big 3x3 layers, oneDNN for the rest).

Plain script, prints a table per config::

    python3 bench/convolutions.py [--configs T1024,R1024] [--batch 1] [--threads 2]

Shapes are recorded from one synthesis pass of the released configuration (random weights), then
each layer's convolution is timed alone (median of a few runs), with its relative error against a
float64 convolution.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _networks import RELEASE_CONFIGS, release_generator  # noqa: E402 (bench/ is the script's folder)
from _timing import median_times  # noqa: E402


def layer_shapes(cfg: str, batch: int) -> list[tuple[tuple[int, ...], tuple[int, ...], int]]:
    import torch

    import engine.networks.stylegan3 as sg

    torch.manual_seed(0)
    G = release_generator(cfg).eval()
    seen: list[tuple[tuple[int, ...], tuple[int, ...], int]] = []
    real = sg.conv2d

    def record(x, w, padding):
        seen.append((tuple(x.shape), tuple(w.shape), padding))
        return real(x, w, padding)

    sg.conv2d = record
    try:
        with torch.no_grad():
            G.synthesis(G.mapping(torch.randn(batch, G.z_dim), None), force_fp32=True)
    finally:
        sg.conv2d = real
    return seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=",".join(RELEASE_CONFIGS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from engine.networks.stylegan3 import conv2d

    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, {args.threads} threads, batch {args.batch}, "
        f"load avg {os.getloadavg()[0]:.1f}"
    )
    for cfg in args.configs.split(","):
        print(f"\n{cfg}")
        print("| input | weight | oneDNN (ms) | chosen (ms) | speed-up | rel. error oneDNN | rel. error chosen |")
        print("|---|---|---:|---:|---:|---:|---:|")
        total_ref = total_new = 0.0
        for xs, ws, pad in layer_shapes(cfg, args.batch):
            x, w = torch.randn(xs), torch.randn(ws) / (ws[1] * ws[2] * ws[3]) ** 0.5
            runs = 3 if x.numel() * ws[0] > 5e7 else 10
            t_ref = median_times(lambda: F.conv2d(x, w, padding=pad), runs)[0]
            t_new = median_times(lambda: conv2d(x, w, pad), runs)[0]
            exact = F.conv2d(x.double(), w.double(), padding=pad)

            def err(y):
                return float((y.double() - exact).norm() / exact.norm())

            e_ref, e_new = err(F.conv2d(x, w, padding=pad)), err(conv2d(x, w, pad))
            total_ref += t_ref
            total_new += t_new
            print(
                f"| {list(xs)} | {list(ws)} | {t_ref * 1e3:.1f} | {t_new * 1e3:.1f} | {t_ref / t_new:.2f}x "
                f"| {e_ref:.1e} | {e_new:.1e} |"
            )
        speed = total_ref / total_new
        print(f"| **all layers** | | {total_ref * 1e3:.0f} | {total_new * 1e3:.0f} | {speed:.2f}x | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
