"""``python main.py convert IN OUT``: rewrite any generator Charm Studio reads as its own format.

IN is an NVIDIA StyleGAN3 ``.pkl``, a stylegan3-editing generator ``.pt`` or a ``.safetensors`` file.
A stylegan3-editing encoder checkpoint is refused (converting it would keep only its generator and drop
the encoder): give it to ``invert --model FILE`` as it is, or pass ``--generator-only`` to convert its
decoder on purpose. OUT is one ``.safetensors`` file: the weights plus
the generator's configuration in the safetensors header (see engine/checkpoints.py). ``.safetensors``
is appended when OUT has another suffix; an existing folder receives ``<IN stem>.safetensors``.
Converted files load faster, need no pickle at all, and can be shared safely.
"""

from __future__ import annotations

import argparse

COMMAND = "convert"
HELP = "Convert a StyleGAN3 checkpoint (.pkl/.pt) to Charm Studio's .safetensors format."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN", help="checkpoint to read (.pkl, .pt, .safetensors)")
    parser.add_argument("output", metavar="OUT", help="file to write (.safetensors), or an existing folder")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    parser.add_argument(
        "--generator-only",
        action="store_true",
        help="for an encoder checkpoint: convert its generator (decoder) alone, dropping the encoder",
    )


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from engine.checkpoints import build_generator, read_generator_checkpoint, save_generator
    from engine.errors import CharmError

    src = Path(args.input)
    out = Path(args.output)
    if out.is_dir():
        out = out / f"{src.stem}.safetensors"
    elif out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    if out.exists() and not args.force:
        print(f"error: {out} exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    if out.resolve() == src.resolve():
        print("error: IN and OUT are the same file", file=sys.stderr)
        return 1
    ckpt = read_generator_checkpoint(src)
    if ckpt.source_format == "encoder-checkpoint" and not args.generator_only:
        raise CharmError(
            f"{str(src)!r} is a stylegan3-editing encoder checkpoint: converting it would keep only its "
            f"generator and drop the encoder. Use it as it is with 'invert --model {src}', or pass "
            "--generator-only to convert the generator alone"
        )
    # Building checks every shape against the configuration before anything is written.
    build_generator(ckpt.init_kwargs, ckpt.state_dict, path=src)
    save_generator(ckpt, out)
    print(f"wrote {out} ({ckpt.describe()}, from {ckpt.source_format})")
    return 0
