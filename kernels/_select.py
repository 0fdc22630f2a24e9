"""Choosing a kernel implementation: 'ref' (plain PyTorch, the release's math), 'fast' (polyphase CPU
path in PyTorch ops) or 'cuda' (our fused extension).

Precedence: the call's ``impl`` argument, then the ``SG3_KERNELS`` environment variable, then
automatic: 'cuda' for CUDA tensors when the extension has been built successfully, else 'fast'.
"""
from __future__ import annotations

import os

import torch

IMPLS = ("ref", "fast", "cuda")
ENV_VAR = "SG3_KERNELS"


def resolve_impl(impl: str | None, x: torch.Tensor) -> str:
    """Return the implementation to use for tensor ``x``."""
    choice = impl or os.environ.get(ENV_VAR) or "auto"
    choice = choice.strip().lower()
    if choice not in IMPLS + ("auto",):
        raise ValueError(f"unknown kernel implementation {choice!r}: use one of {IMPLS} "
                         f"(argument impl= or environment variable {ENV_VAR})")
    if choice == "cuda" or (choice == "auto" and x.is_cuda):
        if not x.is_cuda:
            return "fast"
        from kernels import cuda_ext
        return "cuda" if cuda_ext.available(x.device) else "fast"
    return "fast" if choice == "auto" else choice
