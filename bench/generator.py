"""Benchmark: StyleGAN3 synthesis time and peak memory with the reference and the fast kernels.

Every case (config x batch x kernel path) runs in its own child process, so peak RSS is that
case's alone. The weights are random but identical across paths (fixed seed), and the table gives
the max abs difference of each path's images against the reference path's.

    python bench/generator.py                       # T/R at 256 and 1024, batch 1 and 4, ref and fast
    python bench/generator.py --configs T1024 --batches 1 --repeat 2
    python bench/generator.py --impls ref,fast,cuda # on a CUDA machine (fp32 and fp16 layers)

Reference cases whose estimated peak memory exceeds --max-ref-gb are skipped and marked so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.openmp import configure_openmp  # noqa: E402

configure_openmp()  # the studio's OpenMP settings (main.py makes the same call before torch loads)

from _networks import RELEASE_CONFIGS, release_generator  # noqa: E402 (bench/ is the script's folder)

# Peak RSS of the reference path at batch 1 (GB), measured on the 2-core CPU machine; it grows
# roughly linearly with the batch.
REF_GB_PER_IMAGE = {"T256": 0.8, "R256": 1.3, "T1024": 7.6, "R1024": 14.0}


def run_case(cfg: str, batch: int, impl: str, repeat: int, threads: int, out: str, fp16: bool) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    device = "cuda" if impl == "cuda" else "cpu"
    cpu_kernel = False
    if impl == "fast":  # the fused C++ filtered_lrelu, unless CHARM_CPU_KERNELS=0 (then the Python chain)
        from kernels import cpu_ext

        cpu_kernel = cpu_ext.ensure_built()
    torch.manual_seed(0)
    G = release_generator(cfg).eval().to(device)
    z = torch.from_numpy(np.random.RandomState(1).randn(batch, 512)).float().to(device)
    times = []
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=0.7)
        for _ in range(repeat):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            img = G.synthesis(ws, impl=impl, force_fp32=not fp16)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    np.save(out, img.float().cpu().numpy())
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    gpu_gb = torch.cuda.max_memory_allocated() / 1e9 if device == "cuda" else None
    return dict(time_s=min(times), times=times, peak_rss_gb=peak_gb, gpu_peak_gb=gpu_gb, cpu_kernel=cpu_kernel)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=",".join(RELEASE_CONFIGS))
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--impls", default="ref,fast")
    ap.add_argument("--repeat", type=int, default=1, help="forward passes per case (the fastest counts)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-ref-gb", type=float, default=20.0)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--_case", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._case:
        cfg, batch, impl, out, fp16 = args._case.split(":")
        print(json.dumps(run_case(cfg, int(batch), impl, args.repeat, args.threads, out, fp16 == "1")))
        return 0

    import numpy as np

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in args.configs.split(","):
            for batch in [int(b) for b in args.batches.split(",")]:
                ref_img = None
                for impl in args.impls.split(","):
                    variants = [False, True] if impl == "cuda" else [False]
                    for fp16 in variants:
                        label = impl + ("-fp16" if fp16 else "")
                        row = dict(config=cfg, batch=batch, impl=label)
                        if impl == "ref" and REF_GB_PER_IMAGE[cfg] * batch > args.max_ref_gb:
                            row["note"] = f"skipped: needs ~{REF_GB_PER_IMAGE[cfg] * batch:.0f} GB"
                            rows.append(row)
                            print(row, flush=True)
                            continue
                        out = os.path.join(tmp, f"{cfg}_{batch}_{label}.npy")
                        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
                        proc = subprocess.run(
                            [
                                sys.executable,
                                __file__,
                                "--repeat",
                                str(args.repeat),
                                "--threads",
                                str(args.threads),
                                "--_case",
                                f"{cfg}:{batch}:{impl}:{out}:{int(fp16)}",
                            ],
                            capture_output=True,
                            text=True,
                            env=env,
                        )
                        if proc.returncode != 0:
                            row["note"] = "failed: " + proc.stderr.strip().splitlines()[-1][:120]
                        else:
                            row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
                            img = np.load(out)
                            if impl == "ref":
                                ref_img = img
                            if ref_img is not None:
                                row["max_abs_diff"] = float(np.abs(img - ref_img).max())
                                row["rel_l2"] = float(np.linalg.norm(img - ref_img) / np.linalg.norm(ref_img))
                        rows.append(row)
                        print(row, flush=True)

    ref_times = {(r["config"], r["batch"]): r.get("time_s") for r in rows if r["impl"] == "ref"}
    print()
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
        f"threads {args.threads}, load avg {os.getloadavg()[0]:.1f}"
    )
    print("| config | batch | kernels | time (s) | speed-up vs ref | peak RSS (GB) | max abs diff vs ref | note |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for r in rows:
        t = r.get("time_s")
        rt = ref_times.get((r["config"], r["batch"]))
        speed = f"{rt / t:.2f}x" if t and rt else ""
        diff = f"{r['max_abs_diff']:.2e}" if "max_abs_diff" in r else ""
        print(
            f"| {r['config']} | {r['batch']} | {r['impl']} | {t:.2f} | {speed} | {r.get('peak_rss_gb', 0):.2f} | "
            f"{diff} | {r.get('note', '')} |"
            if t
            else f"| {r['config']} | {r['batch']} | {r['impl']} | | | | | {r.get('note', '')} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
