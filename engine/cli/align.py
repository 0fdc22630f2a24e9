"""``python main.py align IN.jpg --out DIR``: align one face and write aligned.png, crop.png, transform.json.

transform.json holds the StyleGAN3 input transform (``transform``, the 3x3 matrix for
``G.synthesis(..., transform=)``, and its ``angle_deg, tx, ty, zoom``), the quads and landmarks in
source pixels, and every detected face so another index can be chosen with ``--face``.
"""

from __future__ import annotations

import argparse

from engine.cli._options import add_face_option, check_out_dir

COMMAND = "align"
HELP = "Detect and FFHQ-align a face: writes aligned.png, crop.png and transform.json."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="photo to read (JPEG, PNG, WebP, BMP, TIFF)")
    parser.add_argument("--out", required=True, help="folder to write aligned.png, crop.png, transform.json")
    parser.add_argument("--size", type=int, default=1024, help="side of the output images (default 1024)")
    add_face_option(parser, "align")
    parser.add_argument(
        "--scale",
        choices=("eyes", "ffhq"),
        default="eyes",
        help="crop size rule: 'eyes' (the paper's release, default) or 'ffhq' (original FFHQ)",
    )
    parser.add_argument(
        "--window",
        metavar="JSON",
        default=None,
        help="reuse the crop window (crop_quad) of an earlier transform.json, e.g. a "
        "video's first frame, so the transform follows the face inside it",
    )


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    import numpy as np

    from engine.align import align_face
    from engine.errors import CharmError
    from engine.photo_report import write_alignment

    if args.size < 8:
        print("error: --size must be at least 8", file=sys.stderr)
        return 2
    check_out_dir(args.out)
    crop_quad = None
    if args.window:
        try:
            crop_quad = np.asarray(json.loads(Path(args.window).read_text())["crop_quad"], dtype=np.float64)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CharmError(
                f"cannot take a crop window from {args.window!r} ({e}); give a transform.json written by 'align'"
            ) from e
    face = align_face(args.input, size=args.size, crop_quad=crop_quad, face_index=args.face, scale_mode=args.scale)
    out = write_alignment(face, args.out, str(args.input))
    others = f" (of {len(face.faces)}; choose with --face)" if len(face.faces) > 1 else ""
    print(
        f"face {face.face_index}{others}: angle {face.angle_deg:+.2f} deg, tx {face.tx:+.4f}, "
        f"ty {face.ty:+.4f} -> {out}"
    )
    return 0
