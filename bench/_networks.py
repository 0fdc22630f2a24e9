"""Released StyleGAN3 generator configurations, shared by the benchmark scripts (random weights: timing only)."""

from __future__ import annotations

RELEASE_CONFIGS = {
    # name: (resolution, extra Generator kwargs) -- the released configurations
    "T256": (256, dict(channel_base=16384, channel_max=512)),
    "R256": (256, dict(channel_base=32768, channel_max=1024, conv_kernel=1, use_radial_filters=True)),
    "T1024": (1024, dict(channel_base=32768, channel_max=512)),
    "R1024": (1024, dict(channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True)),
}


def release_generator(name: str):
    """A generator of the released configuration ``name`` (z and w 512, two mapping layers), weights
    drawn from torch's global generator: seed it first for repeatable weights."""
    from engine import Generator

    res, extra = RELEASE_CONFIGS[name]
    return Generator(
        z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3, mapping_kwargs={"num_layers": 2}, **extra
    )


def ffhq_random_bundle(folder, seed: int = 0):
    """Write an FFHQ-size model bundle with random weights into ``folder`` and return its manifest: the
    released StyleGAN3-R 1024 px configuration (fp16 layers as released) and a ReStyle-pSp encoder on
    IR-SE50 at 256 px, the sizes of the real FFHQ kit (timing only: the edits mean nothing)."""
    from engine.models import make_random_bundle

    res, extra = RELEASE_CONFIGS["R1024"]
    kwargs = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3, mapping_kwargs={"num_layers": 2})
    encoder = ("restyle_psp", "ir_se50", 256)
    kwargs.update(extra)
    return make_random_bundle(folder, seed=seed, generator_kwargs=kwargs, encoder=encoder, with_inverter=True)
