"""Pivotal tuning on a video: one tuned generator for the whole clip, resumable and cancellable.

As in the paper's release, the pivots are the clip's inverted latents (kept: the clip is not inverted
again afterwards) and the targets are the frames' crop windows seen through their transforms; Adam
trains the synthesis network except its Fourier input (:func:`engine.inversion.pti.tunable_parameter_names`),
so rotation and translation keep working. Unlike the release:

- long clips tune on a sample of frames spread evenly over the clip (``max_frames``);
- each step takes a shuffled mini-batch (a new permutation per pass over the frames, drawn from the
  step number, so a resumed run draws the same batches);
- the early stop works: it stops once the moving average of the perceptual term (LPIPS, or MSE in the
  L2 fallback) is below ``stop_below``, or once the loss has not improved by ``min_improvement`` over
  ``patience`` steps;
- every ``checkpoint_every`` steps the trainable weights, the optimiser state and the losses are saved
  atomically; a later call with the same folder resumes from the last checkpoint.

Targets are uint8 crops ([M,R,R,3], may be memory-mapped) so memory does not grow with the clip.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engine.imageio import atomic_write, from_uint8
from engine.jobs import JobControl

if TYPE_CHECKING:
    from engine.networks.stylegan3 import Generator

__all__ = ["ClipTuneResult", "ClipTuneSettings", "sample_frames", "tune_clip"]

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class ClipTuneSettings:
    steps: int = 350
    lr: float = 3e-4
    batch: int = 4
    max_frames: int = 200
    l2_weight: float = 1.0
    lpips_weight: float = 1.0
    stop_below: float | None = 0.06  # moving-average perceptual term (LPIPS; MSE in the fallback: 0.002)
    patience: int = 50
    min_improvement: float = 0.01  # relative, over ``patience`` steps
    checkpoint_every: int = 25
    seed: int = 0

    def params(self) -> dict[str, Any]:
        """What changes the result (checkpointing does not)."""
        d = asdict(self)
        d.pop("checkpoint_every")
        return d


@dataclass
class ClipTuneResult:
    generator: Generator
    steps: int
    losses: list[float] = field(default_factory=list)
    stopped_early: str | None = None  # why it stopped before ``steps`` ("threshold", "plateau"), or None
    resumed_from: int = 0


def sample_frames(usable: np.ndarray, max_frames: int) -> np.ndarray:
    """Indices of at most ``max_frames`` usable frames (bool [N]), spread evenly over the clip."""
    idx = np.flatnonzero(np.asarray(usable, dtype=bool))
    if len(idx) <= max_frames:
        return idx
    pick = np.round(np.linspace(0, len(idx) - 1, max_frames)).astype(int)
    return idx[np.unique(pick)]


def _batch(step: int, m: int, batch: int, seed: int) -> np.ndarray:
    """The frames (indices into the M targets) of ``step``: consecutive slices of per-pass permutations."""
    b = min(batch, m)
    start = step * b
    out: list[int] = []
    while len(out) < b:
        epoch, offset = divmod(start, m)
        perm = np.random.default_rng([seed, epoch]).permutation(m)
        take = perm[offset : offset + (b - len(out))]
        out.extend(take.tolist())
        start += len(take)
    return np.array(out)


def tune_clip(
    generator: Generator,
    pivots: np.ndarray,
    targets: np.ndarray,
    transforms: np.ndarray,
    settings: ClipTuneSettings,
    folder: Path | None = None,
    ctl: JobControl | None = None,
    perceptual: Any = None,
) -> ClipTuneResult:
    """Tune a copy of ``generator`` so each pivot renders its target through its transform.

    pivots: float32 [M,num_ws,w_dim]; targets: uint8 [M,R,R,3] RGB crops at the generator's resolution;
    transforms: float32 [M,3,3] stored generator transforms. folder: where checkpoints go (resume);
    None disables them. ``generator`` is never modified. Raises :class:`engine.jobs.Cancelled` when
    cancelled (the last checkpoint stays for the next run).
    """
    from engine.inversion.pti import tunable_parameter_names
    from engine.losses import PerceptualLoss, mse_per_sample

    ctl = ctl or JobControl()
    m = len(pivots)
    if m == 0 or len(targets) != m or len(transforms) != m:
        raise ValueError(f"need as many pivots, targets and transforms (got {m}, {len(targets)}, {len(transforms)})")
    device = next(generator.parameters()).device
    tuned = copy.deepcopy(generator).eval()
    trainable = set(tunable_parameter_names(tuned))
    params = []
    for name, p in tuned.named_parameters():
        p.requires_grad_(name in trainable)
        p.grad = None
        if name in trainable:
            params.append(p)
    opt = torch.optim.Adam(params, lr=settings.lr)
    if perceptual is None and settings.lpips_weight:
        perceptual = PerceptualLoss("alex", device=device, resize=256)
    lpips_real = perceptual is not None and getattr(perceptual, "is_lpips", True)
    threshold = settings.stop_below if lpips_real else (0.002 if settings.stop_below is not None else None)

    result = ClipTuneResult(generator=tuned, steps=0)
    ckpt = folder / CHECKPOINT if folder is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state.get("params") == _jsonable(settings.params()) and state.get("frames") == m:
            named = dict(tuned.named_parameters())
            with torch.no_grad():
                for k, v in state["weights"].items():
                    named[k].copy_(v)
            opt.load_state_dict(state["optimizer"])
            result.steps = result.resumed_from = int(state["step"])
            result.losses = [float(x) for x in state["losses"]]
    checkpoint_layers = int(generator.img_resolution) >= 512
    ctl.stage("Tuning the generator (PTI)", total=settings.steps)
    ctl.progress(result.steps)
    perc_ema: float | None = None
    while result.steps < settings.steps:
        ctl.check()
        pick = _batch(result.steps, m, settings.batch, settings.seed)
        ws = torch.from_numpy(np.ascontiguousarray(pivots[pick], dtype=np.float32)).to(device)
        tr = torch.from_numpy(np.ascontiguousarray(transforms[pick], dtype=np.float32)).to(device)
        target = torch.cat([from_uint8(np.asarray(targets[i]), device) for i in pick])
        with torch.enable_grad():
            img = tuned.synthesis(ws, transform=tr, checkpoint_layers=checkpoint_layers)
            l2 = mse_per_sample(img, target).mean()
            perc = perceptual(img, target).mean() if perceptual is not None and settings.lpips_weight else l2
            loss = settings.l2_weight * l2 + settings.lpips_weight * perc
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        result.steps += 1
        value = float(loss.detach())
        result.losses.append(value)
        pv = float(perc.detach())
        perc_ema = pv if perc_ema is None else 0.8 * perc_ema + 0.2 * pv
        ctl.progress(result.steps)
        if ckpt is not None and (result.steps % settings.checkpoint_every == 0 or result.steps == settings.steps):
            _save_checkpoint(ckpt, tuned, trainable, opt, result, settings, m)
        if threshold is not None and perc_ema < threshold and result.steps >= 5:
            result.stopped_early = "threshold"
            break
        if _plateau(result.losses, settings.patience, settings.min_improvement):
            result.stopped_early = "plateau"
            break
    if ckpt is not None and result.stopped_early:
        _save_checkpoint(ckpt, tuned, trainable, opt, result, settings, m)
    tuned.eval().requires_grad_(False)
    for prm in tuned.parameters():
        prm.grad = None
    return result


def _plateau(losses: list[float], patience: int, min_improvement: float) -> bool:
    """True when the mean loss of the last ``patience`` steps is not ``min_improvement`` (relative)
    below the mean of the ``patience`` steps before them."""
    if patience <= 0 or len(losses) < 2 * patience:
        return False
    recent = float(np.mean(losses[-patience:]))
    before = float(np.mean(losses[-2 * patience : -patience]))
    return not math.isfinite(recent) or recent > before * (1.0 - min_improvement)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if not isinstance(v, tuple) else list(v)) for k, v in d.items()}


def _save_checkpoint(
    path: Path,
    tuned: torch.nn.Module,
    trainable: set[str],
    opt: torch.optim.Optimizer,
    result: ClipTuneResult,
    settings: ClipTuneSettings,
    frames: int,
) -> None:
    state = {
        "step": result.steps,
        "weights": {k: v.detach().cpu() for k, v in tuned.named_parameters() if k in trainable},
        "optimizer": opt.state_dict(),
        "losses": list(result.losses),
        "params": _jsonable(settings.params()),
        "frames": frames,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(state, tmp))
