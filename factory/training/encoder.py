"""Encoder trainer: ReStyle-e4e head with the ``ir_se_small`` backbone on aligned renders.

The generator is frozen. For a render of latent ``z`` the true W code is known (``G.mapping(z)``), so
each of the ``iters`` ReStyle passes is trained with a latent regression to it (strong and cheap) plus,
when ``image_weight > 0``, an image loss (L1 + L2) on the last pass against the render through the
frozen synthesis network (costly on a CPU: off by default).

``follow=True`` reloads the generator file whenever it changes, so the encoder can train while the
generator does; that needs a generator whose mapping is frozen (``train_mapping=False``), else the
latent targets move under it (the shipped demo generator trains its mapping: its encoder came after). The
input of pass k > 1 is the current reconstruction, rendered without gradients, exactly as
:meth:`engine.inversion.Inverter.invert` does at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from factory.training.common import RunOptions, TrainConfig, TrainRun, descend, load_state, set_lr

if TYPE_CHECKING:
    from engine.networks.stylegan3 import Generator

__all__ = ["EncoderTrainConfig", "train_encoder", "init_encoder_from", "build_demo_encoder", "encoder_input_size"]


@dataclass
class EncoderTrainConfig(TrainConfig, lr=5e-4, batch=8, steps=1500, seed=2):
    backbone: str = "ir_se_small"
    iters: int = 3
    latent_weight: float = 1.0
    image_weight: float = 0.0
    follow: bool = False
    # BatchNorm layers use their running statistics (frozen) instead of batch statistics. For the
    # multi-pass phase: passes see different inputs (average image vs reconstructions), and running
    # statistics mixed over passes match none of them at inference.
    freeze_bn: bool = False
    # Encoder checkpoint.pt to start a new run from ("" = random init); see init_encoder_from.
    init_from: str = ""


def build_demo_encoder(G: Generator, backbone: str, device: torch.device) -> torch.nn.Module:
    """ReStyle-e4e encoder sized for ``G``: input [N,6,R,R] (image + reconstruction), output [N,num_ws,w_dim]."""
    from engine.encoders import build_encoder

    return build_encoder(
        "restyle_e4e",
        input_nc=6,
        n_styles=G.num_ws,
        backbone=backbone,
        w_dim=G.w_dim,
        input_size=encoder_input_size(G),
        device=device,
    )


def encoder_input_size(G: Generator) -> int:
    """The encoder's input side: the generator's resolution, at least 32 (the backbone downsamples 16x)."""
    return max(int(G.img_resolution), 32)


def init_encoder_from(enc: torch.nn.Module, path: Path) -> None:
    """Load the encoder weights of the trainer checkpoint ``path`` (or an inverter ``.safetensors``
    file) into ``enc``.

    The backbone and the w0 head are copied as they are. When the generators' ``num_ws`` differ (a
    deeper synthesis network trained in the same latent space, see ``GeneratorConfig.mapping_from``),
    row i of the new encoder takes the delta head of the old row at the same relative depth."""
    if Path(path).suffix == ".safetensors":  # an inverter file, e.g. a shipped bundle's encoder.safetensors
        from engine.inversion import load_inverter

        state = {
            k: v.float() if v.is_floating_point() else v for k, v in load_inverter(path).encoder.state_dict().items()
        }
    else:
        state = load_state(path)["encoder"]
    old_rows = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("styles."))
    new_rows = enc.n_styles
    mapped = {}
    for k, v in state.items():
        if not k.startswith("styles."):
            mapped[k] = v
    for i in range(new_rows):
        j = 0 if i == 0 else max(1, round(i * (old_rows - 1) / max(new_rows - 1, 1)))
        for k, v in state.items():
            if k.startswith(f"styles.{j}."):
                mapped[f"styles.{i}." + k[len(f"styles.{j}.") :]] = v
    try:
        enc.load_state_dict(mapped)
    except RuntimeError as e:
        raise ValueError(f"{path}: not an encoder of this backbone and latent size ({e})") from e


def train_encoder(out: Path, generator_path: Path, cfg: EncoderTrainConfig, opts: RunOptions | None = None) -> Path:
    """Train (or continue) the encoder; writes ``out/checkpoint.pt`` and ``out/encoder.safetensors``
    (an :class:`engine.inversion.Inverter` file: encoder + generator + average latent).

    A resumed run keeps the checkpoint's schedule except ``steps``, ``follow`` and the ``cfg`` fields
    named in ``opts.override`` (e.g. ``("iters", "lr")``: a cheap first-pass-only phase, ``iters=1``,
    then the full ReStyle passes).
    """
    from engine.checkpoints import load_generator
    from engine.inversion import Inverter, resize_images, save_inverter

    run = TrainRun(out, cfg, opts, keep=("follow",))
    cfg, device, log, ckpt = run.cfg, run.device, run.log, run.ckpt
    g_mtime = generator_path.stat().st_mtime
    G = load_generator(generator_path, device=device).eval().requires_grad_(False)
    if ckpt.state is None:
        torch.manual_seed(cfg.seed)
    enc = build_demo_encoder(G, cfg.backbone, device)
    if ckpt.state is None and cfg.init_from:
        init_encoder_from(enc, Path(cfg.init_from))
        log(f"weights from {cfg.init_from}")
    opt = torch.optim.Adam(enc.parameters(), lr=cfg.lr)
    changed = f" ({', '.join(f'{k}={getattr(cfg, k)}' for k in sorted(run.opts.override))})"
    step = ckpt.restore(log, changed, encoder=enc, opt=opt)
    enc.train()
    if cfg.freeze_bn:
        for m in enc.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    inverter = Inverter(enc, G, kind="restyle_e4e", input_size=encoder_input_size(G)).to(device)
    avg_codes = inverter.latent_avg.unsqueeze(0)
    avg_image = inverter.average_image()

    stream = run.stream(step, G.img_resolution)
    run.begin(step)
    while step < (total_steps := run.budget.total(step)):
        lr = cfg.lr * (0.2 if step > 0.8 * total_steps else 1.0)
        set_lr(opt, lr)
        z, x = next(stream)
        x_small = resize_images(x, inverter.input_size)
        with torch.no_grad():
            w_true = G.mapping(torch.from_numpy(z).to(device=device, dtype=torch.float32))
        codes = avg_codes.expand(cfg.batch, -1, -1)
        y = avg_image.expand(cfg.batch, -1, -1, -1)
        loss = torch.zeros((), device=device)
        for it in range(cfg.iters):
            codes = enc(torch.cat([x_small, y], dim=1)) + codes.detach()
            loss = loss + cfg.latent_weight * (codes - w_true).square().mean()
            if it + 1 < cfg.iters:
                with torch.no_grad():
                    y = resize_images(G.synthesis(codes), inverter.input_size)
        rec = None
        if cfg.image_weight > 0:
            rec = G.synthesis(codes)
            loss = loss + cfg.image_weight * ((rec - x).abs().mean() + (rec - x).square().mean())
        descend(opt, loss)
        step += 1
        ema = run.meter.update(loss.item(), cfg.batch)
        if step % 10 == 0 or step == total_steps:
            with torch.no_grad():
                rec = G.synthesis(codes) if rec is None else rec
                psnr = (10 * torch.log10(4.0 / (rec - x).square().mean(dim=(1, 2, 3)))).median().item()
            log(f"step {step}/{total_steps} loss {ema:.4f} psnr {psnr:.2f} {run.meter.rate:.1f} img/s")
        if run.timer.due():
            ckpt.save(step, encoder=enc, opt=opt)
            if cfg.follow and generator_path.stat().st_mtime != g_mtime:
                g_mtime = generator_path.stat().st_mtime
                G.load_state_dict(load_generator(generator_path, device=device).state_dict())
                inverter.clear_cache()
                avg_image = inverter.average_image()
                log(f"reloaded {generator_path}")
    stream.close()
    ckpt.save(step, encoder=enc, opt=opt)
    enc.eval()
    path = save_inverter(
        inverter, run.out / "encoder.safetensors", source="charm demo encoder (factory.training.encoder)"
    )
    log(f"wrote {path}")
    return path
