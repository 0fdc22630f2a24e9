"""Shared pieces of the demo-model trainers: the latent <-> factor code, render batches, checkpoints.

The demo generator's latent ``z`` carries the renderer's non-pose factors, one standard-normal
coordinate per factor, mapped to the factor's value through the normal CDF and the same marginal
distribution as :func:`factory.synthetic.sample_factors` (so ``z ~ N(0, I)`` gives a random renderer
face). ``LATENT_FACTORS`` lists those factors in ``z`` order.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.imageio import atomic_write, from_uint8
from factory.synthetic import FACTOR_NAMES, FACTORS, Factors, render

__all__ = [
    "LATENT_FACTORS",
    "Z_DIM",
    "z_to_factors",
    "factors_to_z",
    "latent_labels",
    "render_batch",
    "RenderStream",
    "StepBudget",
    "pick_device",
    "start_trainer",
    "set_lr",
    "descend",
    "save_state",
    "load_state",
    "resumed_config",
    "Checkpoint",
    "Timer",
    "LossMeter",
    "set_threads",
    "TrainConfig",
    "RunOptions",
    "TrainRun",
]

#: factors carried by z, in order (identity then attribute factors; the pose is never part of a face).
LATENT_FACTORS: tuple[str, ...] = tuple(f.name for f in FACTORS if f.kind != "pose")
Z_DIM = len(LATENT_FACTORS)
_LOW = np.array([FACTORS[FACTOR_NAMES.index(n)].low for n in LATENT_FACTORS], dtype=np.float64)
_HIGH = np.array([FACTORS[FACTOR_NAMES.index(n)].high for n in LATENT_FACTORS], dtype=np.float64)
_COL = {n: i for i, n in enumerate(LATENT_FACTORS)}
# Marginals of sample_factors: powers on a few uniform columns, spikes at 0 for glasses / beard.
_POWER = {"eye_color": 1.6, "hair_lightness": 1.4, "hair_red": 2.0}
_SPIKE = {"glasses": (0.70, 0.5, 1.0), "beard": (0.65, 0.15, 1.0)}  # P(absent), value range when present


def _phi(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(z)


def _phi_inv(u: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri

    return ndtri(np.clip(u, 1e-6, 1 - 1e-6))


def z_to_factors(z: np.ndarray) -> Factors:
    """Latents float [N, Z_DIM] -> renderer factors (pose columns 0, i.e. an aligned face)."""
    z = np.asarray(z, dtype=np.float64)
    u = _phi(z)
    vals = np.zeros((z.shape[0], len(FACTORS)), dtype=np.float32)
    for name, i in _COL.items():
        col = u[:, i]
        if name in _POWER:
            col = col ** _POWER[name]
        if name in _SPIKE:
            p0, lo, hi = _SPIKE[name]
            col = np.where(col < p0, 0.0, lo + (col - p0) / (1 - p0) * (hi - lo))
        else:
            col = _LOW[i] + col * (_HIGH[i] - _LOW[i])
        vals[:, FACTOR_NAMES.index(name)] = col
    return Factors(vals)


def latent_labels(labels: Factors | dict[str, np.ndarray]) -> np.ndarray:
    """The labels of :func:`factory.synthetic.render` (or a dict of their columns by factor name) as
    float32 [N, Z_DIM], columns in ``LATENT_FACTORS`` order (the predictor's targets)."""
    return np.stack([labels[k] for k in LATENT_FACTORS], axis=1).astype(np.float32, copy=False)


def factors_to_z(factors: Factors, rng: np.random.Generator | None = None) -> np.ndarray:
    """Inverse of :func:`z_to_factors` (float64 [N, Z_DIM]); an absent glasses/beard draws a random z
    below the threshold (``rng``) or uses the middle of that interval."""
    out = np.zeros((len(factors), Z_DIM))
    for name, i in _COL.items():
        v = factors[name].astype(np.float64)
        if name in _SPIKE:
            p0, lo, hi = _SPIKE[name]
            absent = rng.uniform(0, p0, len(v)) if rng is not None else np.full(len(v), p0 / 2)
            u = np.where(v <= 0, absent, p0 + (v - lo) / (hi - lo) * (1 - p0))
        else:
            u = (v - _LOW[i]) / (_HIGH[i] - _LOW[i])
            if name in _POWER:
                u = np.clip(u, 0, 1) ** (1 / _POWER[name])
        out[:, i] = _phi_inv(u)
    return out


def render_batch(z: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """Aligned renders of the faces that latents ``z`` [N, Z_DIM] encode: float32 [N,3,size,size] in [-1,1]."""
    images, _, _ = render(z_to_factors(z), size, aligned=True)
    return from_uint8(images, device)


def _render_step(job: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, step, batch, size = job
    z = np.random.default_rng((seed, step)).standard_normal((batch, Z_DIM))
    images, _, _ = render(z_to_factors(z), size, aligned=True)
    return z, images


class RenderStream:
    """Per-step training batches ``(z float64 [B,Z_DIM], images float32 [B,3,S,S] in [-1,1])``.

    Step ``k`` always gets the same faces (seeded by ``(seed, k)``), so a resumed run sees the same
    stream. ``workers > 0`` renders ahead in that many processes (the renderer runs on the CPU; on a
    GPU machine it is the bottleneck without them), at most ``4 * workers`` batches ahead.
    """

    def __init__(
        self, seed: int, batch: int, size: int, start: int, stop: int, device: torch.device, workers: int = 0
    ) -> None:
        self.device = device
        self._jobs = ((seed, k, batch, size) for k in range(start, stop))
        self._pending: collections.deque = collections.deque()
        self._pool = None
        if workers > 0:
            import multiprocessing as mp

            self._pool = mp.get_context("spawn").Pool(workers)
            for job in itertools.islice(self._jobs, 4 * workers):
                self._pending.append(self._pool.apply_async(_render_step, (job,)))

    def __iter__(self) -> RenderStream:
        return self

    def __next__(self) -> tuple[np.ndarray, torch.Tensor]:
        if self._pool is None:
            z, images = _render_step(next(self._jobs))
        else:
            if not self._pending:
                raise StopIteration
            z, images = self._pending.popleft().get()
            job = next(self._jobs, None)
            if job is not None:
                self._pending.append(self._pool.apply_async(_render_step, (job,)))
        return z, from_uint8(images, self.device)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None


class StepBudget:
    """How many steps a run takes: ``steps``, or with a wall-clock budget (``minutes`` > 0) as many as
    fit in it, re-estimated at every step from the rate so far (at most ``steps``). Step-fraction
    learning-rate schedules then span the budget on any machine.

    ``total(step)`` is the current estimate; the run ends when ``step`` reaches it."""

    def __init__(self, start: int, steps: int, minutes: float = 0.0, warmup: int = 10) -> None:
        self.start, self.cap, self.seconds, self.warmup = start, steps, minutes * 60.0, warmup
        self.t0 = time.time()

    def total(self, step: int) -> int:
        elapsed = time.time() - self.t0
        if self.seconds <= 0 or (step - self.start < self.warmup and elapsed < self.seconds):
            return self.cap  # no budget, or no rate measured yet
        if elapsed >= self.seconds:
            return step
        rate = (step - self.start) / elapsed
        return min(self.cap, max(step + 1, self.start + int(rate * self.seconds)))


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Box-filter downscale of [N,C,H,W] by an integer factor."""
    return F.avg_pool2d(x, factor) if factor > 1 else x


def pick_device(name: str | None = None) -> torch.device:
    """``name`` or CUDA when available, else CPU."""
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_threads(n: int | None) -> None:
    """Limit intra-op CPU threads (the dev machine has 2 shared cores)."""
    if n:
        torch.set_num_threads(int(n))


def start_trainer(threads: int | None, device: torch.device | None) -> torch.device:
    """A trainer's first step: limit the CPU threads (:func:`set_threads`); returns ``device`` or
    :func:`pick_device`'s choice."""
    set_threads(threads)
    return device or pick_device()


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group of ``opt`` (a step's schedule value)."""
    for g in opt.param_groups:
        g["lr"] = lr


def descend(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One optimiser step on ``loss``: clear the gradients, back-propagate, update."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write a trainer checkpoint atomically (tensors and plain Python values only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_state` (weights_only: nothing in it is executed)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def resumed_config(saved: dict[str, Any], cfg: Any, override: tuple[str, ...] = ()) -> Any:
    """The config a resumed run uses: the checkpoint's ``saved`` fields, except ``steps``,
    ``minutes``, ``checkpoint_every_s`` and the fields named in ``override``, which come from ``cfg``
    (a dataclass instance; the result has its type)."""
    keep = {"steps", "minutes", "checkpoint_every_s", *override}
    return type(cfg)(**{**saved, **{k: v for k, v in asdict(cfg).items() if k in keep}})


class Checkpoint:
    """A trainer's ``out/checkpoint.pt``: its config, the states of its networks and optimizers
    ("parts", each saved under a name), and the step.

    With ``resume`` and an existing file, ``state`` holds what it saved and ``cfg`` is the config the
    run continues with (:func:`resumed_config`); otherwise ``state`` is None and ``cfg`` is ``cfg``."""

    def __init__(self, out: Path, cfg: Any, resume: bool, override: tuple[str, ...] = ()) -> None:
        self.path = Path(out) / "checkpoint.pt"
        self.state: dict[str, Any] | None = load_state(self.path) if resume and self.path.exists() else None
        self.cfg = cfg if self.state is None else resumed_config(self.state["config"], cfg, override)

    def holds(self, name: str) -> bool:
        """Whether the run resumes from a checkpoint that saved the part ``name``."""
        return self.state is not None and name in self.state

    def restore(self, log: Callable[[str], None], note: str = "", **parts: Any) -> int:
        """Load each named part (``name=module_or_optimizer``) from a resumed checkpoint and log that the
        run resumes (``note`` is appended to the line). Returns the step to go on from (0: a new run)."""
        if self.state is None:
            return 0
        self.load(**parts)
        step = int(self.state["step"])
        log(f"resumed from {self.path} at step {step}{note}")
        return step

    def load(self, **parts: Any) -> None:
        """Load each named part (``name=module_or_optimizer``) from the resumed checkpoint's state."""
        assert self.state is not None, "a new run has no saved state"
        for name, part in parts.items():
            part.load_state_dict(self.state[name])

    def save(self, step: int, **parts: Any) -> None:
        """Write the config, the state dict of each named part and ``step`` (atomically)."""
        save_state(
            self.path, {"config": asdict(self.cfg), **{k: p.state_dict() for k, p in parts.items()}, "step": step}
        )


class Timer:
    """Says when ``every_s`` seconds have passed since the last ``due()`` that returned True."""

    def __init__(self, every_s: float) -> None:
        self.every_s, self.last = every_s, time.time()

    def due(self) -> bool:
        if time.time() - self.last >= self.every_s:
            self.last = time.time()
            return True
        return False


class LossMeter:
    """Training-log bookkeeping: exponential moving average of the loss and images per second since start."""

    def __init__(self, decay: float) -> None:
        self.decay, self.seen, self.t0 = decay, 0, time.time()
        self.value: float | None = None

    def update(self, loss: float, images: int) -> float:
        """Fold in one step's loss over ``images`` images; returns the moving average."""
        self.seen += images
        value = loss if self.value is None else self.decay * self.value + (1 - self.decay) * loss
        self.value = value
        return value

    @property
    def rate(self) -> float:
        return self.seen / max(time.time() - self.t0, 1e-9)


@dataclass
class TrainConfig:
    """The fields every trainer's config has: its schedule (``lr``, ``batch``, ``steps``), the seed of its
    initialisation and data, a wall-clock budget and how often it checkpoints.

    A trainer's config subclasses it and gives its defaults of the first four as class keywords:
    ``class C(TrainConfig, lr=1e-3, batch=8, steps=1000, seed=4)``."""

    lr: float
    batch: int
    steps: int
    seed: int
    # Wall-clock budget of a run in minutes (0: none): the run takes as many steps as fit (at most
    # ``steps``) and the schedule spans them (e.g. a lent GPU's few minutes); see StepBudget.
    minutes: float = 0.0
    checkpoint_every_s: float = 180.0

    def __init_subclass__(cls, **defaults: Any) -> None:
        """Make each class keyword a field of the subclass with that default (before ``@dataclass``
        reads the class; an inherited field keeps its place)."""
        super().__init_subclass__()
        fields = dict(cls.__dict__.get("__annotations__", {}))
        for name, value in defaults.items():
            if name not in TrainConfig.__annotations__:
                raise TypeError(f"{cls.__name__}: {name!r} is not a field of TrainConfig")
            fields[name] = TrainConfig.__annotations__[name]
            setattr(cls, name, value)
        cls.__annotations__ = fields


@dataclass
class RunOptions:
    """How a trainer runs, apart from what it trains (its config)."""

    # Continue from ``out/checkpoint.pt`` when there is one.
    resume: bool = False
    # None: pick_device's choice.
    device: torch.device | None = None
    # CPU threads (set_threads; None or 0: torch's default).
    threads: int | None = 2
    log: Callable[[str], None] = print
    # Render processes working ahead (RenderStream; 0: render in the trainer's process).
    workers: int = 0
    # Config fields a resumed run takes from the given config instead of the checkpoint.
    override: tuple[str, ...] = ()


class TrainRun:
    """One run of a trainer, the bookkeeping all trainers share. It limits the CPU threads, picks
    ``device`` and opens ``out/checkpoint.pt`` (``ckpt``, a :class:`Checkpoint`: ``cfg`` is the config
    the run goes on with); from :meth:`begin` on it counts the steps (``budget``, a
    :class:`StepBudget`), says when to checkpoint (``timer``) and averages the loss (``meter``).

    ``keep``: config fields a resumed run always takes from ``cfg``, beside ``opts.override``."""

    def __init__(self, out: Path, cfg: TrainConfig, opts: RunOptions | None = None, keep: tuple[str, ...] = ()) -> None:
        self.opts = opts or RunOptions()
        self.log = self.opts.log
        self.device = start_trainer(self.opts.threads, self.opts.device)
        self.out = Path(out)
        self.ckpt = Checkpoint(self.out, cfg, self.opts.resume, (*keep, *self.opts.override))
        self.cfg: Any = self.ckpt.cfg

    def stream(self, start: int, size: int) -> RenderStream:
        """The run's training batches from step ``start`` on (:class:`RenderStream`, ``size`` px)."""
        cfg = self.cfg
        return RenderStream(cfg.seed, cfg.batch, size, start, cfg.steps, self.device, self.opts.workers)

    def begin(self, step: int, decay: float = 0.95) -> None:
        """Start the clocks of the step loop at ``step`` (``decay``: of the loss average)."""
        self.budget = StepBudget(step, self.cfg.steps, self.cfg.minutes)
        self.timer = Timer(self.cfg.checkpoint_every_s)
        self.meter = LossMeter(decay)
