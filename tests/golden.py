"""Helpers to rebuild the official reference networks stored in ../shared/golden (see its README)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

BUFFER_SUFFIXES = ("w_avg", "transform", "freqs", "phases", "up_filter", "down_filter", "magnitude_ema")


def seed_for(base_seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{base_seed}:{name}".encode()).digest()[:8], "little") % 2**63


def rule_normal(base_seed: int, name: str, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed_for(base_seed, name))
    return torch.randn(list(shape), generator=g, dtype=torch.float32)


def rule_uniform(base_seed: int, name: str, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed_for(base_seed, name))
    return torch.rand(list(shape), generator=g, dtype=torch.float32)


def generator_param_by_rule(base_seed: int, name: str, shape) -> torch.Tensor:
    """The golden README's parameter rule for generator parameters (buffers come from the file)."""
    if name.startswith("mapping.fc") and name.endswith(".weight"):
        return rule_normal(base_seed, name, shape) * 100.0
    if name == "synthesis.input.affine.bias":
        return torch.tensor([1.0, 0.0, 0.0, 0.0]) + 0.1 * rule_normal(base_seed, name, shape)
    if name.endswith(".affine.bias"):
        return 1.0 + 0.1 * rule_normal(base_seed, name, shape)
    if name.endswith(".bias"):
        return 0.1 * rule_normal(base_seed, name, shape)
    if name.endswith(".weight"):
        return rule_normal(base_seed, name, shape) * 1.0
    raise KeyError(name)


def read_keys(path: Path) -> list[tuple[str, list[int], str]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape, _dtype, kind = line.split("\t")
        rows.append((name, json.loads(shape), kind))
    return rows


def load_golden_generator(golden_dir: Path, cfg: str):
    """(generator in eval mode with the golden weights, the npz file, the meta dict)."""
    from engine import Generator

    data = np.load(golden_dir / f"sg3_{cfg}.npz")
    meta = json.loads(str(data["meta_json"]))
    G = Generator(**json.loads(str(data["init_kwargs_json"]))).eval()
    state = {}
    for name, shape, kind in read_keys(golden_dir / meta["keys_file"]):
        if kind == "buffer":
            state[name] = torch.from_numpy(data[f"buf/{name}"])
        elif f"param/{name}" in data:
            state[name] = torch.from_numpy(data[f"param/{name}"])
        else:
            state[name] = generator_param_by_rule(meta["base_seed"], name, shape)
    G.load_state_dict(state)
    return G, data, meta


def rel_l2(a, b) -> float:
    a = torch.as_tensor(a).detach().double()
    b = torch.as_tensor(b).detach().double()
    return float((a - b).norm() / b.norm())
