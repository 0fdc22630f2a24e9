"""Checkpoint loading: NVIDIA pickles (through the restricted unpickler), stylegan3-editing .pt files,
encoder checkpoints, Charm Studio's own format, the convert/render commands and every error case.

The NVIDIA pickles are crafted here in the release's layout: persistent network objects reduce to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with a placeholder where the module
source would be, ``dnnlib.util.EasyDict`` for the init kwargs, NumPy values under the old
``numpy.core.multiarray`` names, and tensors pickled by torch's own reduce (legacy storage blobs).
Neither ``torch_utils`` nor ``dnnlib`` exists when they are loaded.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path, PosixPath

import numpy as np
import pytest
import torch

import main
from engine import Generator, load_generator
from engine.checkpoints import (
    FORMAT_NAME,
    infer_init_kwargs,
    load_encoder_checkpoint,
    read_generator_checkpoint,
    save_generator,
)
from engine.errors import CheckpointError
from engine.generator_config import DEFAULT_MAGNITUDE_EMA_BETA

ROOT = Path(__file__).resolve().parents[1]
BUFFER_SUFFIXES = ("w_avg", "transform", "freqs", "phases", "up_filter", "down_filter", "magnitude_ema")


# --------------------------------------------------------------------------------------------------
# Crafting files in the release's pickle layout


def _reconstruct_persistent_obj(meta):  # pickled by reference under the release's name only
    raise AssertionError("never called")


class _EasyDict(dict):
    pass


class _Persistent:
    """Reduces exactly like a release network object: a call of the reconstruct hook with meta."""

    def __init__(self, class_name: str, state: dict, module_src: str):
        self.class_name, self.state, self.module_src = class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name, state=self.state)
        return _reconstruct_persistent_obj, (meta,)


def _multiarray():
    return getattr(np, "_core", None).multiarray if hasattr(np, "_core") else np.core.multiarray


class _ReleasePickler(pickle._Pickler):
    """Pure-Python pickler that spells a few globals under the names the release's files use."""

    def __init__(self, file):
        super().__init__(file, protocol=4)
        # The class-level dispatch table holds the base save_global for functions; route them here.
        self.dispatch = {**pickle._Pickler.dispatch, types.FunctionType: _ReleasePickler.save_global}
        mult = _multiarray()
        self._names = {
            _reconstruct_persistent_obj: ("torch_utils.persistence", "_reconstruct_persistent_obj"),
            _EasyDict: ("dnnlib.util", "EasyDict"),
            mult._reconstruct: ("numpy.core.multiarray", "_reconstruct"),
            mult.scalar: ("numpy.core.multiarray", "scalar"),
        }

    def save_global(self, obj, name=None):
        try:
            spelled = self._names.get(obj)
        except TypeError:
            spelled = None
        if spelled is None:
            return super().save_global(obj, name)
        self.save(spelled[0])
        self.save(spelled[1])
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)


def _release_pickle_bytes(obj) -> bytes:
    buf = io.BytesIO()
    _ReleasePickler(buf).dump(obj)
    return buf.getvalue()


def _module_tree(sd: dict, class_names: dict, module_src: str, prefix: str = "", init_kwargs=None) -> _Persistent:
    params, buffers, children = OrderedDict(), OrderedDict(), OrderedDict()
    child_keys = OrderedDict()
    for key, value in sd.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if "." in rest:
            child_keys.setdefault(rest.split(".", 1)[0], None)
        elif rest.endswith(BUFFER_SUFFIXES):
            buffers[rest] = value.clone()
        else:
            params[rest] = torch.nn.Parameter(value.clone(), requires_grad=False)
    for name in child_keys:
        children[name] = _module_tree(sd, class_names, module_src, f"{prefix}{name}.")
    leaf = prefix.rstrip(".").split(".")[-1]
    class_name = class_names.get(leaf, "SynthesisLayer" if leaf.startswith("L") else "FullyConnectedLayer")
    state = {
        "training": False,
        "_parameters": params,
        "_buffers": buffers,
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": OrderedDict(),
        "_forward_hooks": OrderedDict(),
        "_forward_pre_hooks": OrderedDict(),
        "_state_dict_hooks": OrderedDict(),
        "_load_state_dict_pre_hooks": OrderedDict(),
        "_modules": children,
        "_init_args": (),
        "_init_kwargs": _EasyDict(init_kwargs or {}),
    }
    if class_name == "SynthesisLayer":  # attributes the release keeps as NumPy values
        size = int(leaf.split("_")[1])
        state.update(
            in_size=np.broadcast_to(np.asarray(size), [2]),
            out_size=np.broadcast_to(np.asarray(size), [2]),
            in_cutoff=np.float64(2.0),
            out_half_width=np.float64(1.5),
        )
    return _Persistent(class_name, state, module_src)


def _generator_object(sd: dict, init_kwargs: dict, module_src: str) -> _Persistent:
    kwargs = dict(init_kwargs)
    kwargs["mapping_kwargs"] = _EasyDict(kwargs.get("mapping_kwargs", {}))
    names = {"": "Generator", "synthesis": "SynthesisNetwork", "mapping": "MappingNetwork", "input": "SynthesisInput"}
    return _module_tree(sd, names, module_src, "", kwargs)


def _marker_src(marker: Path) -> str:
    # Placeholder for the module source: creates the marker file if anything ever executes it.
    return f"open({str(marker)!r}, 'w').write('executed')\nraise SystemExit('module source executed')\n"


def _network_pickle(G_ema_sd: dict, init_kwargs: dict, module_src: str, G_sd: dict | None = None) -> bytes:
    D = _Persistent(
        "Discriminator",
        {
            "_parameters": OrderedDict(w=torch.nn.Parameter(torch.randn(4, 4))),
            "_buffers": OrderedDict(),
            "_modules": OrderedDict(),
            "_init_kwargs": _EasyDict(c_dim=0),
        },
        module_src,
    )
    data = dict(
        G=_generator_object(G_sd or G_ema_sd, init_kwargs, module_src),
        D=D,
        G_ema=_generator_object(G_ema_sd, init_kwargs, module_src),
        augment_pipe=None,
        training_set_kwargs=_EasyDict(
            class_name="training.dataset.ImageFolderDataset",
            path="~/datasets/ffhq.zip",
            use_labels=False,
            max_size=70000,
            xflip=False,
            resolution=init_kwargs["img_resolution"],
            random_seed=0,
        ),
    )
    return _release_pickle_bytes(data)


def _globals_in(data: bytes) -> set[str]:
    """Every global a pickle names (memoized strings followed through MEMOIZE / BINGET)."""
    out, memo, pushed = set(), [], []
    for op, arg, _pos in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            pushed.append(arg)
        elif op.name in ("BINGET", "LONG_BINGET"):
            pushed.append(memo[arg])
        elif op.name == "MEMOIZE":
            memo.append(pushed[-1] if pushed else None)
        elif op.name == "STACK_GLOBAL":
            out.add(f"{pushed[-2]}.{pushed[-1]}")
            pushed.append(None)
        else:
            pushed.append(None)
    return out


# --------------------------------------------------------------------------------------------------
# Fixtures


def _golden(golden_dir: Path, cfg: str) -> tuple[dict, dict, np.lib.npyio.NpzFile]:
    data = np.load(golden_dir / f"sg3_{cfg}.npz")
    kwargs = json.loads(str(data["init_kwargs_json"]))
    order = [
        line.split("\t")[0]
        for line in (golden_dir / f"keys_{cfg}.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    sd = OrderedDict()
    for key in order:
        arr = data[f"buf/{key}"] if f"buf/{key}" in data else data[f"param/{key}"]
        sd[key] = torch.from_numpy(np.array(arr))
    return sd, kwargs, data


@pytest.fixture(scope="module")
def t128(golden_dir):
    return _golden(golden_dir, "t128")


@pytest.fixture(scope="module")
def r128(golden_dir):
    return _golden(golden_dir, "r128")


def _assert_same_state(G: torch.nn.Module, sd: dict, skip: tuple = ()) -> None:
    got = G.state_dict()
    assert list(got) == [k for k in sd] or set(got) == set(sd)
    for k, v in sd.items():
        if k in skip:
            continue
        assert torch.equal(got[k], v), k


def _generator_kwargs(z_dim: int = 512, w_dim: int = 512, **sizes) -> dict:
    """``Generator(**kwargs)`` as the released networks are made: unconditional, RGB, two mapping layers;
    ``sizes``: img_resolution, channel counts and other synthesis arguments."""
    return dict(z_dim=z_dim, c_dim=0, w_dim=w_dim, img_channels=3, mapping_kwargs={"num_layers": 2}, **sizes)


def _small_generator(seed: int = 0, **overrides) -> Generator:
    kw = _generator_kwargs(16, 32, img_resolution=64, channel_base=1024, channel_max=64)
    kw.update(magnitude_ema_beta=DEFAULT_MAGNITUDE_EMA_BETA, **overrides)
    torch.manual_seed(seed)
    G = Generator(**kw).eval()
    with torch.no_grad():  # make every entry distinctive (the constructor leaves some at 0/1)
        for name, t in G.state_dict().items():
            if name.endswith(("bias", "magnitude_ema", "w_avg")) or name.endswith("affine.weight"):
                t.copy_(torch.randn_like(t) * 0.1 + (1.0 if name.endswith("magnitude_ema") else 0.0))
    return G


def _one_line(err: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert str(path) in msg, msg
    return msg


# --------------------------------------------------------------------------------------------------
# (a) NVIDIA pickles


def test_release_pickle_loads_without_torch_utils_and_matches_golden(t128, tmp_path):
    sd, kwargs, data = t128
    marker = tmp_path / "source-was-executed"
    G_sd = {k: v * 2 if v.is_floating_point() and k.endswith("weight") else v for k, v in sd.items()}
    blob = _network_pickle(sd, kwargs, _marker_src(marker), G_sd=G_sd)
    names = _globals_in(blob)
    assert {
        "torch_utils.persistence._reconstruct_persistent_obj",
        "dnnlib.util.EasyDict",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        "torch.storage._load_from_bytes",
        "numpy.core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "collections.OrderedDict",
    } <= names
    path = tmp_path / "stylegan3-t-test-128x128.pkl"
    path.write_bytes(blob)
    assert not any(m.split(".")[0] in ("torch_utils", "dnnlib") for m in sys.modules)

    ckpt = read_generator_checkpoint(path)
    assert ckpt.source_format == "nvidia-pkl"
    assert ckpt.init_kwargs == kwargs
    G = load_generator(path)
    assert not marker.exists()
    assert not any(m.split(".")[0] in ("torch_utils", "dnnlib") for m in sys.modules)
    _assert_same_state(G, sd)  # G_ema, not G
    assert not G.training and not any(p.requires_grad for p in G.parameters())

    direct = Generator(**kwargs).eval()
    direct.load_state_dict(sd)
    ws = torch.from_numpy(data["ws"][:1])
    with torch.no_grad():
        a, b = G.synthesis(ws), direct.synthesis(ws)
    assert torch.equal(a, b)
    ref = torch.from_numpy(data["img_identity"][:1]).double()
    assert float((a.double() - ref).norm() / ref.norm()) < 1e-5


def test_release_pickle_without_init_kwargs_falls_back_to_shapes(r128, tmp_path):
    sd, kwargs, _ = r128
    obj = _generator_object(sd, kwargs, "# module source placeholder")
    del obj.state["_init_kwargs"]
    path = tmp_path / "net.pkl"
    path.write_bytes(_release_pickle_bytes({"G_ema": obj}))
    ckpt = read_generator_checkpoint(path)
    assert ckpt.init_kwargs["use_radial_filters"] is True and ckpt.init_kwargs["conv_kernel"] == 1
    assert ckpt.init_kwargs["channel_base"] == kwargs["channel_base"]
    _assert_same_state(load_generator(path), sd)


def test_release_pickle_with_unknown_option_warns_and_loads(tmp_path):
    G0 = _small_generator(seed=1)
    path = tmp_path / "fork.pkl"
    path.write_bytes(_network_pickle(G0.state_dict(), {**G0.init_kwargs, "fancy_option": 3}, "# src"))
    with pytest.warns(UserWarning, match="fancy_option"):
        G = load_generator(path)
    _assert_same_state(G, G0.state_dict())


def test_torch_saved_network_object_is_refused(tmp_path, monkeypatch):
    # torch.save(G_ema) of a release network: the reconstruct hook is pickled by reference, so it
    # must be importable while saving; a throwaway module stands in for torch_utils.persistence.
    fake_pkg, fake_mod = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")

    def hook(meta):
        raise AssertionError("never called")

    hook.__module__, hook.__qualname__, hook.__name__ = (
        fake_mod.__name__,
        "_reconstruct_persistent_obj",
        "_reconstruct_persistent_obj",
    )
    fake_mod._reconstruct_persistent_obj = hook
    fake_pkg.persistence = fake_mod
    monkeypatch.setitem(sys.modules, "torch_utils", fake_pkg)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", fake_mod)

    class Net:
        def __reduce__(self):
            return hook, (
                {
                    "type": "class",
                    "version": 6,
                    "module_src": "# src",
                    "class_name": "Generator",
                    "state": {"_parameters": OrderedDict(w=torch.zeros(2))},
                },
            )

    path = tmp_path / "whole-module.pt"
    torch.save(Net(), path)
    monkeypatch.delitem(sys.modules, "torch_utils.persistence")
    monkeypatch.delitem(sys.modules, "torch_utils")
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    msg = _one_line(err, path)
    assert "'torch_utils.persistence._reconstruct_persistent_obj'" in msg and "refused" in msg


class _Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("how", ["os.system", "builtins.eval", "nested"])
def test_malicious_pickle_is_refused_before_running(how, tmp_path):
    marker = tmp_path / "pwned"
    if how == "os.system":
        payload, expected = _Reduce(os.system, f"touch {marker}"), f"{os.system.__module__}.system"
    else:
        payload, expected = _Reduce(eval, f"open({str(marker)!r}, 'w').write('x')"), "builtins.eval"
    if how == "nested":  # hidden deep inside an otherwise well-formed network pickle
        state = {
            "_parameters": OrderedDict(),
            "_buffers": OrderedDict(),
            "_modules": OrderedDict(),
            "_init_kwargs": _EasyDict(z_dim=payload),
        }
        payload = {"G_ema": _Persistent("Generator", state, "# src")}
    path = tmp_path / "evil.pkl"
    path.write_bytes(_release_pickle_bytes(payload))
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    msg = _one_line(err, path)
    assert f"'{expected}'" in msg and "refused" in msg
    assert not marker.exists()


def test_malicious_torch_save_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "x": _Reduce(os.system, f"touch {marker}")}, path)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    assert f"'{os.system.__module__}.system'" in _one_line(err, path)
    assert not marker.exists()


def test_stylegan2_pickle_is_another_architecture(tmp_path):
    sd = OrderedDict(
        [
            ("synthesis.b4.const", torch.randn(8, 4, 4)),
            ("synthesis.b4.conv1.weight", torch.randn(8, 8, 3, 3)),
            ("mapping.fc0.weight", torch.randn(8, 8)),
            ("mapping.w_avg", torch.zeros(8)),
        ]
    )
    path = tmp_path / "stylegan2-ffhq-256x256.pkl"
    path.write_bytes(
        _release_pickle_bytes(
            {
                "G_ema": _generator_object(
                    sd, dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=256, img_channels=3), "# src"
                )
            }
        )
    )
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    assert "StyleGAN2" in _one_line(err, path)


# --------------------------------------------------------------------------------------------------
# (b) plain state dicts, shape inference


@pytest.mark.parametrize("cfg", ["t128", "r128"])
def test_state_dict_pt_round_trip_golden(cfg, golden_dir, tmp_path):
    sd, kwargs, _ = _golden(golden_dir, cfg)
    path = tmp_path / f"sg3-{cfg}.pt"
    torch.save(sd, path)
    ckpt = read_generator_checkpoint(path)
    assert ckpt.source_format == "state-dict"
    for k, v in kwargs.items():
        assert ckpt.init_kwargs.get(k, {"conv_kernel": 3, "use_radial_filters": False}.get(k)) == v, k
    _assert_same_state(load_generator(path), sd)


# The released StyleGAN3 configurations: size and channel counts; R adds 1x1 convolutions, radial filters.
RELEASE_CONFIGS = {
    "T1024": dict(channel_base=32768, channel_max=512, img_resolution=1024),
    "R1024": dict(channel_base=65536, channel_max=1024, img_resolution=1024, conv_kernel=1, use_radial_filters=True),
    "T512": dict(channel_base=32768, channel_max=512, img_resolution=512),
    "R512": dict(channel_base=65536, channel_max=1024, img_resolution=512, conv_kernel=1, use_radial_filters=True),
    "T256": dict(channel_base=16384, channel_max=512, img_resolution=256),
    "R256": dict(channel_base=32768, channel_max=1024, img_resolution=256, conv_kernel=1, use_radial_filters=True),
}


def _release_kwargs(name: str) -> dict:
    """``Generator(**kwargs)`` of a released configuration (z and w 512)."""
    return _generator_kwargs(**RELEASE_CONFIGS[name])


@pytest.mark.parametrize("name", list(RELEASE_CONFIGS))
def test_infer_release_configs_from_shapes(name):
    full = _release_kwargs(name)
    with torch.device("meta"):  # shapes only: no memory, no time
        G = Generator(**full)
    inferred = infer_init_kwargs(G.state_dict())
    for k, v in full.items():
        assert inferred.get(k, {"conv_kernel": 3, "use_radial_filters": False}.get(k)) == v, k


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(conv_kernel=1, use_radial_filters=True, channel_base=2048, channel_max=96),
        dict(c_dim=4),
        dict(num_layers=10, margin_size=6, mapping_kwargs={"num_layers": 3}, img_channels=1),
    ],
    ids=["T64", "R64", "conditional", "odd-layout"],
)
def test_state_dict_round_trip_random_small(overrides, tmp_path):
    G0 = _small_generator(**overrides)
    path = tmp_path / "g.pt"
    torch.save(G0.state_dict(), path)
    G = load_generator(path)
    for k, v in G0.init_kwargs.items():
        if k != "magnitude_ema_beta":
            assert (
                G.init_kwargs.get(
                    k, {"conv_kernel": 3, "use_radial_filters": False, "num_layers": 14, "margin_size": 10}.get(k)
                )
                == v
            ), k
    _assert_same_state(G, G0.state_dict())
    if overrides.get("c_dim"):
        z, c = torch.randn(1, 16), torch.nn.functional.one_hot(torch.tensor([2]), 4).float()
        with torch.no_grad():
            assert torch.equal(G(z, c), G0(z, c))


def test_state_dict_r256_release_shapes(tmp_path):
    G0 = Generator(**_release_kwargs("R256"))
    path = tmp_path / "sg3-r-256.pt"
    torch.save(G0.state_dict(), path)
    ckpt = read_generator_checkpoint(path)
    assert (ckpt.init_kwargs["channel_base"], ckpt.init_kwargs["channel_max"]) == (32768, 1024)
    assert ckpt.describe() == "StyleGAN3-R 256 px (z 512, w 512)"
    _assert_same_state(load_generator(path), G0.state_dict())


# --------------------------------------------------------------------------------------------------
# (c) encoder checkpoints


def test_encoder_checkpoint_with_pathlib_opts(t128, tmp_path):
    sd, kwargs, _ = t128
    encoder = OrderedDict(
        [
            ("input_layer.0.weight", torch.randn(64, 6, 3, 3)),
            ("styles.0.linear.weight", torch.randn(512, 512)),
            ("input_layer.1.num_batches_tracked", torch.tensor(0)),
        ]
    )
    state = OrderedDict((f"encoder.{k}", v) for k, v in encoder.items())
    moved = torch.tensor([[1.0, 0.1, 0.2], [-0.1, 1.0, 0.3], [0.0, 0.0, 1.0]])
    for k, v in sd.items():
        state[f"decoder.{k}"] = moved if k == "synthesis.input.transform" else v
    opts = {
        "exp_dir": PosixPath("/experiments/restyle_psp_ffhq"),
        "checkpoint_path": None,
        "stylegan_weights": PosixPath("pretrained_models/sg3-r-ffhq-1024.pt"),
        "output_size": 1024,
        "input_nc": 6,
        "learning_rate": 1e-4,
        "best": np.float64(0.25),
        "n_iters_per_batch": 3,
    }
    ckpt = {
        "state_dict": state,
        "opts": opts,
        "latent_avg": sd["mapping.w_avg"].clone(),
        "global_step": 12,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
    }
    path = tmp_path / "restyle_pSp_ffhq.pt"
    torch.save(ckpt, path)

    G = load_generator(path)
    assert torch.equal(G.synthesis.input.transform, torch.eye(3))
    _assert_same_state(G, sd)
    assert read_generator_checkpoint(path).source_format == "encoder-checkpoint"

    enc = load_encoder_checkpoint(path)
    assert list(enc.encoder_state) == list(encoder)
    assert all(torch.equal(enc.encoder_state[k], v) for k, v in encoder.items())
    assert "synthesis.input.transform" not in enc.decoder_state
    assert enc.decoder_init_kwargs["channel_base"] == kwargs["channel_base"]
    assert torch.equal(enc.latent_avg, sd["mapping.w_avg"])
    assert str(enc.opts["exp_dir"]) == "/experiments/restyle_psp_ffhq" and enc.opts["output_size"] == 1024
    _assert_same_state(enc.build_decoder(), sd)

    with pytest.raises(CheckpointError) as err:
        load_encoder_checkpoint(tmp_path / "missing.pt")
    _one_line(err, tmp_path / "missing.pt")


# --------------------------------------------------------------------------------------------------
# (d) our format, convert and render commands


def _read_png(path: Path) -> np.ndarray:
    """The 8-bit pixels of a PNG file, decoded by Pillow (independently of the writer)."""
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode in ("L", "RGB")
        return np.asarray(im)


def test_convert_and_render_commands(tmp_path, capsys):
    G0 = _small_generator(seed=3)
    src = tmp_path / "small.pkl"
    src.write_bytes(_network_pickle(G0.state_dict(), G0.init_kwargs, "# module source placeholder"))
    out = tmp_path / "converted" / "small.safetensors"
    assert main.main(["convert", str(src), str(out)]) == 0
    assert out.is_file() and sorted(p.name for p in out.parent.iterdir()) == ["small.safetensors"]
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT_NAME and meta["format_version"] == "1" and meta["kind"] == "stylegan3"
    assert json.loads(meta["init_kwargs"]) == json.loads(json.dumps(G0.init_kwargs))
    assert meta["source"] == "small.pkl"
    ckpt = read_generator_checkpoint(out)
    assert ckpt.source_format == "charm-safetensors"
    G = load_generator(out)
    _assert_same_state(G, G0.state_dict())
    assert main.main(["convert", str(src), str(out)]) != 0  # refuses to overwrite without --force
    assert main.main(["convert", str(src), str(out), "--force"]) == 0

    render_dir = tmp_path / "renders"
    assert (
        main.main(
            [
                "render",
                "--model",
                str(out),
                "--seeds",
                "0,5-6",
                "--out",
                str(render_dir),
                "--trunc",
                "0.7",
                "--angle",
                "10",
                "--tx",
                "0.1",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in render_dir.iterdir()) == ["seed0000.png", "seed0005.png", "seed0006.png"]
    from engine.transforms import make_transform

    z = torch.from_numpy(np.random.RandomState(5).randn(1, G0.z_dim)).float()
    with torch.no_grad():
        img = G0(z, truncation_psi=0.7, transform=make_transform(10, 0.1, 0))
    expected = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(_read_png(render_dir / "seed0005.png"), expected)


def test_safetensors_round_trip_and_plain_safetensors(r128, tmp_path):
    sd, kwargs, _ = r128
    G = Generator(**kwargs).eval()
    G.load_state_dict(sd)
    ours = save_generator(G, tmp_path / "ours.safetensors")
    _assert_same_state(load_generator(ours), sd)
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(plain))
    assert read_generator_checkpoint(plain).source_format == "state-dict"
    _assert_same_state(load_generator(plain), sd)


# --------------------------------------------------------------------------------------------------
# Broken files


GDRIVE_QUOTA_PAGE = b"""<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>
<body><p>Too many users have viewed or downloaded this file recently.</p></body></html>"""


def _broken_cases(tmp_path: Path, sd: dict) -> list[tuple[str, Path, str]]:
    cases = []

    def add(name, data, expect):
        p = tmp_path / name
        if data is not None:
            p.write_bytes(data)
        cases.append((name, p, expect))

    add("missing.pt", None, "does not exist")
    add("empty.pt", b"", "empty (0 bytes)")
    add("quota.pt", GDRIVE_QUOTA_PAGE, "web page")
    good = io.BytesIO()
    torch.save(sd, good)
    add("truncated.pt", good.getvalue()[: len(good.getvalue()) // 2], "truncated or corrupt")
    add("flipped.pt", good.getvalue()[:100] + b"\0" * 400 + good.getvalue()[500:], "truncated or corrupt")
    pkl = _network_pickle(sd, dict(z_dim=16, c_dim=0, w_dim=32, img_resolution=64, img_channels=3), "# src")
    add("truncated.pkl", pkl[: int(len(pkl) * 0.6)], "truncated or corrupt")
    add("garbage.pkl", b"\x00\x01not a model at all" * 10, "format is not one")
    add("lfs.pt", b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n", "Git LFS")
    other = io.BytesIO()
    torch.save({"conv.weight": torch.randn(4, 3, 3, 3), "fc.bias": torch.zeros(2)}, other)
    add("resnet.pt", other.getvalue(), "not a StyleGAN3 generator")
    sg2 = io.BytesIO()
    torch.save({"synthesis.b4.conv1.weight": torch.randn(4, 4, 3, 3), "mapping.fc0.weight": torch.randn(4, 4)}, sg2)
    add("sg2.pt", sg2.getvalue(), "StyleGAN2")
    bad = dict(sd)
    key = next(k for k in bad if k.startswith("synthesis.L3_") and k.count(".") == 2 and k.endswith(".weight"))
    bad[key] = bad[key][:, :-1]
    wrong = io.BytesIO()
    torch.save(bad, wrong)
    add("wrong-shape.pt", wrong.getvalue(), "do not match")
    st = tmp_path / "st.tmp"
    save_generator(_small_generator(), st)
    add("truncated.safetensors", st.read_bytes()[:-100], "truncated or corrupt")
    (tmp_path / "a-folder").mkdir()
    cases.append(("a-folder", tmp_path / "a-folder", "is a folder"))
    return cases


def test_broken_files_give_one_line_errors(tmp_path):
    sd = _small_generator().state_dict()
    for name, path, expect in _broken_cases(tmp_path, sd):
        with pytest.raises(CheckpointError) as err:
            load_generator(path)
        msg = _one_line(err, path)
        assert expect in msg, (name, msg)
        assert msg.startswith(f"Cannot load '{path}'"), msg


def test_cli_reports_checkpoint_errors_in_one_line(tmp_path, capsys):
    path = tmp_path / "quota.pt"
    path.write_bytes(GDRIVE_QUOTA_PAGE)
    assert main.main(["render", "--model", str(path), "--seeds", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Cannot load") and "\n" not in err and "web page" in err


def test_no_unrestricted_pickle_loading_in_the_project():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    pattern = "weights_only" + "=False\\|pickle" + ".load("
    res = subprocess.run(["git", "grep", "-n", pattern], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode in (0, 1), res.stderr
    assert res.stdout.strip() == "", res.stdout
