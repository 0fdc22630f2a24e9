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
from factory.synthetic import ROLL_DEGREES, Factors, render, sample_factors  # noqa: E402
from factory.training.common import factors_to_z, latent_labels  # noqa: E402

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


def met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def report(line: str, criterion: str, ok: bool) -> None:
    """Print a result line followed by its acceptance criterion and whether it is met."""
    print(f"{line}  ({criterion}: {met(ok)})")


def held_out(n: int, k: int, size: int) -> tuple[Factors, torch.Tensor, Factors]:
    """``n`` faces no trainer saw (seed ``HELD_OUT_SEED + k``): their factors, their aligned renders
    (float32 [n,3,size,size] in [-1,1]) and the renders' labels."""
    f = sample_factors(n, seed=HELD_OUT_SEED + k)
    images, _, labels = render(f, size, aligned=True)
    return f, from_uint8(images), labels


class Bundle:
    """The bundle under test and what every check reads from it."""

    def __init__(self, name: str) -> None:
        from engine.models import load_bundle

        b = load_bundle(name)
        self.folder, self.directions = b.folder, b.directions
        self.G, self.P, self.inv = b.generator.eval(), b.predictor, b.inverter
        self.R = self.G.img_resolution
        self.span = self.P.high - self.P.low
        self.attrs = self.P.attributes
        # Columns of the directions' attributes (smile, age, ...): "the other attributes" of the edit check.
        self.edit_cols = [self.attrs.index(d.attribute) for d in b.directions.values() if d.attribute in self.attrs]


def check_generator(m: Bundle, args: argparse.Namespace) -> None:
    """dlib detection rate on samples; the predictor's factor means and spreads, samples vs renders."""
    from factory.training.directions import generate_samples

    G, P, R, span, attrs = m.G, m.P, m.R, m.span, m.attrs
    _, samples = generate_samples(G, args.n_samples, seed=HELD_OUT_SEED, batch=50, device=torch.device("cpu"))
    rate = dlib_detect_rate(to_uint8(samples))
    _, ref, ref_labels = held_out(args.n_samples, 1, R)
    s_pred = P.predict(samples)
    r_pred = P.predict(ref)
    mean_diff = (s_pred.mean(0) - r_pred.mean(0)).abs() / span
    std_ratio = s_pred.std(0) / r_pred.std(0).clamp_min(1e-6)
    std_diff = (s_pred.std(0) - r_pred.std(0)).abs() / span
    report(
        f"[generator] dlib detection on {args.n_samples} samples (psi 1, {R}->256 px): {100 * rate:.1f}%",
        ">= 90%",
        rate >= 0.9,
    )
    worst_m, worst_s = int(mean_diff.argmax()), int((std_ratio - 1).abs().argmax())
    ok = bool((mean_diff <= 0.15).all() and ((std_ratio - 1).abs() <= 0.15).all())
    report(
        f"[generator] predictor means: max |diff| {float(mean_diff.max()):.3f} of range ({attrs[worst_m]}); "
        f"spreads: ratio samples/renders {float(std_ratio.min()):.2f}..{float(std_ratio.max()):.2f} "
        f"(worst {attrs[worst_s]}), max |diff| {float(std_diff.max()):.3f} of range",
        "within 15%",
        ok,
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


def check_encoder(m: Bundle, args: argparse.Namespace) -> None:
    """Reconstruction of held-out aligned renders: PSNR and predicted-factor errors, and their floor."""
    G, P, span, attrs = m.G, m.P, m.span, m.attrs
    f, x, labels = held_out(args.n_aligned, 2, m.R)
    res = m.inv.invert(x, n_iters=3, batch_size=50)
    rec = res.images[-1]
    p = psnr(rec, x)
    true = torch.from_numpy(latent_labels(labels))
    p_rec, p_in = P.predict(rec), P.predict(x)
    # The encoder's own error: factors the predictor reads off the reconstruction against those it
    # reads off the input (the predictor's error on the input itself is the instrument's, shown too).
    err = (p_rec - p_in).abs().mean(0) / span
    err_true = (p_rec - true).abs().mean(0) / span
    err_in = (p_in - true).abs().mean(0) / span
    report(
        f"[encoder] {args.n_aligned} aligned renders, 3 iterations: PSNR median {float(p.median()):.2f} dB "
        f"(iterations: {', '.join(f'{float(psnr(im, x).median()):.2f}' for im in res.images)})",
        ">= 23 dB",
        bool(p.median() >= 23),
    )
    report(
        f"[encoder] predicted-factor error, reconstruction vs input: mean {float(err.mean()):.3f}, worst "
        f"{float(err.max()):.3f} of range ({attrs[int(err.argmax())]})",
        "<= 0.10 each",
        bool(err.max() <= 0.10),
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
    if m.edit_cols:
        print(
            "[encoder] editable attributes, reconstruction vs truth: "
            + ", ".join(f"{attrs[c]} {float(err_true[c]):.3f}" for c in m.edit_cols)
        )


def check_unaligned(m: Bundle, args: argparse.Namespace) -> None:
    """Unaligned renders (roll, shift): align -> invert -> render with the transform, PSNR against the crop."""
    from engine.align import align_face

    f = sample_factors(args.n_unaligned, seed=HELD_OUT_SEED + 3)
    f = f.replace(roll=f["roll"] * (20.0 / ROLL_DEGREES))  # roll +-20 deg; shift +-10% is tx, ty in [-1, 1]
    photos, _, _ = render(f, 256, aligned=False)
    vals, failed = [], 0
    for ph in photos:
        try:
            face = align_face(ph, size=m.R)
        except Exception:  # noqa: BLE001 - counted as a failure
            failed += 1
            continue
        r = m.inv.invert(from_uint8(face.aligned[None]), n_iters=3, transform=face.transform)
        vals.append(float(psnr(r.unaligned, from_uint8(face.crop[None]))[0]))
    med = float(np.median(vals)) if vals else float("nan")
    report(
        f"[unaligned] {args.n_unaligned} renders (roll +-20 deg, shift +-10%): aligned {len(vals)}, "
        f"failed {failed}; PSNR against the crop median {med:.2f} dB",
        ">= 20 dB",
        med >= 20,
    )


def check_directions(m: Bundle, args: argparse.Namespace) -> None:
    """Each direction's sweep over its range on inverted held-out faces: target and other attributes."""
    G, P, span, attrs = m.G, m.P, m.span, m.attrs
    _, x, _ = held_out(args.n_edit, 4, m.R)
    w = m.inv.invert(x, n_iters=3, batch_size=50, keep_images=False).latent
    all_ok = True
    # "The other attributes": the editable attributes of the other directions (smile, age, ...);
    # the mean over every other factor is printed as well (identity factors the predictor reads
    # poorly at this size add their own noise to it).
    for name, d in m.directions.items():
        col = attrs.index(d.attribute) if d.attribute in attrs else None
        if col is None:
            continue
        vec = d.vector.to(w)
        lo_s, hi_s = d.range
        lo = P.predict(G.synthesis(w + lo_s * vec))
        hi = P.predict(G.synthesis(w + hi_s * vec))
        ch = (hi - lo).abs().mean(0) / span
        tgt = float(((hi - lo)[:, col]).mean() / span[col])
        other_cols = [c for c in m.edit_cols if c != col]
        others = float(ch[other_cols].mean())
        worst_c = other_cols[int(ch[other_cols].argmax())]
        all_factors = float(torch.cat([ch[:col], ch[col + 1 :]]).mean())
        ok = tgt >= 0.4 and others <= 0.1
        all_ok &= ok
        print(
            f"[directions] {name:12s} range [{lo_s:+.2f}, {hi_s:+.2f}]: target {d.attribute} changes "
            f"{tgt:+.3f} of range; other attributes {others:.3f} on average (worst {attrs[worst_c]} "
            f"{float(ch[worst_c]):.3f}); all other factors {all_factors:.3f}  {met(ok)}"
        )
    print(f"[directions] all: {met(all_ok)}")


#: The sections of the report in order (``--skip`` names them).
CHECKS = {
    "generator": check_generator,
    "encoder": check_encoder,
    "unaligned": check_unaligned,
    "directions": check_directions,
}


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

    m = Bundle(args.bundle)
    t0 = time.time()
    print(f"bundle {m.folder} ({m.R} px, w_dim {m.G.w_dim}, num_ws {m.G.num_ws})")
    for name, check in CHECKS.items():
        if name not in skip:
            check(m, args)
            print(f"  ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
