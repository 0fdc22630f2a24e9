"""Benchmark: what the real models' kits cost on this machine (random weights of the released sizes).

Plain script, prints a table::

    python3 bench/real_models.py [--threads 2] [--only T256,R1024] [--opt-steps 5]

Rows per configuration: one render (batch 1, no gradient), one latent-optimisation step below 1024 px
(forward, L2 loss, backward, Adam: what the kits without an encoder run a few hundred times to invert),
and the GANSpace pass a bundle build makes (10 000 mapped samples, PCA). For R1024 also the ReStyle-pSp
encoder's forward pass at 256 px (IR-SE50), the part of an inversion iteration that is not a render.
Times are medians of ``--repeat`` runs after a warm-up (the 1024 px rows: one timed run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _networks import release_generator  # noqa: E402 (bench/ is the script's folder)
from _timing import median_times  # noqa: E402


def main() -> int:
    import torch

    from engine.ganspace import ganspace_directions
    from engine.inversion.optimize import optimize_latent

    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="T256,R1024")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--opt-steps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.only.split(","):
        torch.manual_seed(0)
        G = release_generator(name).eval().requires_grad_(False)
        big = G.img_resolution >= 1024
        repeat = 1 if big else args.repeat
        ws = G.mapping.w_avg.view(1, 1, -1).repeat(1, G.num_ws, 1)
        with torch.no_grad():
            wall, _, cpu = median_times(lambda: G.synthesis(ws), repeat, warmup=not big)
        rows.append((name, "render (batch 1)", wall, cpu))
        if not big:  # at 1024 px a backward pass takes minutes and GBs (see the PTI row in RESULTS.md)
            target = torch.zeros(1, 3, G.img_resolution, G.img_resolution)
            steps = args.opt_steps
            t, c = time.perf_counter(), time.process_time()
            optimize_latent(G, target, steps=steps, lr=0.05, lpips_weight=0.0)
            wall, cpu = (time.perf_counter() - t) / steps, (time.process_time() - c) / steps
            rows.append((name, "optimisation step (L2)", wall, cpu))
        t, c = time.perf_counter(), time.process_time()
        ganspace_directions(G)
        rows.append((name, "GANSpace (10 000 samples)", time.perf_counter() - t, time.process_time() - c))
        if name == "R1024":
            from engine.encoders import build_encoder

            E = build_encoder("restyle_psp", 6, 16, "ir_se50", input_size=256).eval().requires_grad_(False)
            x = torch.zeros(1, 6, 256, 256)
            with torch.no_grad():
                wall, _, cpu = median_times(lambda: E(x), args.repeat)
            rows.append((name, "ReStyle-pSp encoder pass (256 px)", wall, cpu))
    print(f"threads {args.threads}, torch {torch.__version__}")
    print("| network | operation | wall s | CPU s |")
    print("|---|---|---:|---:|")
    for name, op, wall, cpu in rows:
        print(f"| {name} | {op} | {wall:.2f} | {cpu:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
