"""Benchmark: CPU time per image of ReStyle inversion (1 and 3 iterations) and per PTI step.

Plain script, prints a table::

    python3 bench/inversion.py [--threads 2] [--repeat 3] [--only demo|ffhq] [--ffhq-pti [--pti-only]]

Networks have random weights (timing only):

- ``demo-64``: the development bundle's generator (64 px, w_dim 64, 6 layers, channel_max 32) with a
  ReStyle-e4e ``ir_se_small`` encoder at 64 px input, as ``engine.models.make_random_bundle`` builds them;
- ``demo-128``: 128 px, 8 layers, channel_max 64, ``ir_se_small`` at 128 px input;
- ``ffhq-1024``: the released configuration, StyleGAN3-R 1024 px (z 512, w 512, channel_base 65536,
  channel_max 1024, conv_kernel 1, radial filters) with the IR-SE50 ReStyle-pSp encoder at 256 px.
  Its forward takes tens of seconds on CPU, so it is timed once (``--repeat`` does not apply). Its PTI
  step is only timed with ``--ffhq-pti`` (minutes per step on a CPU); PTI checkpoints the synthesis
  layers from 512 px up, which keeps the 1024 px backward pass within a laptop's memory (without it,
  more than 12 GB of activations).

Rows per network: the average image (rendered once per inverter and cached), ``invert`` of one image
with 1 and 3 iterations (average image already cached), and one PTI step (forward, L2 + LPIPS or its L2
fallback, backward, Adam update) at batch 1, timed between progress callbacks after a first warm-up
step (FFHQ: one timed step). Other times are medians over ``--repeat`` runs after a warm-up;
the CPU column is this process's CPU time (it exceeds wall time when several threads work, and shows
the work itself when other jobs stretch the wall time).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _networks import release_generator  # noqa: E402 (bench/ is the script's folder)
from _timing import median_times  # noqa: E402


def _time(fn: Callable[[], object], repeat: int, warmup: bool = True) -> tuple[float, float]:
    """(median wall s, median process CPU s) over ``repeat`` runs."""
    wall, _, cpu = median_times(fn, repeat, warmup)
    return wall, cpu


# The development bundle's architecture (engine.models.make_random_bundle) at two sizes: the arguments
# both share, then per network its size, channel counts and layer count (the encoder sees the full size).
DEMO_COMMON = dict(
    z_dim=64, c_dim=0, w_dim=64, img_channels=3, num_critical=2, margin_size=4, output_scale=1.0, num_fp16_res=0
)
DEMO_NETWORKS = {
    "demo-64": dict(img_resolution=64, channel_base=1024, channel_max=32, num_layers=6),
    "demo-128": dict(img_resolution=128, channel_base=2048, channel_max=64, num_layers=8),
}


def _networks(name: str):
    import torch

    from engine import Generator
    from engine.encoders import build_encoder

    torch.manual_seed(0)
    if name in DEMO_NETWORKS:
        G = Generator(**DEMO_COMMON, **DEMO_NETWORKS[name])
        E = build_encoder("restyle_e4e", 6, G.num_ws, "ir_se_small", input_size=G.img_resolution, w_dim=64)
    elif name == "ffhq-1024":
        G = release_generator("R1024")
        E = build_encoder("restyle_psp", 6, 16, "ir_se50", input_size=256)
    else:
        raise ValueError(name)
    return G.eval().requires_grad_(False), E.eval().requires_grad_(False)


def bench(name: str, repeat: int, pti: bool, rows: list, invert: bool = True) -> None:
    import torch

    from engine.inversion import Inverter, tune_generator
    from engine.losses import LPIPSUnavailableWarning, PerceptualLoss

    G, E = _networks(name)
    inv = Inverter(E, G)
    R = G.img_resolution
    x = torch.rand(1, 3, R, R) * 2 - 1
    params = (
        f"G {sum(p.numel() for p in G.parameters()) / 1e6:.1f}M, E {sum(p.numel() for p in E.parameters()) / 1e6:.1f}M"
    )

    wall, cpu = _time(lambda: inv.average_image(), 1, warmup=False) if invert else (float("nan"), float("nan"))
    rows.append((name, "average image (once, cached)", wall, cpu, params))
    print(f"  {name}: average image {wall:.3f} s", file=sys.stderr, flush=True)
    for n_iters in (1, 3) if invert else ():
        wall, cpu = _time(lambda: inv.invert(x, n_iters=n_iters), repeat, warmup=repeat > 1)
        rows.append((name, f"invert, {n_iters} iteration{'s' if n_iters > 1 else ''}", wall, cpu, "per image"))
        print(f"  {name}: invert x{n_iters} {wall:.3f} s", file=sys.stderr, flush=True)
    if pti:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LPIPSUnavailableWarning)
            perceptual = PerceptualLoss("alex", resize=256)
        pivot = inv.latent_avg.unsqueeze(0)  # any pivot costs the same
        steps = 1 + (max(2, repeat) if repeat > 1 else 1)
        stamps: list[tuple[float, float]] = []

        def stamp(i: int, n: int) -> None:
            stamps.append((time.perf_counter(), time.process_time()))

        try:
            stamps.append((time.perf_counter(), time.process_time()))
            tune_generator(G, x, pivot, steps=steps, perceptual=perceptual, lpips_threshold=None, progress=stamp)
            # Step times between progress callbacks: the first step (after the copy of G) is a warm-up.
            walls = [b[0] - a[0] for a, b in zip(stamps[1:], stamps[2:])]
            cpus = [b[1] - a[1] for a, b in zip(stamps[1:], stamps[2:])]
            import resource

            peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kB
            note = (
                f"LPIPS {'on' if perceptual.is_lpips else 'off (L2 fallback)'}, median of {len(walls)}, "
                f"layer checkpointing {'on' if R >= 512 else 'off'}, process peak RSS {peak_gb:.1f} GB"
            )
            rows.append((name, "PTI step", statistics.median(walls), statistics.median(cpus), note))
        except (RuntimeError, MemoryError) as e:
            rows.append((name, "PTI step", float("nan"), float("nan"), f"failed: {type(e).__name__}"))
        print(f"  {name}: PTI done", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per demo measurement (FFHQ: always 1)")
    parser.add_argument("--only", choices=("demo", "ffhq"), default=None, help="only these networks")
    parser.add_argument("--pti-only", action="store_true", help="FFHQ: skip the average-image and invert rows")
    parser.add_argument(
        "--ffhq-pti",
        action="store_true",
        help="also time a PTI step at 1024 px (its backward needs more than 12 GB of memory)",
    )
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[tuple[str, str, float, float, str]] = []
    if args.only != "ffhq":
        bench("demo-64", args.repeat, True, rows)
        bench("demo-128", args.repeat, True, rows)
    if args.only != "demo":
        bench("ffhq-1024", 1, args.ffhq_pti, rows, invert=not args.pti_only)

    print(f"\nInversion on CPU ({torch.get_num_threads()} threads, torch {torch.__version__}); seconds\n")
    print(f"| {'network':<10} | {'operation':<30} | {'wall s':>8} | {'CPU s':>8} | note")
    print(f"|{'-' * 12}|{'-' * 32}|{'-' * 10}|{'-' * 10}|------")
    for name, op, wall, cpu, note in rows:
        print(f"| {name:<10} | {op:<30} | {wall:8.3f} | {cpu:8.3f} | {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
