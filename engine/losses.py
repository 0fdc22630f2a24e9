"""Reconstruction losses for inversion and pivotal tuning: L2 and LPIPS.

LPIPS comes from the ``lpips`` package. Its small linear calibration layers ship inside that package;
its backbone (AlexNet or VGG16 ImageNet features) is torchvision's, read from torchvision's cache
(``<torch.hub.get_dir()>/checkpoints/``, i.e. ``$TORCH_HOME/hub/checkpoints``). Nothing here ever
downloads: when the backbone file is absent, ``PerceptualLoss`` falls back to L2 and emits one
``LPIPSUnavailableWarning`` per missing file naming the file to place and where.

Images everywhere are float tensors [N,3,H,W] in [-1,1] (the generator's output range).
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LPIPS_BACKBONE_FILES",
    "LPIPSUnavailableWarning",
    "PerceptualLoss",
    "build_lpips",
    "lpips_backbone_path",
    "mse_per_sample",
    "reconstruction_loss",
]

log = logging.getLogger(__name__)

# torchvision's IMAGENET1K_V1 checkpoints, under the names torch.hub stores them.
LPIPS_BACKBONE_FILES: dict[str, str] = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
}
_DOWNLOAD_ROOT = "https://download.pytorch.org/models/"


class LPIPSUnavailableWarning(UserWarning):
    """LPIPS backbone weights are missing; the perceptual term is replaced by L2."""


# Process-wide record of files already reported, so the fallback warns once, not once per loss object.
_warned_lock = threading.Lock()
_warned_paths: set[str] = set()


def lpips_backbone_path(net: str = "alex") -> Path:
    """Where torchvision's cache keeps the ImageNet weights LPIPS needs for ``net`` ('alex' or 'vgg')."""
    try:
        name = LPIPS_BACKBONE_FILES[net]
    except KeyError:
        raise ValueError(f"unsupported LPIPS backbone {net!r}; choose one of {sorted(LPIPS_BACKBONE_FILES)}") from None
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def _lpips_linear_path(net: str) -> Path:
    import lpips  # deferred: importing lpips pulls in torchvision models

    return Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / f"{net}.pth"


def _warn_missing(path: Path, net: str) -> None:
    key = str(path)
    with _warned_lock:
        if key in _warned_paths:
            return
        _warned_paths.add(key)
    msg = (
        f"LPIPS ({net}) is unavailable: its backbone weights {path.name} are not in torchvision's cache. "
        f"Place {path.name} (from {_DOWNLOAD_ROOT}{path.name}) at {path} to enable it. "
        f"Until then the perceptual term falls back to L2 (MSE)."
    )
    log.warning(msg)
    warnings.warn(msg, LPIPSUnavailableWarning, stacklevel=3)


def build_lpips(
    net: str = "alex",
    *,
    device: torch.device | str = "cpu",
    random_backbone: bool = False,
    backbone_path: Path | None = None,
) -> nn.Module | None:
    """Build a frozen ``lpips.LPIPS`` module without any network access.

    Args:
        net: 'alex' (default, used by PTI) or 'vgg'.
        device: where to put the module.
        random_backbone: keep the backbone randomly initialised instead of loading ImageNet weights.
            Only for plumbing tests: the distances are then not perceptual.
        backbone_path: torchvision state dict of the backbone; defaults to ``lpips_backbone_path(net)``.

    Returns:
        The module in eval mode with ``requires_grad`` off, or None when the backbone file is missing
        (and ``random_backbone`` is False). Call it as ``m(a, b)`` with a, b [N,3,H,W] in [-1,1]; it
        returns [N,1,1,1].
    """
    path = Path(backbone_path) if backbone_path is not None else lpips_backbone_path(net)
    if not random_backbone and not path.is_file():
        return None
    import lpips

    with warnings.catch_warnings():
        # lpips asks torchvision for pretrained=False through a deprecated keyword; harmless here.
        warnings.simplefilter("ignore", UserWarning)
        # pretrained=False: we load the linear layers ourselves (weights_only); pnet_rand=True: torchvision
        # builds the backbone without fetching anything.
        model = lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    lin = torch.load(_lpips_linear_path(net), map_location="cpu", weights_only=True)
    # lin0..linK are also registered as lins.0..K (same tensors), so only the linK names must be covered.
    expected = {k for k in model.state_dict() if re.match(r"lin\d+\.", k)}
    if set(lin) != expected:
        raise RuntimeError(
            f"LPIPS linear weights do not fit the {net} model: file has {sorted(lin)}, model expects {sorted(expected)}"
        )
    model.load_state_dict(lin, strict=False)
    if not random_backbone:
        tv_state = torch.load(path, map_location="cpu", weights_only=True)
        # lpips keeps torchvision's feature layers under slice<k>.<index>; map back to features.<index>.
        own = model.net.state_dict()
        try:
            mapped = {k: tv_state["features." + k.split(".", 1)[1]] for k in own}
        except KeyError as e:
            raise RuntimeError(f"{path} is not a torchvision {net} checkpoint (missing {e})") from None
        model.net.load_state_dict(mapped)
    model = model.to(device).eval()
    model.requires_grad_(False)
    return model


def mse_per_sample(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample: a, b [N,...] -> [N]."""
    return (a - b).square().flatten(1).mean(dim=1)


class PerceptualLoss(nn.Module):
    """LPIPS distance per sample, or L2 (MSE) when the LPIPS backbone weights are missing.

    Args:
        net: LPIPS backbone, 'alex' or 'vgg'.
        device: where to put the network.
        random_backbone: plumbing-test mode (see ``build_lpips``).
        resize: if set, inputs larger than this are area-downsampled to ``resize`` x ``resize`` first
            (LPIPS is usually taken at 256 px).
    """

    def __init__(
        self,
        net: str = "alex",
        *,
        device: torch.device | str = "cpu",
        random_backbone: bool = False,
        resize: int | None = None,
    ) -> None:
        super().__init__()
        self.net_name = net
        self.resize = resize
        self.backbone_path = lpips_backbone_path(net)
        self.model = build_lpips(net, device=device, random_backbone=random_backbone)
        self.random_backbone = random_backbone
        if self.model is None:
            _warn_missing(self.backbone_path, net)

    @property
    def is_lpips(self) -> bool:
        """True when real LPIPS is computed, False in the L2 fallback."""
        return self.model is not None

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize is not None and x.shape[-1] > self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="area")
        return x

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b [N,3,H,W] in [-1,1] -> distance [N] (LPIPS, or MSE in the fallback)."""
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] != 3:
            raise ValueError(f"expected two [N,3,H,W] images of equal shape, got {list(a.shape)} and {list(b.shape)}")
        if self.model is None:
            return mse_per_sample(a, b)
        a, b = self._prepare(a), self._prepare(b)
        return self.model(a, b).flatten()


def reconstruction_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    perceptual: PerceptualLoss | None = None,
    *,
    l2_weight: float = 1.0,
    lpips_weight: float = 1.0,
) -> torch.Tensor:
    """Scalar ``l2_weight * MSE + lpips_weight * LPIPS`` averaged over the batch.

    pred, target: [N,3,H,W] in [-1,1]. Without ``perceptual`` (or in its L2 fallback) the second term
    is MSE as well, so the weights keep their meaning as "data term" and "perceptual term".
    """
    loss = l2_weight * mse_per_sample(pred, target).mean()
    if lpips_weight:
        term = perceptual(pred, target).mean() if perceptual is not None else mse_per_sample(pred, target).mean()
        loss = loss + lpips_weight * term
    return loss
