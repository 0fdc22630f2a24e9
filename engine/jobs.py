"""The job protocol: how long operations report progress and get cancelled, from any front end.

A *job* is a plain function that takes a :class:`JobControl` and returns its result::

    def invert_job(ctl: JobControl) -> Latent:
        ctl.stage("Inverting", total=n)
        for i in range(n):
            ctl.check()                 # raises Cancelled when the front end asked to stop
            ...
            ctl.progress(i + 1)
        return latent

The same function runs unchanged from the command line (:func:`run_in_terminal`: a tqdm progress bar
with ETA per stage; Ctrl-C stops it) and from the window (the worker lanes in ``app/worker.py`` turn
:class:`Progress` into status-bar updates and their Cancel button into ``ctl.cancelled()``). Engine
loops that take ``progress(done, total)`` and ``cancel()`` callbacks are plugged in with
:meth:`JobControl.progress_fn` and :meth:`JobControl.cancel_fn`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "CancelFn",
    "Cancelled",
    "Job",
    "JobControl",
    "Progress",
    "ProgressFn",
    "TerminalProgress",
    "run_in_terminal",
]

T = TypeVar("T")
ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


class Cancelled(Exception):
    """Raised inside a job when its front end asked it to stop (checked between units of work, never
    in the middle of one). ``done`` and ``total`` say how far it got."""

    def __init__(self, what: str = "operation", done: int = 0, total: int = 0) -> None:
        super().__init__(f"{what} cancelled after {done} of {total}")
        self.done = done
        self.total = total


@dataclass(frozen=True)
class Progress:
    """One progress report. total 0: unknown (a busy indicator); preview: an optional picture
    ([H,W,3] uint8 RGB) of the work so far."""

    done: int
    total: int
    stage: str
    preview: np.ndarray | None = None

    @property
    def fraction(self) -> float | None:
        return None if self.total <= 0 else min(1.0, self.done / self.total)


class JobControl:
    """What a running job sees of its front end: where to report progress and whether to stop.

    report: called with every :class:`Progress` (from the job's thread); cancelled: returns True when
    the job should stop. Both optional: a bare ``JobControl()`` runs a job silently to the end.
    """

    def __init__(
        self,
        report: Callable[[Progress], Any] | None = None,
        cancelled: CancelFn | None = None,
    ) -> None:
        self._report = report
        self._cancelled = cancelled
        self._stage = ""
        self._total = 0
        self._done = 0

    @staticmethod
    def cancelled_by(event: threading.Event, report: Callable[[Progress], Any] | None = None) -> JobControl:
        """A control whose job stops once ``event`` is set."""
        return JobControl(report, event.is_set)

    def cancelled(self) -> bool:
        return bool(self._cancelled is not None and self._cancelled())

    def check(self) -> None:
        """Raise :class:`Cancelled` if the job should stop."""
        if self.cancelled():
            raise Cancelled(self._stage or "operation", self._done, self._total)

    def stage(self, text: str, total: int = 0) -> None:
        """Start a stage called ``text`` of ``total`` units (0: unknown), and report it."""
        self._stage, self._total, self._done = text, int(total), 0
        self._emit(None)

    def progress(self, done: int, total: int | None = None, preview: np.ndarray | None = None) -> None:
        """``done`` units of the current stage are finished (``total`` updates the stage's size)."""
        self._done = int(done)
        if total is not None:
            self._total = int(total)
        self._emit(preview)

    def progress_fn(self, stage: str | None = None) -> ProgressFn:
        """A ``progress(done, total)`` callback for engine loops; starts ``stage`` first when given."""
        if stage is not None:
            self.stage(stage)

        def report(done: int, total: int) -> None:
            self.progress(done, total)

        return report

    @property
    def cancel_fn(self) -> CancelFn:
        """A ``cancel() -> bool`` callback for engine loops."""
        return self.cancelled

    def _emit(self, preview: np.ndarray | None) -> None:
        if self._report is not None:
            self._report(Progress(self._done, self._total, self._stage, preview))


Job = Callable[[JobControl], T]


class TerminalProgress:
    """Progress reports as tqdm bars on stderr: one bar per stage, with rate and ETA."""

    def __init__(self, file: Any = None, disable: bool = False) -> None:
        self.file = file if file is not None else sys.stderr
        self.disable = disable
        self._bar: Any = None
        self._stage: str | None = None

    def __call__(self, p: Progress) -> None:
        from tqdm import tqdm

        if self._bar is None or p.stage != self._stage:
            self.close()
            self._stage = p.stage
            self._bar = tqdm(
                total=p.total or None,
                desc=p.stage,
                file=self.file,
                disable=self.disable,
                leave=True,
                dynamic_ncols=True,
            )
        if p.total and self._bar.total != p.total:
            self._bar.total = p.total
            self._bar.refresh()
        self._bar.update(p.done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def run_in_terminal(job: Job[T], quiet: bool = False) -> T:
    """Run ``job`` in this thread with a terminal progress bar (none when ``quiet``)."""
    bars = TerminalProgress(disable=quiet)
    try:
        return job(JobControl(bars))
    finally:
        bars.close()
