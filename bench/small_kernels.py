"""Benchmark: the CPU 'fast' filter path before and after the banded-product rewrite, per layer of the
demo generator and for whole generators.

"old" is the per-phase polyphase chain (``kernels._fast._filtered_lrelu_bands``, the fast path's
filtered_lrelu until the rewrite and still its path for 2-D down filters), "new" is the fast path as
it is (``kernels._fast._chain``: banded matrix products, planes last). Both run in this process on the
same inputs; the rounds alternate old and new so that load from other jobs hits both alike. Times are
the median of ``--repeat`` rounds (and the fastest round, which other jobs disturb least).

    python3 bench/small_kernels.py                               # demo layers + demo generator
    python3 bench/small_kernels.py --networks demo,T256 --repeat 5
    python3 bench/small_kernels.py --networks T1024 --batches 1 --threads 1 --repeat 1 --no-layers
    python3 bench/small_kernels.py --backward                    # + forward/backward of the demo generator
    python3 bench/small_kernels.py --no-layers --batches 1 --threads 1 --block-sweep   # block rows rule

Per-layer rows time one filtered_lrelu call on the inputs the layer really gets (captured from a
forward pass of the generator at that batch size); ms per call and per image.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _rounds(fns: dict[str, Callable[[], object]], repeat: int, warmup: bool = True) -> dict[str, tuple[float, float]]:
    """name -> (median s, min s) over ``repeat`` rounds; each round calls every fn once, in turn,
    after one untimed warm-up call of each (unless ``warmup`` is False)."""
    for fn in fns.values() if warmup else ():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: (statistics.median(v), min(v)) for k, v in times.items()}


def _paths():
    from kernels import _fast

    return {"old": _fast._filtered_lrelu_bands, "new": _fast._chain}


def _use(path) -> None:
    from kernels import _fast

    _fast._chain = path


def demo_layers(batch: int, repeat: int) -> list[dict]:
    """One row per synthesis layer of the demo generator: old vs new on the layer's real input."""
    import torch

    from engine.models import load_bundle

    paths = _paths()
    G = load_bundle("demo").generator.eval()
    captured = []

    def spy(x, fu, fd, b, args):
        captured.append((x.clone(), fu, fd, b, args))
        return paths["new"](x, fu, fd, b, args)

    ws = G.mapping.w_avg.view(1, 1, -1).repeat(batch, G.num_ws, 1)
    _use(spy)
    try:
        with torch.no_grad():
            G.synthesis(ws)
    finally:
        _use(paths["new"])
    names = [name for name, _ in G.synthesis.named_children() if name != "input"]
    rows = []
    with torch.no_grad():
        for name, (x, fu, fd, b, args) in zip(names, captured):
            fns = {k: (lambda f=f: f(x, fu, fd, b, args)) for k, f in paths.items()}
            old, new = (fns[k]() for k in ("old", "new"))
            rel = float((new - old).norm() / old.norm().clamp_min(1e-30))
            t = _rounds(fns, repeat)
            n, c, h, w = x.shape
            rows.append(
                dict(
                    what=f"{name} {h}->{new.shape[2]} up{args.up} down{args.down} taps "
                    f"{0 if fu is None else fu.numel()}/{0 if fd is None else fd.shape[0]}",
                    batch=batch,
                    old=t["old"],
                    new=t["new"],
                    rel=rel,
                )
            )
    return rows


def generator(net: str, batch: int, repeat: int) -> dict:
    """Whole synthesis network, old vs new filter path."""
    import numpy as np
    import torch

    paths = _paths()
    if net == "demo":
        from engine.models import load_bundle

        G = load_bundle("demo").generator.eval()
        ws = G.mapping.w_avg.view(1, 1, -1).repeat(batch, G.num_ws, 1)
    else:
        from _networks import release_generator

        torch.manual_seed(0)
        G = release_generator(net).eval()
        z = torch.from_numpy(np.random.RandomState(1).randn(batch, 512)).float()
        with torch.no_grad():
            ws = G.mapping(z, None, truncation_psi=0.7)
    outs = {}

    def run(name):
        _use(paths[name])
        try:
            with torch.no_grad():
                outs[name] = G.synthesis(ws)
        finally:
            _use(paths["new"])

    # The release networks take seconds per call: no warm-up round (the first call's one-off costs,
    # building the banded plans included, are small against that).
    t = _rounds({k: (lambda k=k: run(k)) for k in paths}, repeat, warmup=net == "demo")
    rel = float((outs["new"] - outs["old"]).norm() / outs["old"].norm())
    return dict(what=f"{net} generator (synthesis)", batch=batch, old=t["old"], new=t["new"], rel=rel)


def demo_backward(batch: int, repeat: int) -> dict:
    """Forward + backward of the demo synthesis network (what PTI and training run), old vs new."""
    import torch

    from engine.models import load_bundle

    paths = _paths()
    G = load_bundle("demo").generator.eval()
    ws = G.mapping.w_avg.view(1, 1, -1).repeat(batch, G.num_ws, 1)
    ws = ws + 0.1 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(0))
    grads = {}

    def run(name):
        _use(paths[name])
        try:
            G.zero_grad(set_to_none=True)
            w = ws.clone().requires_grad_(True)
            G.synthesis(w).square().mean().backward()
            grads[name] = w.grad
        finally:
            _use(paths["new"])

    t = _rounds({k: (lambda k=k: run(k)) for k in paths}, repeat)
    rel = float((grads["new"] - grads["old"]).norm() / grads["old"].norm())
    return dict(what="demo generator forward+backward (grad of ws)", batch=batch, old=t["old"], new=t["new"], rel=rel)


def block_sweep(repeat: int) -> None:
    """Time one banded pass (the single batched product over a zero-margined buffer) of the demo
    generator's kinds for several block sizes: the measurement behind UP_BLOCK_ROWS and
    DOWN_BLOCK_ROWS in kernels/_polyphase.py. Columns as in one image's 48 planes."""
    import torch

    from kernels._polyphase import DOWN_BLOCK_ROWS, UP_BLOCK_ROWS, BandedPlan

    g = torch.Generator().manual_seed(0)
    h12, h24 = (tuple(torch.randn(t, generator=g).tolist()) for t in (12, 24))
    passes = [  # (name, taps, length, up, down, p0, p1, columns)
        ("L0 vertical up2, 26 rows", h12, 26, 2, 1, 9, 8, 26 * 48),
        ("L3 vertical up4, 42 rows", h24, 42, 4, 1, 6, 3, 42 * 48),
        ("L4 horizontal up2, 74 rows", h12, 74, 2, 1, 9, 8, 154 * 48),
        ("L4 horizontal down2, 154 rows", h12, 154, 1, 2, 0, 0, 154 * 48),
        ("L4 vertical down2, 154 rows", h12, 154, 1, 2, 0, 0, 72 * 48),
    ]
    blocks = [int(b) for b in os.environ.get("SWEEP_BLOCKS", "2,4,8,12,16,24,32,64").split(",")]
    print(f"\nblock rows sweep (ms per pass, median of {repeat}; defaults up {UP_BLOCK_ROWS}, down {DOWN_BLOCK_ROWS})")
    print("| pass | " + " | ".join(f"{b} rows" for b in blocks) + " |")
    print("|---|" + "---:|" * len(blocks))
    for name, hl, length, up, down, p0, p1, cols in passes:
        cells = []
        for block in blocks:
            plan = BandedPlan(hl, length, up, down, p0, p1, block)
            buf = torch.zeros(plan.margin_lo + length + plan.margin_hi, cols)
            buf[plan.margin_lo : plan.margin_lo + length].normal_(generator=g)
            t = _rounds({"x": lambda: plan.apply_margined(buf, plan.margin_lo)}, repeat)["x"][0]
            cells.append(f"{t * 1e3:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default="demo", help="comma list of demo, T256, R256, T1024, R1024")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer rows of the demo generator")
    ap.add_argument("--backward", action="store_true", help="also time forward+backward of the demo generator")
    ap.add_argument("--block-sweep", action="store_true", help="also time single passes for several block sizes")
    args = ap.parse_args(argv)

    import torch

    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.2f} at start"
    )
    print("| what | batch | threads | old ms/img | new ms/img | speed-up | old min | new min | rel L2 new vs old |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for batch in [int(b) for b in args.batches.split(",")]:
            rows = []
            for net in args.networks.split(","):
                if net == "demo" and not args.no_layers:
                    rows += demo_layers(batch, args.repeat)
                rows.append(generator(net, batch, args.repeat))
            if args.backward:
                rows.append(demo_backward(batch, args.repeat))
            for r in rows:
                (om, omin), (nm, nmin) = r["old"], r["new"]
                b = r["batch"]
                print(
                    f"| {r['what']} | {b} | {threads} | {om / b * 1e3:.2f} | {nm / b * 1e3:.2f} | "
                    f"**{om / nm:.2f}x** | {omin / b * 1e3:.2f} | {nmin / b * 1e3:.2f} | {r['rel']:.1e} |",
                    flush=True,
                )
    if args.block_sweep:
        torch.set_num_threads(1)
        block_sweep(args.repeat)
    print(f"load {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
