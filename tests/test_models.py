"""engine.models: bundle manifests, loading, the random development bundle, and the demo bundle."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from engine.errors import CheckpointError
from engine.models import (
    BUNDLE_FORMAT,
    DEMO_MANIFEST,
    ensure_random_bundle,
    inverter_for,
    load_bundle,
    make_random_bundle,
)

DEMO_MISSING = "demo model not installed"


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return ensure_random_bundle(tmp_path_factory.getbasetemp() / "bundles").parent


def test_random_bundle_loads_by_folder_and_manifest(bundle_dir):
    a = load_bundle(bundle_dir)
    b = load_bundle(bundle_dir / "manifest.json")
    assert a.name == b.name and a.random_weights and a.notice
    assert a.resolution == 64 and a.w_dim == 64 and a.num_ws == a.generator.num_ws
    assert set(a.directions) >= {"smile", "age", "glasses", "beard", "hair colour", "yaw"}
    for d in a.directions.values():
        assert d.vector.shape == (a.w_dim,) and d.vector.dtype == torch.float32
        assert abs(float(d.vector.norm()) - 1) < 1e-5 and d.range[0] < 0 < d.range[1]
    layers = a.style_layers()
    for rows in a.stylespace.values():
        for layer, ch, sign in rows:
            assert 0 <= ch < layers[layer] and sign in (-1, 1)
    assert a.model_card is not None and a.model_card.is_file()
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["format"] == BUNDLE_FORMAT


def test_random_bundle_is_deterministic(tmp_path):
    m1 = make_random_bundle(tmp_path / "a", seed=3, with_inverter=False)
    m2 = make_random_bundle(tmp_path / "b", seed=3, with_inverter=False)
    a, b = load_bundle(m1), load_bundle(m2)
    for (k, v), (k2, v2) in zip(a.generator.state_dict().items(), b.generator.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert all(torch.equal(a.directions[n].vector, b.directions[n].vector) for n in a.directions)
    assert a.stylespace == b.stylespace


def test_demo_missing_is_a_clear_error(monkeypatch, tmp_path):
    import engine.models

    missing = tmp_path / "demo" / "manifest.json"
    monkeypatch.setattr(engine.models, "DEMO_MANIFEST", missing)
    with pytest.raises(CheckpointError, match=r"demo model is missing .*restore resources/models/demo") as err:
        load_bundle("demo")
    assert str(missing) in str(err.value)


def _copy(bundle_dir, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dst)
    return dst


def test_broken_bundles_raise_checkpoint_errors(bundle_dir, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_bundle(tmp_path / "nothing")
    d = _copy(bundle_dir, tmp_path)
    m = json.loads((d / "manifest.json").read_text())
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable bundle manifest"):
        load_bundle(d)
    (d / "manifest.json").write_text(json.dumps(dict(m, format="other/9")))
    with pytest.raises(CheckpointError, match="not a Charm Studio bundle"):
        load_bundle(d)
    (d / "manifest.json").write_text(json.dumps(dict(m, generator={"file": "../outside.safetensors"})))
    with pytest.raises(CheckpointError, match="outside the bundle folder"):
        load_bundle(d)
    (d / "manifest.json").write_text(
        json.dumps(dict(m, predictor={"file": "generator.safetensors", "loader": "os:system"}))
    )
    with pytest.raises(CheckpointError, match="not allowed"):
        load_bundle(d)
    (d / "manifest.json").write_text(json.dumps(m))
    (d / "generator.safetensors").write_bytes(b"<html>quota exceeded</html>")
    with pytest.raises(CheckpointError):
        load_bundle(d)
    d2 = _copy(bundle_dir, tmp_path / "2")
    m2 = dict(m, stylespace={"smile": [["L0_24_32", 10_000, 1]]})
    (d2 / "manifest.json").write_text(json.dumps(m2))
    with pytest.raises(CheckpointError, match="does not exist in this generator"):
        load_bundle(d2)


def test_random_bundle_inverter(bundle_dir):
    inversion = pytest.importorskip("engine.inversion")
    b = load_bundle(bundle_dir)
    assert b.inverter is not None and inverter_for(b) is b.inverter
    assert isinstance(b.inverter, inversion.InverterProtocol) and b.inverter.kind == "restyle_e4e"
    G = b.generator
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(5))))
    seen = []
    res = b.inverter.invert(target, n_iters=3, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)] and res.latent.shape == (2, b.num_ws, b.w_dim)


def test_random_bundle_of_a_given_configuration_and_encoder(tmp_path):
    """bench/_networks.ffhq_random_bundle's route: exact Generator keywords and the encoder's kind,
    backbone and input size are what the bundle holds."""
    pytest.importorskip("engine.inversion")
    kwargs = dict(z_dim=24, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, channel_base=512, channel_max=16)
    kwargs.update(num_layers=4, margin_size=4, mapping_kwargs={"num_layers": 1})
    m = make_random_bundle(tmp_path / "b", seed=1, generator_kwargs=kwargs, encoder=("restyle_psp", "ir_se_small", 64))
    b = load_bundle(m)
    G = b.generator
    assert (G.z_dim, G.w_dim, G.img_resolution, G.num_ws, G.mapping.num_layers) == (24, 32, 32, 6, 1)
    assert b.inverter is not None and b.inverter.kind == "restyle_psp"
    res = b.inverter.invert(torch.zeros(1, 3, 32, 32), n_iters=1)
    assert res.latent.shape == (1, 6, 32)


def test_optimization_inverter_progress_and_cancel(bundle_dir):
    inversion = pytest.importorskip("engine.inversion")
    b = load_bundle(bundle_dir)
    G = b.generator
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(5))))
    seen = []
    res = inversion.OptimizationInverter(G).invert(target, n_iters=2, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 2), (2, 2)] and res.latent.shape == (1, b.num_ws, b.w_dim)
    with pytest.raises(inversion.Cancelled):
        inversion.OptimizationInverter(G).invert(target, n_iters=50, cancel=lambda: True)


def test_optimization_inverter_result_matches_the_encoder_inverters(bundle_dir):
    """Without an encoder, inverter_for gives an OptimizationInverter whose result has the encoder
    inverter's layout: final latent last, aligned renders, the unaligned render and its transform."""
    inversion = pytest.importorskip("engine.inversion")
    b = load_bundle(bundle_dir)
    G = b.generator
    with torch.no_grad():
        target = G.synthesis(G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(6))))
    transform = torch.tensor([[1.0, 0.0, 0.1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    without = load_bundle(bundle_dir)
    without.inverter = None
    opt = inverter_for(without)
    assert isinstance(opt, inversion.OptimizationInverter) and isinstance(opt, inversion.InverterProtocol)
    assert opt.kind == "optimization" and opt.generator is without.generator
    assert (opt.resolution, opt.w_dim, opt.num_ws) == (b.resolution, b.w_dim, b.num_ws)
    for inv in (b.inverter, opt):
        res = inv.invert(target, n_iters=2, transform=transform)
        assert res.latent.shape == (2, b.num_ws, b.w_dim) and res.latent.dtype == torch.float32
        assert res.latent is res.latents[-1] and not res.latent.requires_grad
        assert len(res.images) == len(res.latents) and res.image.shape == (2, 3, b.resolution, b.resolution)
        assert res.unaligned is not None and res.unaligned.shape == res.image.shape
        assert res.transform is not None and res.transform.dtype == torch.float32
        with torch.no_grad():
            expected = inv.generator.synthesis(res.latent, transform=transform.float())
        assert torch.allclose(res.unaligned, expected, atol=1e-5)
    with pytest.raises(ValueError, match="transform"):
        opt.invert(target, n_iters=1, transform=torch.eye(3).expand(3, 3, 3))


def test_demo_bundle_smile_direction_raises_predictor_smile():
    """Seen from the studio: the demo bundle's smile direction raises the predictor's smile score.
    Runs once the demo model is installed."""
    if not DEMO_MANIFEST.is_file():
        pytest.skip(DEMO_MISSING)
    from engine.render import render_state
    from engine.state import EditState

    b = load_bundle("demo")
    if b.predictor is None:
        pytest.skip("demo bundle has no predictor")
    G = b.generator
    with torch.no_grad():
        ws = G.mapping(torch.randn(8, G.z_dim, generator=torch.Generator().manual_seed(0)), truncation_psi=0.7)
    smile = b.directions["smile"]
    column = list(b.predictor.attributes).index(smile.attribute or "smile")
    lo, hi = smile.range
    scores = []
    for value in (lo, hi):
        imgs = torch.cat([render_state(EditState(latent=w.numpy()).with_direction("smile", value), b) for w in ws])
        scores.append(b.predictor.predict(imgs)[:, column])
    assert float((scores[1] - scores[0]).mean()) > 0


def test_demo_restyle_more_iterations_never_worse_on_average():
    """On the shipped demo model: on held-out aligned renders, each ReStyle iteration (1..5)
    reconstructs at least as well as the one before, on average (image MSE)."""
    if not DEMO_MANIFEST.is_file():
        pytest.skip(DEMO_MISSING)
    import numpy as np

    from factory.synthetic import render, sample_factors

    b = load_bundle("demo")
    images, _, _ = render(sample_factors(48, seed=424_242), b.resolution, aligned=True)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    res = b.inverter.invert(x, n_iters=5)
    mse = [float((im.clamp(-1, 1) - x).square().mean()) for im in res.images]
    assert all(later <= earlier for earlier, later in zip(mse, mse[1:])), f"image MSE per iteration: {mse}"
