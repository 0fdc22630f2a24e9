"""Train the tiny ReStyle pair used by tests/test_inversion.py and write it to tests/data/.

The pair is a random-weight 32 px StyleGAN3 generator (z_dim 8 so that its images form a low-dimensional
family an encoder can learn from a few thousand samples; w_dim 64, 6 W+ rows) and a ReStyle-pSp encoder
with the ``ir_se_small`` backbone (input 32 px) trained to invert that generator's own samples, whose
true latents are known. Training has three phases, all supervised in latent space (cheap: no backward
pass through the generator):

1. Corrections from cached renders: for sampled latents w = mapping(z), the target x = G(w) is paired
   either with the average image (the encoder's first ReStyle pass, target w - latent_avg) or with
   G(w_cur), w_cur = mapping(z + s * noise) with s uniform in [0, 1] (a later pass, target w - w_cur).
2. Rounds on the encoder's own iterates (DAgger style): the first passes of the current encoder are
   rendered for a subset of the targets and added as training pairs (target w minus the iterate), so
   later passes learn to fix what earlier ones actually leave, and to leave good answers alone.
3. ReStyle proper on fresh samples: six passes unrolled from the average image, the latent errors of
   the passes averaged with weights growing with the pass index and back-propagated through the chain
   of codes, plus a fixed-point term E(x, x) = 0; BatchNorm statistics stay frozen (so training sees
   what inference computes). This is what keeps late passes from drifting.

Everything is seeded and runs on CPU with a fixed thread count, so a rerun reproduces the file up to
float rounding differences between CPUs. The file (Charm Studio inverter format, float16 storage,
under 2 MB) is written with ``engine.inversion.save_inverter``.

    python tools/make_tiny_pair.py                      # ~30 min on one core
    python tools/make_tiny_pair.py --out /tmp/pair.safetensors --samples 1000 --steps 300 --rounds 1   # quick look
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "tests" / "data" / "tiny_restyle_pair.safetensors"
GENERATOR_KWARGS = dict(
    z_dim=8,
    c_dim=0,
    w_dim=64,
    img_resolution=32,
    img_channels=3,
    channel_base=1024,
    channel_max=32,
    num_layers=4,
    margin_size=2,
)
INPUT_SIZE = 32
EVAL_SEED = 12345  # seeds the held-out samples (tests/test_inversion.py evaluates on them too)


def sample_latents(G: torch.nn.Module, n: int, generator: torch.Generator) -> torch.Tensor:
    """W latents [n,num_ws,w_dim] (rows equal) of seeded z."""
    z = torch.randn(n, G.z_dim, generator=generator)
    with torch.no_grad():
        return G.mapping(z)


@torch.no_grad()
def render(G: torch.nn.Module, ws: torch.Tensor, batch: int = 8) -> torch.Tensor:
    eye = torch.eye(3)
    return torch.cat([G.synthesis(ws[i : i + batch], transform=eye) for i in range(0, ws.shape[0], batch)])


def build_pair(seed: int):
    from engine import Generator
    from engine.encoders import build_encoder

    torch.manual_seed(seed)
    G = Generator(**GENERATOR_KWARGS).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        # A random mapping network's w_avg buffer is zero; set it to the actual mean of W.
        G.mapping.w_avg.copy_(sample_latents(G, 20000, g)[:, 0].mean(0))
    E = build_encoder(
        "restyle_psp", input_nc=6, n_styles=G.num_ws, backbone="ir_se_small", input_size=INPUT_SIZE, w_dim=G.w_dim
    )
    return G, E


def held_out(G: torch.nn.Module, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out samples (seeded with EVAL_SEED): their W latents and their renders."""
    ws = sample_latents(G, n, torch.Generator().manual_seed(EVAL_SEED))
    return ws, render(G, ws)


def evaluate(inverter, n: int = 64, n_iters: int = 5, batch_size: int | None = None) -> tuple[list[float], list[float]]:
    """Mean image MSE and latent MSE per ReStyle iteration on the held-out samples."""
    ws, x = held_out(inverter.generator, n)
    res = inverter.invert(x, n_iters=n_iters, batch_size=batch_size)
    img = [float((y - x).square().mean()) for y in res.images]
    lat = [float((w - ws).square().mean()) for w in res.latents]
    return img, lat


def main(argv: list[str] | None = None) -> int:
    from engine.inversion import Inverter, load_inverter, save_inverter
    from engine.inversion.common import resize_images

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=5000, help="cached (target, start) pairs for phase 1")
    ap.add_argument("--steps", type=int, default=1500, help="phase 1 optimizer steps")
    ap.add_argument("--rounds", type=int, default=2, help="phase 2 rounds")
    ap.add_argument("--subset", type=int, default=2000, help="samples whose iterates are rendered per round")
    ap.add_argument("--passes", type=int, default=2, help="ReStyle passes rendered per round")
    ap.add_argument("--round-steps", type=int, default=600, help="optimizer steps per phase 2 round")
    ap.add_argument("--online-steps", type=int, default=600, help="phase 3 optimizer steps")
    ap.add_argument("--online-passes", type=int, default=6, help="ReStyle passes unrolled in phase 3")
    ap.add_argument("--online-batch", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    G, E = build_pair(args.seed)
    num_ws, w_dim = G.num_ws, G.w_dim
    w_avg = G.mapping.w_avg.view(1, 1, w_dim).expand(1, num_ws, w_dim)
    g = torch.Generator().manual_seed(args.seed + 2)

    # Phase 1 data: targets, and starts from nearby z (the first pass starts from the average image).
    z = torch.randn(args.samples, G.z_dim, generator=g)
    spread = torch.rand(args.samples, 1, generator=g)
    with torch.no_grad():
        ws = G.mapping(z)
        w_cur = G.mapping(z + spread * torch.randn(z.shape, generator=g))
    sigma = ws[:, 0].std(0).mean()
    x_small = resize_images(render(G, ws), INPUT_SIZE)
    y_small = resize_images(render(G, w_cur), INPUT_SIZE)
    avg_small = resize_images(render(G, w_avg.clone()), INPUT_SIZE)
    print(f"rendered {2 * args.samples} images in {time.time() - t0:.0f} s (sigma {float(sigma):.3f})", flush=True)
    scale = 1.0 / float(sigma) ** 2

    def train(
        steps: int, lr0: float, pools: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]], label: str
    ) -> None:
        """Adam with cosine decay on batches drawn evenly from pools of (x index, y, w_cur, w_true)."""
        E.train()
        opt = torch.optim.Adam(E.parameters(), lr=lr0)
        per = args.batch // len(pools)
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr0 * 0.5 * (1 + math.cos(math.pi * step / steps))
            inp, target = [], []
            for idx, y, cur, true in pools:
                j = torch.randint(0, idx.shape[0], (per,), generator=g)
                inp.append(torch.cat([x_small[idx[j]], y[j] if y.shape[0] > 1 else y.expand(per, -1, -1, -1)], 1))
                target.append(true[j] - (cur[j] if cur.shape[0] > 1 else cur))
            loss = (E(torch.cat(inp)) - torch.cat(target)).square().mean() * scale
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 250 == 0 or step == steps - 1:
                print(f"{label} step {step:5d} loss {float(loss.detach()):.4f} ({time.time() - t0:.0f} s)", flush=True)

    every = torch.arange(args.samples)
    first_pass = (every, avg_small, w_avg, ws)
    perturbed = (every, y_small, w_cur, ws)
    train(args.steps, 1e-3, [first_pass, perturbed], "phase 1")

    # Phase 2 (DAgger): the encoder's own iterates on a subset become new training pairs, so later
    # passes learn to correct what earlier passes actually leave (and to leave good answers alone).
    for r in range(args.rounds):
        sub = torch.randperm(args.samples, generator=g)[: args.subset]
        E.eval()
        pools = [first_pass, perturbed]
        with torch.no_grad():
            codes = w_avg.expand(sub.shape[0], -1, -1)
            y = avg_small.expand(sub.shape[0], -1, -1, -1)
            for k in range(args.passes):
                codes = (
                    torch.cat(
                        [
                            E(torch.cat([x_small[sub[i : i + 256]], y[i : i + 256]], 1))
                            for i in range(0, sub.shape[0], 256)
                        ]
                    )
                    + codes
                )
                y = resize_images(render(G, codes), INPUT_SIZE)
                err = float((codes - ws[sub]).square().mean() * scale)
                print(f"round {r} pass {k}: relative latent error {err:.4f} ({time.time() - t0:.0f} s)", flush=True)
                pools.append((sub, y, codes, ws[sub]))
        train(args.round_steps, 3e-4, pools, f"phase 2 round {r}")

    # Phase 3: ReStyle unrolled over several passes on fresh samples, the loss summed over passes and
    # back-propagated through the chain of codes (renders detached). BatchNorm statistics stay frozen:
    # the passes see differently distributed inputs, and inference uses the running statistics.
    E.eval().requires_grad_(True)
    opt = torch.optim.Adam(E.parameters(), lr=1e-4)
    bs = args.online_batch
    for step in range(args.online_steps):
        for group in opt.param_groups:
            group["lr"] = 1e-4 * 0.5 * (1 + math.cos(math.pi * step / args.online_steps))
        w_true = sample_latents(G, bs, g)
        x = resize_images(render(G, w_true), INPUT_SIZE)
        codes = w_avg.expand(bs, -1, -1)
        y = avg_small.expand(bs, -1, -1, -1)
        errors = []
        for k in range(args.online_passes):
            codes = E(torch.cat([x, y], 1)) + codes
            errors.append((codes - w_true).square().mean() * scale)
            if k + 1 < args.online_passes:
                y = resize_images(render(G, codes.detach()), INPUT_SIZE)
        # Later passes weigh more (their drift is what breaks monotonicity), and a perfect
        # reconstruction must be left alone: E(x, x) = 0.
        weights = torch.arange(1, args.online_passes + 1, dtype=torch.float32)
        fixed_point = E(torch.cat([x, x], 1)).square().mean() * scale
        loss = (torch.stack(errors) * weights).sum() / weights.sum() + fixed_point
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 25 == 0 or step == args.online_steps - 1:
            per_pass = " ".join(f"{float(e):.4f}" for e in errors)
            print(f"phase 3 step {step:4d} latent error per pass {per_pass} ({time.time() - t0:.0f} s)", flush=True)

    E.eval().requires_grad_(False)
    inv = Inverter(E, G, kind="restyle_psp", input_size=INPUT_SIZE)
    save_inverter(
        inv,
        args.out,
        dtype=torch.float16,
        source=f"tools/make_tiny_pair.py seed {args.seed}, {args.samples} samples, {args.steps} + "
        f"{args.rounds}x{args.round_steps} + {args.online_steps} steps",
    )
    loaded = load_inverter(args.out)
    img, lat = evaluate(loaded)
    print("held-out image MSE per iteration:", " ".join(f"{v:.5f}" for v in img))
    print("held-out latent MSE per iteration:", " ".join(f"{v:.4f}" for v in lat))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) in {time.time() - t0:.0f} s")
    monotone = all(b <= a for a, b in zip(img[:4], img[1:4]))  # the test checks 4 iterations
    if not monotone:
        print("warning: the image error is not monotone over iterations", file=sys.stderr)
    return 0 if monotone else 1


if __name__ == "__main__":
    sys.exit(main())
