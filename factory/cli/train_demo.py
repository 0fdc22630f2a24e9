"""``python main.py train-demo generator|encoder|predictor|directions``: train the embedded demo model.

Every trainer checkpoints to ``--out`` (default ``out/train/<what>``) every few minutes and continues
with ``--resume``. Order: generator, predictor, encoder (needs the generator), directions (needs the
generator and the predictor), then ``package`` writes the bundle (resources/models/demo).
``--steps`` is the total number of steps of the run (a resumed run goes on up to it). The generator
trains in two phases: regression, then ``--resume --adv-weight W --edge-weight E`` with a larger
``--steps`` (sharpening; see engine/training/discriminator.py). Runs on CUDA when available
(``--device`` to choose).
"""

from __future__ import annotations

import argparse

COMMAND = "train-demo"
HELP = "Train the embedded demo model (generator, encoder, predictor, directions); resumable."

WHATS = ("generator", "encoder", "predictor", "directions", "package")


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
    from pathlib import Path

    from engine.training.common import pick_device

    out = Path(args.out or f"out/train/{args.what}")
    device = pick_device(args.device)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    if args.what == "generator":
        from engine.training.generator import GeneratorConfig, train_generator

        cfg = GeneratorConfig(checkpoint_every_s=args.checkpoint_every)
        if args.tiny:
            cfg = GeneratorConfig(
                size=16,
                w_dim=16,
                num_layers=3,
                channel_base=64,
                channel_max=8,
                batch=2,
                checkpoint_every_s=args.checkpoint_every,
            )
        for k in (
            "steps",
            "minutes",
            "size",
            "batch",
            "lr",
            "num_layers",
            "channel_base",
            "channel_max",
            "mapping_from",
            "init_from",
            "edge_weight",
            "adv_weight",
        ):
            if getattr(args, k) is not None:
                setattr(cfg, k, getattr(args, k))
        cfg.train_mapping = args.train_mapping
        given = tuple(k for k in ("lr", "edge_weight", "adv_weight") if getattr(args, k) is not None)
        train_generator(
            out,
            cfg,
            resume=args.resume,
            device=device,
            threads=args.threads,
            log=log,
            workers=args.workers,
            override=given,
        )
    elif args.what == "predictor":
        from engine.training.predictor import PredictorTrainConfig, train_predictor

        cfg = PredictorTrainConfig(checkpoint_every_s=args.checkpoint_every)
        if args.tiny:
            cfg = PredictorTrainConfig(size=16, width=4, batch=2, checkpoint_every_s=args.checkpoint_every)
        for k in ("steps", "size", "batch"):
            if getattr(args, k) is not None:
                setattr(cfg, k, getattr(args, k))
        if args.blur is not None:
            cfg.blur_max = args.blur
        train_predictor(
            out,
            cfg,
            resume=args.resume,
            device=device,
            threads=args.threads,
            log=log,
            override=("blur_max",) if args.blur is not None else (),
        )
    elif args.what == "encoder":
        from engine.training.encoder import EncoderTrainConfig, train_encoder

        cfg = EncoderTrainConfig(checkpoint_every_s=args.checkpoint_every)
        if args.tiny:
            cfg = EncoderTrainConfig(batch=2, checkpoint_every_s=args.checkpoint_every)
        given = tuple(k for k in ("batch", "image_weight", "lr", "iters") if getattr(args, k) is not None)
        if args.freeze_bn:
            cfg.freeze_bn, given = True, given + ("freeze_bn",)
        for k in ("steps", "minutes") + given:
            if getattr(args, k) is not None:
                setattr(cfg, k, getattr(args, k))
        cfg.follow = args.follow
        if args.init_from:
            cfg.init_from = args.init_from
        train_encoder(
            out,
            Path(args.generator),
            cfg,
            resume=args.resume,
            device=device,
            threads=args.threads,
            log=log,
            workers=args.workers,
            override=given,
        )
    elif args.what == "package":
        from engine.training.package import package_demo

        package_demo(Path(args.train), Path(args.dest), log=log)
    else:
        from engine.training.directions import DirectionsConfig, fit_directions

        cfg = DirectionsConfig()
        if args.tiny:
            cfg = DirectionsConfig(calib_samples=4, stylespace_top=2)
        if args.steps is not None:
            cfg.samples = args.steps
        if args.batch is not None:
            cfg.batch = args.batch
        fit_directions(
            out, Path(args.generator), Path(args.predictor), cfg, device=device, threads=args.threads, log=log
        )
    return 0
