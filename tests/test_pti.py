"""Pivotal tuning: fits a real photo, trains only synthesis minus the input layer, never touches the
original generator, early-stops on LPIPS, reports progress and can be cancelled.

The generator is a small random-weight one (32 px); the pivot is its average latent. The loss is the
product configuration (LPIPS + L2, or L2 alone in the fallback when LPIPS weights are missing). The
early-stop test builds LPIPS with a random AlexNet backbone: that only checks the plumbing, the
distances it gives are not perceptual.
"""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch

from engine import Generator
from engine.inversion import (
    Cancelled,
    apply_weight_delta,
    resize_images,
    tunable_parameter_names,
    tune_generator,
    weight_delta,
)
from engine.losses import PerceptualLoss

SMALL_G = dict(
    z_dim=64,
    c_dim=0,
    w_dim=64,
    img_resolution=32,
    img_channels=3,
    channel_base=2048,
    channel_max=64,
    num_layers=4,
    margin_size=2,
)


pytestmark = pytest.mark.usefixtures("small_nets_quiet_lpips")


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    torch.manual_seed(0)
    return Generator(**SMALL_G).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def photo(faces_dir) -> torch.Tensor:
    """ffhq_0.jpg (an FFHQ-aligned 1024 px face) as [1,3,1024,1024] in [-1,1]."""
    bgr = cv2.imread(str(faces_dir / "ffhq_0.jpg"))
    assert bgr is not None
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1


def pivot_of(G: torch.nn.Module) -> torch.Tensor:
    return G.mapping.w_avg.view(1, 1, -1).expand(1, G.num_ws, G.w_dim).clone()


def snapshot(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_pti_halves_the_l2_on_a_real_photo_and_leaves_the_original_alone(G, photo):
    before = snapshot(G)
    flags = [p.requires_grad for p in G.parameters()]
    pivot = pivot_of(G)
    target = resize_images(photo, G.img_resolution)
    with torch.no_grad():
        l2_pivot = float((G.synthesis(pivot, transform=torch.eye(3)) - target).square().mean())
    seen = []
    res = tune_generator(G, photo, pivot, steps=100, progress=lambda i, n: seen.append((i, n)))
    l2_tuned = float((res.image - target).square().mean())
    print(f"PTI L2: pivot {l2_pivot:.5f} -> tuned {l2_tuned:.5f} ({l2_tuned / l2_pivot:.1%}) in {res.steps} steps")
    assert res.steps <= 100 and seen[-1] == (res.steps, 100)
    assert abs(res.l2[0] - l2_pivot) < 1e-5
    assert l2_tuned <= 0.5 * l2_pivot
    with torch.no_grad():
        torch.testing.assert_close(res.generator.synthesis(pivot, transform=torch.eye(3)), res.image)

    # The original: bit-identical weights and buffers, same flags, no gradients.
    after = G.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert [p.requires_grad for p in G.parameters()] == flags
    assert all(p.grad is None for p in G.parameters())

    # Only synthesis parameters outside the input layer changed; the tuned copy is frozen.
    tuned = res.generator.state_dict()
    trainable = set(tunable_parameter_names(G))
    assert trainable and not any(n.startswith(("synthesis.input.", "mapping.")) for n in trainable)
    changed = {k for k in before if not torch.equal(tuned[k], before[k])}
    assert changed and changed <= trainable
    assert not res.generator.training and not any(p.requires_grad for p in res.generator.parameters())

    # Weight delta round trip.
    delta = res.weight_delta(G)
    assert set(delta) == trainable
    rebuilt = apply_weight_delta(G, delta)
    for k, v in rebuilt.state_dict().items():
        torch.testing.assert_close(v, tuned[k], rtol=0, atol=1e-6)
    assert all(torch.equal(G.state_dict()[k], v) for k, v in before.items())


def test_pti_with_a_transform_and_batch(G):
    # Two targets rendered by the original generator under their own transforms: the tuned copy keeps
    # reproducing them (the loss does not rise) and the transform is honoured (the renders differ).
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, 64, generator=torch.Generator().manual_seed(1)))
        t = torch.stack([torch.eye(3), torch.tensor([[1.0, 0, 0.15], [0, 1, 0], [0, 0, 1]])])
        targets = G.synthesis(ws, transform=t)
    res = tune_generator(G, targets, ws + 0.05, transform=t, steps=5, lpips_weight=0.0)
    assert res.steps == 5 and res.losses[-1] < res.losses[0]
    assert res.image.shape == (2, 3, 32, 32)


def test_pti_early_stop_plumbing(G, photo):
    perceptual = PerceptualLoss("alex", random_backbone=True)  # plumbing only: not perceptual distances
    res = tune_generator(G, photo, pivot_of(G), steps=50, perceptual=perceptual, lpips_threshold=1e9)
    assert res.stopped_early and res.steps == 0 and len(res.lpips) == 1
    assert all(torch.equal(res.generator.state_dict()[k], v) for k, v in G.state_dict().items())
    res = tune_generator(G, photo, pivot_of(G), steps=2, perceptual=perceptual, lpips_threshold=None)
    assert not res.stopped_early and res.steps == 2


def test_pti_cancel(G, photo):
    before = snapshot(G)
    polls = []

    def cancel() -> bool:
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(Cancelled) as err:
        tune_generator(G, photo, pivot_of(G), steps=20, lpips_weight=0.0, cancel=cancel)
    assert err.value.done == 3 and err.value.total == 20
    assert all(torch.equal(G.state_dict()[k], v) for k, v in before.items())


def test_pti_rejects_bad_pivots(G, photo):
    with pytest.raises(ValueError, match="pivot"):
        tune_generator(G, photo, torch.zeros(1, G.num_ws + 1, G.w_dim), steps=1)
    with pytest.raises(ValueError, match="target"):
        tune_generator(G, photo[0], pivot_of(G), steps=1)
    with pytest.raises(KeyError):
        apply_weight_delta(G, {"nope": torch.zeros(1)})
    assert weight_delta(G, G)  # zero deltas for every tunable parameter


def test_layer_checkpointing_gives_the_same_gradients_and_tuning(G, photo):
    # Gradient checkpointing (on by default from 512 px) must not change the numbers, only the memory.
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, 64, generator=torch.Generator().manual_seed(3)))
    t = torch.tensor([[0.98, -0.2, 0.05], [0.2, 0.98, -0.03], [0, 0, 1]])
    grads = []
    for ckpt in (False, True):
        Gc = copy.deepcopy(G).requires_grad_(True)
        ws_ = ws.clone().requires_grad_(True)
        img = Gc.synthesis(ws_, transform=t, checkpoint_layers=ckpt)
        (img * torch.linspace(-1, 1, img.numel()).view_as(img)).sum().backward()
        grads.append([ws_.grad] + [p.grad for p in Gc.synthesis.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 10
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    a = tune_generator(G, photo, pivot_of(G), steps=3, lpips_weight=0.0, checkpoint_layers=False)
    b = tune_generator(G, photo, pivot_of(G), steps=3, lpips_weight=0.0, checkpoint_layers=True)
    torch.testing.assert_close(a.image, b.image, rtol=1e-5, atol=1e-6)
    assert a.l2 == pytest.approx(b.l2, rel=1e-5)
