"""The synthesis loop lets each layer's input go before the layer's filters run (engine.networks.
stylegan3.SynthesisNetwork): one big tensor less held at the peak of a 1024 px render (T-1024 peak
RSS 2.5 -> 2.3 GB, R-1024 2.3 -> 1.8 GB, bench/RESULTS.md), with the same images."""

from __future__ import annotations

import weakref

import torch

from engine.networks.stylegan3 import Generator, SynthesisLayer


def _tiny() -> Generator:
    torch.manual_seed(0)
    return Generator(
        z_dim=16, c_dim=0, w_dim=16, img_resolution=32, img_channels=3, channel_base=256, channel_max=16,
        num_layers=4, margin_size=4, mapping_kwargs={"num_layers": 1},
    ).eval()  # fmt: skip


def test_layer_input_is_freed_before_its_filters_run(monkeypatch):
    G = _tiny()
    inputs: list[weakref.ref] = []
    alive_at_filter: list[bool] = []
    convolve, activate = SynthesisLayer.convolve, SynthesisLayer.activate

    def spy_convolve(self, x, *a, **k):
        inputs.append(weakref.ref(x))
        return convolve(self, x, *a, **k)

    def spy_activate(self, x, *a, **k):
        alive_at_filter.append(inputs[-1]() is not None)
        return activate(self, x, *a, **k)

    monkeypatch.setattr(SynthesisLayer, "convolve", spy_convolve)
    monkeypatch.setattr(SynthesisLayer, "activate", spy_activate)
    ws = G.mapping(torch.randn(2, 16), None)
    with torch.no_grad():
        G.synthesis(ws)
    assert len(alive_at_filter) == G.synthesis.num_layers + 1 and not any(alive_at_filter)


def test_split_layers_render_what_whole_layers_render():
    """convolve + activate is forward: a layer called whole gives the loop's result."""
    G = _tiny()
    ws = G.mapping(torch.randn(2, 16), None)
    with torch.no_grad():
        got = G.synthesis(ws)
        x = G.synthesis.input(ws[:, 0])
        for i, layer in enumerate(G.synthesis.layers()):
            x = layer(x, w=ws[:, i + 1])
        expected = x * G.synthesis.output_scale if G.synthesis.output_scale != 1 else x
    assert torch.equal(got, expected)
