"""Predictor trainer: regress the renderer's factors from aligned renders generated on the fly.

Targets are the identity and attribute factors (the pose is 0 in aligned renders), normalised to
[0,1] by their ranges; loss is the mean squared error. Faces come from :func:`sample_factors` with a
per-step seed, so a resumed run sees the same stream.

``blur_max > 0`` softens half of each batch with a Gaussian blur of random width (sigma uniform in
[0, blur_max] px) and adds faint noise: the predictor then reads the factors off a generator's
samples, which are never as crisp as the renderer's, instead of extrapolating on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from factory.training.common import LATENT_FACTORS, RunOptions, TrainConfig, TrainRun, descend, latent_labels, set_lr

__all__ = ["PredictorTrainConfig", "train_predictor", "predictor_batch", "soften"]


@dataclass
class PredictorTrainConfig(TrainConfig, lr=2e-3, batch=32, steps=1500, seed=1):
    size: int = 64
    width: int = 24
    # Largest blur sigma (px at ``size``) of the soft-image augmentation; 0 = none.
    blur_max: float = 0.0


def predictor_batch(n: int, size: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(images float32 [n,3,size,size] in [-1,1], factors float32 [n,len(LATENT_FACTORS)]) of random aligned renders."""
    from engine.imageio import from_uint8
    from factory.synthetic import render, sample_factors

    f = sample_factors(n, seed=seed)
    images, _, labels = render(f, size, aligned=True)
    return from_uint8(images, device), torch.from_numpy(latent_labels(labels)).to(device)


def soften(x: torch.Tensor, blur_max: float, seed: int) -> torch.Tensor:
    """Blur every other image of x [N,3,H,W] in [-1,1] with sigma ~ U(0, blur_max) px and add noise
    (std up to 0.02); deterministic for a seed. Returns a new tensor."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    sig = torch.rand(n, generator=g)[1::2] * blur_max
    noise = (torch.randn(x.shape, generator=g) * (torch.rand(n, 1, 1, 1, generator=g) * 0.02))[1::2].to(x)
    radius = max(1, int(np.ceil(3 * blur_max)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None] / sig.clamp_min(1e-3)[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(3, 0).to(x)  # one kernel per channel plane
    soft = x[1::2]
    m = soft.shape[0] * 3
    planes = F.pad(soft.reshape(1, m, *x.shape[2:]), [radius] * 4, mode="replicate")
    planes = F.conv2d(F.conv2d(planes, k[:, None, None, :], groups=m), k[:, None, :, None], groups=m)
    out = x.clone()
    out[1::2] = (planes.reshape(soft.shape) + noise).clamp(-1, 1)
    return out


def _new_model(cfg: PredictorTrainConfig, device: torch.device):
    from engine.predictor import AttributePredictor
    from factory.synthetic import FACTOR_NAMES, FACTORS

    torch.manual_seed(cfg.seed)
    fs = [FACTORS[FACTOR_NAMES.index(n)] for n in LATENT_FACTORS]
    return AttributePredictor(list(LATENT_FACTORS), [f.low for f in fs], [f.high for f in fs], cfg.size, cfg.width).to(
        device
    )


def train_predictor(out: Path, cfg: PredictorTrainConfig, opts: RunOptions | None = None) -> Path:
    """Train (or continue) the predictor; writes ``out/checkpoint.pt`` and ``out/predictor.safetensors``.

    ``opts.override``: fields a resumed run takes from ``cfg`` instead of the checkpoint (e.g.
    ``("blur_max",)``: fine-tuning a predictor on soft images)."""
    from engine.predictor import save_predictor

    run = TrainRun(out, cfg, opts)
    cfg, device, log, ckpt = run.cfg, run.device, run.log, run.ckpt
    model = _new_model(cfg, device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step = ckpt.restore(log, model=model, opt=opt)
    model.train()
    span = model.high - model.low

    run.begin(step)
    while step < (total_steps := run.budget.total(step)):
        lr = cfg.lr * (0.1 if step > 0.8 * total_steps else 1.0)
        set_lr(opt, lr)
        x, y = predictor_batch(cfg.batch, cfg.size, seed=cfg.seed * 1_000_003 + step, device=device)
        if cfg.blur_max > 0:
            x = soften(x, cfg.blur_max, seed=cfg.seed * 7_000_003 + step)
        loss = (model.forward_normalized(x) - (y - model.low) / span).square().mean()
        descend(opt, loss)
        step += 1
        ema = run.meter.update(loss.item(), cfg.batch)
        if step % 25 == 0 or step == total_steps:
            log(f"step {step}/{total_steps} mse {ema:.4f} (rms {ema**0.5:.3f} of range) {run.meter.rate:.1f} img/s")
        if run.timer.due():
            ckpt.save(step, model=model, opt=opt)
    ckpt.save(step, model=model, opt=opt)
    model.eval()
    path = save_predictor(model, run.out / "predictor.safetensors")
    log(f"wrote {path}")
    return path
