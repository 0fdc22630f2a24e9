"""Errors explained for users, in one place: a title, the message and what to do next.

The window shows the three in a dialog; the command line prints the message and the hint on one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import CheckpointError, ImageReadError, NoFaceError

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True)
class Explanation:
    title: str
    message: str
    hint: str
    expected: bool  # False: a defect (the caller should log the traceback)

    def one_line(self) -> str:
        return f"{self.message}. {self.hint}" if self.hint else self.message


def explain(exc: BaseException) -> Explanation:
    """What to tell the user about ``exc`` raised by an engine operation."""
    from engine.session import SessionError

    message = str(exc) or type(exc).__name__
    if isinstance(exc, NoFaceError):
        return Explanation(
            "No face found",
            message,
            "Open a photo in which a face is clearly visible, roughly frontal and at least about 80 pixels wide.",
            True,
        )
    if isinstance(exc, ImageReadError):
        return Explanation(
            "Cannot read the image", message, "Choose a JPEG or PNG photo; this file is damaged or not an image.", True
        )
    if isinstance(exc, CheckpointError):
        return Explanation(
            "Cannot load the model",
            message,
            "The previous model stays in use. Choose another model folder, or copy the model files again.",
            True,
        )
    if isinstance(exc, SessionError):
        return Explanation(
            "Cannot open the session", message, "Choose a session saved by Charm Studio (.json with its .npz).", True
        )
    if isinstance(exc, OSError):
        return Explanation(
            "Cannot write or read a file", message, "Check the folder exists and you may write to it.", True
        )
    return Explanation("Unexpected error", message, "Details were printed to the console; please report them.", False)
