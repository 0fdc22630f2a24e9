"""StyleGAN3's custom ops: ``bias_act``, ``upfirdn2d`` and ``filtered_lrelu``.

Each has a plain reference implementation (the release's math, used for parity checks), a fast CPU
path in PyTorch ops (polyphase, bounded temporaries) and, for filtered_lrelu, a fused CUDA extension
built on first use. All support autograd. Pick with ``impl='ref'|'fast'|'cuda'`` per call or with
the environment variable ``SG3_KERNELS`` for a whole process; by default CUDA tensors use the
extension when it builds (the reference math until then) and everything else the fast path.
"""

from kernels.bias_act import bias_act
from kernels.filtered_lrelu import filtered_lrelu
from kernels.upfirdn2d import upfirdn2d

__all__ = ["bias_act", "filtered_lrelu", "upfirdn2d"]
