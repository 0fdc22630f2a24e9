"""Reconstruction quality metrics: L2 (MSE), PSNR, MS-SSIM, LPIPS and identity similarity.

Image conventions:

- Pixel metrics take float tensors [N,3,H,W] in [-1,1] (the generator's range; the data range is 2)
  and return one value per sample, [N].
- Identity similarity also accepts RGB uint8 arrays [H,W,3] (or a list of them). Tensors are turned
  into uint8 with the display mapping ``clamp(x * 127.5 + 128, 0, 255)``.

Identity uses dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) on the
68-landmark shape of the largest face found by dlib's HOG detector; both model files come from the
``face_recognition_models`` package, located without importing it (its ``__init__`` needs
pkg_resources). The similarity is the cosine of the two 128-D descriptors. On the faces in
``../shared/faces`` the same person under a small warp scores above 0.99 and different people
0.75 to 0.9; dlib's own Euclidean "same person" cut (0.6) is available through ``identity_distance``.

Identical inputs give MSE 0, PSNR inf, MS-SSIM 1, LPIPS 0 and identity similarity 1.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from engine.imageio import to_uint8

if TYPE_CHECKING:
    from engine.losses import PerceptualLoss

__all__ = [
    "MS_SSIM_WEIGHTS",
    "compute_metrics",
    "dlib_model_dir",
    "face_descriptor",
    "identity_distance",
    "identity_similarity",
    "lpips_distance",
    "ms_ssim",
    "mse",
    "psnr",
    "to_uint8_images",
]

DATA_RANGE = 2.0
# Wang, Simoncelli & Bovik (2003), five scales.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

ImageInput = torch.Tensor | np.ndarray | Sequence[np.ndarray]


# --- pixel metrics ---------------------------------------------------------------------------------------


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"expected two [N,C,H,W] tensors of equal shape, got {list(a.shape)} and {list(b.shape)}")


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample. a, b [N,C,H,W] in [-1,1] -> [N]."""
    _check_pair(a, b)
    return (a - b).square().flatten(1).mean(dim=1)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = DATA_RANGE) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per sample; inf where the images are identical.

    a, b [N,C,H,W]; ``data_range`` is max - min of the pixel range (2 for [-1,1]).
    """
    err = mse(a, b).double()
    return (10.0 * torch.log10(data_range**2 / err)).to(a.dtype)


def _gaussian_window(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    # separable Gaussian, 'valid' borders, one filter per channel
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_terms(
    a: torch.Tensor, b: torch.Tensor, g: torch.Tensor, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (SSIM, contrast-structure) means at one scale."""
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_a, mu_b = _blur(a, g), _blur(b, g)
    var_a = _blur(a * a, g) - mu_a * mu_a
    var_b = _blur(b * b, g) - mu_b * mu_b
    cov = _blur(a * b, g) - mu_a * mu_b
    cs_map = (2 * cov + c2) / (var_a + var_b + c2)
    lum_map = (2 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
    # per-sample means over channels and pixels
    return (lum_map * cs_map).flatten(1).mean(1), cs_map.flatten(1).mean(1)


def ms_ssim(
    a: torch.Tensor,
    b: torch.Tensor,
    data_range: float = DATA_RANGE,
    *,
    win_size: int = 11,
    sigma: float = 1.5,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
) -> torch.Tensor:
    """Multi-scale SSIM per sample (1 = identical). a, b [N,C,H,W] in [-1,1] -> [N].

    Gaussian window 11 / sigma 1.5, 'valid' borders, 2x average pooling between scales, standard
    five-scale weights. Images too small for all scales (min side < (win_size - 1) * 2**(scales-1) + 1,
    161 px with the defaults) use as many scales as fit, with the leading weights renormalised to sum
    to 1; below ``win_size`` pixels this raises ValueError. Computed in float64 at least.
    """
    _check_pair(a, b)
    side = min(a.shape[-2:])
    n_scales = len(weights)
    while n_scales > 1 and side < (win_size - 1) * 2 ** (n_scales - 1) + 1:
        n_scales -= 1
    if side < win_size:
        raise ValueError(f"MS-SSIM needs images of at least {win_size} px, got {tuple(a.shape[-2:])}")
    dtype = torch.promote_types(a.dtype, torch.float64)
    w = torch.tensor(weights[:n_scales], dtype=dtype, device=a.device)
    w = w / w.sum()
    g = _gaussian_window(win_size, sigma, a.device, dtype)
    a, b = a.to(dtype), b.to(dtype)
    factors = []
    for s in range(n_scales):
        ssim_val, cs = _ssim_terms(a, b, g, data_range)
        # negative contrast-structure values would make fractional powers undefined
        factors.append((ssim_val if s == n_scales - 1 else cs).clamp_min(0.0))
        if s < n_scales - 1:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    vals = torch.stack(factors, dim=1)  # [N, scales]
    return torch.prod(vals**w, dim=1)


def lpips_distance(a: torch.Tensor, b: torch.Tensor, perceptual: PerceptualLoss | None = None) -> torch.Tensor:
    """LPIPS per sample, a, b [N,3,H,W] in [-1,1] -> [N]; NaN when LPIPS weights are unavailable.

    Pass a ``PerceptualLoss`` to reuse its network; otherwise an AlexNet one is built on a's device.
    """
    from engine.losses import PerceptualLoss

    _check_pair(a, b)
    if perceptual is None:
        perceptual = PerceptualLoss("alex", device=a.device)
    if not perceptual.is_lpips:
        return torch.full((a.shape[0],), float("nan"), dtype=a.dtype, device=a.device)
    with torch.no_grad():
        return perceptual(a, b).to(a.dtype)


# --- identity (dlib) --------------------------------------------------------------------------------------


def dlib_model_dir() -> Path:
    """Folder holding dlib's model files from the face_recognition_models package (not imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the face_recognition_models package is not installed; it ships dlib's model files")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class _DlibFaceModels:
    """dlib detector, 68-landmark predictor and face-recognition net, loaded on first use.

    dlib objects are not documented as thread-safe, so every call runs under the same lock.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._models: tuple[Any, Any, Any] | None = None

    def get(self) -> tuple[Any, Any, Any]:
        if self._models is None:
            import dlib

            d = dlib_model_dir()
            paths = [d / "shape_predictor_68_face_landmarks.dat", d / "dlib_face_recognition_resnet_model_v1.dat"]
            for p in paths:
                if not p.is_file():
                    raise FileNotFoundError(f"dlib model file missing: {p} (reinstall face_recognition_models)")
            self._models = (
                dlib.get_frontal_face_detector(),
                dlib.shape_predictor(str(paths[0])),
                dlib.face_recognition_model_v1(str(paths[1])),
            )
        return self._models


_DLIB = _DlibFaceModels()


def to_uint8_images(images: ImageInput) -> list[np.ndarray]:
    """Tensor [N,3,H,W] in [-1,1], uint8 array [H,W,3] / [N,H,W,3], or a list of [H,W,3] -> list of RGB uint8."""
    if isinstance(images, torch.Tensor):
        return list(to_uint8(images))
    if isinstance(images, np.ndarray):
        images = [images] if images.ndim == 3 else list(images)
    out = []
    for im in images:
        im = np.asarray(im)
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"expected RGB uint8 [H,W,3] images, got {im.dtype} {im.shape}")
        out.append(np.ascontiguousarray(im))
    return out


def face_descriptor(image: np.ndarray) -> np.ndarray | None:
    """dlib's 128-D descriptor (float64) of the largest face in an RGB uint8 [H,W,3] image, or None."""
    detector, predictor, recognizer = _DLIB.get()
    image = to_uint8_images(image)[0]
    with _DLIB.lock:
        boxes = detector(image, 0)
        if len(boxes) == 0:
            boxes = detector(image, 1)  # small faces (e.g. 256 px renders) need one upsampling
        if len(boxes) == 0:
            return None
        box = max(boxes, key=lambda r: r.area())
        shape = predictor(image, box)
        return np.asarray(recognizer.compute_face_descriptor(image, shape), dtype=np.float64)


def _descriptor_pairs(a: ImageInput, b: ImageInput) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    xs, ys = to_uint8_images(a), to_uint8_images(b)
    if len(xs) != len(ys):
        raise ValueError(f"got {len(xs)} and {len(ys)} images")
    return [(face_descriptor(x), face_descriptor(y)) for x, y in zip(xs, ys)]


def identity_similarity(a: ImageInput, b: ImageInput) -> np.ndarray:
    """Cosine similarity of dlib face descriptors per image pair -> float64 [N], NaN where a face is missing."""
    out = []
    for u, v in _descriptor_pairs(a, b):
        if u is None or v is None:
            out.append(math.nan)
        else:
            out.append(float(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1.0, 1.0)))
    return np.asarray(out, dtype=np.float64)


def identity_distance(a: ImageInput, b: ImageInput) -> np.ndarray:
    """Euclidean distance of dlib face descriptors per pair -> float64 [N] (dlib: < 0.6 means same person)."""
    return np.asarray(
        [math.nan if u is None or v is None else float(np.linalg.norm(u - v)) for u, v in _descriptor_pairs(a, b)],
        dtype=np.float64,
    )


# --- summary -----------------------------------------------------------------------------------------------


def _mean_or_none(x: torch.Tensor | np.ndarray) -> float | None:
    arr = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else None


def compute_metrics(
    pred: torch.Tensor, target: torch.Tensor, *, perceptual: PerceptualLoss | None = None, identity: bool = True
) -> dict[str, float | None]:
    """Batch means of all metrics for pred, target [N,3,H,W] in [-1,1], as plain floats (JSON-ready).

    ``lpips`` is None when LPIPS is unavailable (no backbone weights) or ``perceptual`` is None;
    ``id_similarity`` is None when ``identity`` is False or no face pair was found. PSNR may be inf.
    """
    with torch.no_grad():
        out: dict[str, float | None] = {
            "mse": _mean_or_none(mse(pred, target)),
            "psnr": _mean_or_none(psnr(pred, target)),
            "ms_ssim": _mean_or_none(ms_ssim(pred, target)),
            "lpips": _mean_or_none(lpips_distance(pred, target, perceptual)) if perceptual is not None else None,
        }
    out["id_similarity"] = _mean_or_none(identity_similarity(pred, target)) if identity else None
    return out
