"""Benchmark: how long face alignment takes on this CPU (target: <= 0.4 s for a 1024x1024 photo).

Plain script, prints a table::

    python3 bench/align.py [--faces ../shared/faces] [--repeat 5]

Rows: one-time model loading, then per-photo steps (decode, detect + landmarks, the two warps, the whole
``align_face`` from a file path), a 4000x3000 photo, and ``paste_back`` of a 1024 crop. Times are
medians over ``--repeat`` runs, after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _timing import median_times  # noqa: E402 (bench/ is the script's folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", default=str(ROOT.parent / "shared" / "faces"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    photos = sorted(Path(args.faces).glob("face_*.jpg")) + sorted(Path(args.faces).glob("ffhq_*.jpg"))
    if not photos:
        print(f"no face photos in {args.faces}", file=sys.stderr)
        return 1

    import cv2
    import numpy as np

    from engine import align as A
    from engine.faces import load_face_models
    from engine.imageio import load_image

    t = time.perf_counter()
    load_face_models()
    load_s = time.perf_counter() - t

    rows: list[tuple[str, str, float, float, float]] = []
    totals = []
    for path in photos:
        rgb = load_image(path)
        face = A.align_face(rgb)
        size = f"{rgb.shape[1]}x{rgb.shape[0]}"
        rows.append((f"{path.name}: decode", size, *median_times(lambda: load_image(path), args.repeat)))
        rows.append((f"{path.name}: detect + landmarks", size, *median_times(lambda: A.detect_faces(rgb), args.repeat)))
        rows.append(
            (
                f"{path.name}: 2 warps to 1024",
                size,
                *median_times(
                    lambda: (A.warp_quad(rgb, face.quad, 1024), A.warp_quad(rgb, face.crop_quad, 1024)), args.repeat
                ),
            )
        )
        timing = median_times(lambda: A.align_face(path), args.repeat)
        rows.append((f"{path.name}: align_face(path)", size, *timing))
        totals.append(timing[0])

    base = load_image(photos[0])
    m = np.float64([[1.5, 0.0, 1800.0], [0.0, 1.5, 800.0]])
    large = cv2.warpAffine(base, m, (4000, 3000), borderMode=cv2.BORDER_REPLICATE)
    rows.append(
        ("large photo: align_face(array)", "4000x3000", *median_times(lambda: A.align_face(large), args.repeat))
    )
    face = A.align_face(base)
    rows.append(
        (
            "paste_back 1024 crop",
            f"{base.shape[1]}x{base.shape[0]}",
            *median_times(lambda: A.paste_back(base, face.crop, face.crop_quad), args.repeat),
        )
    )

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"alignment benchmark ({os.cpu_count()} CPU cores, load average {load:.1f}, cv2 threads "
        f"{cv2.getNumThreads()}, median of {args.repeat} after a warm-up)"
    )
    print(f"one-time model load: {load_s:.3f} s")
    width = max(len(r[0]) for r in rows)
    print(f"{'step'.ljust(width)}  {'input':>9}  {'median s':>8}  {'max s':>7}  {'CPU s':>6}")
    for name, size, med, worst, cpu in rows:
        print(f"{name.ljust(width)}  {size:>9}  {med:8.3f}  {worst:7.3f}  {cpu:6.3f}")
    verdict = "OK" if max(totals) <= 0.4 else "OVER TARGET"
    print(
        f"align_face on 1024x1024 photos: median {statistics.median(totals):.3f} s, "
        f"slowest photo {max(totals):.3f} s (target <= 0.4 s): {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
