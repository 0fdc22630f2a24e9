"""Command-line options that several commands share."""

from __future__ import annotations

import argparse


def add_face_option(parser: argparse.ArgumentParser, verb: str) -> None:
    """``--face N``: which detected face to use (0 = the largest, the default)."""
    parser.add_argument(
        "--face",
        type=int,
        default=None,
        metavar="N",
        help=f"which face to {verb} when there are several, 0 = largest (default)",
    )
