"""Errors explained for users, in one place: a title, the message and what to do next.

The window shows the three in a dialog; the command line prints the message and the hint on one line.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import (
    CheckpointError,
    ImageAccessError,
    ImageIsFolderError,
    ImageNotFoundError,
    ImageReadError,
    NoFaceError,
    VideoReadError,
)

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True)
class Explanation:
    title: str
    message: str
    hint: str
    expected: bool  # False: a defect (the caller should log the traceback)

    def one_line(self) -> str:
        return f"{self.message}. {self.hint}" if self.hint else self.message


def _known() -> list[tuple[type[BaseException], str, str]]:
    """(error class, dialog title, what to do), most specific first."""
    from engine.download import DownloadCancelled, DownloadError
    from engine.model_store import ModelNotInstalledError
    from engine.session import SessionError

    return [
        (
            ModelNotInstalledError,
            "Model not downloaded",
            "Get it in Models > Manage... (or with the command in the message); the current model stays in use.",
        ),
        (DownloadCancelled, "Download cancelled", "What was downloaded is kept; getting the model again resumes."),
        (
            DownloadError,
            "Download failed",
            "A partial download is kept and the next try resumes. Or download the file in a browser and drop it "
            "on the model manager.",
        ),
        (
            NoFaceError,
            "No face found",
            "Open a photo in which a face is clearly visible, roughly frontal and at least about 80 pixels wide.",
        ),
        (
            ImageNotFoundError,
            "Cannot find the image",
            "Check the path: the file may have been moved, renamed or deleted.",
        ),
        (ImageIsFolderError, "Cannot read the image", "Choose an image file (JPEG or PNG) inside the folder."),
        (ImageAccessError, "Cannot read the image", "Check that the file exists and that you may read it."),
        (
            VideoReadError,
            "Cannot read the video",
            "Choose a video that plays in a video player (MP4, MOV, MKV or WebM are the usual kinds).",
        ),
        (ImageReadError, "Cannot read the image", "Choose a JPEG or PNG photo; this file is damaged or not an image."),
        (
            CheckpointError,
            "Cannot load the model",
            "The previous model stays in use. Choose another model folder, or copy the model files again.",
        ),
        (SessionError, "Cannot open the session", "Choose a session saved by Charm Studio (.json with its .npz)."),
        (OSError, "Cannot write or read a file", "Check the folder exists and you may write to it."),
    ]


def explain(exc: BaseException) -> Explanation:
    """What to tell the user about ``exc`` raised by an engine operation."""
    message = str(exc) or type(exc).__name__
    for kind, title, hint in _known():
        if isinstance(exc, kind):
            return Explanation(title, message, hint, True)
    return Explanation("Unexpected error", message, "Details were printed to the console; please report them.", False)
