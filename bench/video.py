"""Benchmark: the video pipeline's frames per second, per stage and whole, and its peak memory by clip length.

Plain script, prints tables::

    python3 bench/video.py [--clip PATH] [--frames 96] [--threads 2] [--model demo] [--rss 300,3000]
    python3 bench/video.py --device cuda --model ffhq-random --frames 96   # a GPU, FFHQ-size networks

Without ``--clip`` the clip is ``../shared/video/clip.mp4`` (640x360, 96 frames) when it exists, else a
procedural 640x360 clip (a factory.synthetic face moving over a still background) of ``--frames``
frames. Every stage runs from scratch in a fresh project folder (no PTI, one edit). ``--model`` is a
model name or manifest path, or ``ffhq-random``: an FFHQ-size bundle with random weights (StyleGAN3-R
1024 px, ReStyle-pSp IR-SE50 encoder; bench/_networks.ffhq_random_bundle), written to a temporary folder
first (not timed). ``--device`` runs the networks there (``cuda`` on a GPU machine). ``--rss`` runs the
whole pipeline on procedural 256x256 clips of each length in a child process and reports its peak
resident memory (``ru_maxrss``), the number the bounded-memory target is about.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.openmp import configure_openmp  # noqa: E402

configure_openmp()  # the studio's OpenMP settings (main.py makes the same call before torch loads)


def procedural_clip(path: Path, frames: int, size: tuple[int, int], seed: int = 0) -> Path:
    """A clip of one procedural face moving over a still background, with a sine tone."""
    import numpy as np

    from engine.video.io import VideoWriter
    from factory.synthetic import render_clip, sample_factors

    w, h = size
    side = min(256, h)
    chunk = 48
    with VideoWriter(path, w, h, Fraction(30000, 1001), crf=16) as out:
        done = 0
        while done < frames:
            n = min(chunk, frames - done)
            faces, _, _ = render_clip(sample_factors(1, seed=seed), n_frames=n, size=side, seed=seed + done, motion=0.5)
            for f in faces:
                canvas = np.full((h, w, 3), 96, np.uint8)
                canvas[:, :, 1] = np.linspace(60, 160, w, dtype=np.uint8)[None, :]
                x0, y0 = (w - side) // 2, (h - side) // 2
                canvas[y0 : y0 + side, x0 : x0 + side] = f
                out.write(canvas)
            done += n
    return path


def run_once(clip: Path, model: str, threads: int, device: str = "cpu") -> dict:
    import torch

    from engine.jobs import JobControl
    from engine.video.edits import ClipEdits, parse_edit
    from engine.video.pipeline import VideoSettings, run_video

    torch.set_num_threads(threads)
    stages: dict[str, float] = {}
    current = {"name": None, "t": time.perf_counter()}

    def report(p) -> None:
        if p.stage != current["name"]:
            now = time.perf_counter()
            if current["name"]:
                stages[current["name"]] = stages.get(current["name"], 0.0) + now - current["t"]
            current.update(name=p.stage, t=now)

    with tempfile.TemporaryDirectory() as tmp:
        settings = VideoSettings(model=model, edits=ClipEdits((parse_edit("smile=1.5"),)), device=device)
        t = time.perf_counter()
        result = run_video(clip, Path(tmp) / "out.mp4", settings, work=Path(tmp) / "work", ctl=JobControl(report))
        total = time.perf_counter() - t
    if current["name"]:
        stages[current["name"]] = stages.get(current["name"], 0.0) + time.perf_counter() - current["t"]
    return {"frames": result.frames, "total_s": total, "stages": stages}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", type=Path, default=None)
    ap.add_argument("--frames", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="demo", help="a model name or manifest, or ffhq-random")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rss", default="", help="clip lengths for the memory table, e.g. 300,3000")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one run, then report peak memory
        out = run_once(args.clip, args.model, args.threads, args.device)
        out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        clip = args.clip
        shared = ROOT.parent / "shared" / "video" / "clip.mp4"
        if clip is None:
            clip = shared if shared.is_file() else procedural_clip(Path(tmp) / "clip.mp4", args.frames, (640, 360))
        from engine.video.io import probe_video

        if args.model == "ffhq-random":
            from _networks import ffhq_random_bundle  # bench/ is the script's folder

            t = time.perf_counter()
            args.model = str(ffhq_random_bundle(Path(tmp) / "ffhq-random"))
            print(f"wrote the FFHQ-size random bundle in {time.perf_counter() - t:.0f} s")

        info = probe_video(clip)
        print(
            f"clip {clip.name}: {info.width}x{info.height}, {info.frame_count} frames at {info.fps} fps; "
            f"model {args.model}; {args.threads} threads; device {args.device}"
        )
        r = run_once(clip, args.model, args.threads, args.device)
        print("| stage | seconds | frames/s |")
        print("|---|---:|---:|")
        for name, sec in r["stages"].items():
            print(f"| {name} | {sec:.2f} | {r['frames'] / sec if sec > 0 else float('inf'):.1f} |")
        print(f"| whole pipeline | {r['total_s']:.2f} | **{r['frames'] / r['total_s']:.1f}** |")
        if args.rss:
            print("\n| clip (256x256) | frames | seconds | peak RSS MB |")
            print("|---|---:|---:|---:|")
            for n in (int(x) for x in args.rss.split(",")):
                path = procedural_clip(Path(tmp) / f"rss{n}.mp4", n, (256, 256), seed=1)
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    "--clip",
                    str(path),
                    "--model",
                    args.model,
                    "--threads",
                    str(args.threads),
                    "--device",
                    args.device,
                ]
                res = json.loads(
                    subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
                )
                print(f"| procedural | {n} | {res['total_s']:.1f} | {res['max_rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
