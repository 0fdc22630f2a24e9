"""Acceptance check of the synthetic face renderer against real dlib.

Renders N random unaligned faces (roll uniform in [-25, 25] degrees, shift and zoom from the pose
factors), runs dlib's HOG frontal face detector and its 68-landmark predictor, and prints:

- detection rate: the fraction of renders where dlib finds a face whose box contains the centre of the
  renderer's landmarks;
- landmark error of dlib's eye (36-47) and mouth (48-67) points against the renderer's own: per image the
  mean point distance divided by the face size, then the median (and 90th percentile) over images.
  Face size = sqrt(width * height) of the bounding box of the renderer's 68 landmarks.

Usage: python3 tools/measure_renderer.py [--n 500] [--size 256] [--upsample 1] [--seed 0] [--aligned] [--speed]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from factory.synthetic import ROLL_DEGREES, render, sample_factors  # noqa: E402


def predictor_path() -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("face_recognition_models is not installed (it holds dlib's landmark model)")
    return spec.submodule_search_locations[0] + "/models/shape_predictor_68_face_landmarks.dat"


def face_size(lm: np.ndarray) -> float:
    """sqrt(w * h) of the landmark bounding box (float [68,2] -> pixels)."""
    w, h = lm.max(axis=0) - lm.min(axis=0)
    return float(np.sqrt(w * h))


def measure(images: np.ndarray, landmarks: np.ndarray, upsample: int = 1) -> dict[str, np.ndarray]:
    """Run dlib on renders; per image: detected (bool [N]), eye+mouth / eyes / mouth errors (float [N],
    nan where undetected) as fractions of :func:`face_size`."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(predictor_path())
    n = len(images)
    out = {k: np.full(n, np.nan) for k in ("eyes_mouth", "eyes", "mouth", "all", "eyes_mouth_iod")}
    out["detected"] = np.zeros(n, dtype=bool)
    for i in range(n):
        img = np.ascontiguousarray(images[i])
        lm = landmarks[i]
        centre = lm.mean(axis=0)
        best = None
        for r in detector(img, upsample):
            if r.left() <= centre[0] <= r.right() and r.top() <= centre[1] <= r.bottom():
                if best is None or r.area() > best.area():
                    best = r
        if best is None:
            continue
        out["detected"][i] = True
        shape = predictor(img, best)
        pred = np.array([[shape.part(k).x, shape.part(k).y] for k in range(68)], dtype=np.float64)
        err = np.hypot(*(pred - lm).T) / face_size(lm)
        out["eyes_mouth"][i] = err[36:68].mean()
        out["eyes"][i] = err[36:48].mean()
        out["mouth"][i] = err[48:68].mean()
        out["all"][i] = err.mean()
        iod = np.hypot(*(lm[45] - lm[36]))  # outer eye corners, the 300-W normalisation
        out["eyes_mouth_iod"][i] = (err[36:68] * face_size(lm) / iod).mean()
    return out


def render_speed(
    sizes: tuple[int, ...] = (64, 256), n: int = 40, seed: int = 0, aligned: bool = False
) -> dict[int, float]:
    """CPU milliseconds per render on one thread (best of 3 batches of ``n``)."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        f = sample_factors(n, seed=seed)
        out = {}
        for size in sizes:
            best = float("inf")
            for _ in range(3):
                t0 = time.process_time()
                render(f, size, aligned=aligned)
                best = min(best, (time.process_time() - t0) / n)
            out[size] = 1000 * best
        return out
    finally:
        cv2.setNumThreads(threads)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--upsample", type=int, default=1, help="dlib detector upsampling (1 for 256 px)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aligned", action="store_true", help="measure aligned renders instead")
    ap.add_argument("--speed", action="store_true", help="also time single-thread renders at 64 and 256 px")
    ap.add_argument("--save-failures", type=Path, default=None, help="folder for undetected renders")
    args = ap.parse_args(argv)

    factors = sample_factors(args.n, seed=args.seed)
    t0 = time.perf_counter()
    images, landmarks, labels = render(factors, args.size, aligned=args.aligned)
    t_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = measure(images, landmarks, args.upsample)
    t_dlib = time.perf_counter() - t0

    det = res["detected"]
    roll = labels["roll"] * ROLL_DEGREES
    print(
        f"renders: {args.n} at {args.size} px, {'aligned' if args.aligned else 'unaligned'}, "
        f"roll in [{roll.min():.1f}, {roll.max():.1f}] deg, seed {args.seed}"
    )
    print(
        f"render time: {1000 * t_render / args.n:.1f} ms/image; dlib: {1000 * t_dlib / args.n:.1f} ms/image "
        f"(upsample {args.upsample})"
    )
    print(f"detection rate: {det.mean():.4f} ({det.sum()}/{args.n})")
    print("landmark error / face size (face size = sqrt(w*h) of the 68-landmark box), over detected faces:")
    for k in ("eyes_mouth", "eyes", "mouth", "all"):
        v = res[k][det]
        if len(v):
            print(f"  {k:10s} median {np.median(v):.4f}  p90 {np.percentile(v, 90):.4f}")
    v = res["eyes_mouth_iod"][det]
    if len(v):
        print(f"  (eyes_mouth normalised by the outer-eye-corner distance instead: median {np.median(v):.4f})")
    if args.speed:
        for al in (True, False):
            ms = render_speed(aligned=al)
            print(
                f"render speed ({'aligned' if al else 'unaligned'}), one thread, CPU time per image: "
                + ", ".join(f"{s} px {t:.1f} ms" for s, t in ms.items())
            )
    if args.save_failures is not None and (~det).any():
        import cv2

        args.save_failures.mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(~det):
            cv2.imwrite(str(args.save_failures / f"miss_{i:04d}.png"), images[i][..., ::-1])
        print(f"saved {int((~det).sum())} undetected renders to {args.save_failures}")
    ok = det.mean() >= 0.98 and len(res["eyes_mouth"][det]) and np.median(res["eyes_mouth"][det]) <= 0.02
    print("acceptance (>= 98% detected, median eye+mouth error <= 2%):", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
