"""``python main.py invert PHOTO --model MODEL --out DIR``: align a face, invert it, optionally run PTI.

MODEL names a model as every command does (:mod:`engine.model_store`): 'demo', a known name, a bundle
folder, or a model file (an encoder ``.pt``/``.safetensors``; a generator alone inverts by optimisation).
What is written into DIR: :mod:`engine.photo_report`.
"""

from __future__ import annotations

import argparse
import time

from engine.cli._options import add_device_option, add_face_option, add_model_option, check_out_dir, resolve_device

COMMAND = "invert"
HELP = "Align a face and invert it into the generator's latent space (ReStyle, optional PTI)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="photo to read (JPEG, PNG, WebP, BMP, TIFF)")
    add_model_option(parser, "the model (with an encoder it inverts in a few passes; a generator alone optimises)")
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
    add_face_option(parser, "use")
    add_device_option(parser, "cpu")
    parser.add_argument("--no-identity", action="store_true", help="skip the dlib identity metric")


def run(args: argparse.Namespace) -> int:
    import sys

    from engine.jobs import run_in_terminal
    from engine.photo_report import InvertSettings, invert_photo, load_inverter_spec, write_photo_inversion

    if args.iters < 1:
        print("error: --iters must be at least 1", file=sys.stderr)
        return 2
    if args.pti_steps < 0:
        print("error: --pti-steps must be 0 or more", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    check_out_dir(args.out)
    settings = InvertSettings(
        iters=args.iters,
        face_index=args.face,
        pti_steps=args.pti_steps,
        pti_lr=args.pti_lr,
        pti_target=args.pti_target,
        identity=not args.no_identity,
    )
    t0 = time.perf_counter()
    inverter = run_in_terminal(lambda ctl: load_inverter_spec(args.model, device, download=args.download, ctl=ctl))
    load_s = time.perf_counter() - t0
    result = run_in_terminal(lambda ctl: invert_photo(args.input, inverter, settings, ctl, device=device))
    result.metrics["timings"]["load_s"] = load_s
    out = write_photo_inversion(result, args.out, {"model": str(args.model)}, save_generator=args.save_generator)
    m = result.metrics
    a = m["aligned"]
    pti = f", PTI {m['pti']['steps']} steps" if "pti" in m else ""
    print(
        f"{m['kind']}, {m['iterations']} iteration(s){pti}: MSE {a['mse']:.4f}, PSNR {a['psnr']:.2f} dB, "
        f"MS-SSIM {a['ms_ssim']:.3f} -> {out}"
    )
    return 0
