"""Acceptance checks of the embedded demo model, measured with a bundle's shipped weights.

Prints, for ``--bundle`` (default: the demo bundle):

- generator: dlib face detection rate on ``--n-samples`` random samples (psi 1, upsampled to 256 px
  for dlib) and the predictor's factor means / spreads on samples against the renderer's (differences
  as fractions of each factor's range, and spreads as a ratio);
- encoder: on ``--n-aligned`` held-out aligned renders, 3-iteration reconstruction PSNR (median) and
  the predicted-factor error of the reconstruction (mean absolute difference between the predictor's
  factors on the reconstruction and on the input, as a fraction of each factor's range; the worst
  factor is printed; errors against the true factors are printed too), and the same for the
  generator's own image of each input's true latent (the floor any encoder can reach); on ``--n-unaligned`` unaligned
  renders (roll +-20 deg, shift +-10%) align -> invert -> render with the transform, PSNR against the
  aligner's crop (median);
- directions: on ``--n-edit`` inverted held-out faces, the change of each direction's target attribute
  between the two ends of its documented range (fraction of the attribute's range) and the mean change
  of the other directions' attributes (and, for reference, of all other factors).

Usage: python3 tools/measure_demo.py [--bundle demo] [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.imageio import from_uint8, to_uint8  # noqa: E402 - after the path setup

HELD_OUT_SEED = 900_001  # never used by a trainer (they seed per step from small seeds)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR [N] in dB of images in [-1,1] (peak-to-peak 2)."""
    mse = (a.clamp(-1, 1) - b.clamp(-1, 1)).square().mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return 10 * torch.log10(4.0 / mse)


def dlib_detect_rate(images: np.ndarray, size: int = 256, upsample: int = 1) -> float:
    """Fraction of uint8 [N,H,W,3] images where dlib's HOG detector finds a face (after resizing to size)."""
    import cv2
    import dlib

    det = dlib.get_frontal_face_detector()
    hits = 0
    for im in images:
        big = cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC)
        hits += len(det(np.ascontiguousarray(big), upsample)) > 0
    return hits / len(images)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="demo")
    ap.add_argument("--n-samples", type=int, default=500)
    ap.add_argument("--n-aligned", type=int, default=200)
    ap.add_argument("--n-unaligned", type=int, default=100)
    ap.add_argument("--n-edit", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="a fifth of every count (a smoke run)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: generator,encoder,unaligned,directions")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        for k in ("n_samples", "n_aligned", "n_unaligned", "n_edit"):
            setattr(args, k, max(10, getattr(args, k) // 5))
    skip = set(filter(None, args.skip.split(",")))

    from engine.models import load_bundle
    from factory.synthetic import ROLL_DEGREES, render, sample_factors
    from factory.training.common import factors_to_z, latent_labels
    from factory.training.directions import generate_samples

    b = load_bundle(args.bundle)
    G, P, inv = b.generator.eval(), b.predictor, b.inverter
    R = G.img_resolution
    span = P.high - P.low
    attrs = P.attributes
    # Columns of the directions' attributes (smile, age, ...): "the other attributes" of the edit check.
    edit_cols = [attrs.index(d.attribute) for d in b.directions.values() if d.attribute in attrs]
    t0 = time.time()
    print(f"bundle {b.folder} ({R} px, w_dim {G.w_dim}, num_ws {G.num_ws})")

    if "generator" not in skip:
        _, samples = generate_samples(G, args.n_samples, seed=HELD_OUT_SEED, batch=50, device=torch.device("cpu"))
        rate = dlib_detect_rate(to_uint8(samples))
        ref_f = sample_factors(args.n_samples, seed=HELD_OUT_SEED + 1)
        ref_images, _, ref_labels = render(ref_f, R, aligned=True)
        s_pred = P.predict(samples)
        r_pred = P.predict(from_uint8(ref_images))
        mean_diff = (s_pred.mean(0) - r_pred.mean(0)).abs() / span
        std_ratio = s_pred.std(0) / r_pred.std(0).clamp_min(1e-6)
        std_diff = (s_pred.std(0) - r_pred.std(0)).abs() / span
        print(
            f"[generator] dlib detection on {args.n_samples} samples (psi 1, {R}->256 px): {100 * rate:.1f}%  "
            f"(>= 90%: {'MET' if rate >= 0.9 else 'NOT MET'})"
        )
        worst_m, worst_s = int(mean_diff.argmax()), int((std_ratio - 1).abs().argmax())
        ok = bool((mean_diff <= 0.15).all() and ((std_ratio - 1).abs() <= 0.15).all())
        print(
            f"[generator] predictor means: max |diff| {float(mean_diff.max()):.3f} of range ({attrs[worst_m]}); "
            f"spreads: ratio samples/renders {float(std_ratio.min()):.2f}..{float(std_ratio.max()):.2f} "
            f"(worst {attrs[worst_s]}), max |diff| {float(std_diff.max()):.3f} of range  "
            f"(within 15%: {'MET' if ok else 'NOT MET'})"
        )
        # For reference: the same check over the factors the predictor can read off renders at all
        # (correlation with the true factor >= 0.5); the others (e.g. clothes, out of the crop) have
        # near-constant predictions whose spread ratio is noise.
        true = torch.from_numpy(latent_labels(ref_labels))
        corr = torch.stack([torch.corrcoef(torch.stack([r_pred[:, i], true[:, i]]))[0, 1] for i in range(len(attrs))])
        readable = corr.nan_to_num(0) >= 0.5
        bad = (mean_diff > 0.15) | ((std_ratio - 1).abs() > 0.15)
        print(
            f"[generator] factors outside 15%: {int(bad.sum())} of {len(attrs)}; among the {int(readable.sum())} the "
            f"predictor reads (r >= 0.5 on renders): {int((bad & readable).sum())} "
            f"({', '.join(a for a, b in zip(attrs, (bad & readable).tolist()) if b)})"
        )
        print(f"  ({time.time() - t0:.0f} s)")

    if "encoder" not in skip:
        f = sample_factors(args.n_aligned, seed=HELD_OUT_SEED + 2)
        images, _, labels = render(f, R, aligned=True)
        x = from_uint8(images)
        res = inv.invert(x, n_iters=3, batch_size=50)
        rec = res.images[-1]
        p = psnr(rec, x)
        true = torch.from_numpy(latent_labels(labels))
        p_rec, p_in = P.predict(rec), P.predict(x)
        # The encoder's own error: factors the predictor reads off the reconstruction against those it
        # reads off the input (the predictor's error on the input itself is the instrument's, shown too).
        err = (p_rec - p_in).abs().mean(0) / span
        err_true = (p_rec - true).abs().mean(0) / span
        err_in = (p_in - true).abs().mean(0) / span
        print(
            f"[encoder] {args.n_aligned} aligned renders, 3 iterations: PSNR median {float(p.median()):.2f} dB "
            f"(iterations: {', '.join(f'{float(psnr(im, x).median()):.2f}' for im in res.images)})  "
            f"(>= 23 dB: {'MET' if p.median() >= 23 else 'NOT MET'})"
        )
        print(
            f"[encoder] predicted-factor error, reconstruction vs input: mean {float(err.mean()):.3f}, worst "
            f"{float(err.max()):.3f} of range ({attrs[int(err.argmax())]})  "
            f"(<= 0.10 each: {'MET' if err.max() <= 0.10 else 'NOT MET'})"
        )
        print(
            f"[encoder] against the true factors: reconstruction mean {float(err_true.mean()):.3f}, worst "
            f"{float(err_true.max()):.3f} ({attrs[int(err_true.argmax())]}); the predictor on the inputs "
            f"themselves: mean {float(err_in.mean()):.3f}, worst {float(err_in.max()):.3f} "
            f"({attrs[int(err_in.argmax())]})"
        )
        # The floor for any encoder: the generator's own image of each input's true latent.
        with torch.no_grad():
            z_true = torch.from_numpy(factors_to_z(f)).float()
            own = torch.cat([G(z_true[i : i + 50]) for i in range(0, len(z_true), 50)])
        err_own = (P.predict(own) - p_in).abs().mean(0) / span
        print(
            f"[encoder] floor, the generator's image of the true latent (no encoder) vs input: PSNR median "
            f"{float(psnr(own, x).median()):.2f} dB, predicted-factor error mean {float(err_own.mean()):.3f}, "
            f"worst {float(err_own.max()):.3f} ({attrs[int(err_own.argmax())]}); "
            f"{int((err_own > 0.10).sum())} factors above 0.10"
        )
        if edit_cols:
            print(
                "[encoder] editable attributes, reconstruction vs truth: "
                + ", ".join(f"{attrs[c]} {float(err_true[c]):.3f}" for c in edit_cols)
            )
        print(f"  ({time.time() - t0:.0f} s)")

    if "unaligned" not in skip:
        from engine.align import align_face

        f = sample_factors(args.n_unaligned, seed=HELD_OUT_SEED + 3)
        f = f.replace(roll=f["roll"] * (20.0 / ROLL_DEGREES))  # roll +-20 deg; shift +-10% is tx, ty in [-1, 1]
        photos, _, _ = render(f, 256, aligned=False)
        vals, failed = [], 0
        for ph in photos:
            try:
                face = align_face(ph, size=R)
            except Exception:  # noqa: BLE001 - counted as a failure
                failed += 1
                continue
            r = inv.invert(from_uint8(face.aligned[None]), n_iters=3, transform=face.transform)
            vals.append(float(psnr(r.unaligned, from_uint8(face.crop[None]))[0]))
        med = float(np.median(vals)) if vals else float("nan")
        print(
            f"[unaligned] {args.n_unaligned} renders (roll +-20 deg, shift +-10%): aligned {len(vals)}, "
            f"failed {failed}; PSNR against the crop median {med:.2f} dB  "
            f"(>= 20 dB: {'MET' if med >= 20 else 'NOT MET'})"
        )
        print(f"  ({time.time() - t0:.0f} s)")

    if "directions" not in skip:
        f = sample_factors(args.n_edit, seed=HELD_OUT_SEED + 4)
        images, _, _ = render(f, R, aligned=True)
        w = inv.invert(from_uint8(images), n_iters=3, batch_size=50, keep_images=False).latent
        all_ok = True
        # "The other attributes": the editable attributes of the other directions (smile, age, ...);
        # the mean over every other factor is printed as well (identity factors the predictor reads
        # poorly at this size add their own noise to it).
        for name, d in b.directions.items():
            col = attrs.index(d.attribute) if d.attribute in attrs else None
            if col is None:
                continue
            vec = d.vector.to(w)
            lo_s, hi_s = d.range
            lo = P.predict(G.synthesis(w + lo_s * vec))
            hi = P.predict(G.synthesis(w + hi_s * vec))
            ch = (hi - lo).abs().mean(0) / span
            tgt = float(((hi - lo)[:, col]).mean() / span[col])
            other_cols = [c for c in edit_cols if c != col]
            others = float(ch[other_cols].mean())
            worst_c = other_cols[int(ch[other_cols].argmax())]
            all_factors = float(torch.cat([ch[:col], ch[col + 1 :]]).mean())
            ok = tgt >= 0.4 and others <= 0.1
            all_ok &= ok
            print(
                f"[directions] {name:12s} range [{lo_s:+.2f}, {hi_s:+.2f}]: target {d.attribute} changes "
                f"{tgt:+.3f} of range; other attributes {others:.3f} on average (worst {attrs[worst_c]} "
                f"{float(ch[worst_c]):.3f}); all other factors {all_factors:.3f}  {'MET' if ok else 'NOT MET'}"
            )
        print(f"[directions] all: {'MET' if all_ok else 'NOT MET'}  ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
