"""Demo-model trainers: two steps of each on tiny sizes (they never train for real), resume, export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_latent_factor_code_roundtrip() -> None:
    from factory.synthetic import sample_factors
    from factory.training.common import Z_DIM, factors_to_z, z_to_factors

    z = np.random.default_rng(0).standard_normal((4000, Z_DIM))
    f = z_to_factors(z)
    assert np.abs(z_to_factors(factors_to_z(f)).values - f.values).max() < 1e-4
    ref = sample_factors(4000, seed=0).values
    assert np.abs(f.values.mean(0) - ref.mean(0)).max() < 0.03  # same marginals as sample_factors


def test_linear_svm_and_direction() -> None:
    from engine.directions import fit_direction, stylespace_channels

    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 16, generator=g)
    true = torch.zeros(16)
    true[3] = 1.0
    d, acc = fit_direction(x, x @ true + 0.05 * torch.randn(400, generator=g))
    assert acc > 0.9 and float(d @ true) > 0.9
    pos = {"L0": torch.randn(50, 4, generator=g) + torch.tensor([0.0, 3.0, 0.0, 0.0])}
    neg = {"L0": torch.randn(50, 4, generator=g)}
    assert stylespace_channels(pos, neg, top=1) == [("L0", 1, 1)]


def test_conditional_direction() -> None:
    # InterFaceGAN conditional manipulation: the primal direction with the conditions' components removed.
    from engine.directions import condition_direction

    g = torch.Generator().manual_seed(1)
    conds = [torch.randn(16, generator=g) for _ in range(3)]
    primal = torch.randn(16, generator=g)
    d = condition_direction(primal, conds)
    assert abs(float(d.norm()) - 1) < 1e-6
    assert all(abs(float(d @ c)) < 1e-5 for c in conds)
    # No other unit vector orthogonal to the conditions is closer to the primal direction.
    for _ in range(20):
        other = condition_direction(d + 0.3 * torch.randn(16, generator=g), conds)
        assert float(other @ primal) <= float(d @ primal) + 1e-6
    assert torch.allclose(condition_direction(primal, []), primal / primal.norm())
    with pytest.raises(ValueError):
        condition_direction(conds[0] + conds[1], conds)


def _run(*args: str, tiny: bool = True) -> None:
    """``python main.py train-demo ARGS`` in this process (saves a torch import per run)."""
    import argparse

    from factory.cli import train_demo

    parser = argparse.ArgumentParser()
    train_demo.add_arguments(parser)
    argv = [*args, "--threads", "0"] + (["--tiny"] if tiny else [])
    assert train_demo.run(parser.parse_args(argv)) == 0


def test_cli_help_is_light() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "train-demo", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert r.returncode == 0 and "generator" in r.stdout


def test_trainers_two_steps_resume_and_export(tmp_path: Path) -> None:
    from engine.checkpoints import load_generator
    from engine.inversion import load_inverter
    from engine.predictor import load_predictor

    g, p, e, d = (tmp_path / k for k in ("g", "p", "e", "d"))
    _run("generator", "--steps", "2", "--out", str(g))
    _run("generator", "--steps", "3", "--resume", "--out", str(g))
    assert torch.load(g / "checkpoint.pt", weights_only=True)["step"] == 3
    G = load_generator(g / "generator.safetensors")
    _run("predictor", "--steps", "2", "--out", str(p))
    P = load_predictor(p / "predictor.safetensors")
    assert P.predict(torch.zeros(2, 3, 16, 16)).shape == (2, len(P.attributes))
    _run("encoder", "--steps", "2", "--out", str(e), "--generator", str(g / "generator.safetensors"))
    _run(
        "encoder",
        "--steps",
        "3",
        "--resume",
        "--iters",
        "1",
        "--lr",
        "1e-3",
        "--out",
        str(e),
        "--generator",
        str(g / "generator.safetensors"),
    )
    state = torch.load(e / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["config"]["iters"] == 1 and state["config"]["lr"] == 1e-3
    inv = load_inverter(e / "encoder.safetensors")
    res = inv.invert(torch.zeros(1, 3, G.img_resolution, G.img_resolution), n_iters=3)
    assert res.latent.shape == (1, G.num_ws, G.w_dim)
    _run(
        "directions",
        "--steps",
        "30",
        "--batch",
        "30",
        "--out",
        str(d),
        "--generator",
        str(g / "generator.safetensors"),
        "--predictor",
        str(p / "predictor.safetensors"),
    )
    dirs = torch.load(d / "directions.pt", weights_only=True)["directions"]
    assert {"smile", "age", "glasses", "beard", "hair colour", "yaw"} <= set(dirs)
    for v in dirs.values():
        assert abs(float(v["vector"].norm()) - 1) < 1e-4 and v["range"][1] > 0


def test_deeper_generator_in_the_same_latent_space_and_encoder_init(tmp_path: Path) -> None:
    """--mapping-from keeps an earlier generator's latent space; --init-from carries an encoder over to it."""
    from engine.checkpoints import load_generator
    from factory.training.common import load_state

    g, g2, e, e2 = (tmp_path / k for k in ("g", "g2", "e", "e2"))
    _run("generator", "--steps", "2", "--out", str(g))
    _run(
        "generator",
        "--steps",
        "2",
        "--out",
        str(g2),
        "--num-layers",
        "5",
        "--mapping-from",
        str(g / "generator.safetensors"),
    )
    G, G2 = load_generator(g / "generator.safetensors"), load_generator(g2 / "generator.safetensors")
    assert G2.num_ws == G.num_ws + 2
    z = torch.randn(4, G.z_dim)
    assert torch.equal(G.mapping(z)[:, 0], G2.mapping(z)[:, 0])
    _run("encoder", "--steps", "2", "--out", str(e), "--generator", str(g / "generator.safetensors"))

    def encoder_for_g2(init_from: Path, out: Path) -> dict[str, torch.Tensor]:
        """One step at lr 0 of an encoder for g2 that starts from ``init_from``; returns its saved weights."""
        gen = str(g2 / "generator.safetensors")
        _run(
            "encoder", "--steps", "1", "--lr", "0", "--out", str(out), "--generator", gen, "--init-from", str(init_from)
        )
        return load_state(out / "checkpoint.pt")["encoder"]

    new = encoder_for_g2(e / "checkpoint.pt", e2)
    old = load_state(e / "checkpoint.pt")["encoder"]
    n_old = G.num_ws
    for k, v in new.items():
        if k.startswith("styles."):
            i = int(k.split(".")[1])
            j = 0 if i == 0 else max(1, round(i * (n_old - 1) / (G2.num_ws - 1)))
            src = old["styles." + str(j) + k[len("styles." + str(i)) :]]
        else:
            src = old[k]
        if v.is_floating_point() and "running" not in k:  # lr 0: weights unchanged; BN statistics move
            assert torch.equal(v, src), k
    # an inverter file (what a bundle ships) works as a starting point too
    w3 = encoder_for_g2(e / "encoder.safetensors", tmp_path / "e3")
    assert all(torch.equal(w3[k], v) for k, v in new.items() if v.is_floating_point() and "running" not in k)
    with pytest.raises(ValueError, match="same latent sizes"):
        from factory.training.generator import GeneratorConfig, build_demo_generator, copy_mapping

        copy_mapping(
            build_demo_generator(
                GeneratorConfig(size=16, w_dim=8, num_layers=3, channel_base=64, channel_max=8), torch.device("cpu")
            ),
            g / "generator.safetensors",
        )


def test_predictor_soft_image_augmentation(tmp_path: Path) -> None:
    from factory.training.predictor import soften

    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    y = soften(x, 1.5, seed=4)
    assert torch.equal(y[0::2], x[0::2])  # every other image is left as it is
    # blurred images lose high-frequency energy (neighbour differences shrink)
    hf = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert hf(y[1::2]) < 0.9 * hf(x[1::2])
    assert torch.equal(y, soften(x, 1.5, seed=4)) and y.abs().max() <= 1
    p = tmp_path / "p"
    _run("predictor", "--steps", "2", "--out", str(p))
    _run("predictor", "--steps", "3", "--resume", "--blur", "1.2", "--out", str(p))
    state = torch.load(p / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["config"]["blur_max"] == 1.2


def test_adversarial_phase_resumes_regression_checkpoint(tmp_path: Path) -> None:
    """Phase 2 (--adv-weight) continues a phase-1 run: new discriminator, saved and restored with G."""
    from factory.training.common import load_state

    g = tmp_path / "g"
    _run("generator", "--steps", "2", "--out", str(g))
    assert "D" not in load_state(g / "checkpoint.pt")
    _run(
        "generator",
        "--steps",
        "4",
        "--resume",
        "--lr",
        "1e-3",
        "--edge-weight",
        "1",
        "--adv-weight",
        "0.1",
        "--out",
        str(g),
    )
    s4 = load_state(g / "checkpoint.pt")
    assert s4["step"] == 4 and s4["config"]["adv_weight"] == 0.1 and s4["config"]["edge_weight"] == 1.0
    assert s4["config"]["lr"] == 1e-3
    from factory.training.discriminator import DemoDiscriminator

    fresh = DemoDiscriminator(16).state_dict()
    assert fresh.keys() == s4["D"].keys()
    # the discriminator was trained (two Adam steps move every weight tensor)
    assert all(not torch.equal(fresh[k], s4["D"][k]) for k in fresh if k.endswith("weight"))
    # resuming (no step left to run) restores the same discriminator and keeps the phase-2 settings
    _run("generator", "--steps", "4", "--resume", "--out", str(g))
    s4b = load_state(g / "checkpoint.pt")
    assert s4b["config"]["adv_weight"] == 0.1
    assert all(torch.equal(s4["D"][k], s4b["D"][k]) for k in s4["D"])


def test_discriminator_losses() -> None:
    from factory.training.discriminator import DemoDiscriminator, discriminator_loss, generator_adv_loss
    from factory.training.generator import edge_loss

    torch.manual_seed(0)
    D = DemoDiscriminator(16, width=4)
    real, fake = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)
    plain = discriminator_loss(D, real, fake, r1_gamma=2.0, r1_every=4, step=1)
    with torch.no_grad():
        expect = torch.nn.functional.softplus(-D(real)).mean() + torch.nn.functional.softplus(D(fake)).mean()
    assert torch.allclose(plain, expect)
    # on R1 steps the penalty gamma/2 * every * |dD/dx|^2 is added
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x)
    penalty = 0.5 * 2.0 * 4 * grad.square().sum(dim=(1, 2, 3)).mean()
    lazy = discriminator_loss(D, real, fake, r1_gamma=2.0, r1_every=4, step=8)
    assert torch.allclose(lazy, expect + penalty, rtol=1e-5)
    lazy.backward()  # differentiable through the penalty
    assert all(p.grad is not None for p in D.parameters())
    assert torch.allclose(generator_adv_loss(D, fake), torch.nn.functional.softplus(-D(fake)).mean())
    # edge loss: 0 for equal images and for a constant offset; a unit step edge costs its finite difference
    assert float(edge_loss(real, real)) == 0 and float(edge_loss(real + 0.5, real)) < 1e-6
    step_img = torch.zeros(1, 1, 4, 4)
    step_img[..., 2:] = 1.0  # one vertical edge of height 1 per row: dx has a single 1 among 3 columns
    assert abs(float(edge_loss(step_img, torch.zeros_like(step_img))) - 1 / 3) < 1e-6


def test_step_budget_fits_the_schedule_to_the_wall_clock(monkeypatch) -> None:
    """With ``minutes`` the run's length is re-estimated from the measured rate; without, it is ``steps``."""
    from factory.training import common

    clock = [1000.0]
    monkeypatch.setattr(common.time, "time", lambda: clock[0])
    assert common.StepBudget(0, 500).total(0) == 500
    budget = common.StepBudget(start=100, steps=10_000, minutes=1.0, warmup=10)
    assert budget.total(100) == 10_000  # no rate measured yet: the cap
    clock[0] += 5.0  # 10 steps in 5 s -> 2 steps/s -> 120 steps in the minute
    assert budget.total(110) == 100 + 120
    clock[0] += 25.0  # slower now: 30 steps in 30 s -> 60 steps in the minute
    assert budget.total(130) == 100 + 60
    clock[0] += 31.0  # the minute is over: the run ends at the current step
    assert budget.total(140) == 140
    capped = common.StepBudget(start=0, steps=50, minutes=10.0, warmup=1)
    clock[0] += 1.0
    assert capped.total(5) == 50  # never beyond --steps


def test_render_stream_workers_match_in_process_batches() -> None:
    """Rendering ahead in worker processes gives exactly the batches of the in-process stream, in order,
    and stops at ``stop``."""
    from factory.training.common import RenderStream

    local = RenderStream(seed=3, batch=2, size=16, start=5, stop=9, device=torch.device("cpu"))
    pooled = RenderStream(seed=3, batch=2, size=16, start=5, stop=9, device=torch.device("cpu"), workers=2)
    try:
        a, b = list(local), list(pooled)
    finally:
        pooled.close()
    assert len(a) == len(b) == 4
    for (za, xa), (zb, xb) in zip(a, b):
        assert np.array_equal(za, zb) and torch.equal(xa, xb)
        assert xa.shape == (2, 3, 16, 16) and -1 <= float(xa.min()) and float(xa.max()) <= 1


def test_generator_minutes_budget_ends_the_run(tmp_path: Path) -> None:
    """``--minutes`` ends a run on time however large ``--steps`` is, and checkpoints where it stopped."""
    g = tmp_path / "g"
    _run("generator", "--steps", "1000000", "--minutes", "0.002", "--out", str(g))
    step = int(torch.load(g / "checkpoint.pt", weights_only=True)["step"])
    assert 1 <= step < 1000


def test_generator_new_run_from_a_generator_file(tmp_path: Path) -> None:
    """``--init-from`` starts a new run (fresh optimizer, step 0) from a generator file's weights, e.g.
    the shipped demo generator for a sharpening phase on another machine; other architectures are refused."""
    from engine.checkpoints import load_generator

    a, b = tmp_path / "a", tmp_path / "b"
    _run("generator", "--steps", "2", "--out", str(a))
    src = a / "generator.safetensors"
    _run("generator", "--steps", "0", "--init-from", str(src), "--out", str(b))
    Ga, Gb = load_generator(src), load_generator(b / "generator.safetensors")
    sa, sb = Ga.state_dict(), Gb.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    _run("generator", "--steps", "2", "--init-from", str(src), "--adv-weight", "0.1", "--out", str(b))
    assert int(torch.load(b / "checkpoint.pt", weights_only=True)["step"]) == 2
    with pytest.raises(ValueError, match="not a generator of this architecture"):
        _run("generator", "--steps", "1", "--init-from", str(src), "--channel-max", "12", "--out", str(tmp_path / "c"))


def test_generator_train_mapping_flag(tmp_path: Path) -> None:
    """``--train-mapping`` trains the mapping network too; by default it keeps its initialisation."""
    from engine.checkpoints import load_generator

    frozen, trained = tmp_path / "f", tmp_path / "t"
    _run("generator", "--steps", "2", "--out", str(frozen))
    _run("generator", "--steps", "2", "--train-mapping", "--out", str(trained))
    mf = load_generator(frozen / "generator.safetensors").mapping.state_dict()
    mt = load_generator(trained / "generator.safetensors").mapping.state_dict()
    weights = [k for k in mf if k.endswith("weight")]
    assert weights and any(not torch.equal(mf[k], mt[k]) for k in weights)
    assert torch.load(trained / "checkpoint.pt", weights_only=True)["config"]["train_mapping"] is True
