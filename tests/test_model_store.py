"""The model library without the internet: kits from a loopback mirror (resume, Drive's confirm and quota
pages, NGC's paths, recorded checksums), bundles built from official-layout files (GANSpace sliders,
boundary names, an encoder's own generator), and one way to name a model in every command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from model_mirror import ModelMirror
from official_files import serve_kit, tiny_generator, write_boundary, write_release_pickle, write_released_encoder

import main
from engine import download
from engine import model_store as ms
from engine.errors import CheckpointError
from engine.jobs import Cancelled, JobControl
from engine.models import MANIFEST_NAME, load_bundle


@pytest.fixture(autouse=True)
def model_cache(tmp_path, monkeypatch) -> Path:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    cache = tmp_path / "models"
    monkeypatch.setenv("CHARM_MODELS_DIR", str(cache))
    monkeypatch.delenv("CHARM_MODEL_MIRROR", raising=False)
    return cache


@pytest.fixture
def mirror(monkeypatch):
    with ModelMirror() as m:
        monkeypatch.setenv("CHARM_MODEL_MIRROR", m.base)
        yield m


@pytest.fixture(scope="module")
def G():
    return tiny_generator(seed=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory, G) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("official")
    return {
        "pkl": write_release_pickle(d / "stylegan3-t-mine-64x64.pkl", G),
        "encoder": write_released_encoder(d / "restyle_mine.pt", G),
        "age": write_boundary(d / "age_boundary.npy", int(G.w_dim), 1),
        "smile": write_boundary(d / "Smiling_boundary.npy", int(G.w_dim), 2),
        "wrong": write_boundary(d / "wide" / "pose_boundary.npy", int(G.w_dim) * 2, 3),
    }


def _stages() -> tuple[JobControl, list]:
    seen: list = []
    return JobControl(seen.append), seen


# --------------------------------------------------------------------------------------------------
# Downloading kits


def test_mirror_variable_points_every_known_file_at_the_mirror(monkeypatch):
    monkeypatch.setenv("CHARM_MODEL_MIRROR", "http://127.0.0.1:9/base/")
    m = download.KNOWN_MODELS["boundary-ffhq-age"]
    assert download.known_url(m) == "http://127.0.0.1:9/base/boundaries/ffhq/age_boundary.npy"
    monkeypatch.delenv("CHARM_MODEL_MIRROR")
    assert download.known_url(m) == m.url and "drive.google.com" in m.url


def test_kit_download_resumes_records_checksums_and_builds_the_bundle(mirror, tmp_path, model_cache, G):
    served = serve_kit(mirror, "ffhq", tmp_path / "src", G)
    mirror.behaviour["restyle_pSp_ffhq.pt"] = "drop_once"
    with pytest.raises(download.DownloadError, match="interrupted .* Run it again to resume"):
        ms.get_model("ffhq", resumes=0)
    part = model_cache / "restyle_pSp_ffhq.pt.part"
    kept = part.stat().st_size if part.is_file() else 0
    assert 0 < kept < len(served["restyle_pSp_ffhq.pt"])
    assert not (model_cache / "restyle_pSp_ffhq.pt").exists()  # nothing half-downloaded under its name
    with pytest.raises(ms.ModelNotInstalledError):
        ms.resolve_model("ffhq")  # a .part is never used

    ctl, seen = _stages()
    manifest = ms.get_model("ffhq", ctl)
    ranges = [r for p, r in mirror.requests_for("restyle_pSp_ffhq.pt")]
    assert ranges == [None, f"bytes={kept}-"]  # the second request resumed where the first was cut
    assert (model_cache / "restyle_pSp_ffhq.pt").read_bytes() == served["restyle_pSp_ffhq.pt"]
    assert any(p.stage.startswith("Downloading restyle_pSp_ffhq (1/5)") and p.done > 0 for p in seen)

    sums = json.loads((model_cache / "checksums.json").read_text())
    assert set(sums) == set(served)
    bundle = load_bundle(manifest)
    assert bundle.name == "ffhq" and list(bundle.directions) == ["age", "smile", "pose", "gender"]
    assert bundle.directions["age"].range == (-5.0, 5.0) and bundle.directions["smile"].range == (-2.0, 2.0)
    assert bundle.inverter is not None and bundle.generator is bundle.inverter.generator
    assert ms.resolve_model("ffhq") == manifest  # now installed: no download needed, none made
    n = len(mirror.requests)
    assert ms.resolve_model("FFHQ") == manifest and len(mirror.requests) == n


def test_a_dropped_connection_is_resumed_automatically(mirror, tmp_path, model_cache, G):
    served = serve_kit(mirror, "fast-cpu", tmp_path / "src", G)
    mirror.behaviour["stylegan3-t-ffhqu-256x256.pkl"] = "drop_once"
    ctl, seen = _stages()
    ms.get_model("fast-cpu", ctl)
    ranges = [r for _, r in mirror.requests_for("stylegan3-t-ffhqu-256x256.pkl")]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and len(ranges) == 2
    assert (model_cache / "stylegan3-t-ffhqu-256x256.pkl").read_bytes() == served["stylegan3-t-ffhqu-256x256.pkl"]
    assert any(p.stage == "Connection dropped: resuming (1/3)" for p in seen)


def test_official_url_shapes_ngc_and_drive_confirm_page(tmp_path, model_cache, monkeypatch, G):
    with ModelMirror() as m:
        monkeypatch.setattr(download, "KNOWN_MODELS", m.official_urls())
        monkeypatch.setattr(ms, "KNOWN_MODELS", download.KNOWN_MODELS)
        serve_kit(m, "fast-cpu", tmp_path / "src", G)
        serve_kit(m, "ffhq", tmp_path / "src", G)
        manifest = ms.get_model("fast-cpu")
        ngc = "/v2/models/nvidia/research/stylegan3/versions/1/files/stylegan3-t-ffhqu-256x256.pkl"
        assert any(p == ngc for p, _ in m.requests)
        path = download.ensure_model("boundary-ffhq-age")
        paths = [p for p, _ in m.requests]
        assert any(p.startswith("/uc?export=download&id=1NQVOpKX6YZKVbz99sg94HiziLXHMUbFS") for p in paths)
        assert any(p.startswith("/download?") and "confirm=t" in p for p in paths)  # the warning page's form
    assert np.load(path).shape == (1, int(G.w_dim))
    bundle = load_bundle(manifest)
    assert bundle.inverter is None  # a generator alone: inverted by optimisation
    assert [n for n in bundle.directions][:2] == ["component 1", "component 2"]


def test_quota_page_is_one_line_with_the_url_and_nothing_is_stored(tmp_path, model_cache, monkeypatch, G):
    with ModelMirror() as m:
        monkeypatch.setattr(download, "KNOWN_MODELS", m.official_urls())
        monkeypatch.setattr(ms, "KNOWN_MODELS", download.KNOWN_MODELS)
        serve_kit(m, "ffhq", tmp_path / "src", G)
        m.behaviour["restyle_pSp_ffhq.pt"] = "quota"
        with pytest.raises(download.DownloadError) as err:
            ms.get_model("ffhq")
    msg = str(err.value)
    assert "\n" not in msg and "quota" in msg and download.KNOWN_MODELS["restyle_pSp_ffhq"].url in msg
    assert not (model_cache / "restyle_pSp_ffhq.pt").exists() and not (model_cache / "bundles" / "ffhq").exists()


def test_cancel_keeps_the_part_file_and_builds_nothing(mirror, tmp_path, model_cache, G):
    serve_kit(mirror, "ffhq", tmp_path / "src", G)
    calls = []
    ctl = JobControl(lambda p: calls.append(p), lambda: any(p.done > 0 for p in calls))
    with pytest.raises(Cancelled):
        ms.get_model("ffhq", ctl)
    assert (model_cache / "restyle_pSp_ffhq.pt.part").is_file()
    assert not (model_cache / "restyle_pSp_ffhq.pt").exists() and not ms.installed_models()


def test_a_changed_file_is_refused_against_its_recorded_checksum(mirror, tmp_path, model_cache, G):
    serve_kit(mirror, "fast-cpu", tmp_path / "src", G)
    path = download.ensure_model("stylegan3-t-ffhqu-256x256")
    assert download.recorded_checksum(download.KNOWN_MODELS["stylegan3-t-ffhqu-256x256"]) is not None
    path.unlink()
    mirror.files["stylegan3-t-ffhqu-256x256.pkl"] = b"\x80\x04" + os.urandom(5000)
    with pytest.raises(download.DownloadError, match="wrong SHA-256"):
        download.ensure_model("stylegan3-t-ffhqu-256x256")
    assert not path.exists() and not path.with_name(path.name + ".part").exists()


def test_files_downloaded_by_hand_are_imported_then_the_kit_builds_offline(tmp_path, model_cache, G):
    from official_files import official_file_bytes

    hand = tmp_path / "Downloads"
    for name in ms.KITS["ffhq"].files:
        (hand / Path(download.KNOWN_MODELS[name].filename).name).parent.mkdir(parents=True, exist_ok=True)
        official_file_bytes(name, hand, G)
    imported, others = ms.import_files(sorted(hand.iterdir()) + [tmp_path / "unrelated.txt"])
    assert sorted(m.name for m in imported) == sorted(ms.KITS["ffhq"].files)
    assert others == [tmp_path / "unrelated.txt"]
    assert not ms.missing_files("ffhq")
    manifest = ms.resolve_model("ffhq")  # every file is here: built without any download
    assert load_bundle(manifest).directions["gender"].range == (-2.0, 4.0)


# --------------------------------------------------------------------------------------------------
# Bundles from files


def test_ganspace_directions_are_principal_axes_on_layer_groups(G):
    from engine.ganspace import ganspace_directions

    dirs = ganspace_directions(G, n_samples=2000, n_components=6)
    assert list(dirs) == [f"component {i}" for i in range(1, 7)]
    V = torch.stack([d.vector for d in dirs.values()])
    torch.testing.assert_close(V @ V.T, torch.eye(6), atol=1e-5, rtol=0)
    spreads = [d.range[1] for d in dirs.values()]
    assert spreads == sorted(spreads, reverse=True) and spreads[-1] > 0
    w = G.mapping(torch.randn(2000, int(G.z_dim)), None)[:, 0]
    proj_sd = ((w - w.mean(0)) @ V[0]).std()
    assert abs(2 * float(proj_sd) - spreads[0]) / spreads[0] < 0.1  # range = +-2 sd along the axis
    layers = [d.layers for d in dirs.values()]
    assert layers[0][0] == 0 and layers[-1][-1] == int(G.num_ws) - 1 and layers[0] != layers[-1]
    again = ganspace_directions(G, n_samples=2000, n_components=6)
    assert all(torch.equal(a.vector, b.vector) for a, b in zip(dirs.values(), again.values()))


def test_encoder_alone_uses_its_own_generator_and_boundaries_get_names(files):
    manifest = ms.add_model([files["encoder"], files["age"], files["smile"]], name="Mine")
    data = json.loads(manifest.read_text())
    assert manifest.parent.name == "mine" and data["generator"] == {"from": "inverter"}
    bundle = load_bundle(ms.resolve_model("mine"))
    assert list(bundle.directions) == ["age", "smile"]
    assert bundle.generator is bundle.inverter.generator
    assert os.stat(manifest.parent / files["encoder"].name).st_ino == os.stat(files["encoder"]).st_ino  # linked


def test_mismatched_files_are_refused_with_the_reason(files, tmp_path):
    with pytest.raises(CheckpointError, match="belongs to another model"):
        ms.add_model([files["pkl"], files["wrong"]])
    with pytest.raises(CheckpointError, match="no generator or encoder"):
        ms.add_model([files["age"]])
    with pytest.raises(CheckpointError, match="reserved"):
        ms.add_model([files["pkl"]], name="demo")
    assert not ms.installed_models()


def test_a_single_model_file_gets_one_bundle(files):
    first = ms.resolve_model(str(files["pkl"]))
    again = ms.resolve_model(str(files["pkl"]))
    assert first == again and first.parent.name.startswith("file-stylegan3-t-mine-64x64-")
    assert [m.name for m in ms.installed_models()] == [first.parent.name]


def test_names_that_are_not_models_say_what_to_give():
    with pytest.raises(ms.ModelNotInstalledError, match="python3 main.py models get fast-cpu"):
        ms.resolve_model("fast-cpu")
    with pytest.raises(CheckpointError, match="is not a model: give 'demo'"):
        ms.resolve_model("no-such-model")
    with pytest.raises(CheckpointError, match="does not exist"):
        ms.resolve_model("./missing/file.pkl")


# --------------------------------------------------------------------------------------------------
# The commands


def test_models_add_then_render_and_invert_by_the_printed_name(files, tmp_path, capsys):
    from factory.synthetic import write_photo

    assert main.main(["models", "add", str(files["pkl"]), "--name", "My Model"]) == 0
    out = capsys.readouterr().out
    assert "added 'my-model'" in out and "--model my-model" in out
    assert main.main(["render", "--model", "my-model", "--seeds", "0-1", "--out", str(tmp_path / "r")]) == 0
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["seed0000.png", "seed0001.png"]
    photo = write_photo(tmp_path / "face.png", seed=11, size=400)
    rc = main.main(
        ["invert", str(photo), "--model", "my-model", "--out", str(tmp_path / "i"), "--iters", "2", "--no-identity"]
    )
    assert rc == 0 and (tmp_path / "i" / "latent.npy").is_file()
    assert load_bundle(ms.resolve_model("my-model")).directions["component 1"].layers is not None


def test_demo_works_for_every_model_command(tmp_path):
    from factory.synthetic import write_photo

    assert main.main(["render", "--model", "demo", "--seeds", "3", "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "seed0003.png").is_file()
    photo = write_photo(tmp_path / "face.png", seed=4, size=300)
    rc = main.main(["invert", str(photo), "--model", "demo", "--out", str(tmp_path / "i"), "--no-identity"])
    assert rc == 0 and (tmp_path / "i" / "latent.npy").is_file()


def test_missing_known_model_names_the_command_or_downloads(mirror, tmp_path, capsys, G):
    out = tmp_path / "r"
    assert main.main(["render", "--model", "fast-cpu", "--seeds", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python3 main.py models get fast-cpu" in err and "--download" in err
    serve_kit(mirror, "fast-cpu", tmp_path / "src", G)
    assert main.main(["render", "--model", "fast-cpu", "--download", "--seeds", "0", "--out", str(out)]) == 0
    assert (out / "seed0000.png").is_file()


def test_models_list_shows_every_known_file_and_kit(capsys, files):
    ms.add_model([files["pkl"]], name="listed")
    assert main.main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in list(download.KNOWN_MODELS) + list(ms.KITS) + ["demo", "listed"]:
        assert f"  {name} " in out, name
    assert "about 805 MB" in out


def test_models_get_and_remove(mirror, tmp_path, model_cache, capsys, G):
    serve_kit(mirror, "fast-cpu", tmp_path / "src", G)
    assert main.main(["models", "get", "fast-cpu"]) == 0
    assert "fast-cpu: ready (use --model fast-cpu)" in capsys.readouterr().out
    assert (model_cache / "bundles" / "fast-cpu" / MANIFEST_NAME).is_file()
    assert main.main(["models", "remove", "fast-cpu", "stylegan3-t-ffhqu-256x256"]) == 0
    assert not (model_cache / "bundles" / "fast-cpu").exists()
    assert not (model_cache / "stylegan3-t-ffhqu-256x256.pkl").exists()
    assert main.main(["models", "remove", "fast-cpu"]) == 2
    assert "not installed" in capsys.readouterr().err


def test_studio_loads_any_model_name(files, tmp_path):
    from engine.studio import Studio

    studio = Studio(tmp_path / "studio")
    ms.add_model([files["pkl"], files["age"]], name="picked")
    info = studio.load_model("picked")
    assert info.spec == "picked" and [d.name for d in info.directions] == ["age"] and not info.encoder
    with pytest.raises(ms.ModelNotInstalledError):
        studio.load_model("ffhq")
