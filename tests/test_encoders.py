"""Encoders: golden parity of the ReStyle heads, released state_dict layout, pSp/e4e and small backbones."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.encoders import BACKBONES, ENCODER_KINDS, build_encoder, encoder_state_from_checkpoint

BASE_SEED = 161803
FANIN_LIMIT = 1e-4  # acceptance limit for the fan-in-rule networks
MAIN_LIMIT = 1e-2  # chaotic main-rule network, see golden/README.md

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


# --- the golden parameter rule (golden/README.md, "The parameter rule") -------------------------------


def _seed_for(base_seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{base_seed}:{name}".encode()).digest()[:8], "little") % 2**63


def _normal(name: str, shape: list[int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(_seed_for(BASE_SEED, name))
    return torch.randn(shape, generator=g, dtype=torch.float32)


def _uniform(name: str, shape: list[int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(_seed_for(BASE_SEED, name))
    return torch.rand(shape, generator=g, dtype=torch.float32)


def _read_keys(path: Path) -> list[tuple[str, list[int], str, str]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape, dtype, kind = line.split("\t")
        rows.append((name, json.loads(shape), dtype, kind))
    return rows


def _golden_state_dict(rows: list[tuple[str, list[int], str, str]], fanin: bool) -> dict[str, torch.Tensor]:
    names = {r[0] for r in rows}
    sd: dict[str, torch.Tensor] = {}
    for name, shape, _, _ in rows:
        if name.endswith("num_batches_tracked"):
            v = torch.tensor(0, dtype=torch.int64)
        elif name.endswith("running_mean"):
            v = 0.1 * _normal(name, shape)
        elif name.endswith("running_var"):
            v = 0.5 + _uniform(name, shape)
        elif name.endswith(".bias"):
            v = 0.1 * _normal(name, shape)
        elif len(shape) == 4:
            n = _normal(name, shape)
            v = n / math.sqrt(shape[1] * shape[2] * shape[3]) if fanin else 0.05 * n
        elif len(shape) == 2:
            v = 1.0 * _normal(name, shape)
        elif name[: -len("weight")] + "running_mean" in names:
            v = 1.0 + 0.1 * _normal(name, shape)
        else:
            v = 0.25 + 0.05 * _normal(name, shape)
        sd[name] = v
    return sd


def _rel_l2(a: torch.Tensor | np.ndarray, b: np.ndarray) -> float:
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a64 - b64) / np.linalg.norm(b64))


# --- golden fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key_rows(golden_dir: Path) -> list[tuple[str, list[int], str, str]]:
    return _read_keys(golden_dir / "keys_restyle_psp.txt")


@pytest.fixture(scope="module")
def golden_files(golden_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for kind in ("restyle_psp", "restyle_e4e"):
        with np.load(golden_dir / f"{kind}.npz") as d:
            out[kind] = {k: d[k] for k in d.files}
    return out


@pytest.fixture(scope="module", params=["fanin", "main"])
def golden_run(request, key_rows, golden_files) -> dict:
    """Both heads run once per parameter variant on shared parameter tensors (built on meta, then
    filled with assign=True, so the ~190M parameters exist only once)."""
    variant = request.param
    sd = _golden_state_dict(key_rows, fanin=variant == "fanin")
    out: dict = {"variant": variant, "suffix": "_fanin" if variant == "fanin" else ""}
    with torch.no_grad():
        for kind in ("restyle_psp", "restyle_e4e"):
            enc = build_encoder(kind, input_nc=6, n_styles=16, backbone="ir_se50", device="meta")
            enc.load_state_dict(sd, assign=True)
            enc.eval()
            x = torch.from_numpy(golden_files[kind]["x"].astype(np.float32))
            # feat_body is taken from the batched forward (element 0) instead of a second batch-1 run;
            # batch size changes results only at the 1e-6 level (golden/README.md).
            hook = enc.body.register_forward_hook(lambda m, i, o: out.__setitem__(f"{kind}/feat_body", o[:1]))
            out[f"{kind}/codes"] = enc(x)
            hook.remove()
            del enc
    del sd
    return out


@pytest.mark.parametrize("kind", ["restyle_psp", "restyle_e4e"])
def test_codes_match_golden(golden_run, golden_files, kind):
    ref = golden_files[kind]["codes" + golden_run["suffix"]]
    codes = golden_run[f"{kind}/codes"]
    assert codes.shape == (2, 16, 512) and codes.dtype == torch.float32
    err = _rel_l2(codes, ref)
    limit = FANIN_LIMIT if golden_run["variant"] == "fanin" else MAIN_LIMIT
    assert err <= limit, f"{kind} {golden_run['variant']}: rel L2 {err:.3g} > {limit}"


@pytest.mark.parametrize("kind", ["restyle_psp", "restyle_e4e"])
def test_feat_body_matches_golden(golden_run, golden_files, kind):
    ref = golden_files[kind]["feat_body" + golden_run["suffix"]]
    err = _rel_l2(golden_run[f"{kind}/feat_body"], ref)
    limit = FANIN_LIMIT if golden_run["variant"] == "fanin" else MAIN_LIMIT
    assert err <= limit, f"{kind} {golden_run['variant']} feat_body: rel L2 {err:.3g} > {limit}"


def test_e4e_codes_are_psp_codes_plus_row0(golden_run, golden_files):
    psp = golden_run["restyle_psp/codes"]
    e4e = golden_run["restyle_e4e/codes"]
    expected = psp.clone()
    expected[:, 1:] += psp[:, :1]
    assert torch.equal(e4e, expected)
    # the same fact holds for the stored references
    ref_psp = golden_files["restyle_psp"]["codes" + golden_run["suffix"]]
    ref_e4e = golden_files["restyle_e4e"]["codes" + golden_run["suffix"]]
    np.testing.assert_array_equal(ref_e4e[:, 1:], ref_psp[:, 1:] + ref_psp[:, :1])


@pytest.mark.parametrize("kind", ["restyle_psp", "restyle_e4e"])
def test_state_dict_matches_released_keys(golden_dir, kind):
    rows = _read_keys(golden_dir / f"keys_{kind}.txt")
    enc = build_encoder(kind, input_nc=6, n_styles=16, backbone="ir_se50", device="meta")
    sd = enc.state_dict()
    assert [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()] == [
        (name, shape, dtype) for name, shape, dtype, _ in rows
    ]
    params = {k for k, _ in enc.named_parameters()}
    assert params == {name for name, _, _, kind_ in rows if kind_ == "param"}


# --- plain pSp / e4e ----------------------------------------------------------------------------------


def _released_pyramid_keys_ok(keys: list[str], shapes: dict[str, list[int]], n_styles: int) -> None:
    # Same trunk as ReStyle, then styles.*, then the two lateral 1x1 convs (released module order).
    assert keys[0] == "input_layer.0.weight"
    first_style = next(i for i, k in enumerate(keys) if k.startswith("styles."))
    assert all(k.startswith(("input_layer.", "body.")) for k in keys[:first_style])
    assert keys[-4:] == ["latlayer1.weight", "latlayer1.bias", "latlayer2.weight", "latlayer2.bias"]
    assert shapes["latlayer1.weight"] == [512, 256, 1, 1]
    assert shapes["latlayer2.weight"] == [512, 128, 1, 1]
    for i in range(n_styles):
        n_convs = 4 if i < 3 else (5 if i < 7 else 6)  # heads read 16x16, 32x32, 64x64 maps
        conv_keys = [k for k in keys if k.startswith(f"styles.{i}.convs.") and k.endswith(".weight")]
        assert conv_keys == [f"styles.{i}.convs.{2 * j}.weight" for j in range(n_convs)]
        assert shapes[f"styles.{i}.linear.weight"] == [512, 512]


@pytest.mark.parametrize("kind", ["psp", "e4e"])
def test_pyramid_encoders_released_layout_and_shapes(kind):
    for input_nc, n_styles in ((6, 16), (3, 18)):
        enc = build_encoder(kind, input_nc=input_nc, n_styles=n_styles, backbone="ir_se50", device="meta")
        sd = enc.state_dict()
        _released_pyramid_keys_ok(list(sd), {k: list(v.shape) for k, v in sd.items()}, n_styles)
        assert list(sd["input_layer.0.weight"].shape) == [64, input_nc, 3, 3]
        # meta tensors propagate shapes without computing the 240M-parameter forward
        out = enc(torch.empty(2, input_nc, 256, 256, device="meta"))
        assert tuple(out.shape) == (2, n_styles, 512)


def test_psp_and_e4e_share_keys():
    psp = build_encoder("psp", device="meta").state_dict()
    e4e = build_encoder("e4e", device="meta").state_dict()
    assert [(k, v.shape) for k, v in psp.items()] == [(k, v.shape) for k, v in e4e.items()]
    restyle = build_encoder("restyle_psp", device="meta").state_dict()
    trunk = [k for k in restyle if not k.startswith("styles.")]
    assert [k for k in psp if k.startswith(("input_layer.", "body."))] == trunk


@pytest.mark.parametrize("pair", [("restyle_psp", "restyle_e4e"), ("psp", "e4e")])
def test_e4e_structure_on_small_backbone(pair):
    torch.manual_seed(0)
    psp = build_encoder(pair[0], backbone="ir_se_small", w_dim=512)
    e4e = build_encoder(pair[1], backbone="ir_se_small", w_dim=512)
    e4e.load_state_dict(psp.state_dict())
    x = torch.randn(2, 6, 256, 256)
    with torch.no_grad():
        a, b = psp(x), e4e(x)
        assert a.shape == b.shape == (2, 16, 512)
        assert torch.equal(b[:, 0], a[:, 0])
        assert torch.allclose(b[:, 1:], a[:, 1:] + a[:, :1], rtol=0, atol=1e-6)
        e4e.progressive_stage = 4  # deltas only on rows 1..4
        c = e4e(x)
        assert torch.allclose(c[:, :5], b[:, :5], rtol=0, atol=1e-6)
        assert torch.equal(c[:, 5:], c[:, :1].expand(-1, 11, -1))
        e4e.progressive_stage = 0  # W training stage: one code repeated
        assert torch.equal(e4e(x), b[:, :1].expand(-1, 16, -1))


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_small_backbone(kind):
    torch.manual_seed(1)
    enc = build_encoder(kind, input_nc=6, n_styles=16, backbone="ir_se_small", w_dim=512)
    n_params = sum(p.numel() for p in enc.parameters())
    assert n_params < 6_000_000, n_params
    x = torch.randn(2, 6, 256, 256, requires_grad=True)
    codes = enc(x)
    assert codes.shape == (2, 16, 512) and torch.isfinite(codes).all()
    codes.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert enc.styles[15].linear.weight.grad is not None


def test_small_backbone_other_sizes():
    enc = build_encoder("restyle_e4e", input_nc=6, n_styles=10, backbone="ir_se_small", input_size=128, w_dim=256)
    with torch.no_grad():
        assert enc(torch.zeros(1, 6, 128, 128)).shape == (1, 10, 256)
    assert "ir_se50" in BACKBONES and "ir50" in BACKBONES and "ir_se_small" in BACKBONES
    ir50 = build_encoder("restyle_psp", backbone="ir50", device="meta")
    assert not any(".res_layer.5." in k for k in ir50.state_dict())  # no SE gates in the plain IR trunk


def test_released_checkpoint_entries_load():
    torch.manual_seed(2)
    src = build_encoder("restyle_e4e", backbone="ir_se_small", w_dim=64)
    ckpt = {f"encoder.{k}": v for k, v in src.state_dict().items()}
    ckpt["decoder.synthesis.L0.weight"] = torch.zeros(3)
    ckpt["latent_avg"] = torch.zeros(16, 64)
    dst = build_encoder("restyle_e4e", backbone="ir_se_small", w_dim=64)
    dst.load_state_dict(encoder_state_from_checkpoint(ckpt))  # strict
    x = torch.randn(1, 6, 256, 256)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown encoder kind"):
        build_encoder("restyle", device="meta")
    with pytest.raises(ValueError, match="unknown backbone"):
        build_encoder("psp", backbone="resnet34", device="meta")
    enc = build_encoder("restyle_psp", backbone="ir_se_small")
    with pytest.raises(ValueError, match="expected input"):
        enc(torch.zeros(1, 3, 256, 256))
    with pytest.raises(KeyError):
        encoder_state_from_checkpoint({"decoder.x": torch.zeros(1)})
