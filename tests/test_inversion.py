"""Inversion: ReStyle / pSp / e4e inference, inverter files (released layout and ours), optimization
inversion, cancellation and the ``invert`` command.

Networks are tiny (32 px generator, ``ir_se_small`` encoder) so every test runs in seconds on CPU. The
ReStyle monotonicity test uses tests/data/tiny_restyle_pair.safetensors, an encoder trained to invert
its random-weight generator's own samples (written by tools/make_tiny_pair.py).
"""

from __future__ import annotations

import json
import pathlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, load_script

from engine import Generator
from engine.encoders import BackboneSpec, build_encoder
from engine.errors import CheckpointError
from engine.inversion import (
    Cancelled,
    Inverter,
    infer_encoder_config,
    load_inverter,
    optimize_latent,
    resize_images,
    save_inverter,
)

TINY_PAIR = ROOT / "tests" / "data" / "tiny_restyle_pair.safetensors"
TINY_TOOL = load_script("tools/make_tiny_pair.py")  # writes TINY_PAIR; its held-out samples and metrics
TINY_G = {**TINY_TOOL.GENERATOR_KWARGS, "z_dim": 64}  # the tiny pair's 32 px architecture, with a wider z
ENCODER_TYPES = {
    "restyle_psp": "BackboneEncoder",
    "restyle_e4e": "ProgressiveBackboneEncoder",
    "psp": "GradualStyleEncoder",
    "e4e": "Encoder4Editing",
}


pytestmark = pytest.mark.usefixtures("small_nets_quiet_lpips")


@pytest.fixture(scope="module")
def G() -> torch.nn.Module:
    torch.manual_seed(0)
    g = Generator(**TINY_G).eval().requires_grad_(False)
    with torch.no_grad():
        g.mapping.w_avg.copy_(g.mapping(torch.randn(2000, 64))[:, 0].mean(0))
    return g


def tiny_encoder(kind: str, G: torch.nn.Module, seed: int = 1, backbone="ir_se_small") -> torch.nn.Module:
    torch.manual_seed(seed)
    enc = build_encoder(
        kind,
        input_nc=6 if kind.startswith("restyle") else 3,
        n_styles=G.num_ws,
        backbone=backbone,
        input_size=32,
        w_dim=G.w_dim,
    )
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode matters
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return enc.eval().requires_grad_(False)


def faces(n: int, size: int = 64, seed: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --------------------------------------------------------------------------------------------------
# ReStyle recipe


def test_restyle_follows_the_recipe(G):
    enc = tiny_encoder("restyle_psp", G)
    inv = Inverter(enc, G)
    x = faces(2, 64)
    res = inv.invert(x, n_iters=3)
    assert len(res.latents) == 3 and len(res.images) == 3 and res.unaligned is None
    assert res.latent.shape == (2, G.num_ws, G.w_dim)
    assert torch.equal(inv.latent_avg, G.mapping.w_avg.expand(G.num_ws, -1))

    # The same computation by hand: avg image, then residual updates on resized renders.
    eye = torch.eye(3)
    with torch.no_grad():
        xs = torch.nn.functional.avg_pool2d(x, 2)  # 64 -> 32 area resize
        avg = G.synthesis(inv.latent_avg[None], transform=eye)
        codes = enc(torch.cat([xs, avg.expand(2, -1, -1, -1)], 1)) + inv.latent_avg
        torch.testing.assert_close(res.latents[0], codes, rtol=0, atol=1e-6)
        y = G.synthesis(codes, transform=eye)
        torch.testing.assert_close(res.images[0], y, rtol=0, atol=1e-6)
        codes = enc(torch.cat([xs, y], 1)) + codes
        torch.testing.assert_close(res.latents[1], codes, rtol=0, atol=1e-5)


def test_restyle_warm_start_renders_a_shared_start_once(G, monkeypatch):
    """A warm start from one latent (the previous video frame) renders it once for the whole batch,
    and the first pass sees that render, as the recipe says."""
    enc = tiny_encoder("restyle_psp", G)
    inv = Inverter(enc, G)
    x = faces(3, 64)
    start = inv.latent_avg[None] + 0.1 * torch.randn(1, G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(5))
    batches: list[int] = []
    render = inv.render
    monkeypatch.setattr(inv, "render", lambda codes, *a: batches.append(codes.shape[0]) or render(codes, *a))
    res = inv.invert(x, n_iters=2, init=start)
    assert batches == [1, 3, 3]  # the start once, then each pass's renders
    eye = torch.eye(3)
    with torch.no_grad():
        xs = torch.nn.functional.avg_pool2d(x, 2)
        y0 = G.synthesis(start, transform=eye).expand(3, -1, -1, -1)
        codes = enc(torch.cat([xs, y0], 1)) + start
    torch.testing.assert_close(res.latents[0], codes, rtol=0, atol=1e-6)


def test_average_image_is_cached_and_refreshed(G, monkeypatch):
    inv = Inverter(tiny_encoder("restyle_e4e", G), G)
    calls = []
    orig = inv.render

    def counting(latents, transform=None):
        calls.append(latents.shape[0])
        return orig(latents, transform)

    monkeypatch.setattr(inv, "render", counting)
    inv.invert(faces(2, 32), n_iters=2)
    inv.invert(faces(2, 32), n_iters=2)
    assert calls == [1, 2, 2, 2, 2]  # one average render, then two per call
    with torch.no_grad():
        inv.latent_avg.add_(0.1)
    calls.clear()
    inv.invert(faces(1, 32), n_iters=1)
    assert calls == [1, 1]  # latent_avg changed in place: the average image is rendered again


def test_batched_unaligned_and_chunks(G):
    inv = Inverter(tiny_encoder("restyle_psp", G), G)
    x = faces(3, 32)
    t = torch.stack([torch.eye(3), torch.tensor([[1.0, 0, 0.1], [0, 1, 0], [0, 0, 1]]), torch.eye(3)])
    full = inv.invert(x, n_iters=2, transform=t)
    chunked = inv.invert(x, n_iters=2, transform=t, batch_size=1)
    for a, b in zip(full.latents, chunked.latents):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert full.unaligned.shape == (3, 3, 32, 32)
    with torch.no_grad():
        expect = G.synthesis(full.latent, transform=t)
    torch.testing.assert_close(full.unaligned, expect, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(full.unaligned[1], full.images[-1][1], atol=1e-3)  # the shift shows
    torch.testing.assert_close(full.unaligned[0], full.images[-1][0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["psp", "e4e"])
def test_single_pass_kinds(G, kind):
    enc = tiny_encoder(kind, G)
    inv = Inverter(enc, G)
    assert inv.kind == kind and not inv.recurrent
    x = faces(2, 32)
    res = inv.invert(x, n_iters=3)
    assert len(res.latents) == 1
    with torch.no_grad():
        torch.testing.assert_close(res.latent, enc(x) + inv.latent_avg, rtol=0, atol=1e-6)


def test_inverter_rejects_mismatches(G):
    with pytest.raises(ValueError, match="style rows"):
        Inverter(build_encoder("restyle_psp", 6, n_styles=5, backbone="ir_se_small", input_size=32, w_dim=64), G)
    with pytest.raises(ValueError, match="input channels"):
        Inverter(build_encoder("restyle_psp", 3, n_styles=G.num_ws, backbone="ir_se_small", input_size=32, w_dim=64), G)
    with pytest.raises(ValueError, match="latent_avg"):
        Inverter(tiny_encoder("restyle_psp", G), G, latent_avg=torch.zeros(3, 64))


def test_resize_images_area():
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(resize_images(x, 16), torch.nn.functional.adaptive_avg_pool2d(x, 16))
    assert resize_images(x, 64) is x
    assert resize_images(torch.randn(1, 3, 40, 40), 32).shape == (1, 3, 32, 32)
    assert resize_images(torch.randn(1, 3, 16, 16), 32).shape == (1, 3, 32, 32)


def test_progress_and_cancel(G):
    inv = Inverter(tiny_encoder("restyle_psp", G), G)
    seen = []
    inv.invert(faces(2, 32), n_iters=3, progress=lambda i, n: seen.append((i, n)), batch_size=1)
    assert seen == [(i, 6) for i in range(1, 7)]
    polls = []

    def cancel() -> bool:
        polls.append(1)
        return len(polls) > 2

    with pytest.raises(Cancelled) as err:
        inv.invert(faces(1, 32), n_iters=5, cancel=cancel)
    assert err.value.done == 2 and err.value.total == 5


# --------------------------------------------------------------------------------------------------
# Files


def released_checkpoint(
    path: Path, kind: str, G: torch.nn.Module, *, opts: dict | None = None, latent_avg: torch.Tensor | None = None
) -> torch.nn.Module:
    """Write a checkpoint in the stylegan3-editing layout; returns the encoder it holds."""
    enc = tiny_encoder(kind, G, seed=7)
    sd = OrderedDict((f"encoder.{k}", v) for k, v in enc.state_dict().items())
    dec = G.state_dict()
    dec["synthesis.input.transform"] = torch.tensor([[1.0, 0, 0.2], [0, 1, 0], [0, 0, 1]])  # dropped on load
    sd.update((f"decoder.{k}", v) for k, v in dec.items())
    ckpt = {
        "state_dict": sd,
        "opts": opts
        if opts is not None
        else {
            "encoder_type": ENCODER_TYPES[kind],
            "input_nc": enc.input_nc,
            "output_size": 32,
            "exp_dir": pathlib.PosixPath("/experiments/restyle"),
            "checkpoint_path": pathlib.PurePosixPath("/models/ckpt.pt"),
            "stylegan_weights": pathlib.PureWindowsPath(r"C:\models\sg3.pt"),
            "n_iters_per_batch": 3,
            "learning_rate": 1e-4,
        },
        "latent_avg": G.mapping.w_avg.clone() if latent_avg is None else latent_avg,
        "global_step": 1000,
    }
    torch.save(ckpt, path)
    return enc


@pytest.mark.parametrize("kind", ["restyle_psp", "restyle_e4e", "psp", "e4e"])
def test_released_layout_loads_weights_only(G, kind, tmp_path, monkeypatch):
    path = tmp_path / f"{kind}.pt"
    enc = released_checkpoint(path, kind, G)
    loads = []
    real_load = torch.load

    def spy(*args, **kwargs):
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    inv = load_inverter(path)
    assert loads and all(w is True for w in loads)
    assert inv.kind == kind and inv.input_size == 32 and not inv.training
    assert torch.equal(inv.generator.synthesis.input.transform, torch.eye(3))
    for k, v in enc.state_dict().items():
        assert torch.equal(inv.encoder.state_dict()[k], v), k
    for k, v in G.state_dict().items():
        if k != "synthesis.input.transform":
            assert torch.equal(inv.generator.state_dict()[k], v), k
    x = faces(1, 32)
    expect = Inverter(enc, G, kind=kind).invert(x, n_iters=2).latent
    torch.testing.assert_close(inv.invert(x, n_iters=2).latent, expect, rtol=0, atol=1e-6)


def test_released_layout_without_opts(G, tmp_path):
    # No encoder_type: the head comes from the keys, e4e from training options or the file name.
    released_checkpoint(tmp_path / "a.pt", "restyle_psp", G, opts={}, latent_avg=G.mapping.w_avg.expand(G.num_ws, -1))
    assert load_inverter(tmp_path / "a.pt").kind == "restyle_psp"
    released_checkpoint(tmp_path / "b.pt", "restyle_e4e", G, opts={"progressive_start": 20000})
    assert load_inverter(tmp_path / "b.pt").kind == "restyle_e4e"
    released_checkpoint(tmp_path / "my_e4e.pt", "e4e", G, opts={})
    assert load_inverter(tmp_path / "my_e4e.pt").kind == "e4e"
    released_checkpoint(tmp_path / "c.pt", "psp", G, opts={})
    assert load_inverter(tmp_path / "c.pt").kind == "psp"


def test_released_layout_errors(G, tmp_path):
    released_checkpoint(tmp_path / "x.pt", "restyle_psp", G, opts={"encoder_type": "ResNetBackboneEncoder"})
    with pytest.raises(CheckpointError, match="not supported"):
        load_inverter(tmp_path / "x.pt")
    released_checkpoint(tmp_path / "y.pt", "psp", G, opts={"encoder_type": "BackboneEncoder"})
    with pytest.raises(CheckpointError, match="pyramid"):
        load_inverter(tmp_path / "y.pt")
    enc = tiny_encoder("restyle_psp", G)
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in enc.state_dict().items()}}, tmp_path / "nodec.pt")
    with pytest.raises(CheckpointError, match="no generator"):
        load_inverter(tmp_path / "nodec.pt")
    (tmp_path / "junk.pt").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError):
        load_inverter(tmp_path / "junk.pt")
    from engine.checkpoints import save_generator

    save_generator(G, tmp_path / "g.safetensors")
    with pytest.raises(CheckpointError, match="without an encoder"):
        load_inverter(tmp_path / "g.safetensors")


def test_malicious_checkpoint_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state_dict": {}, "opts": Evil()}, tmp_path / "evil.pt", pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError):
        load_inverter(tmp_path / "evil.pt")


def _meta_state_from_keys(path: Path) -> OrderedDict:
    sd = OrderedDict()
    for line in path.read_text().splitlines()[1:]:
        name, shape, *_ = line.split("\t")
        sd[name] = torch.empty(json.loads(shape), device="meta")
    return sd


@pytest.mark.parametrize(
    "encoder_type,kind", [("BackboneEncoder", "restyle_psp"), ("ProgressiveBackboneEncoder", "restyle_e4e")]
)
def test_released_ir_se50_configuration(golden_dir, encoder_type, kind):
    sd = _meta_state_from_keys(golden_dir / "keys_restyle_psp.txt")
    cfg = infer_encoder_config(sd, {"encoder_type": encoder_type})
    assert (cfg.kind, cfg.backbone, cfg.n_styles, cfg.input_size, cfg.w_dim, cfg.input_nc) == (
        kind,
        "ir_se50",
        16,
        256,
        512,
        6,
    )
    shell = cfg.build(device="meta")
    assert {k: tuple(v.shape) for k, v in shell.state_dict().items()} == {k: tuple(v.shape) for k, v in sd.items()}


def test_own_format_roundtrip(G, tmp_path):
    spec = BackboneSpec(8, (8, 16, 16, 32), (1, 1, 1, 1), use_se=True, se_reduction=4, head_channels=32)
    inv = Inverter(tiny_encoder("restyle_e4e", G, backbone=spec), G, latent_avg=torch.randn(G.num_ws, 64))
    path = save_inverter(inv, tmp_path / "inv.safetensors", source="test")
    back = load_inverter(path)
    assert back.kind == "restyle_e4e" and back.config == inv.config and back.encoder.spec == spec
    assert torch.equal(back.latent_avg, inv.latent_avg)
    for k, v in inv.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    x = faces(2, 32)
    assert torch.equal(back.invert(x, 2).latent, inv.invert(x, 2).latent)
    # The decoder part is an ordinary generator state dict for engine.checkpoints.
    from engine.checkpoints import load_generator

    g2 = load_generator(path)
    assert all(torch.equal(g2.state_dict()[k], v) for k, v in G.state_dict().items())
    # float16 storage: half the size, weights come back as float32.
    half = save_inverter(inv, tmp_path / "half.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    back16 = load_inverter(half)
    assert back16.encoder.input_layer[0].weight.dtype == torch.float32
    torch.testing.assert_close(back16.invert(x, 2).latent, inv.invert(x, 2).latent, rtol=0.05, atol=0.05)


# --------------------------------------------------------------------------------------------------
# The tiny trained pair


@pytest.fixture(scope="module")
def tiny_pair() -> Inverter:
    if not TINY_PAIR.is_file():
        pytest.skip(f"{TINY_PAIR} is missing; run tools/make_tiny_pair.py")
    return load_inverter(TINY_PAIR)


def test_restyle_iterations_never_get_worse(tiny_pair):
    img, lat = TINY_TOOL.evaluate(tiny_pair, n=64, n_iters=4, batch_size=8)
    _, x = TINY_TOOL.held_out(tiny_pair.generator, n=64)
    with torch.no_grad():
        avg = float((tiny_pair.average_image() - resize_images(x, tiny_pair.input_size)).square().mean())
    print("image MSE per iteration", img, "latent MSE", lat, "average image", avg)
    assert img[0] < 0.5 * avg
    for k in range(1, len(img)):
        assert img[k] <= img[k - 1], f"iteration {k + 1} is worse than iteration {k}: {img}"
        assert lat[k] <= lat[k - 1] * 1.02, lat


# --------------------------------------------------------------------------------------------------
# Optimization inversion


@pytest.mark.parametrize("space", ["w", "w+"])
def test_optimization_lowers_the_loss(G, space):
    before = {k: v.clone() for k, v in G.state_dict().items()}
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, 64, generator=torch.Generator().manual_seed(5)))
        target = G.synthesis(ws, transform=torch.eye(3))
    seen = []
    res = optimize_latent(G, target, space=space, steps=25, lr=0.05, progress=lambda i, n: seen.append(i))
    assert len(res.losses) == 25 and seen == list(range(1, 26))
    assert res.losses[-1] < 0.5 * res.losses[0]
    assert res.latent.shape == (2, G.num_ws, G.w_dim) and not res.latent.requires_grad
    if space == "w":
        assert torch.equal(res.latent, res.latent[:, :1].expand_as(res.latent))
    with torch.no_grad():
        start = G.synthesis(G.mapping.w_avg.expand(1, G.num_ws, -1), transform=torch.eye(3))
    assert float((res.image - target).square().mean()) < 0.5 * float((start - target).square().mean())
    assert all(torch.equal(v, before[k]) for k, v in G.state_dict().items())
    assert all(p.grad is None for p in G.parameters())


def test_optimization_init_and_cancel(G):
    target = faces(1, 32)
    init = torch.randn(G.num_ws, G.w_dim)
    res = optimize_latent(G, target, init=init, steps=1, lr=0.0, lpips_weight=0.0)
    torch.testing.assert_close(res.latent[0], init)
    with pytest.raises(Cancelled) as err:
        optimize_latent(G, target, steps=10, lpips_weight=0.0, cancel=lambda: True)
    assert err.value.done == 0
    with pytest.raises(ValueError):
        optimize_latent(G, target, space="z")


# --------------------------------------------------------------------------------------------------
# Command line


def test_invert_command(faces_dir, tmp_path, tiny_pair):
    import main

    out = tmp_path / "out"
    rc = main.main(
        [
            "invert",
            str(faces_dir / "face_a.jpg"),
            "--model",
            str(TINY_PAIR),
            "--out",
            str(out),
            "--iters",
            "2",
            "--pti-steps",
            "3",
            "--no-identity",
            "--save-generator",
        ]
    )
    assert rc == 0
    for name in (
        "aligned.png",
        "crop.png",
        "reconstruction.png",
        "reconstruction_unaligned.png",
        "pivot.png",
        "latent.npy",
        "latents.npy",
        "metrics.json",
        "generator_pti.safetensors",
    ):
        assert (out / name).is_file(), name
    assert np.load(out / "latent.npy").shape == (6, 64)
    assert np.load(out / "latents.npy").shape == (2, 6, 64)
    m = json.loads((out / "metrics.json").read_text())
    assert m["iterations"] == 2 and m["pti"]["steps"] == 3 and len(m["per_iteration"]) == 2
    for key in ("mse", "psnr", "ms_ssim", "lpips", "id_similarity"):
        assert key in m["aligned"] and key in m["unaligned"]
    assert m["aligned"]["mse"] > 0 and len(m["transform"]) == 3


def test_invert_command_errors(tmp_path, capsys):
    import main

    rc = main.main(
        ["invert", str(tmp_path / "none.jpg"), "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o")]
    )
    assert rc == 2 and "none.pt" in capsys.readouterr().err


def test_invert_command_with_a_bundle(faces_dir, tmp_path):
    models = pytest.importorskip("engine.models")
    import main

    manifest = models.ensure_random_bundle(tmp_path / "cache")
    out = tmp_path / "out"
    rc = main.main(
        [
            "invert",
            str(faces_dir / "ffhq_1.jpg"),
            "--model",
            str(manifest.parent),
            "--out",
            str(out),
            "--iters",
            "1",
            "--no-identity",
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["resolution"] == 64 and m["iterations"] == 1 and "pti" not in m
    assert np.load(out / "latent.npy").shape == (8, 64)
