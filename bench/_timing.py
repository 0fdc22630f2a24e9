"""Timing helper shared by the benchmark scripts (wall clock and this process's CPU time)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_times(fn: Callable[[], object], repeat: int, warmup: bool = True) -> tuple[float, float, float]:
    """(median wall s, worst wall s, median process CPU s) over ``repeat`` calls of ``fn``, after one
    untimed warm-up call unless ``warmup`` is False. CPU time shows the work itself when other jobs
    share the cores and stretch the wall time."""
    if warmup:
        fn()
    walls, cpus = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), max(walls), statistics.median(cpus)
