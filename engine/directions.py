"""InterFaceGAN directions and StyleSpace channels, fitted with our own small linear classifier.

Pipeline (InterFaceGAN, Shen et al. 2020): sample latents, score their images with an attribute
predictor, keep the top and bottom percentiles of each attribute, fit a linear SVM separating them in
W, and take the boundary's unit normal as the edit direction. The SVM is a soft-margin linear SVM
(squared hinge loss + L2) trained with full-batch L-BFGS in torch on standardised features; no
scikit-learn.

StyleSpace (Wu et al. 2021): for each attribute, the channels whose style values differ most between
positive and negative samples (difference of means over the pooled standard deviation).
"""

from __future__ import annotations

import torch

__all__ = ["fit_linear_svm", "fit_direction", "condition_direction", "stylespace_channels", "calibrate_range"]


def fit_linear_svm(x: torch.Tensor, y: torch.Tensor, c: float = 1.0, iters: int = 200) -> tuple[torch.Tensor, float]:
    """Soft-margin linear SVM (squared hinge).

    x: float [N,D] features; y: [N] labels in {-1, +1}. Returns (w float32 [D] in x's units, bias b)
    with decision function ``x @ w + b``.
    """
    x = x.double()
    y = y.double()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-8)
    xs = (x - mu) / sd
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        margin = (1 - y * (xs @ w + b)).clamp_min(0)
        loss = 0.5 * w.square().sum() + c * margin.square().mean() * len(y) / 100.0
        loss.backward()
        return loss

    opt.step(closure)
    w_x = (w / sd).detach()
    b_x = float(b.detach() - (mu / sd) @ w.detach())
    return w_x.float(), b_x


def fit_direction(latents: torch.Tensor, scores: torch.Tensor, fraction: float = 0.3) -> tuple[torch.Tensor, float]:
    """InterFaceGAN direction of one attribute.

    latents: [N,D] (W codes); scores: [N] predictor outputs. The top and bottom ``fraction`` of the
    samples are the positive and negative classes. Returns (unit normal float32 [D] pointing towards
    higher scores, validation accuracy on the held-out 20% of those samples).
    """
    order = torch.argsort(scores)
    k = max(2, int(len(scores) * fraction))
    neg, pos = order[:k], order[-k:]
    x = torch.cat([latents[neg], latents[pos]])
    y = torch.cat([-torch.ones(k), torch.ones(k)])
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    n_val = max(1, len(y) // 5)
    val, tr = perm[:n_val], perm[n_val:]
    w, b = fit_linear_svm(x[tr], y[tr])
    acc = float(((x[val].float() @ w + b).sign() == y[val]).float().mean())
    return w / w.norm(), acc


def condition_direction(primal: torch.Tensor, conditions: list[torch.Tensor]) -> torch.Tensor:
    """InterFaceGAN's conditional manipulation: the unit direction closest to ``primal`` [D] that is
    orthogonal to every condition direction (each [D]), i.e. moving along it leaves the conditions'
    linear scores unchanged. With no conditions, ``primal`` normalised."""
    d = primal.double()
    if conditions:
        basis = torch.linalg.qr(torch.stack([c.double() for c in conditions], dim=1)).Q  # [D,k] orthonormal
        d = d - basis @ (basis.T @ d)
    norm = d.norm()
    if norm < 1e-6:
        raise ValueError("the primal direction lies in the span of its conditions")
    return (d / norm).to(primal.dtype)


def calibrate_range(strengths: torch.Tensor, deltas: torch.Tensor, target: float) -> float:
    """Strength that changes an attribute by ``target`` on average, from a least-squares slope.

    strengths: [K] steps along a direction; deltas: [K] or [K,N] mean attribute change at each step.
    """
    d = deltas.float().reshape(len(strengths), -1).mean(1)
    s = strengths.float()
    slope = float((s * d).sum() / s.square().sum().clamp_min(1e-12))
    return float(target / max(abs(slope), 1e-6))


def stylespace_channels(
    styles_pos: dict[str, torch.Tensor], styles_neg: dict[str, torch.Tensor], top: int = 8
) -> list[tuple[str, int, int]]:
    """Top StyleSpace channels of an attribute.

    styles_pos / styles_neg: layer name -> style values [N,C] of positive / negative samples.
    Returns up to ``top`` (layer, channel, sign) triples, strongest first; sign +1 means increasing the
    channel raises the attribute.
    """
    rows: list[tuple[float, str, int, int]] = []
    for name, p in styles_pos.items():
        n = styles_neg[name]
        pooled = torch.sqrt(0.5 * (p.var(0) + n.var(0))).clamp_min(1e-6)
        effect = (p.mean(0) - n.mean(0)) / pooled
        for ch in range(effect.numel()):
            e = float(effect[ch])
            rows.append((abs(e), name, ch, 1 if e > 0 else -1))
    rows.sort(key=lambda r: -r[0])
    return [(name, ch, sign) for _, name, ch, sign in rows[:top]]
