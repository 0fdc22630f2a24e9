"""Attribute predictor of the demo domain: a small CNN that regresses renderer factors from a face.

Stable entry points::

    from engine.predictor import load_predictor
    P = load_predictor("resources/models/demo/predictor.safetensors")
    scores = P.predict(images)     # images [N,3,H,W] in [-1,1] (aligned) -> float32 [N, len(P.attributes)]
    P.attributes                   # factor names, columns of the scores, in the factors' own units

The file is safetensors: the weights plus a JSON ``charm_predictor`` header entry holding the
architecture (``size``, ``width``) and the attribute names. Used to label generator samples when fitting
directions and to evaluate edits.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.imageio import atomic_write

__all__ = ["AttributePredictor", "load_predictor", "save_predictor"]

_META_KEY = "charm_predictor"


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2),
        nn.AvgPool2d(2),
    )


class AttributePredictor(nn.Module):
    """CNN: aligned face [N,3,size,size] in [-1,1] -> factor values [N,len(attributes)].

    Internally it predicts each factor normalised to [0,1] by its range (``low``, ``high``) and maps it
    back, so scores are in the factors' units (e.g. yaw in [-1,1]).
    """

    low: torch.Tensor  # buffers: each attribute's range
    high: torch.Tensor

    def __init__(
        self, attributes: list[str], low: list[float], high: list[float], size: int = 64, width: int = 24
    ) -> None:
        super().__init__()
        self.attributes, self.size, self.width = list(attributes), int(size), int(width)
        self.register_buffer("low", torch.tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.tensor(high, dtype=torch.float32))
        chans = [3, width, width * 2, width * 4, width * 4]
        self.features = nn.Sequential(*[_block(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(chans[-1] * (size // 16) ** 2, 128),
            nn.LeakyReLU(0.2),
            nn.Linear(128, len(attributes)),
        )

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        """x [N,3,H,W] in [-1,1] (resized to ``size``) -> normalised factors [N,A] (about [0,1])."""
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.low + self.forward_normalized(x) * (self.high - self.low)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Factors [N,A] float32 for images [N,3,H,W] in [-1,1], in eval mode, without gradients."""
        was = self.training
        self.eval()
        p = next(self.parameters())
        outs = [
            self(images[i : i + batch_size].to(device=p.device, dtype=p.dtype))
            for i in range(0, len(images), batch_size)
        ]
        self.train(was)
        return torch.cat(outs).float()

    def config(self) -> dict:
        return {
            "attributes": self.attributes,
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "size": self.size,
            "width": self.width,
        }


def save_predictor(model: AttributePredictor, path: os.PathLike | str) -> Path:
    """Write ``model`` as safetensors with its configuration in the header; atomic; returns the path."""
    from safetensors.torch import save_file

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous()
        for k, v in model.state_dict().items()
        if v.is_floating_point()
    }
    tensors.update(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not v.is_floating_point()}
    )
    return atomic_write(p, lambda tmp: save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(model.config())}))


def load_predictor(path: os.PathLike | str, device: torch.device | str = "cpu") -> AttributePredictor:
    """Load a predictor written by :func:`save_predictor`, in eval mode with gradients off."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from engine.errors import CheckpointError

    p = Path(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[_META_KEY])
        state = load_file(str(p))
    except Exception as e:  # noqa: BLE001 - every failure becomes one clear message
        raise CheckpointError(
            f"{p}: not a Charm Studio attribute predictor ({e}); retrain it with `python main.py train-demo predictor`"
        ) from None
    model = AttributePredictor(meta["attributes"], meta["low"], meta["high"], meta["size"], meta["width"])
    model.load_state_dict(state)
    model.requires_grad_(False)
    return model.to(device).eval()
