"""Exceptions the engine raises for bad input; their messages name the file and say what to do.

:func:`cannot_load`, :func:`corrupt_file` and :func:`short_reason` build the one-line messages of
:class:`CheckpointError` that the model readers share.
"""

from __future__ import annotations

import os
import re


class CharmError(Exception):
    """Base class for user-facing errors (the GUI shows them in a dialog, the CLI prints one line)."""


class CheckpointError(CharmError):
    """A model file is missing, truncated, corrupt, of another architecture or unsafe."""


class ImageReadError(CharmError):
    """An input file is not a readable image or video (damaged, empty or of an unknown format)."""


class ImageNotFoundError(ImageReadError):
    """The input image's path does not exist."""


class ImageIsFolderError(ImageReadError):
    """The input image's path is a folder, not a file."""


class ImageAccessError(ImageReadError):
    """The input image exists but cannot be opened (permissions, a device, a broken link...)."""


class VideoReadError(CharmError):
    """An input video cannot be read: not a video, no picture stream, or a damaged or truncated stream."""


class NoFaceError(CharmError):
    """No face was found in an input image."""


def cannot_load(path: str | os.PathLike, what: str, todo: str) -> CheckpointError:
    """``Cannot load '<path>': <what>. <todo>`` as one line (line breaks inside become spaces)."""
    msg = f"Cannot load '{path}': {what}. {todo}"
    return CheckpointError(re.sub(r"\s*[\r\n]+\s*", " ", msg).strip())


def short_reason(exc: BaseException, limit: int = 140) -> str:
    """``ExcType: first sentence of its message``, without colour codes, at most ``limit`` characters."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = re.split(r"(?<=[a-z])\. (?=[A-Z])", text, maxsplit=1)[0]  # first sentence
    name = type(exc).__name__
    out = f"{name}: {text}" if text else name
    return out if len(out) <= limit else out[: limit - 3] + "..."


def corrupt_file(path: str | os.PathLike, exc: BaseException | str) -> CheckpointError:
    """The error for a model file that is truncated or damaged; ``exc`` is the cause or its description."""
    detail = exc if isinstance(exc, str) else short_reason(exc)
    return cannot_load(
        path,
        f"the file is truncated or corrupt ({detail})",
        "Download or copy it again; if it came from a browser, make sure the download finished.",
    )
