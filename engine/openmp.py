"""How torch's OpenMP threads wait between parallel regions: set for the studio's processes before torch
loads (the runtime reads its environment once, when it starts).

GNU OpenMP (torch's CPU runtime on Linux) lets a thread that finished its share of a parallel region
spin for ``GOMP_SPINCOUNT`` iterations (300 000 by default) before it sleeps. When another job shares
the cores, those spinning threads burn the time slices the working threads need: with two threads on
the 2-core machine, a T-256 render took 3.2x as long next to a 2-thread torch job. Spinning 10 000
iterations keeps the idle speed (demo video pipeline and T-256 unchanged within noise) and stops the
waste: under load the render uses no more CPU time than idle, and slows about 2x, its fair half of the
machine (``bench/under_load.py``, bench/RESULTS.md "Under load").

Imports: nothing but ``os`` and ``sys`` (it must run before torch is imported).
"""

from __future__ import annotations

import os
import sys

# The values the studio's processes start with; a value already in the environment is kept.
OPENMP_ENV = {"GOMP_SPINCOUNT": "10000"}


def configure_openmp() -> bool:
    """Put :data:`OPENMP_ENV` into the environment where the user has not set those variables.

    Returns True when it is in time (torch not imported yet in this process), so the settings apply
    here and in every child process; False when torch is already loaded (then only children get them).
    """
    for name, value in OPENMP_ENV.items():
        os.environ.setdefault(name, value)
    return "torch" not in sys.modules
