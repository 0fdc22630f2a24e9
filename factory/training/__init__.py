"""Trainers of the embedded demo model: generator, attribute predictor, encoder, directions.

Every trainer is resumable: it writes ``<out>/checkpoint.pt`` every few minutes (and at the end) and
``RunOptions(resume=True)`` continues from it. Entry point for users: ``python main.py train-demo WHAT``
(factory/cli/train_demo.py). Submodules are imported lazily by the CLI so that ``--help`` stays fast.
"""

from __future__ import annotations

__all__ = ["common", "generator", "predictor", "encoder", "directions"]
