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
from pathlib import Path
from typing import Any

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=WHATS, help="which part to train")
    parser.add_argument("--out", default=None, help="output/checkpoint folder (default out/train/WHAT)")
    parser.add_argument("--steps", type=int, default=None, help="total training steps (samples for directions)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="generator/encoder: wall-clock budget of this run; it takes as many steps as fit "
        "(at most --steps) and the learning-rate schedule spans them",
    )
    parser.add_argument("--size", type=int, default=None, help="image size (generator output; inputs of the others)")
    parser.add_argument("--batch", type=int, default=None, help="batch size")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument(
        "--generator", default="out/train/generator/generator.safetensors", help="generator file (encoder, directions)"
    )
    parser.add_argument(
        "--predictor", default="out/train/predictor/predictor.safetensors", help="predictor file (directions)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--lr", type=float, default=None, help="generator/encoder: learning rate (also on --resume)")
    parser.add_argument(
        "--iters",
        type=int,
        default=None,
        help="encoder: ReStyle passes trained per step (also on --resume; 1 = cheap first phase)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="generator/encoder: render processes working ahead (use several with a GPU)",
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (0: torch default)")
    parser.add_argument("--checkpoint-every", type=float, default=180.0, help="seconds between checkpoints")
    parser.add_argument("--train", default="out/train", help="package: folder holding the trainers' outputs")
    parser.add_argument("--dest", default="resources/models/demo", help="package: bundle folder to write")
    parser.add_argument("--tiny", action="store_true", help="tiny architecture (tests)")
    parser.add_argument(
        "--follow",
        action="store_true",
        help="encoder: reload --generator whenever it changes (train alongside the generator)",
    )
    parser.add_argument(
        "--freeze-bn",
        action="store_true",
        help="encoder: BatchNorm on running statistics (the multi-pass phase after --iters 1)",
    )
    parser.add_argument("--image-weight", type=float, default=None, help="encoder: weight of the image loss")
    parser.add_argument(
        "--blur",
        type=float,
        default=None,
        help="predictor: largest blur sigma (px) of the soft-image augmentation (also on --resume)",
    )
    parser.add_argument("--num-layers", type=int, default=None, help="generator: synthesis layers (new runs)")
    parser.add_argument("--channel-base", type=int, default=None, help="generator: channel base (new runs)")
    parser.add_argument("--channel-max", type=int, default=None, help="generator: channel maximum (new runs)")
    parser.add_argument(
        "--edge-weight",
        type=float,
        default=None,
        help="generator: weight of the edge (finite-difference) loss (also on --resume)",
    )
    parser.add_argument(
        "--adv-weight",
        type=float,
        default=None,
        help="generator: weight of the adversarial loss, > 0 starts the sharpening phase (also on --resume)",
    )
    parser.add_argument(
        "--mapping-from",
        default=None,
        help="generator: copy this generator's mapping network (frozen, keeping its latent space so an "
        "encoder trained for it still applies; with --train-mapping, the starting point)",
    )
    parser.add_argument(
        "--train-mapping",
        action="store_true",
        help="generator, new runs: train the mapping network too (moves the latent space: train "
        "the encoder after the generator, not alongside)",
    )
    parser.add_argument(
        "--init-from",
        default=None,
        help="new runs: start from these weights. Generator: a generator .safetensors of the same "
        "architecture. Encoder: an encoder (checkpoint.pt or inverter .safetensors); its rows "
        "are spread over the generator's ws when their counts differ",
    )


def run(args: argparse.Namespace) -> int:
    from factory.training.common import pick_device

    out = Path(args.out or f"out/train/{args.what}")
    # Options every part takes: where it runs, its CPU threads, where it logs.
    opts = {"device": pick_device(args.device), "threads": args.threads, "log": _log}
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


def _generator(args: argparse.Namespace, out: Path, opts: dict[str, Any]) -> None:
    from factory.training.generator import GeneratorConfig, train_generator

    cfg = GeneratorConfig(**_tiny(args), checkpoint_every_s=args.checkpoint_every)
    architecture = ("size", "num_layers", "channel_base", "channel_max")
    schedule = ("steps", "minutes", "batch", "lr", "edge_weight", "adv_weight")
    _set_given(cfg, args, architecture + schedule + ("mapping_from", "init_from"))
    cfg.train_mapping = args.train_mapping
    override = _given(args, ("lr", "edge_weight", "adv_weight"))
    train_generator(out, cfg, resume=args.resume, workers=args.workers, override=override, **opts)


def _predictor(args: argparse.Namespace, out: Path, opts: dict[str, Any]) -> None:
    from factory.training.predictor import PredictorTrainConfig, train_predictor

    cfg = PredictorTrainConfig(**_tiny(args), checkpoint_every_s=args.checkpoint_every)
    _set_given(cfg, args, ("steps", "size", "batch"))
    if args.blur is not None:
        cfg.blur_max = args.blur
    override = ("blur_max",) if args.blur is not None else ()
    train_predictor(out, cfg, resume=args.resume, override=override, **opts)


def _encoder(args: argparse.Namespace, out: Path, opts: dict[str, Any]) -> None:
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
    train_encoder(out, generator, cfg, resume=args.resume, workers=args.workers, override=override, **opts)


def _package(args: argparse.Namespace, out: Path, opts: dict[str, Any]) -> None:
    from factory.training.package import package_demo

    package_demo(Path(args.train), Path(args.dest), log=opts["log"])


def _directions(args: argparse.Namespace, out: Path, opts: dict[str, Any]) -> None:
    from factory.training.directions import DirectionsConfig, fit_directions

    cfg = DirectionsConfig(**_tiny(args))
    if args.steps is not None:
        cfg.samples = args.steps
    _set_given(cfg, args, ("batch",))
    fit_directions(out, Path(args.generator), Path(args.predictor), cfg, **opts)
