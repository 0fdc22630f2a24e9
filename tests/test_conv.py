"""The generator's convolution (engine.networks.stylegan3.conv2d): whichever algorithm a shape gets
(matrix product, Winograd, oneDNN), values and gradients equal ``F.conv2d``'s within float32 rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.networks import stylegan3
from engine.networks.stylegan3 import conv2d


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


CASES = [
    # (N, I, O, H, k, padding), what it exercises
    pytest.param(2, 48, 3, 20, 1, 0, id="1x1-matmul-batch"),
    pytest.param(1, 64, 32, 33, 1, 0, id="1x1-matmul-odd"),
    pytest.param(1, 256, 256, 48, 3, 2, id="3x3-winograd-by-macs"),
    pytest.param(2, 16, 16, 130, 3, 2, id="3x3-winograd-by-pixels-batch"),
    pytest.param(3, 24, 24, 19, 3, 2, id="3x3-onednn-small"),
    pytest.param(1, 8, 8, 17, 3, 1, id="3x3-onednn-pad1"),
]


@pytest.mark.parametrize("n,i,o,h,k,padding", CASES)
def test_conv2d_equals_reference(n, i, o, h, k, padding):
    g = torch.Generator().manual_seed(n * 1000 + i + h)
    x = torch.randn(n, i, h, h, generator=g)
    w = torch.randn(o, i, k, k, generator=g) / (i * k * k) ** 0.5
    expected = F.conv2d(x.double(), w.double(), padding=padding)
    got = conv2d(x, w, padding)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert rel(got, expected) <= 1e-5


def test_conv2d_picks_the_algorithm_by_shape(monkeypatch):
    """The choice documented on conv2d is the one made (a regression would silently cost 3x)."""
    if not torch._nnpack_available():
        pytest.skip("this torch build has no NNPACK")
    calls: list[str] = []
    real_nnpack, real_conv = torch._nnpack_spatial_convolution, F.conv2d
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", lambda *a: calls.append("winograd") or real_nnpack(*a))
    monkeypatch.setattr(stylegan3.F, "conv2d", lambda *a, **k: calls.append("onednn") or real_conv(*a, **k))
    conv2d(torch.randn(1, 256, 48, 48), torch.randn(256, 256, 3, 3), 2)
    conv2d(torch.randn(2, 16, 130, 130), torch.randn(16, 16, 3, 3), 2)
    conv2d(torch.randn(8, 48, 42, 42), torch.randn(48, 48, 3, 3), 2)  # the demo model's layers
    conv2d(torch.randn(2, 48, 20, 20), torch.randn(3, 48, 1, 1), 0)
    conv2d(torch.randn(1, 8, 9, 9, dtype=torch.float64), torch.randn(8, 8, 3, 3, dtype=torch.float64), 2)
    # one Winograd call per image for the first two, oneDNN for the demo's layer and float64, none
    # for the 1x1 (a matrix product)
    assert calls == ["winograd", "winograd", "winograd", "onednn", "onednn"]


@pytest.mark.parametrize(
    "n,i,o,h,k,padding",
    [CASES[0], CASES[2], CASES[3], CASES[4], pytest.param(1, 16, 8, 130, 3, 1, id="3x3-winograd-pad1")],
)
def test_conv2d_gradients_equal_reference(n, i, o, h, k, padding):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(n, i, h, h, generator=g, requires_grad=True)
    w = (torch.randn(o, i, k, k, generator=g) / (i * k * k) ** 0.5).requires_grad_()
    y = conv2d(x, w, padding)
    target = torch.randn(y.shape, generator=g)
    (gx, gw) = torch.autograd.grad((y * target).sum(), (x, w))
    xd, wd = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    (ex, ew) = torch.autograd.grad((F.conv2d(xd, wd, padding=padding) * target.double()).sum(), (xd, wd))
    assert rel(gx, ex) <= 1e-5
    assert rel(gw, ew) <= 1e-5


def test_winograd_backward_runs_winograd_for_the_input_gradient(monkeypatch):
    """The input gradient of a Winograd layer is itself a Winograd convolution (PyTorch's own
    backward for NNPACK's op is the direct algorithm, 2.4x slower): two calls per image."""
    if not torch._nnpack_available():
        pytest.skip("this torch build has no NNPACK")
    calls: list[tuple[int, ...]] = []
    real_nnpack = torch._nnpack_spatial_convolution
    monkeypatch.setattr(torch, "_nnpack_spatial_convolution", lambda *a: calls.append(a[0].shape) or real_nnpack(*a))
    x = torch.randn(2, 16, 130, 130, requires_grad=True)
    w = torch.randn(8, 16, 3, 3, requires_grad=True)
    conv2d(x, w, 2).square().sum().backward()
    assert calls == [(1, 16, 130, 130)] * 2 + [(1, 8, 132, 132)] * 2
    assert x.grad is not None and w.grad is not None


def test_winograd_second_order_gradients_equal_reference():
    """create_graph through a Winograd layer (path-length style regularisers) gives F.conv2d's
    second-order gradients."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 16, 130, 130, generator=g, requires_grad=True)
    w = (torch.randn(4, 16, 3, 3, generator=g) / 12).requires_grad_()
    target = torch.randn(1, 4, 132, 132, generator=g)

    def second(conv):
        (gx,) = torch.autograd.grad((conv(x, w) * target).sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), w)[0]

    got = second(lambda a, b: conv2d(a, b, 2))
    expected = second(lambda a, b: F.conv2d(a, b, padding=2))
    assert rel(got, expected) <= 1e-5
