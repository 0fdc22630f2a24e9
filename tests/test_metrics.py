"""Metrics (MSE, PSNR, MS-SSIM, LPIPS, dlib identity) and the LPIPS loss with its offline L2 fallback."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from engine import losses, metrics
from engine.losses import LPIPS_BACKBONE_FILES, LPIPSUnavailableWarning, PerceptualLoss, reconstruction_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def _images(seed: int, n: int = 2, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth-ish content in [-1,1]
    x = torch.rand(n, 3, size // 8, size // 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


# --- pixel metrics ------------------------------------------------------------------------------------


def test_identical_images_pixel_metrics():
    a = _images(0, size=192)
    assert torch.equal(metrics.mse(a, a), torch.zeros(2))
    assert torch.isinf(metrics.psnr(a, a)).all() and (metrics.psnr(a, a) > 0).all()
    assert torch.equal(metrics.ms_ssim(a, a), torch.ones(2, dtype=torch.float64))


def test_psnr_and_mse_values():
    a = torch.zeros(1, 3, 8, 8)
    b = torch.full((1, 3, 8, 8), 0.1)
    assert metrics.mse(a, b).item() == pytest.approx(0.01, rel=1e-6)
    assert metrics.psnr(a, b).item() == pytest.approx(10 * math.log10(4 / 0.01), rel=1e-6)


def _ssim_reference(x: np.ndarray, y: np.ndarray, data_range: float = 2.0) -> float:
    """Independent single-scale SSIM in numpy (11-tap Gaussian, sigma 1.5, valid borders)."""
    t = np.arange(11) - 5.0
    g = np.exp(-(t**2) / (2 * 1.5**2))
    g /= g.sum()
    w = np.outer(g, g)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for ch in range(x.shape[0]):
        f = lambda z: convolve2d(z, w, mode="valid")  # noqa: E731
        mx, my = f(x[ch]), f(y[ch])
        vx, vy, cxy = f(x[ch] ** 2) - mx**2, f(y[ch] ** 2) - my**2, f(x[ch] * y[ch]) - mx * my
        vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ms_ssim_single_scale_matches_reference_and_orders_noise():
    a = _images(1, n=1, size=48)
    b = (a + 0.2 * torch.randn(a.shape, generator=torch.Generator().manual_seed(2))).clamp(-1, 1)
    ours = metrics.ms_ssim(a, b, weights=(1.0,)).item()
    assert ours == pytest.approx(_ssim_reference(a[0].double().numpy(), b[0].double().numpy()), abs=1e-9)

    a = _images(3, n=1, size=192)
    noise = torch.randn(a.shape, generator=torch.Generator().manual_seed(4))
    scores = [metrics.ms_ssim(a, a + s * noise).item() for s in (0.02, 0.1, 0.4)]
    assert 1 > scores[0] > scores[1] > scores[2] > 0
    assert metrics.ms_ssim(a, a + 0.1 * noise).item() == pytest.approx(metrics.ms_ssim(a + 0.1 * noise, a).item())
    # small images use fewer scales, tiny ones are refused
    assert 0 < metrics.ms_ssim(a[..., :40, :40], (a + 0.1 * noise)[..., :40, :40]).item() < 1
    with pytest.raises(ValueError):
        metrics.ms_ssim(a[..., :8, :8], a[..., :8, :8])


# --- LPIPS -----------------------------------------------------------------------------------------------


def _forbid_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    monkeypatch.setattr(torch.hub, "download_url_to_file", fail)


def test_lpips_missing_weights_falls_back_to_l2_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _forbid_downloads(monkeypatch)
    expected = tmp_path / "hub" / "checkpoints" / LPIPS_BACKBONE_FILES["alex"]
    assert losses.lpips_backbone_path("alex") == expected
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = PerceptualLoss("alex")
        second = PerceptualLoss("alex")
    relevant = [w for w in caught if issubclass(w.category, LPIPSUnavailableWarning)]
    assert len(relevant) == 1
    msg = str(relevant[0].message)
    assert "alexnet-owt-7be5be79.pth" in msg and str(expected) in msg and "L2" in msg
    assert not first.is_lpips and not second.is_lpips

    a, b = _images(5), _images(6)
    assert torch.allclose(first(a, b), metrics.mse(a, b))
    assert torch.isnan(metrics.lpips_distance(a, b, first)).all()
    assert metrics.compute_metrics(a, b, perceptual=first, identity=False)["lpips"] is None


@pytest.fixture(scope="module")
def random_lpips(tmp_path_factory) -> PerceptualLoss:
    """LPIPS with a RANDOM AlexNet trunk: for plumbing tests only, its distances are not perceptual."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
        _forbid_downloads(mp)
        torch.manual_seed(0)
        return PerceptualLoss("alex", random_backbone=True)


def test_lpips_plumbing_with_random_backbone(random_lpips):
    # PLUMBING ONLY: the backbone is random, so these distances are not perceptual.
    loss = random_lpips
    assert loss.is_lpips
    a, b = _images(7, size=64), _images(8, size=64)
    assert torch.equal(metrics.lpips_distance(a, a, loss), torch.zeros(2))
    d = metrics.lpips_distance(a, b, loss)
    assert d.shape == (2,) and (d > 0).all()
    b.requires_grad_(True)
    reconstruction_loss(b, a, loss, l2_weight=1.0, lpips_weight=0.8).backward()
    assert b.grad is not None and b.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())


def test_lpips_loads_backbone_from_torch_cache(tmp_path, monkeypatch):
    # PLUMBING ONLY: a random stand-in for torchvision's AlexNet file, placed where the cache keeps it,
    # checks that the file is found and its tensors end up in the LPIPS trunk without any download.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _forbid_downloads(monkeypatch)
    g = torch.Generator().manual_seed(9)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    fake = {}
    for i, s in shapes.items():
        fake[f"features.{i}.weight"] = torch.randn(s, generator=g) * 0.05
        fake[f"features.{i}.bias"] = torch.randn(s[0], generator=g) * 0.01
    path = losses.lpips_backbone_path("alex")
    path.parent.mkdir(parents=True)
    torch.save(fake, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LPIPSUnavailableWarning)
        loss = PerceptualLoss("alex", resize=32)
    assert loss.is_lpips
    assert torch.equal(loss.model.net.slice3.get_submodule("6").weight, fake["features.6.weight"])
    a, b = _images(10, size=64), _images(11, size=64)
    assert loss(a, b).shape == (2,) and torch.equal(loss(a, a), torch.zeros(2))


# --- identity ----------------------------------------------------------------------------------------------


def _read_rgb(path: Path, size: int = 512) -> np.ndarray:
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert im is not None, path
    im = cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(im, cv2.COLOR_BGR2RGB)


def _small_warp(im: np.ndarray) -> np.ndarray:
    h, w = im.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 4.0, 1.03)
    m[:, 2] += (0.012 * w, -0.008 * h)
    return cv2.warpAffine(im, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_identity_same_person_vs_different_people(faces_dir):
    a0 = _read_rgb(faces_dir / "ffhq_0.jpg")
    a1 = _read_rgb(faces_dir / "ffhq_1.jpg")
    b0 = _read_rgb(faces_dir / "face_a.jpg")
    b1 = _read_rgb(faces_dir / "face_b.jpg")
    same = metrics.identity_similarity([a0, b0], [_small_warp(a0), _small_warp(b0)])
    diff = metrics.identity_similarity([a0, b0], [a1, b1])
    assert (same > 0.97).all(), same
    assert (diff < 0.9).all(), diff
    assert same.min() - diff.max() > 0.05
    assert metrics.identity_similarity(a0, a0)[0] == pytest.approx(1.0, abs=1e-12)
    dist = metrics.identity_distance([a0, a0], [_small_warp(a0), a1])
    assert dist[0] < 0.6 < dist[1]  # dlib's documented same-person threshold


def test_identity_accepts_tensors_and_reports_missing_faces(faces_dir, random_lpips):
    face = _read_rgb(faces_dir / "ffhq_3.jpg", size=256)
    t = torch.from_numpy(face).permute(2, 0, 1)[None].float().sub(128).div(127.5)  # [-1,1]
    assert metrics.to_uint8_images(t)[0].tolist() == face.tolist()
    car = cv2.cvtColor(cv2.imread(str(faces_dir / "no_face_car.jpg")), cv2.COLOR_BGR2RGB)
    car_t = torch.from_numpy(cv2.resize(car, (256, 256))).permute(2, 0, 1)[None].float().sub(128).div(127.5)
    sims = metrics.identity_similarity(torch.cat([t, t]), torch.cat([t, car_t]))
    assert sims[0] == pytest.approx(1.0, abs=1e-12) and math.isnan(sims[1])

    out = metrics.compute_metrics(t, t, perceptual=random_lpips)  # random LPIPS trunk: plumbing only
    assert out == {
        "mse": 0.0,
        "psnr": math.inf,
        "ms_ssim": 1.0,
        "lpips": 0.0,
        "id_similarity": pytest.approx(1.0, abs=1e-12),
    }


def test_dlib_models_are_located_without_importing_the_package():
    d = metrics.dlib_model_dir()
    assert (d / "dlib_face_recognition_resnet_model_v1.dat").is_file()
    assert (d / "shape_predictor_68_face_landmarks.dat").is_file()
