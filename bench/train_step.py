"""Benchmark: training throughput of the demo generator (forward + backward of the synthesis network).

What the demo trainer does per step, without the renderer: ``G(z)`` for a batch, a scalar loss,
``backward()`` into the synthesis weights (the mapping is frozen). Prints images per second for each
configuration, median over ``--repeat`` steps after a warm-up step.

    python bench/train_step.py                         # shipped demo architecture and the old one
    python bench/train_step.py --threads 1 --repeat 10
"""
from __future__ import annotations

import argparse
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
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from _timing import median_times
    from engine.training.generator import GeneratorConfig, build_demo_generator

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s), "
          f"batch {args.batch}")
    print("| config | synthesis params | fwd+bwd s/step (median) | worst s | img/s |")
    print("|---|---:|---:|---:|---:|")
    for name in args.configs.split(","):
        G = build_demo_generator(GeneratorConfig(**CONFIGS[name]), torch.device("cpu"))
        G.mapping.requires_grad_(False)
        z = torch.randn(args.batch, G.z_dim, generator=torch.Generator().manual_seed(0))

        def step() -> None:
            G.zero_grad(set_to_none=True)
            G(z).square().mean().backward()

        wall, worst, _ = median_times(step, args.repeat)
        n_params = sum(p.numel() for p in G.synthesis.parameters())
        print(f"| {name} | {n_params} | {wall:.3f} | {worst:.3f} | {args.batch / wall:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
