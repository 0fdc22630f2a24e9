"""Model bundles: a generator with its inverter, attribute predictor, edit directions and StyleSpace
channels, described by one JSON manifest.

Stable entry point::

    from engine.models import load_bundle
    bundle = load_bundle('demo')           # or a bundle folder, or the path of its manifest.json
    G, directions = bundle.generator, bundle.directions

A bundle is a folder with ``manifest.json`` (every file path in it is relative to the folder and must
stay inside it)::

    {
      "format": "charm-bundle/1",
      "name": "demo",                          # short id shown in the GUI
      "title": "Charm demo faces, 64 px",      # optional, human readable
      "description": "...",                    # optional
      "random_weights": false,                 # true for development bundles (the GUI says so)
      "generator": {"file": "generator.safetensors"}             # engine.checkpoints format
                   | {"from": "inverter"},                   # or the encoder file's own generator
      "inverter": {"file": "encoder.safetensors"} | null,        # engine.inversion.load_inverter
      "predictor": {"file": "predictor.safetensors",             # engine.predictor (optional)
                    "loader": "engine.<module>:<function>"} | null,   # "loader" optional, see below
      "directions": {"file": "directions.safetensors",           # tensors: name -> float32 [w_dim]
                     "items": {"smile": {"range": [-3, 3], "description": "...",
                                         "layers": null, "attribute": "smile"}, ...}},
      "stylespace": {"smile": [["L3_72_32", 12, 1], ...], ...},  # attribute -> [layer, channel, sign]
      "model_card": "MODEL_CARD.md" | null
    }

Loaders: the generator goes through :func:`engine.checkpoints.load_generator`; the inverter through
``engine.inversion.load_inverter``; the predictor through ``engine.predictor.load_predictor`` (its
``.attributes`` name the columns of ``.predict(images)``) unless
the component names another ``"loader"`` (only functions of modules inside ``engine`` are accepted, so
a manifest can never import other code). A loader takes the file path (and ``device=`` when it
accepts it). Direction vectors are normalised to unit length on load.

:func:`save_bundle` writes a bundle in this layout (the demo-model trainer and
:func:`make_random_bundle` use it). Every failure raises :class:`engine.errors.CheckpointError` naming
the file and saying what to do.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from engine.errors import CheckpointError
from engine.generator_config import GeneratorSizes
from engine.imageio import atomic_write, read_tagged_json, write_text

if TYPE_CHECKING:
    from engine.inversion.protocol import InverterProtocol
    from engine.networks.stylegan3 import Generator

__all__ = [
    "BUNDLE_FORMAT",
    "DEMO_MANIFEST",
    "Direction",
    "ModelBundle",
    "load_bundle",
    "save_bundle",
    "make_random_bundle",
    "ensure_random_bundle",
    "inverter_for",
    "resolve_manifest",
    "style_layers",
]

BUNDLE_FORMAT = "charm-bundle/1"
MANIFEST_NAME = "manifest.json"
DEMO_MANIFEST = Path(__file__).resolve().parents[1] / "resources" / "models" / "demo" / MANIFEST_NAME

_DEFAULT_LOADERS = {"inverter": "engine.inversion:load_inverter", "predictor": "engine.predictor:load_predictor"}

# Names and ranges of the random development bundle's directions (the demo model's set).
RANDOM_DIRECTIONS: dict[str, tuple[float, float]] = {
    "smile": (-3.0, 3.0),
    "age": (-4.0, 4.0),
    "glasses": (-3.0, 3.0),
    "beard": (-3.0, 3.0),
    "hair colour": (-3.0, 3.0),
    "yaw": (-4.0, 4.0),
}


@dataclass(frozen=True)
class Direction:
    """An InterFaceGAN edit direction.

    vector: float32 [w_dim], unit length. range: the documented useful strengths (lo, hi).
    layers: indices into ws it applies to (None: all). attribute: the predictor output it targets.
    """

    name: str
    vector: torch.Tensor
    range: tuple[float, float]
    description: str = ""
    layers: tuple[int, ...] | None = None
    attribute: str | None = None


@dataclass
class ModelBundle(GeneratorSizes):
    """A loaded bundle; see the module docstring for the manifest. ``stylespace`` maps an attribute
    to its top channels [(layer, channel, sign)], sign +1/-1 raising the attribute. ``resolution``,
    ``w_dim`` and ``num_ws`` are the generator's."""

    name: str
    folder: Path
    manifest: dict
    generator: Generator
    inverter: InverterProtocol | None
    predictor: Any | None
    directions: dict[str, Direction]
    stylespace: dict[str, list[tuple[str, int, int]]]
    model_card: Path | None
    device: torch.device
    random_weights: bool = False

    @property
    def title(self) -> str:
        return str(self.manifest.get("title") or self.name)

    @property
    def notice(self) -> str | None:
        """A line for the user when the bundle is not a real model (None otherwise)."""
        return (
            "random weights (development bundle): edits change the image but mean nothing"
            if self.random_weights
            else None
        )

    def style_layers(self) -> dict[str, int]:
        """StyleSpace layer name -> channel count ('input' first, then the synthesis layers)."""
        return style_layers(self.generator)


def style_layers(generator: Generator) -> dict[str, int]:
    """StyleSpace layer name -> channel count of a generator ('input' first, then its layers in order)."""
    syn = generator.synthesis
    out = {"input": 4}
    for name, layer in zip(syn.layer_names, syn.layers()):
        out[name] = int(layer.in_channels)
    return out


# --------------------------------------------------------------------------------------------------
# Loading


def resolve_manifest(spec: str | os.PathLike) -> Path:
    """'demo', a bundle folder or a manifest path -> the manifest path (which must exist)."""
    if str(spec) == "demo":
        if not DEMO_MANIFEST.is_file():
            raise CheckpointError(
                f"the demo model is missing ({DEMO_MANIFEST} not found); restore resources/models/demo "
                "(git checkout -- resources/models/demo, or reinstall Charm Studio), or choose another model folder"
            )
        return DEMO_MANIFEST
    p = Path(spec).expanduser()
    if p.is_dir():
        p = p / MANIFEST_NAME
    if not p.is_file():
        raise CheckpointError(f"'{p}' does not exist; choose a model folder that holds a {MANIFEST_NAME}")
    return p


def _inside(folder: Path, rel: Any, manifest: Path, what: str) -> Path:
    if not isinstance(rel, str) or not rel:
        raise CheckpointError(f"'{manifest}': the {what} entry has no file name; the manifest is damaged")
    p = (folder / rel).resolve()
    if folder.resolve() not in p.parents:
        raise CheckpointError(
            f"'{manifest}': the {what} file '{rel}' lies outside the bundle folder; "
            "bundle files must be given relative to the manifest's folder"
        )
    if not p.is_file():
        raise CheckpointError(
            f"'{p}' is missing ({what} of bundle '{manifest.parent.name}'); copy the whole bundle folder again"
        )
    return p


def _resolve_loader(spec: str, manifest: Path, what: str) -> Callable:
    mod_name, _, fn_name = spec.partition(":")
    if not (mod_name == "engine" or mod_name.startswith("engine.")) or not fn_name:
        raise CheckpointError(
            f"'{manifest}': the {what} loader {spec!r} is not allowed; loaders must be 'engine.<module>:<function>'"
        )
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(
            f"'{manifest}': this Charm Studio cannot load the bundle's {what} ({spec}: {e}); update Charm Studio"
        ) from None
    return fn


def _call_loader(fn: Callable, path: Path, device: torch.device) -> Any:
    params: Mapping[str, Any]
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    obj = fn(path, device=device) if "device" in params else fn(path)
    if isinstance(obj, torch.nn.Module):
        obj = obj.to(device).eval()
    return obj


def _load_component(manifest_data: dict, key: str, folder: Path, manifest: Path, device: torch.device) -> Any | None:
    entry = manifest_data.get(key)
    if entry is None:
        return None
    if isinstance(entry, str):
        entry = {"file": entry}
    path = _inside(folder, entry.get("file"), manifest, key)
    fn = _resolve_loader(entry.get("loader") or _DEFAULT_LOADERS[key], manifest, key)
    try:
        return _call_loader(fn, path, device)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of a loader is a broken model for the user
        raise CheckpointError(
            f"'{path}' could not be loaded as the bundle's {key} ({type(e).__name__}: {e}); "
            "the file may be damaged: copy the bundle again"
        ) from None


def _load_directions(
    data: dict, folder: Path, manifest: Path, w_dim: int, device: torch.device
) -> dict[str, Direction]:
    entry = data.get("directions")
    if not entry:
        return {}
    items: dict = entry.get("items") or {}
    tensors: dict[str, torch.Tensor] = {}
    if items:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = _inside(folder, entry.get("file"), manifest, "directions")
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"'{path}' is not a readable directions file ({e}); copy the bundle again") from None
    out: dict[str, Direction] = {}
    for name, info in items.items():
        v = tensors.get(name)
        if v is None:
            raise CheckpointError(
                f"'{manifest}': direction {name!r} has no vector in its directions file; the bundle is incomplete"
            )
        v = v.reshape(-1).to(torch.float32)
        norm = float(v.norm())
        if v.numel() != w_dim or not math.isfinite(norm) or norm == 0:
            raise CheckpointError(
                f"'{manifest}': direction {name!r} is not a non-zero [{w_dim}] vector for this "
                f"generator (got {v.numel()} values); the bundle mixes files of different models"
            )
        lo, hi = (float(x) for x in info.get("range", (-3.0, 3.0)))
        layers = info.get("layers")
        out[name] = Direction(
            name=name,
            vector=(v / norm).to(device),
            range=(lo, hi),
            description=str(info.get("description", "")),
            layers=None if layers is None else tuple(int(i) for i in layers),
            attribute=info.get("attribute"),
        )
    return out


def _load_stylespace(data: dict, manifest: Path, layers: Mapping[str, int]) -> dict[str, list[tuple[str, int, int]]]:
    out: dict[str, list[tuple[str, int, int]]] = {}
    for attr, channels in (data.get("stylespace") or {}).items():
        rows = []
        for row in channels:
            try:
                layer, ch, sign = str(row[0]), int(row[1]), int(row[2]) if len(row) > 2 else 1
            except (TypeError, ValueError, IndexError):
                raise CheckpointError(
                    f"'{manifest}': StyleSpace entry {row!r} of {attr!r} is not [layer, channel, sign]"
                ) from None
            if layer not in layers or not 0 <= ch < layers[layer]:
                raise CheckpointError(
                    f"'{manifest}': StyleSpace channel {layer}:{ch} of {attr!r} does not exist "
                    "in this generator; the bundle mixes files of different models"
                )
            rows.append((layer, ch, 1 if sign >= 0 else -1))
        out[str(attr)] = rows
    return out


def load_bundle(
    spec: str | os.PathLike = "demo", device: str | torch.device = "cpu", *, with_inverter: bool = True
) -> ModelBundle:
    """Load a model bundle: 'demo' (``resources/models/demo``), a bundle folder or its manifest path.

    with_inverter False: skip the inverter (rendering only; its ``inverter`` is then None). The
    generator entry ``{"from": "inverter"}`` takes the generator embedded in the inverter's file.

    Raises :class:`CheckpointError` when the bundle is missing (also the demo bundle before it is
    installed), damaged, of an unknown format version, or its parts do not fit together.
    """
    from engine.checkpoints import load_generator

    device = torch.device(device)
    manifest = resolve_manifest(spec)
    folder = manifest.parent
    data = read_tagged_json(manifest, BUNDLE_FORMAT, CheckpointError, "bundle manifest", "copy the bundle again")
    gen_entry = data.get("generator")
    inverter = _load_component(data, "inverter", folder, manifest, device) if with_inverter else None
    if isinstance(gen_entry, dict) and gen_entry.get("from") == "inverter":
        # The encoder file embeds the generator it was trained with: one copy serves both.
        source = inverter or _load_component(data, "inverter", folder, manifest, device)
        if source is None:
            raise CheckpointError(f"'{manifest}': the generator comes from the inverter, but there is none")
        G = source.generator
    else:
        gen_file = gen_entry.get("file") if isinstance(gen_entry, dict) else gen_entry
        G = load_generator(_inside(folder, gen_file, manifest, "generator"), device=device)
    card = data.get("model_card")
    card_path = (folder / card) if isinstance(card, str) and (folder / card).is_file() else None
    return ModelBundle(
        name=str(data.get("name") or folder.name),
        folder=folder,
        manifest=data,
        generator=G,
        inverter=inverter,
        predictor=_load_component(data, "predictor", folder, manifest, device),
        directions=_load_directions(data, folder, manifest, int(G.w_dim), device),
        stylespace=_load_stylespace(data, manifest, style_layers(G)),
        model_card=card_path,
        device=device,
        random_weights=bool(data.get("random_weights", False)),
    )


# --------------------------------------------------------------------------------------------------
# Writing


def write_directions(folder: Path, directions: Mapping[str, Direction]) -> dict[str, Any]:
    """Write ``folder/directions.safetensors`` (unit vectors, atomically); returns the manifest's items."""
    from safetensors.torch import save_file

    tensors = {n: (d.vector / d.vector.norm()).detach().to("cpu", torch.float32) for n, d in directions.items()}
    tensors = {n: t.contiguous() for n, t in tensors.items()}
    atomic_write(
        folder / "directions.safetensors",
        lambda tmp: save_file(tensors, str(tmp), metadata={"format": "charm-studio/directions", "format_version": "1"}),
    )
    return {
        n: {
            "range": [float(d.range[0]), float(d.range[1])],
            "description": d.description,
            "layers": None if d.layers is None else list(d.layers),
            "attribute": d.attribute,
        }
        for n, d in directions.items()
    }


def save_bundle(
    folder: str | os.PathLike,
    generator: Generator,
    directions: Mapping[str, Direction],
    stylespace: Mapping[str, Sequence[tuple[str, int, int]]] | None = None,
    *,
    name: str,
    title: str | None = None,
    description: str = "",
    random_weights: bool = False,
    inverter_file: str | None = None,
    predictor: Mapping[str, Any] | None = None,
    model_card: str | None = None,
) -> Path:
    """Write a bundle into ``folder`` (created if needed) and return its manifest path.

    The generator and directions are written here; an inverter or predictor file must already be in
    the folder (``inverter_file``: its name; ``predictor``: the manifest's predictor entry). Each file
    appears atomically, the manifest last.
    """

    from engine.checkpoints import save_generator

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_generator(generator, folder / "generator.safetensors", source=name)
    items = write_directions(folder, directions)
    data = {
        "format": BUNDLE_FORMAT,
        "name": name,
        "title": title or name,
        "description": description,
        "random_weights": bool(random_weights),
        "generator": {"file": "generator.safetensors"},
        "inverter": {"file": inverter_file} if inverter_file else None,
        "predictor": dict(predictor) if predictor else None,
        "directions": {"file": "directions.safetensors", "items": items},
        "stylespace": {
            a: [[str(layer), int(c), int(s)] for layer, c, s in rows] for a, rows in (stylespace or {}).items()
        },
        "model_card": model_card,
    }
    manifest = folder / MANIFEST_NAME
    write_text(manifest, json.dumps(data, indent=2) + "\n")
    return manifest


def make_random_bundle(
    folder: str | os.PathLike,
    resolution: int = 64,
    seed: int = 0,
    *,
    w_dim: int = 64,
    num_layers: int = 6,
    channel_max: int = 32,
    channel_base: int = 1024,
    direction_names: Mapping[str, tuple[float, float]] | None = None,
    with_inverter: bool | None = None,
    generator_kwargs: Mapping[str, Any] | None = None,
    encoder: tuple[str, str, int] | None = None,
) -> Path:
    """Write a random-weight bundle (for tests, development and benchmarks) and return its manifest path.

    The generator is our StyleGAN3 (config T) with ``num_layers`` synthesis layers, small channel
    counts and ``output_scale`` 1 (so random outputs are not washed out), or exactly
    ``generator_kwargs`` (``Generator``'s keywords, e.g. a released configuration) when given; its
    ``w_avg`` is the mean of 512 mapped samples. Directions are random unit vectors, StyleSpace
    attributes random channels. with_inverter: also write a random-weight inverter with
    ``engine.inversion`` (None: when that module is available); ``encoder`` = (kind, backbone, input
    size) of its encoder (default: ReStyle-e4e on the small IR-SE at the model's resolution, at least
    64 px). The same arguments give the same files.
    """
    from engine.networks.stylegan3 import Generator

    names = dict(direction_names or RANDOM_DIRECTIONS)
    gen = torch.Generator().manual_seed(int(seed))
    kwargs: dict[str, Any] = dict(
        z_dim=w_dim,
        c_dim=0,
        w_dim=w_dim,
        img_resolution=resolution,
        img_channels=3,
        channel_base=channel_base,
        channel_max=channel_max,
        num_layers=num_layers,
        num_critical=2,
        margin_size=4,
        output_scale=1.0,
        num_fp16_res=0,
        mapping_kwargs=dict(num_layers=2),
    )
    if generator_kwargs is not None:
        kwargs = dict(generator_kwargs)
        resolution, w_dim = int(kwargs["img_resolution"]), int(kwargs["w_dim"])
    # Parameter initialisers draw from torch's global generator; fork it so the caller's stream is untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        G = Generator(**kwargs).eval().requires_grad_(False)
        with torch.no_grad():
            z = torch.randn(512, int(G.z_dim), generator=gen)
            G.mapping.w_avg.copy_(G.mapping(z)[:, 0].mean(dim=0))
    directions = {}
    for n, rng in names.items():
        v = torch.randn(w_dim, generator=gen)
        directions[n] = Direction(
            name=n,
            vector=v / v.norm(),
            range=rng,
            attribute=n,
            description=f"random direction standing in for '{n}' (no meaning)",
        )
    layer_sizes = style_layers(G)
    layer_names = list(layer_sizes)[1:-1]  # not toRGB: its channels are colour mixing, not attributes
    stylespace = {}
    for n in names:
        rows = []
        for _ in range(3):
            layer = layer_names[int(torch.randint(len(layer_names), (1,), generator=gen))]
            ch = int(torch.randint(layer_sizes[layer], (1,), generator=gen))
            sign = 1 if float(torch.rand(1, generator=gen)) < 0.5 else -1
            rows.append((layer, ch, sign))
        stylespace[n] = rows
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inverter_file = None
    if with_inverter or with_inverter is None:
        inverter_file = _write_random_inverter(folder, G, seed, required=bool(with_inverter), encoder=encoder)
    card = folder / "MODEL_CARD.md"
    write_text(
        card,
        (
            f"# Random development bundle\n\nRandom weights (seed {seed}), {resolution} px, w_dim {w_dim}, "
            f"{G.synthesis.num_layers} synthesis layers. Written by `engine.models.make_random_bundle` for tests "
            "and for development until the demo model is installed. Edits change the image but mean nothing.\n"
        ),
    )
    return save_bundle(
        folder,
        G,
        directions,
        stylespace,
        name=f"random-{resolution}px-s{seed}",
        title=f"Random weights ({resolution} px, seed {seed})",
        description="tiny random-weight bundle for tests and development",
        random_weights=True,
        inverter_file=inverter_file,
        model_card=card.name,
    )


def _write_random_inverter(
    folder: Path, G: Generator, seed: int, required: bool, encoder: tuple[str, str, int] | None = None
) -> str | None:
    """An inverter with random weights, written with engine.inversion: ``encoder`` = (kind, backbone,
    input size), by default ReStyle-e4e on the small IR-SE backbone at the model's resolution."""
    try:
        from engine.encoders import build_encoder
        from engine.inversion import Inverter, save_inverter
    except ImportError:
        if required:
            raise CheckpointError("cannot write a random inverter: engine.inversion is not available") from None
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) + 1)
        kind, backbone, size = encoder or ("restyle_e4e", "ir_se_small", max(64, int(G.img_resolution)))
        enc = build_encoder(
            kind, input_nc=6, n_styles=int(G.num_ws), backbone=backbone, input_size=size, w_dim=int(G.w_dim)
        )
    save_inverter(Inverter(enc, G).eval(), folder / "inverter.safetensors", source="random")
    return "inverter.safetensors"


def ensure_random_bundle(cache_dir: str | os.PathLike, resolution: int = 64, seed: int = 0) -> Path:
    """The manifest of a random bundle cached under ``cache_dir``, written on first use.

    It is built in a temporary sibling folder and renamed into place, so two processes starting at
    once never see a half-written bundle.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / f"random-{resolution}px-s{seed}-v1"
    manifest = target / MANIFEST_NAME
    if manifest.is_file():
        return manifest
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".random-bundle-", dir=cache_dir))
    try:
        make_random_bundle(tmp, resolution=resolution, seed=seed)
        try:
            os.replace(tmp, target)
        except OSError:
            if not manifest.is_file():  # not another process's finished copy: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


# --------------------------------------------------------------------------------------------------
# Inversion


def inverter_for(bundle: ModelBundle) -> InverterProtocol:
    """The bundle's inverter, or an :class:`engine.inversion.OptimizationInverter` on its generator when
    it has none."""
    if bundle.inverter is not None:
        return bundle.inverter
    from engine.inversion.optimize import OptimizationInverter

    return OptimizationInverter(bundle.generator)
