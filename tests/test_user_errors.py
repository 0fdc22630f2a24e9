"""Mistakes users make on the command line and with input files: each ends with one line saying what
happened and what to do (exit code 2, no traceback), before any slow work starts and without leaving
files behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT

import main

DEMO_GENERATOR = ROOT / "resources" / "models" / "demo" / "generator.safetensors"
TINY_PAIR = ROOT / "tests" / "data" / "tiny_restyle_pair.safetensors"
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


def _photo(tmp_path: Path) -> Path:
    from factory.synthetic import write_photo

    return write_photo(tmp_path / "face.png", seed=3, size=256)


def _command(name: str, photo: Path, out: Path, *extra: str) -> list[str]:
    if name == "align":
        return ["align", str(photo), "--out", str(out), "--size", "64", *extra]
    if name == "invert":
        return ["invert", str(photo), "--model", str(TINY_PAIR), "--out", str(out), "--iters", "1", "--no-identity"]
    return ["render", "--model", str(DEMO_GENERATOR), "--seeds", "0-2", "--out", str(out), "--device", "cpu"]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("where", ["under_a_file", "is_a_file"])
@pytest.mark.parametrize("name", ["align", "invert", "render"])
def test_out_that_cannot_be_a_folder(tmp_path, capsys, name, where):
    work = tmp_path / "work"
    work.mkdir()
    photo = _photo(tmp_path)
    blocker = work / "notes.txt"
    blocker.write_text("a file, not a folder")
    out = blocker / "results" if where == "under_a_file" else blocker
    assert main.main(_command(name, photo, out)) == 2
    line = _one_error_line(capsys)  # one line: no progress bars, so the work never started
    assert str(blocker) in line and "--out" in line and "not a folder" in line, line
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]  # nothing half-written
    assert blocker.read_text() == "a file, not a folder"


def test_out_error_in_a_fresh_process(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("x")
    args = _command("render", Path("unused"), blocker / "sub")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


@NO_GPU
@pytest.mark.parametrize("name", ["invert", "render"])
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_device_without_a_gpu(tmp_path, capsys, name, device):
    # The model does not exist: the device is checked first, before any model is read.
    missing = str(tmp_path / "missing.pt")
    if name == "invert":
        args = ["invert", str(tmp_path / "face.png"), "--model", missing, "--out", str(tmp_path / "o")]
    else:
        args = ["render", "--model", missing, "--seeds", "0", "--out", str(tmp_path / "o")]
    assert main.main([*args, "--device", device]) == 2
    line = _one_error_line(capsys)
    assert "no CUDA device is available" in line and "--device cpu" in line, line
    assert not (tmp_path / "o").exists()


def test_resolve_device():
    from engine.cli._options import resolve_device
    from engine.errors import CharmError

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(CharmError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(CharmError, match="no CUDA device|there is no CUDA device 99"):
        resolve_device("cuda:99")


# --------------------------------------------------------------------------------------------------
# Photos that are missing, folders or damaged: the hint fits each


def _explained(path):
    from engine.explain import explain
    from engine.imageio import load_image

    with pytest.raises(Exception) as err:
        load_image(path)
    return explain(err.value)


def test_hint_for_a_missing_photo(tmp_path):
    why = _explained(tmp_path / "gone.jpg")
    assert "gone.jpg" in why.message and "Check the path" in why.hint and "damaged" not in why.hint


def test_hint_for_a_folder_as_photo(tmp_path):
    why = _explained(tmp_path)
    assert "folder" in why.message and "Choose an image file" in why.hint and "damaged" not in why.hint


def test_hint_for_a_damaged_photo(tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 20)
    why = _explained(bad)
    assert why.title == "Cannot read the image" and "damaged or not an image" in why.hint


# --------------------------------------------------------------------------------------------------
# convert


def _encoder_checkpoint(tmp_path: Path) -> Path:
    from engine.checkpoints import read_generator_checkpoint

    gen = read_generator_checkpoint(DEMO_GENERATOR)
    state = {f"decoder.{k}": v for k, v in gen.state_dict.items()}
    state["encoder.conv.weight"] = torch.zeros(4, 3, 3, 3)
    path = tmp_path / "restyle_pSp_ffhq.pt"
    torch.save({"state_dict": state, "opts": {"encoder_type": "BackboneEncoder"}}, path)
    assert read_generator_checkpoint(path).source_format == "encoder-checkpoint"
    return path


def test_convert_refuses_an_encoder_checkpoint(tmp_path, capsys):
    src = _encoder_checkpoint(tmp_path)
    out = tmp_path / "out.safetensors"
    assert main.main(["convert", str(src), str(out)]) == 2
    line = _one_error_line(capsys)
    assert "encoder" in line and f"invert --model {src}" in line and "--generator-only" in line, line
    assert not out.exists()
    # On purpose: the generator alone.
    assert main.main(["convert", str(src), str(out), "--generator-only"]) == 0
    assert out.is_file()


def test_convert_refuses_a_photo(tmp_path, capsys):
    import cv2

    png = tmp_path / "x.png"
    cv2.imwrite(str(png), np.zeros((8, 8, 3), np.uint8))
    assert main.main(["convert", str(png), str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys)
    assert "x.png" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]
