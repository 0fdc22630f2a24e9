"""StyleGAN3's custom ops: ``bias_act``, ``upfirdn2d`` and ``filtered_lrelu``.

Each has a plain reference implementation (the release's math, used for parity checks), a fast CPU
path in PyTorch ops (polyphase, bounded temporaries; for float32 filtered_lrelu a fused C++ kernel
built on first use) and, for filtered_lrelu, a fused CUDA extension
built on first use. All support autograd. Pick with ``impl='ref'|'fast'|'cuda'`` per call or with
the environment variable ``SG3_KERNELS`` for a whole process; by default CUDA tensors use the
extension when it builds (the reference math until then) and everything else the fast path.

The modules import one another in one direction only, bottom to top (no cycle, no function-level
import back up; tests/test_kernels_dispatch.py checks it):

- ``_ref``: reference math of the three ops, and the argument parsing and argument tuples they share
  (no kernels import)
- ``_polyphase``: polyphase resampling primitives (no kernels import)
- ``cpu_ext``: build, load and call the fused C++ CPU filtered_lrelu (no kernels import)
- ``_fast``: the fast CPU path of the three ops (``_ref``, ``_polyphase``, ``cpu_ext``)
- ``cuda_ext``: build, load and call the fused filtered_lrelu (``_ref``)
- ``_select``: which implementation runs a call (``cuda_ext``)
- ``bias_act``, ``upfirdn2d``, ``filtered_lrelu``: the public dispatching functions (``_ref``,
  ``_fast``, ``_select``; ``filtered_lrelu`` also ``cuda_ext``)
- this package: re-exports the three public functions
"""

from kernels.bias_act import bias_act
from kernels.filtered_lrelu import filtered_lrelu
from kernels.upfirdn2d import upfirdn2d

__all__ = ["bias_act", "filtered_lrelu", "upfirdn2d"]
