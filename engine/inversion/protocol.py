"""What every inverter offers and returns, whatever it does inside.

:class:`InverterProtocol` is the call the studio, the CLI and the model bundles rely on; two classes
follow it:

- :class:`engine.inversion.restyle.Inverter` (``kind`` ``'restyle_psp'``, ``'restyle_e4e'``, ``'psp'``,
  ``'e4e'``): an image encoder with its generator, one latent per refinement pass;
- :class:`engine.inversion.optimize.OptimizationInverter` (``kind`` ``'optimization'``): gradient
  descent on the latent, for bundles that ship no encoder; one latent, the final one.

Both return an :class:`InversionResult` laid out the same way, so a caller never needs to know which
one it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from engine.inversion.common import CancelFn, ProgressFn

if TYPE_CHECKING:
    from engine.networks.stylegan3 import Generator

__all__ = ["InversionResult", "InverterProtocol"]


@dataclass
class InversionResult:
    """What an inverter's ``invert`` produced.

    latents: [N,num_ws,w_dim] float32 tensors, the last being the answer: one per refinement pass for
        an encoder inverter, only the final latent for optimization.
    images: the aligned render (identity transform) of each entry of ``latents``, [N,3,R,R] in about
        [-1,1]; empty when rendering was switched off.
    unaligned: render of the final latents with the given ``transform`` [N,3,R,R], or None.
    transform: the transform used for ``unaligned`` ([3,3] or [N,3,3], float32 on the latents'
        device), or None.
    """

    latents: list[torch.Tensor] = field(default_factory=list)
    images: list[torch.Tensor] = field(default_factory=list)
    unaligned: torch.Tensor | None = None
    transform: torch.Tensor | None = None

    @property
    def latent(self) -> torch.Tensor:
        """Final latents [N,num_ws,w_dim]."""
        if not self.latents:
            raise ValueError("the inversion produced no latents")
        return self.latents[-1]

    @property
    def image(self) -> torch.Tensor | None:
        """Final aligned render [N,3,R,R], or None when renders were not kept."""
        return self.images[-1] if self.images else None


@runtime_checkable
class InverterProtocol(Protocol):
    """An object that turns aligned faces into W+ latents of its ``generator``.

    ``kind`` names the method (``'restyle_psp'``, ``'restyle_e4e'``, ``'psp'``, ``'e4e'`` or
    ``'optimization'``). ``invert(images, n_iters, transform, progress, cancel)`` takes images
    [N,3,R,R] float in [-1,1], FFHQ-aligned (any size; each inverter resizes them), and ``n_iters``
    refinement passes or optimisation steps; ``transform`` ([3,3] or [N,3,3], stored inverse
    convention, e.g. ``AlignedFace.transform``) asks for an extra unaligned render of the result;
    ``progress(done, total)`` is called as the work advances and ``cancel()``, polled between steps,
    raises :class:`engine.inversion.Cancelled` when it returns True. Implementations may take further
    keyword-only options.
    """

    @property
    def kind(self) -> str: ...

    @property
    def generator(self) -> Generator: ...

    def invert(
        self,
        images: torch.Tensor,
        n_iters: int = ...,
        transform: torch.Tensor | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
    ) -> InversionResult: ...
