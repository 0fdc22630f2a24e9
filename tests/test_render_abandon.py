"""Renders abandoned between generator layers: the synthesis hook, ``render_state``'s ``ctl``, and the
window's preview lane giving up a running 1024 px render as soon as the user moves a slider again."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import torch_threads

from engine.jobs import Cancelled, JobControl, Progress
from engine.models import ModelBundle, load_bundle, make_random_bundle
from engine.render import render_picture, render_state
from engine.state import EditState

TIMEOUT = 120_000


def _mean_latent(bundle: ModelBundle) -> np.ndarray:
    G = bundle.generator
    return G.mapping.w_avg.view(1, -1).repeat(G.num_ws, 1).numpy().copy()


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory) -> ModelBundle:
    return load_bundle(make_random_bundle(tmp_path_factory.mktemp("small"), with_inverter=False))


@pytest.fixture(scope="module")
def big_bundle_dir(tmp_path_factory) -> Path:
    """A random-weight 1024 px generator with the release's 14 synthesis layers (config T) but a few
    channels per layer: about a second per render on one CPU thread, most of it in the last layers."""
    folder = tmp_path_factory.mktemp("r1024")
    make_random_bundle(
        folder, resolution=1024, w_dim=16, num_layers=14, channel_max=16, channel_base=4096, with_inverter=False
    )
    return folder


def _edited_state(bundle: ModelBundle) -> EditState:
    layer = bundle.generator.synthesis.layer_names[2]
    return (
        EditState(latent=_mean_latent(bundle)).with_direction("smile", 1.5).with_channel(layer, 0, 2.0).replace(tx=0.1)
    )


@pytest.mark.parametrize("channels", [False, True], ids=["ws", "styles"])
def test_hook_reports_every_layer_and_keeps_numerics(small_bundle, channels):
    state = _edited_state(small_bundle)
    if not channels:
        state = state.replace(channels={})
    seen: list[Progress] = []
    with torch_threads(1):
        plain = render_state(state, small_bundle)
        hooked = render_state(state, small_bundle, ctl=JobControl(seen.append))
    assert torch.equal(plain, hooked)
    total = small_bundle.generator.num_ws
    assert [p.done for p in seen] == list(range(total + 1))  # the stage (0), then one per layer
    assert {p.total for p in seen} == {total} and {p.stage for p in seen} == {"Rendering"}


def test_synthesis_hook_is_per_call(small_bundle):
    G = small_bundle.generator
    ws = torch.from_numpy(_mean_latent(small_bundle)).unsqueeze(0)
    calls: list[tuple[int, int]] = []
    with torch.no_grad(), torch_threads(1):
        a = G.synthesis(ws, between_layers=lambda d, t: calls.append((d, t)))
        b = G.synthesis(ws)  # no hook left behind on the module
    assert torch.equal(a, b)
    assert calls == [(i, G.num_ws) for i in range(1, G.num_ws + 1)]


def test_cancelled_ctl_stops_after_at_most_one_layer(small_bundle):
    state = _edited_state(small_bundle)
    seen: list[Progress] = []
    with pytest.raises(Cancelled), torch_threads(1):
        render_state(state, small_bundle, ctl=JobControl(seen.append, lambda: True))
    assert max(p.done for p in seen) <= 1

    # Cancelled while rendering: stops at the next layer boundary and says how far it got.
    layers_done: list[int] = []
    ctl = JobControl(lambda p: layers_done.append(p.done), lambda: bool(layers_done) and layers_done[-1] >= 3)
    with pytest.raises(Cancelled) as err, torch_threads(1):
        render_picture(state, small_bundle, ctl=ctl)
    assert layers_done[-1] == 3 and err.value.done == 3 and err.value.total == small_bundle.generator.num_ws


def test_slider_moves_abandon_running_renders(qapp, qtbot, big_bundle_dir, tmp_path):
    """Ten slider moves within two seconds on a slow (1024 px) model: the running render is given up at
    the next layer each time, so at most two renders run to the end; the last state's image is shown,
    the canvas keeps the previous image meanwhile, and the UI thread never waits over 100 ms."""
    from PySide6.QtCore import QTimer

    from app.launch import create_main_window

    with torch_threads(1):
        win = create_main_window(model=str(big_bundle_dir), cache_dir=tmp_path / "cache", threads=1)
        qtbot.addWidget(win)
        win.dialog_hook = lambda dlg: QTimer.singleShot(0, dlg.close)
        win.show()
        try:
            qtbot.waitUntil(lambda: win.bundle is not None and not win.busy, timeout=TIMEOUT)
            assert win.bundle.resolution == 1024
            bundle = win.host.studio.bundle
            assert bundle is not None
            with qtbot.waitSignal(win.resultShown, timeout=TIMEOUT):
                win.set_state(win.state.replace(latent=_mean_latent(bundle)))
            first = win.last_render
            assert first is not None and first.image.shape == (1024, 1024, 3)

            lane = win.host.preview
            completed0, abandoned0 = lane.completed, lane.abandoned
            shown: list[int] = []
            win.resultShown.connect(shown.append)
            messages: list[str] = []
            win.statusBar().messageChanged.connect(messages.append)
            ticks: list[float] = []
            canvas_kept: list[bool] = []

            def beat() -> None:
                ticks.append(time.perf_counter())
                canvas_kept.append(win.canvas.after is not None)

            heart = QTimer()
            heart.setInterval(20)
            heart.timeout.connect(beat)
            heart.start()
            s = win.directions_panel.sliders["smile"]
            t0 = time.perf_counter()
            for i in range(10):
                s.set_value(s.lo + (s.hi - s.lo) * (i + 1) / 10, emit=True)
                if i < 9:
                    qtbot.wait(180)  # ten moves in ~1.6 s
            moves_s = time.perf_counter() - t0
            last = lane.latest
            qtbot.waitUntil(lambda: bool(shown) and shown[-1] == last, timeout=TIMEOUT)
            qtbot.wait(100)  # a few more beats after the image arrived
            heart.stop()
            win.resultShown.disconnect(shown.append)

            completed = lane.completed - completed0
            abandoned = lane.abandoned - abandoned0
            gaps = np.diff(ticks)
            res = win.last_render
            print(
                f"\n1024 px: first render {first.seconds:.2f} s, last render {res.seconds:.2f} s; moves in "
                f"{moves_s:.2f} s; {completed} renders ran to the end, {abandoned} abandoned, "
                f"{len(shown)} shown; longest heartbeat gap {gaps.max() * 1000:.0f} ms; status {messages}"
            )
            assert moves_s < 2.0
            assert completed <= 2, f"{completed} renders ran to the end for 10 moves"
            assert completed >= 1 and len(shown) == completed
            assert abandoned >= 1, "no running render was abandoned"
            assert gaps.max() < 0.1, f"the UI thread stalled for {gaps.max() * 1000:.0f} ms"
            assert all(canvas_kept), "the canvas lost its image while waiting for a render"

            assert res is not None and res.request_id == last and res.state.same_as(win.state)
            assert res.state.directions["smile"] == pytest.approx(s.hi)
            expected = render_picture(win.state, bundle)
            assert np.abs(expected.astype(int) - res.image).max() <= 1
            assert not np.array_equal(res.image, first.image)

            if res.seconds > 0.75:  # long enough for layer progress in the status bar
                assert any(m.startswith("Rendering ") and m.endswith("/16 layers") for m in messages), messages
            assert not win.statusBar().currentMessage().startswith("Rendering")
        finally:
            win.close()


def test_dragging_on_a_fast_model_shows_frames(qapp, qtbot, tmp_path):
    """On a fast model a running render is not given up: a slider dragged faster than the renders shows
    intermediate frames while it moves, not only the last one."""
    from PySide6.QtCore import QTimer

    from app.launch import create_main_window

    folder = make_random_bundle(tmp_path / "small", with_inverter=False).parent
    with torch_threads(1):
        win = create_main_window(model=str(folder), cache_dir=tmp_path / "cache", threads=1)
        qtbot.addWidget(win)
        win.dialog_hook = lambda dlg: QTimer.singleShot(0, dlg.close)
        try:
            qtbot.waitUntil(lambda: win.bundle is not None and not win.busy, timeout=TIMEOUT)
            bundle = win.host.studio.bundle
            assert bundle is not None
            with qtbot.waitSignal(win.resultShown, timeout=TIMEOUT):
                win.set_state(win.state.replace(latent=_mean_latent(bundle)))
            lane = win.host.preview
            assert lane.last_seconds < lane.slow_render_s, "the test needs a fast model"
            shown: list[int] = []
            win.resultShown.connect(shown.append)
            abandoned0 = lane.abandoned
            s = win.directions_panel.sliders["smile"]
            for i in range(30):
                s.set_value(s.lo + (s.hi - s.lo) * (i + 1) / 30, emit=True)
                qtbot.wait(5)  # faster than a render: requests pile up behind the running one
            last = lane.latest
            qtbot.waitUntil(lambda: bool(shown) and shown[-1] == last, timeout=TIMEOUT)
            assert len(shown) >= 2, "only the last frame of the drag was shown"
            assert lane.abandoned == abandoned0, "a fast render was abandoned"
        finally:
            win.close()
