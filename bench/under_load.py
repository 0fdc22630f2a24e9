"""Benchmark: how much the reference and the fast kernel paths slow down when another job shares the CPU.

Plain script, prints a table::

    python3 bench/under_load.py [--configs T256] [--impls ref,fast] [--loads torch,busy] [--repeat 3]

Each case (config x path) runs in a child process (bench/generator.py's case runner: same random
weights and latents), first on the idle machine, then while a competing load runs:

- ``torch``: another process multiplying 1024x1024 matrices in a loop with 2 torch threads (a second
  render or training job);
- ``busy``: two pure-Python busy loops (a compile, a browser tab, a video decode).

The table gives the median synthesis time of ``--repeat`` forward passes (after one warm-up) and the
slow-down factor k = loaded / idle. The speed issue's target: the fast path's k is at most the
reference path's k under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent

LOADS = {
    "torch": [
        [
            sys.executable,
            "-c",
            "import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\n"
            "while True:\n    a = (a @ a).clamp_(-1, 1)",
        ]
    ],
    "busy": [[sys.executable, "-c", "while True:\n    pass"]] * 2,
}


def run_case(cfg: str, impl: str, repeat: int, threads: int, out: str, spincount: str | None) -> list[float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if spincount is not None:  # else the studio's setting (engine/openmp.py), applied by generator.py
        env["GOMP_SPINCOUNT"] = spincount
    cmd = [
        sys.executable,
        str(ROOT / "generator.py"),
        "--repeat",
        str(repeat + 1),
        "--threads",
        str(threads),
        "--_case",
        f"{cfg}:1:{impl}:{out}:0",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    times = json.loads(proc.stdout.strip().splitlines()[-1])["times"]
    return times[1:]  # the first pass warms up


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="T256")
    ap.add_argument("--impls", default="ref,fast")
    ap.add_argument("--loads", default="torch,busy")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--spincount",
        default=None,
        help="GOMP_SPINCOUNT for the timed processes (default: the studio's, engine/openmp.py; "
        "300000 is GNU OpenMP's own default)",
    )
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "img.npy")
        for cfg in args.configs.split(","):
            for impl in args.impls.split(","):
                case = (cfg, impl, args.repeat, args.threads, out, args.spincount)
                idle = statistics.median(run_case(*case))
                row = {"config": cfg, "impl": impl, "idle": idle, "load_avg_idle": os.getloadavg()[0]}
                for load in args.loads.split(","):
                    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for cmd in LOADS[load]]
                    try:
                        time.sleep(1.0)
                        row[load] = statistics.median(run_case(*case))
                    finally:
                        for p in procs:
                            p.kill()
                            p.wait()
                    time.sleep(1.0)
                rows.append(row)
                print(json.dumps(row), flush=True)

    loads = args.loads.split(",")
    print()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, {args.threads} threads, batch 1, "
        f"median of {args.repeat}, GOMP_SPINCOUNT {args.spincount or 'the studio default'}"
    )
    print("| config | kernels | idle (s) | " + " | ".join(f"{ld} load (s) | k ({ld})" for ld in loads) + " |")
    print("|---|---|---:|" + "---:|---:|" * len(loads))
    for r in rows:
        cells = " | ".join(f"{r[ld]:.2f} | {r[ld] / r['idle']:.2f}" for ld in loads)
        print(f"| {r['config']} | {r['impl']} | {r['idle']:.2f} | {cells} |")
    by = {(r["config"], r["impl"]): r for r in rows}
    for cfg in args.configs.split(","):
        ref, fast = by.get((cfg, "ref")), by.get((cfg, "fast"))
        if ref and fast:
            for ld in loads:
                kr, kf = ref[ld] / ref["idle"], fast[ld] / fast["idle"]
                verdict = "ok" if kf <= kr else "WORSE"
                print(f"{cfg} {ld}: k(fast) {kf:.2f} vs k(ref) {kr:.2f}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
