"""``python main.py invert PHOTO --model MODEL --out DIR``: align a face, invert it, optionally run PTI.

MODEL is an inverter file (a released stylegan3-editing encoder ``.pt`` or a file written by
``engine.inversion.save_inverter``) or a model bundle (``demo``, a bundle folder or its manifest).
Writes into DIR:

- ``aligned.png`` / ``crop.png``: the aligned input and the unaligned crop, at the generator's resolution;
- ``reconstruction.png`` / ``reconstruction_unaligned.png``: the final latent rendered aligned and
  through the alignment transform (with the PTI-tuned generator when ``--pti-steps`` > 0, in which case
  ``pivot.png`` / ``pivot_unaligned.png`` hold the encoder's renders);
- ``latent.npy``: float32 [num_ws, w_dim]; ``latents.npy``: [n_iters, num_ws, w_dim], one per iteration;
- ``metrics.json``: MSE, PSNR, MS-SSIM, LPIPS (null without LPIPS weights) and dlib identity
  similarity of the reconstruction against the aligned input and of the unaligned render against the
  crop, per-iteration pixel metrics, the transform, PTI losses and timings;
- ``generator_pti.safetensors`` with ``--save-generator`` (Charm Studio generator format).
"""

from __future__ import annotations

import argparse

COMMAND = "invert"
HELP = "Align a face and invert it into the generator's latent space (ReStyle, optional PTI)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="photo to read (JPEG, PNG, WebP, BMP, TIFF)")
    parser.add_argument(
        "--model",
        required=True,
        help="inverter checkpoint (restyle_pSp_ffhq.pt, restyle_e4e_ffhq.pt or a Charm Studio "
        "inverter .safetensors) or a model bundle ('demo', folder or manifest.json)",
    )
    parser.add_argument("--out", required=True, help="folder to write the results into")
    parser.add_argument("--iters", type=int, default=3, help="ReStyle iterations (default 3)")
    parser.add_argument(
        "--pti-steps",
        type=int,
        default=0,
        metavar="N",
        help="pivotal tuning steps after inversion (default 0: no PTI; the paper uses 350)",
    )
    parser.add_argument("--pti-lr", type=float, default=3e-4, help="PTI learning rate (default 3e-4)")
    parser.add_argument(
        "--pti-target",
        choices=("aligned", "crop"),
        default="aligned",
        help="tune on the aligned face (default) or on the unaligned crop through its transform",
    )
    parser.add_argument(
        "--save-generator", action="store_true", help="also write the PTI-tuned generator as generator_pti.safetensors"
    )
    parser.add_argument(
        "--face",
        type=int,
        default=None,
        metavar="N",
        help="which face to use when there are several, 0 = largest (default)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--no-identity", action="store_true", help="skip the dlib identity metric")


def _to_tensor(rgb, device):
    import numpy as np
    import torch

    return (
        torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).to(device, torch.float32) / 127.5 - 1
    )


def _load_model(spec: str, device):
    """(inverter, generator) from an inverter file or a bundle."""
    from pathlib import Path

    from engine.errors import CheckpointError

    p = Path(spec)
    is_bundle = spec == "demo" or p.is_dir() or p.name == "manifest.json"
    if is_bundle:
        try:
            from engine.models import inverter_for, load_bundle
        except ImportError:
            raise CheckpointError(
                f"'{spec}' is a model bundle, but bundles are not supported by this installation; pass an inverter file"
            ) from None
        bundle = load_bundle(spec, device=device)
        return inverter_for(bundle), bundle.generator
    from engine.inversion import load_inverter

    inv = load_inverter(p, device=device)
    return inv, inv.generator


def _clean(d):
    import math

    if isinstance(d, dict):
        return {k: _clean(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_clean(v) for v in d]
    if isinstance(d, float) and not math.isfinite(d):
        return None if math.isnan(d) else ("inf" if d > 0 else "-inf")
    return d


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    import time
    import warnings
    from pathlib import Path

    import numpy as np
    import torch

    from engine.align import align_face
    from engine.imageio import write_image
    from engine.inversion import tune_generator
    from engine.losses import LPIPSUnavailableWarning, PerceptualLoss
    from engine.metrics import compute_metrics

    if args.iters < 1:
        print("error: --iters must be at least 1", file=sys.stderr)
        return 2
    if args.pti_steps < 0:
        print("error: --pti-steps must be 0 or more", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    inverter, G = _load_model(args.model, device)
    times["load_s"] = time.perf_counter() - t0
    res_px = int(G.img_resolution)

    t0 = time.perf_counter()
    face = align_face(args.input, size=res_px, face_index=args.face)
    times["align_s"] = time.perf_counter() - t0
    aligned = _to_tensor(face.aligned, device)
    crop = _to_tensor(face.crop, device)
    transform = face.transform.to(device)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def status(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    result = inverter.invert(
        aligned, n_iters=args.iters, transform=transform, progress=lambda i, n: status(f"inversion {i}/{n}")
    )
    times["invert_s"] = time.perf_counter() - t0
    latent = result.latent
    with torch.no_grad():
        pivot_aligned = (
            result.images[-1] if result.images else G.synthesis(latent, transform=torch.eye(3, device=device))
        )
        pivot_unaligned = result.unaligned if result.unaligned is not None else G.synthesis(latent, transform=transform)

    with warnings.catch_warnings():
        # The fallback warning is reported once in metrics.json instead.
        warnings.simplefilter("ignore", LPIPSUnavailableWarning)
        perceptual = PerceptualLoss("alex", device=device, resize=256)

    final_G = G
    pti_info = None
    if args.pti_steps > 0:
        target, t = (aligned, None) if args.pti_target == "aligned" else (crop, transform)
        t0 = time.perf_counter()
        step_every = max(1, args.pti_steps // 10)
        pti = tune_generator(
            G,
            target,
            latent,
            transform=t,
            steps=args.pti_steps,
            lr=args.pti_lr,
            perceptual=perceptual,
            progress=lambda i, n: status(f"PTI {i}/{n}") if i % step_every == 0 or i == n else None,
        )
        times["pti_s"] = time.perf_counter() - t0
        final_G = pti.generator
        pti_info = {
            "steps": pti.steps,
            "stopped_early": pti.stopped_early,
            "target": args.pti_target,
            "lr": args.pti_lr,
            "loss_first": pti.losses[0] if pti.losses else None,
            "loss_last": pti.losses[-1] if pti.losses else None,
            "l2_first": pti.l2[0] if pti.l2 else None,
            "l2_last": pti.l2[-1] if pti.l2 else None,
        }
        if args.save_generator:
            from engine.checkpoints import save_generator

            save_generator(final_G, out / "generator_pti.safetensors", source=Path(args.input).name)

    with torch.no_grad():
        if final_G is G:
            recon, recon_un = pivot_aligned, pivot_unaligned
        else:
            recon = final_G.synthesis(latent, transform=torch.eye(3, device=device))
            recon_un = final_G.synthesis(latent, transform=transform)

    t0 = time.perf_counter()
    identity = not args.no_identity
    metrics = {
        "model": str(args.model),
        "kind": getattr(inverter, "kind", type(inverter).__name__),
        "resolution": res_px,
        "iterations": len(result.latents),
        "lpips_available": perceptual.is_lpips,
        "transform": face.transform.double().numpy().tolist(),
        "angle_deg": face.angle_deg,
        "tx": face.tx,
        "ty": face.ty,
        "aligned": compute_metrics(recon, aligned, perceptual=perceptual, identity=identity),
        "unaligned": compute_metrics(recon_un, crop, perceptual=perceptual, identity=identity),
        "per_iteration": [
            compute_metrics(img, aligned, perceptual=perceptual, identity=False) for img in result.images
        ],
    }
    if pti_info is not None:
        metrics["pivot_aligned"] = compute_metrics(pivot_aligned, aligned, perceptual=perceptual, identity=identity)
        metrics["pivot_unaligned"] = compute_metrics(pivot_unaligned, crop, perceptual=perceptual, identity=identity)
        metrics["pti"] = pti_info
    times["metrics_s"] = time.perf_counter() - t0
    metrics["timings"] = times

    write_image(out / "aligned.png", aligned[0])
    write_image(out / "crop.png", crop[0])
    write_image(out / "reconstruction.png", recon[0])
    write_image(out / "reconstruction_unaligned.png", recon_un[0])
    if pti_info is not None:
        write_image(out / "pivot.png", pivot_aligned[0])
        write_image(out / "pivot_unaligned.png", pivot_unaligned[0])
    np.save(out / "latent.npy", latent[0].detach().cpu().numpy().astype(np.float32))
    np.save(out / "latents.npy", torch.stack([w[0] for w in result.latents]).detach().cpu().numpy().astype(np.float32))
    (out / "metrics.json").write_text(json.dumps(_clean(metrics), indent=1) + "\n")

    a = metrics["aligned"]
    print(
        f"{metrics['kind']}, {metrics['iterations']} iteration(s){', PTI ' + str(pti_info['steps']) + ' steps' if pti_info else ''}: "
        f"MSE {a['mse']:.4f}, PSNR {a['psnr']:.2f} dB, MS-SSIM {a['ms_ssim']:.3f} -> {out}"
    )
    return 0
