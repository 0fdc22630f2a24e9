"""Exceptions the engine raises for bad input; their messages name the file and say what to do."""

from __future__ import annotations


class CharmError(Exception):
    """Base class for user-facing errors (the GUI shows them in a dialog, the CLI prints one line)."""


class CheckpointError(CharmError):
    """A model file is missing, truncated, corrupt, of another architecture or unsafe."""


class ImageReadError(CharmError):
    """An input file is not a readable image or video."""


class NoFaceError(CharmError):
    """No face was found in an input image."""
