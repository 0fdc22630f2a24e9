"""Demo generator trainer: supervised regression of our StyleGAN3 to the synthetic renderer.

``z`` [N, Z_DIM] encodes the renderer's factors (see :mod:`factory.training.common`); mapping and
synthesis are trained so that ``G(z)`` reproduces the aligned render of those factors (L1 + L2 at full
resolution and at half resolution). Deterministic targets make the latent space carry the factors
almost linearly, which is what InterFaceGAN directions need. ``magnitude_ema`` and ``w_avg`` are
updated with ``update_emas=True``.

Phase 2 (``adv_weight > 0``, usually resumed from the phase-1 checkpoint with a fresh ``lr``) adds an
edge term (L1 between the images' finite differences, ``edge_weight``) and a non-saturating GAN loss
against :class:`factory.training.discriminator.DemoDiscriminator` (lazy R1 on reals); the regression
term stays, so each latent keeps its face while samples get sharper.

By default the mapping network keeps its random initialisation (``train_mapping=False``): W is then a
fixed, smooth, injective function of the factors from step 0, so the encoder can be trained at the
same time as the synthesis network (its latent-regression target ``G.mapping(z)`` never moves) and a
partly trained generator already has its final latent space. ``train_mapping=True`` trains it too,
which fits far better (the shipped demo generator: regression loss 0.20 after 48 minutes, where every
frozen-mapping run stayed at 0.29); the encoder is then trained after the generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from factory.training.common import Z_DIM, RunOptions, TrainConfig, TrainRun, descend, downsample, set_lr

if TYPE_CHECKING:
    from engine.networks.stylegan3 import Generator

__all__ = ["GeneratorConfig", "build_demo_generator", "copy_mapping", "init_generator_from", "train_generator"]


@dataclass
class GeneratorConfig(TrainConfig, lr=1e-2, batch=8, steps=8000, seed=0):
    """Architecture and schedule of the demo generator (defaults: the shipped 64 px model).

    Learning rate: 1e-2 reached loss 0.76 at step 130 where 2e-3 was at 0.88 (batch 8, 64 px); see
    factory/TRAINING.md."""

    size: int = 64
    w_dim: int = 128
    # 6 layers of up to 48 channels: at equal wall time on the 2-core CPU this fitted better than 8
    # layers of 32 (loss 0.52 vs 0.57 after 4 min) and far better than the first demo's 4 layers of 32.
    num_layers: int = 6
    channel_base: int = 3072
    channel_max: int = 48
    margin_size: int = 4
    # Frequency band of the Fourier input (SG3 defaults: 2 and 2**2.1).
    first_cutoff: float = 2.0
    first_stopband: float = 2**2.1
    mapping_layers: int = 2
    mapping_lr_multiplier: float = 0.1
    train_mapping: bool = False
    # Generator file whose mapping network is copied at the start of a new run ("" = random init).
    mapping_from: str = ""
    # Generator file of this architecture whose weights (mapping and synthesis) start a new run, e.g.
    # the shipped demo generator for more sharpening on a faster machine ("" = random init).
    init_from: str = ""
    # Phase 2 (sharpening): weights of the edge and adversarial terms (0: pure regression, phase 1).
    edge_weight: float = 0.0
    adv_weight: float = 0.0
    r1_gamma: float = 1.0
    r1_every: int = 4
    d_lr: float = 2e-4


def build_demo_generator(cfg: GeneratorConfig, device: torch.device) -> Generator:
    """A StyleGAN3-T generator of the demo size (our class, real code path)."""
    from engine.networks.stylegan3 import Generator

    torch.manual_seed(cfg.seed)
    G = Generator(
        z_dim=Z_DIM,
        c_dim=0,
        w_dim=cfg.w_dim,
        img_resolution=cfg.size,
        img_channels=3,
        mapping_kwargs={"num_layers": cfg.mapping_layers, "lr_multiplier": cfg.mapping_lr_multiplier},
        num_layers=cfg.num_layers,
        channel_base=cfg.channel_base,
        channel_max=cfg.channel_max,
        num_critical=2,
        margin_size=cfg.margin_size,
        conv_kernel=3,
        first_cutoff=cfg.first_cutoff,
        first_stopband=cfg.first_stopband,
    )
    return G.to(device)


def copy_mapping(G: Generator, path: Path) -> None:
    """Load the mapping network (and ``w_avg``) of the generator file ``path`` into ``G``.

    A new synthesis network can then be trained in the latent space of an earlier generator, so an
    encoder's latent-regression targets (``G.mapping(z)``) stay the same."""
    from engine.checkpoints import load_generator

    src = load_generator(path, device=torch.device("cpu"))
    if (src.z_dim, src.w_dim) != (G.z_dim, G.w_dim):
        raise ValueError(
            f"{path}: its mapping is z {src.z_dim} -> w {src.w_dim}, this generator needs "
            f"z {G.z_dim} -> w {G.w_dim}; pick a generator of the same latent sizes"
        )
    G.mapping.load_state_dict(src.mapping.state_dict())


def init_generator_from(G: Generator, path: Path) -> None:
    """Load all weights and buffers of the generator file ``path`` into ``G`` (same architecture)."""
    from engine.checkpoints import load_generator

    src = load_generator(path, device=torch.device("cpu"))
    try:
        G.load_state_dict(src.state_dict())
    except RuntimeError as e:
        raise ValueError(
            f"{path}: not a generator of this architecture (give the same --num-layers, "
            f"--channel-base, --channel-max and --size it was trained with): {e}"
        ) from e


def _trainable(G: Generator, cfg: GeneratorConfig) -> list[torch.nn.Parameter]:
    if not cfg.train_mapping:
        G.mapping.requires_grad_(False)
        return list(G.synthesis.parameters())
    return list(G.parameters())


def regression_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 + L2 at full and half resolution; fake, real [N,3,S,S] in [-1,1]. Returns a scalar."""
    loss = (fake - real).abs().mean() + (fake - real).square().mean()
    f2, r2 = downsample(fake, 2), downsample(real, 2)
    return loss + (f2 - r2).abs().mean() + (f2 - r2).square().mean()


def edge_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences; fake, real [N,3,S,S]. Returns a scalar.

    Weighs fine detail more than the pixel loss does (the regression fits low frequencies first)."""
    dx = (fake[..., :, 1:] - fake[..., :, :-1]) - (real[..., :, 1:] - real[..., :, :-1])
    dy = (fake[..., 1:, :] - fake[..., :-1, :]) - (real[..., 1:, :] - real[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


def train_generator(out: Path, cfg: GeneratorConfig, opts: RunOptions | None = None) -> Path:
    """Train (or continue) the demo generator; writes ``out/checkpoint.pt`` and ``out/generator.safetensors``.

    Returns the path of the exported generator. ``cfg.steps`` is the total number of steps (a resumed
    run continues up to it). ``opts.override``: schedule fields (e.g. ``("lr", "adv_weight")``) a resumed
    run takes from ``cfg`` instead of the checkpoint; the architecture always comes from the checkpoint.
    """
    from engine.checkpoints import save_generator
    from factory.training.discriminator import DemoDiscriminator, discriminator_loss, generator_adv_loss

    run = TrainRun(out, cfg, opts)
    cfg, device, log, ckpt = run.cfg, run.device, run.log, run.ckpt
    G = build_demo_generator(cfg, device)
    if ckpt.state is None and cfg.init_from:
        init_generator_from(G, Path(cfg.init_from))
        log(f"weights from {cfg.init_from}")
    elif ckpt.state is None and cfg.mapping_from:
        copy_mapping(G, Path(cfg.mapping_from))
        log(f"mapping network copied from {cfg.mapping_from}")
    opt = torch.optim.Adam(_trainable(G, cfg), lr=cfg.lr, betas=(0.9, 0.99))
    step = ckpt.restore(log, G=G, opt=opt)
    G.train()
    D = dopt = None
    if cfg.adv_weight > 0:
        D = DemoDiscriminator(cfg.size).to(device)
        dopt = torch.optim.Adam(D.parameters(), lr=cfg.d_lr, betas=(0.0, 0.99))
        if ckpt.holds("D"):
            ckpt.load(D=D, dopt=dopt)
        else:
            log("adversarial phase: new discriminator")

    def checkpoint() -> None:
        ckpt.save(step, G=G, opt=opt, **({"D": D, "dopt": dopt} if D is not None else {}))
        # A current export lets the encoder trainer follow the generator while it trains.
        save_generator(G, run.out / "generator.safetensors", source=f"charm demo generator, step {step}")

    stream = run.stream(step, cfg.size)
    run.begin(step, decay=0.98)
    while step < (total_steps := run.budget.total(step)):
        # Cosine decay over the last half of the schedule.
        frac = step / max(total_steps, 1)
        lr = cfg.lr * (1.0 if frac < 0.5 else 0.5 * (1 + math.cos(math.pi * (frac - 0.5) / 0.5)) * 0.95 + 0.05)
        set_lr(opt, lr)
        z, real = next(stream)
        fake = G(torch.from_numpy(z).to(device=device, dtype=torch.float32), update_emas=True)
        loss = regression_loss(fake, real)
        total = loss
        if cfg.edge_weight > 0:
            total = total + cfg.edge_weight * edge_loss(fake, real)
        if D is not None and dopt is not None:
            D.requires_grad_(True)
            d_loss = discriminator_loss(D, real, fake, cfg.r1_gamma, cfg.r1_every, step)
            descend(dopt, d_loss)
            D.requires_grad_(False)  # G's loss goes through D; D's own gradients would be thrown away
            total = total + cfg.adv_weight * generator_adv_loss(D, fake)
        descend(opt, total)
        step += 1
        ema = run.meter.update(loss.item(), cfg.batch)
        if step % 10 == 0 or step == total_steps:
            adv = f" D {d_loss.item():.3f}" if D is not None else ""
            log(f"step {step}/{total_steps} loss {ema:.4f}{adv} lr {lr:.2e} {run.meter.rate:.1f} img/s")
        if run.timer.due():
            checkpoint()
    stream.close()
    checkpoint()
    G.eval()
    path = save_generator(G, run.out / "generator.safetensors", source=f"charm demo generator, step {step}")
    log(f"wrote {path}")
    return path
