"""``python main.py render --model PATH --seeds 0-3 --out DIR``: render random faces from seeds.

As in the release's gen_images: z = RandomState(seed).randn(1, z_dim), optional truncation toward
w_avg, and the user transform (angle in degrees counter-clockwise, tx/ty in image widths, +tx right,
+ty down). Writes DIR/seed0000.png ... as 8-bit PNGs of clamp(img * 127.5 + 128, 0, 255).
--model names a model as every command does (:mod:`engine.model_store`): 'demo', a known name (with
--download to fetch it when missing), a bundle folder, or a model file.
"""

from __future__ import annotations

import argparse

from engine.cli._options import add_device_option, add_model_option, check_out_dir, model_manifest, resolve_device

COMMAND = "render"
HELP = "Render images from seeds with a StyleGAN3 generator (writes seedNNNN.png)."


def parse_seeds(text: str) -> list[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11] (order kept, duplicates dropped)."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad seed range {part!r}: use e.g. 0-3,7") from None
        if a < 0 or b < a or b >= 2**32:
            raise argparse.ArgumentTypeError(f"bad seed range {part!r}: seeds are 0..2**32-1, low-high")
        seeds.extend(s for s in range(a, b + 1) if s not in seeds)
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given")
    return seeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_option(parser, "the generator")
    parser.add_argument("--seeds", required=True, type=parse_seeds, help="seeds, e.g. 0-3 or 1,5,10-12")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--trunc", type=float, default=1.0, help="truncation psi (default 1 = none; 0.7 is typical)")
    parser.add_argument("--trunc-cutoff", type=int, default=None, help="apply truncation to the first N ws only")
    parser.add_argument("--angle", type=float, default=0.0, help="rotation in degrees, counter-clockwise")
    parser.add_argument("--tx", type=float, default=0.0, help="translation right, in image widths")
    parser.add_argument("--ty", type=float, default=0.0, help="translation down, in image widths")
    parser.add_argument("--class", dest="class_idx", type=int, default=None, help="class index for conditional models")
    add_device_option(parser, "auto")


def load_render_generator(spec: str, download: bool, device):
    """The generator ``--model`` names: a generator file is loaded as it is; anything else (demo, a
    known name, a bundle) through its bundle."""
    from pathlib import Path

    from engine.bundle_build import file_kind
    from engine.checkpoints import load_generator
    from engine.models import load_bundle

    p = Path(spec).expanduser()
    if p.is_file() and p.name != "manifest.json" and file_kind(p) == "generator":
        return load_generator(p, device=device)
    return load_bundle(model_manifest(spec, download), device=device, with_inverter=False).generator


def run(args: argparse.Namespace) -> int:
    import sys

    from engine import make_transform
    from engine.jobs import run_in_terminal
    from engine.render import render_seeds

    device = resolve_device(args.device)
    check_out_dir(args.out)
    G = load_render_generator(args.model, args.download, device)
    if G.c_dim == 0 and args.class_idx is not None:
        print("warning: --class ignored, the model is unconditional", file=sys.stderr)
    transform = make_transform(args.angle, args.tx, args.ty, device=device)
    paths = run_in_terminal(
        lambda ctl: render_seeds(
            G,
            args.seeds,
            args.out,
            truncation_psi=args.trunc,
            truncation_cutoff=args.trunc_cutoff,
            transform=transform,
            class_index=args.class_idx if G.c_dim > 0 else None,
            ctl=ctl,
        ),
        quiet=len(args.seeds) < 2,
    )
    for path in paths:
        print(path)
    return 0
