"""Benchmark: slider release -> updated image in the studio window (target: <= 0.3 s median with the
demo model on CPU).

Plain script, prints a table::

    python3 bench/gui_latency.py [--model demo|random|FOLDER] [--moves 50] [--threads N]

The real window runs on Qt's offscreen platform with a photo inverted. For each kind of control
(a direction slider, a StyleSpace channel, the shift-x slider, the rotation dial) it makes ``--moves``
moves: press the handle, move it, release it, and times from the move until the render for the new
value has been painted on the canvas. Columns: median, 90th percentile and worst release -> image,
and the median time the worker spent rendering (the rest is queueing, transfer and painting).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_PHOTO = ROOT.parent / "shared" / "faces" / "face_a.jpg"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="'demo', 'random' or a bundle folder (default: as the app)")
    ap.add_argument("--photo", default=str(DEFAULT_PHOTO))
    ap.add_argument("--moves", type=int, default=50)
    ap.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: the app's, all cores but one)"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from tools.screenshot import StudioDriver

    studio = StudioDriver(model=args.model, size=(1400, 860), threads=args.threads, timeout=300.0, poll_ms=1)
    win = studio.win
    studio.wait_for_model()
    t0 = time.perf_counter()
    studio.open_photo(args.photo)
    first = time.perf_counter() - t0

    rng = random.Random(args.seed)
    style = win.style_panel
    style.target.setCurrentIndex(0)
    style.layer.setCurrentIndex(min(2, style.layer.count() - 1))
    direction = next(iter(win.directions_panel.sliders.values()), None)
    controls = []
    if direction is not None:
        controls.append((f"direction '{direction.name}'", direction.slider))
    controls += [
        ("StyleSpace channel", style.slider.slider),
        ("shift x", win.transform_panel.tx.slider),
        ("rotation dial", win.transform_panel.dial),
    ]

    rows = []
    for name, slider in controls:
        lat, work = [], []
        for _ in range(args.moves):
            value = slider.value()
            while value == slider.value():
                value = rng.randint(slider.minimum(), slider.maximum())
            slider.setSliderDown(True)
            t = time.perf_counter()
            slider.setValue(value)
            slider.setSliderDown(False)
            studio.wait_for(studio.shown, f"the render after moving {name}")
            lat.append(time.perf_counter() - t)
            work.append(win.last_render.seconds)
        lat.sort()
        rows.append((name, statistics.median(lat), lat[int(0.9 * (len(lat) - 1))], lat[-1], statistics.median(work)))

    import torch

    b = win.bundle
    print(
        f"model: {b.title} ({b.resolution} px, {b.num_ws} ws, w_dim {b.w_dim}); device {b.device}; "
        f"torch threads {torch.get_num_threads()}; {args.moves} moves per control; "
        f"photo {Path(args.photo).name} dropped -> first result {first:.2f} s"
    )
    print(f"{'control':<26}{'median':>10}{'p90':>10}{'max':>10}{'render':>10}   (seconds, release -> image)")
    for name, med, p90, worst, render in rows:
        print(f"{name:<26}{med:>10.3f}{p90:>10.3f}{worst:>10.3f}{render:>10.3f}")
    overall = statistics.median([r[1] for r in rows])
    print(
        f"{'all controls (median)':<26}{overall:>10.3f}   target <= 0.300 with the demo model: "
        f"{'met' if overall <= 0.3 else 'NOT met'}"
    )
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
