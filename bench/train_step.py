"""Benchmark: training throughput of the demo generator (forward + backward of the synthesis network).

What the demo trainer does per step, without the renderer: ``G(z)`` for a batch, a scalar loss,
``backward()`` into the synthesis weights (the mapping is frozen). Prints images per second for each
configuration, median over ``--repeat`` steps after a warm-up step.

    python bench/train_step.py                         # shipped demo architecture and the old one
    python bench/train_step.py --threads 1 --repeat 10
    python bench/train_step.py --device cuda --impls fast,ref --configs demo-6L-c96 --batch 64
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# name: GeneratorConfig overrides (64 px demo generators)
CONFIGS = {
    "demo-4L-c32": dict(num_layers=4, channel_base=1536, channel_max=32),
    "demo-6L-c48": dict(num_layers=6, channel_base=3072, channel_max=48),
    "demo-8L-c32": dict(num_layers=8, channel_base=2048, channel_max=32),
    "demo-6L-c96": dict(num_layers=6, channel_base=6144, channel_max=96),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--impls", default="fast", help="comma list of kernel implementations (ref, fast, cuda)")
    ap.add_argument("--fastest-to", help="write the name of the fastest implementation that ran to this file")
    args = ap.parse_args(argv)

    import torch
    from _timing import median_times

    from factory.training.generator import GeneratorConfig, build_demo_generator
    from kernels._select import ENV_VAR

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {where}, {args.threads} CPU thread(s), batch {args.batch}")
    print("| config | kernels | synthesis params | fwd+bwd s/step (median) | worst s | img/s |")
    print("|---|---|---:|---:|---:|---:|")
    if "cuda" in args.impls.split(",") and device.type == "cuda":
        from kernels import cuda_ext

        print(f"fused CUDA kernels built: {cuda_ext.ensure_built()}")  # else 'cuda' would time 'ref' meanwhile
    timed: dict[str, float] = {}
    for name in args.configs.split(","):
        G = build_demo_generator(GeneratorConfig(**CONFIGS[name]), device)
        G.mapping.requires_grad_(False)
        z = torch.randn(args.batch, G.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
        n_params = sum(p.numel() for p in G.synthesis.parameters())
        for impl in args.impls.split(","):
            os.environ[ENV_VAR] = impl

            def step() -> None:
                G.zero_grad(set_to_none=True)
                G(z).square().mean().backward()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)

            try:
                wall, worst, _ = median_times(step, args.repeat)
            except Exception as e:  # report the broken implementation, measure the others
                print(f"| {name} | {impl} | {n_params} | failed: {type(e).__name__}: {e} | | |", flush=True)
                continue
            print(f"| {name} | {impl} | {n_params} | {wall:.4f} | {worst:.4f} | {args.batch / wall:.1f} |", flush=True)
            timed[impl] = timed.get(impl, 0.0) + wall
    if args.fastest_to:
        if not timed:
            print("no kernel implementation ran", file=sys.stderr)
            return 3
        Path(args.fastest_to).write_text(min(timed, key=timed.get) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
