"""The photo pipeline is one: the command line and the window give the same latent for the same photo."""

from __future__ import annotations

import numpy as np
import pytest

TIMEOUT = 120_000


@pytest.fixture
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the window's job thread runs with one; the same math, the same bits
    yield
    torch.set_num_threads(threads)


def test_cli_and_window_give_identical_latents(qapp, qtbot, tmp_path, one_thread):
    import main
    from app.launch import create_main_window
    from engine.models import ensure_random_bundle
    from factory.synthetic import write_photo

    photo = write_photo(tmp_path / "face.png", seed=11, size=600)
    bundle = ensure_random_bundle(tmp_path / "cache" / "bundles").parent

    out = tmp_path / "cli"
    rc = main.main(["invert", str(photo), "--model", str(bundle), "--out", str(out), "--iters", "3", "--no-identity"])
    assert rc == 0
    cli_latent = np.load(out / "latent.npy")

    win = create_main_window(model=str(bundle), cache_dir=tmp_path / "cache", threads=1)
    try:
        qtbot.waitUntil(lambda: win.bundle is not None, timeout=TIMEOUT)
        win.inversion_panel.iters.setValue(3)
        with qtbot.waitSignal(win.inversionFinished, timeout=TIMEOUT):
            win.open_photo(photo)
        gui_latent = np.array(win.state.latent)
    finally:
        win.close()
        win.deleteLater()
    assert gui_latent.shape == cli_latent.shape
    assert np.array_equal(gui_latent, cli_latent), f"max difference {np.abs(gui_latent - cli_latent).max()}"
