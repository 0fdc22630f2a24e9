"""``python main.py train-demo generator|encoder|predictor|directions``: train the embedded demo model.

Every trainer checkpoints to ``--out`` (default ``out/train/<what>``) every few minutes and continues
with ``--resume``. Order: generator, predictor, encoder (needs the generator), directions (needs the
generator and the predictor), then ``package`` writes the bundle (resources/models/demo).
``--steps`` is the total number of steps of the run (a resumed run goes on up to it). The generator
trains in two phases: regression, then ``--resume --adv-weight W --edge-weight E`` with a larger
``--steps`` (sharpening; see factory/training/discriminator.py). Runs on CUDA when available
(``--device`` to choose).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from factory.training.common import RunOptions

COMMAND = "train-demo"
HELP = "Train the embedded demo model (generator, encoder, predictor, directions); resumable."

WHATS = ("generator", "encoder", "predictor", "directions", "package")

#: config fields of the --tiny runs (tests): tiny architectures and batches
TINY: dict[str, dict[str, Any]] = {
    "generator": {"size": 16, "w_dim": 16, "num_layers": 3, "channel_base": 64, "channel_max": 8, "batch": 2},
    "predictor": {"size": 16, "width": 4, "batch": 2},
    "encoder": {"batch": 2},
    "directions": {"calib_samples": 4, "stylespace_top": 2},
}


#: The options after WHAT, in --help order: flag -> (type, default, help); type bool: a switch (store_true).
OPTIONS: dict[str, tuple[type, Any, str]] = {
    "--out": (str, None, "output/checkpoint folder (default out/train/WHAT)"),
    "--steps": (int, None, "total training steps (samples for directions)"),
    "--minutes": (
        float,
        None,
        "generator/encoder: wall-clock budget of this run; it takes as many steps as fit "
        "(at most --steps) and the learning-rate schedule spans them",
    ),
    "--size": (int, None, "image size (generator output; inputs of the others)"),
    "--batch": (int, None, "batch size"),
    "--resume": (bool, False, "continue from OUT/checkpoint.pt"),
    "--generator": (str, "out/train/generator/generator.safetensors", "generator file (encoder, directions)"),
    "--predictor": (str, "out/train/predictor/predictor.safetensors", "predictor file (directions)"),
    "--device": (str, None, "cpu, cuda, cuda:1 (default: cuda when available)"),
    "--lr": (float, None, "generator/encoder: learning rate (also on --resume)"),
    "--iters": (int, None, "encoder: ReStyle passes trained per step (also on --resume; 1 = cheap first phase)"),
    "--workers": (int, 0, "generator/encoder: render processes working ahead (use several with a GPU)"),
    "--threads": (int, 2, "CPU threads (0: torch default)"),
    "--checkpoint-every": (float, 180.0, "seconds between checkpoints"),
    "--train": (str, "out/train", "package: folder holding the trainers' outputs"),
    "--dest": (str, "resources/models/demo", "package: bundle folder to write"),
    "--tiny": (bool, False, "tiny architecture (tests)"),
    "--follow": (bool, False, "encoder: reload --generator whenever it changes (train alongside the generator)"),
    "--freeze-bn": (bool, False, "encoder: BatchNorm on running statistics (the multi-pass phase after --iters 1)"),
    "--image-weight": (float, None, "encoder: weight of the image loss"),
    "--blur": (float, None, "predictor: largest blur sigma (px) of the soft-image augmentation (also on --resume)"),
    "--num-layers": (int, None, "generator: synthesis layers (new runs)"),
    "--channel-base": (int, None, "generator: channel base (new runs)"),
    "--channel-max": (int, None, "generator: channel maximum (new runs)"),
    "--edge-weight": (float, None, "generator: weight of the edge (finite-difference) loss (also on --resume)"),
    "--adv-weight": (
        float,
        None,
        "generator: weight of the adversarial loss, > 0 starts the sharpening phase (also on --resume)",
    ),
    "--mapping-from": (
        str,
        None,
        "generator: copy this generator's mapping network (frozen, keeping its latent space so an "
        "encoder trained for it still applies; with --train-mapping, the starting point)",
    ),
    "--train-mapping": (
        bool,
        False,
        "generator, new runs: train the mapping network too (moves the latent space: train "
        "the encoder after the generator, not alongside)",
    ),
    "--init-from": (
        str,
        None,
        "new runs: start from these weights. Generator: a generator .safetensors of the same "
        "architecture. Encoder: an encoder (checkpoint.pt or inverter .safetensors); its rows "
        "are spread over the generator's ws when their counts differ",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=WHATS, help="which part to train")
    for flag, (kind, default, text) in OPTIONS.items():
        if kind is bool:
            parser.add_argument(flag, action="store_true", default=default, help=text)
        else:
            parser.add_argument(flag, type=kind, default=default, help=text)


def run(args: argparse.Namespace) -> int:
    from factory.training.common import RunOptions, pick_device

    out = Path(args.out or f"out/train/{args.what}")
    # How every part runs: resumed or new, where, its CPU threads and render processes, where it logs.
    opts = RunOptions(
        resume=args.resume, device=pick_device(args.device), threads=args.threads, log=_log, workers=args.workers
    )
    parts = {
        "generator": _generator,
        "predictor": _predictor,
        "encoder": _encoder,
        "package": _package,
        "directions": _directions,
    }
    parts[args.what](args, out, opts)
    return 0


def _log(msg: str) -> None:
    print(msg, flush=True)


def _tiny(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields of the ``--tiny`` run of ``args.what`` (none without ``--tiny``)."""
    return TINY.get(args.what, {}) if args.tiny else {}


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> tuple[str, ...]:
    """The options among ``names`` that were given on the command line (not None)."""
    return tuple(k for k in names if getattr(args, k) is not None)


def _set_given(cfg: Any, args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """Copy the given options among ``names`` onto the config fields of the same names."""
    for k in _given(args, names):
        setattr(cfg, k, getattr(args, k))


def _generator(args: argparse.Namespace, out: Path, opts: RunOptions) -> None:
    from factory.training.generator import GeneratorConfig, train_generator

    cfg = GeneratorConfig(**_tiny(args), checkpoint_every_s=args.checkpoint_every)
    architecture = ("size", "num_layers", "channel_base", "channel_max")
    schedule = ("steps", "minutes", "batch", "lr", "edge_weight", "adv_weight")
    _set_given(cfg, args, architecture + schedule + ("mapping_from", "init_from"))
    cfg.train_mapping = args.train_mapping
    override = _given(args, ("lr", "edge_weight", "adv_weight"))
    train_generator(out, cfg, replace(opts, override=override))


def _predictor(args: argparse.Namespace, out: Path, opts: RunOptions) -> None:
    from factory.training.predictor import PredictorTrainConfig, train_predictor

    cfg = PredictorTrainConfig(**_tiny(args), checkpoint_every_s=args.checkpoint_every)
    _set_given(cfg, args, ("steps", "size", "batch"))
    if args.blur is not None:
        cfg.blur_max = args.blur
    override = ("blur_max",) if args.blur is not None else ()
    train_predictor(out, cfg, replace(opts, override=override))


def _encoder(args: argparse.Namespace, out: Path, opts: RunOptions) -> None:
    from factory.training.encoder import EncoderTrainConfig, train_encoder

    cfg = EncoderTrainConfig(**_tiny(args), checkpoint_every_s=args.checkpoint_every)
    override = _given(args, ("batch", "image_weight", "lr", "iters"))
    if args.freeze_bn:
        override += ("freeze_bn",)
    _set_given(cfg, args, ("steps", "minutes") + override)
    cfg.follow = args.follow
    if args.init_from:
        cfg.init_from = args.init_from
    generator = Path(args.generator)
    train_encoder(out, generator, cfg, replace(opts, override=override))


def _package(args: argparse.Namespace, out: Path, opts: RunOptions) -> None:
    from factory.training.package import package_demo

    package_demo(Path(args.train), Path(args.dest), log=opts.log)


def _directions(args: argparse.Namespace, out: Path, opts: RunOptions) -> None:
    from factory.training.directions import DirectionsConfig, fit_directions

    cfg = DirectionsConfig(**_tiny(args))
    if args.steps is not None:
        cfg.samples = args.steps
    _set_given(cfg, args, ("batch",))
    fit_directions(out, Path(args.generator), Path(args.predictor), cfg, opts)
