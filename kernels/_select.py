"""Choosing a kernel implementation: 'ref' (plain PyTorch, the release's math), 'fast' (polyphase CPU
path in PyTorch ops) or 'cuda' (our fused extension).

Precedence: the call's ``impl`` argument, then the ``SG3_KERNELS`` environment variable, then
automatic: 'cuda' for CUDA tensors when the extension has been built successfully (else 'ref', see
below), and 'fast' for CPU tensors.

On CUDA tensors the fallback (extension not built yet or failed, and ops with no fused kernel) is
'ref', not 'fast': the polyphase path is written for CPU caches, and on an H200 it was 13x slower
(bench/train_step.py, demo generator forward + backward, batch 64: 'fast' 1.51 s per step, 'ref'
0.113 s; bench/RESULTS.md).

Imports: kernels.cuda_ext only (which ops it fuses, and whether it is built), never the
dispatching functions.
"""

from __future__ import annotations

import os

import torch

from kernels import cuda_ext

IMPLS = ("ref", "fast", "cuda")
ENV_VAR = "SG3_KERNELS"


def resolve_impl(impl: str | None, x: torch.Tensor) -> str:
    """Return the implementation to use for tensor ``x``."""
    choice = impl or os.environ.get(ENV_VAR) or "auto"
    choice = choice.strip().lower()
    if choice not in IMPLS + ("auto",):
        raise ValueError(
            f"unknown kernel implementation {choice!r}: use one of {IMPLS} "
            f"(argument impl= or environment variable {ENV_VAR})"
        )
    if choice == "cuda" or (choice == "auto" and x.is_cuda):
        if not x.is_cuda:
            return "fast"
        return "cuda" if cuda_ext.available(x.device) else "ref"
    return "fast" if choice == "auto" else choice


def gpu_friendly(which: str, x: torch.Tensor) -> str:
    """``which`` for an op without a fused CUDA kernel: 'cuda' runs the 'ref' math on CUDA tensors
    (see the module docstring) and the 'fast' path elsewhere."""
    if which == "cuda":
        return "ref" if x.is_cuda else "fast"
    return which


def select(op: str, impl: str | None, x: torch.Tensor) -> str:
    """The implementation that runs ``op`` ('bias_act', 'upfirdn2d' or 'filtered_lrelu') on ``x``
    for the requested ``impl``: 'cuda' only for the ops the extension fuses.

    Every dispatching function calls this (looked up on this module at call time), so it is the one
    place where the choice for a call is made and can be observed."""
    which = resolve_impl(impl, x)
    return which if op in cuda_ext.OPS else gpu_friendly(which, x)
