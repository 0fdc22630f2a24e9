"""``python main.py video INPUT --model demo --out OUT.mp4 [...]``: edit a face in a video clip.

Tracks one face through the clip, inverts every frame, smooths, optionally tunes the generator (PTI),
applies the edits (constant or keyframed), expands the field of view if asked, pastes the result back
into the full frames and encodes an mp4 with the source's frame rate and audio. The project folder
(``--work``, default ``OUT.mp4.charm`` beside the output) keeps every finished stage: running the
command again resumes, and changing a parameter redoes only what it affects. See
:mod:`engine.video.pipeline`.
"""

from __future__ import annotations

import argparse

from engine.cli._options import add_device_option, add_face_option, add_model_option

COMMAND = "video"
HELP = "Edit the face in a video clip: track, invert, smooth, tune, edit, paste back, encode (keeps the audio)."


def _amounts(text: str) -> tuple[int, int, int, int]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --expand {text!r}: give L,R,T,B pixels, e.g. 32,32,16,0") from None
    if len(values) == 1:
        values *= 4
    if len(values) != 4 or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"bad --expand {text!r}: give four pixel amounts L,R,T,B (>= 0)")
    return values[0], values[1], values[2], values[3]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="video to read (mp4, mov, mkv, webm, ...)")
    add_model_option(parser, "the model")
    parser.add_argument("--out", required=True, help="the edited video to write (.mp4)")
    parser.add_argument("--work", default=None, help="project folder to keep stages in (default OUT.charm)")
    parser.add_argument(
        "--edit",
        action="append",
        default=[],
        metavar="EDIT",
        help="an edit: NAME=VALUE for the whole clip (smile=1.5), or NAME=FRAME:VALUE,... keyframed "
        "(age=0:0,48:2); also angle/tx/ty and StyleSpace LAYER:CHANNEL=VALUE; repeat for several",
    )
    parser.add_argument("--pti-steps", type=int, default=0, metavar="N", help="video PTI steps (default 0: none)")
    parser.add_argument("--expand", type=_amounts, default=(0, 0, 0, 0), metavar="L,R,T,B", help="field of view")
    parser.add_argument(
        "--smooth",
        type=float,
        default=None,
        metavar="S",
        help="crop-window smoothing in frames (default: scaled to the frame rate; 0 = none)",
    )
    parser.add_argument(
        "--latent-smoothing",
        choices=("paper", "gaussian", "none"),
        default="paper",
        help="latent and transform smoothing over time (default: the paper's 5 taps)",
    )
    parser.add_argument("--fine-mean", action="store_true", help="hold the fine layers at their mean over the clip")
    parser.add_argument("--side-by-side", action="store_true", help="also write OUT_side_by_side.mp4 (input | edit)")
    parser.add_argument("--crop-video", action="store_true", help="also write OUT_crop.mp4 (the edited crop window)")
    parser.add_argument("--no-paste", action="store_true", help="do not paste the edit back (frames stay original)")
    parser.add_argument("--iters", type=int, default=3, help="ReStyle iterations per frame (default 3)")
    parser.add_argument("--batch", type=int, default=8, help="frames inverted together (default 8)")
    parser.add_argument("--warm-start", action="store_true", help="start each batch from the previous latent")
    parser.add_argument("--max-gap", type=int, default=None, metavar="N", help="frames without a face bridged")
    parser.add_argument("--crf", type=int, default=None, help="H.264 quality (lower = better; default 18)")
    parser.add_argument("--no-audio", action="store_true", help="write the video without the source's audio")
    add_face_option(parser, "follow")
    add_device_option(parser, "cpu")


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from engine.cli._options import resolve_device
    from engine.errors import CharmError
    from engine.jobs import run_in_terminal
    from engine.video.edits import ClipEdits, parse_edit
    from engine.video.pipeline import VideoSettings, run_video, with_pti_steps

    out = Path(args.out).expanduser()
    if out.is_dir():
        raise CharmError(f"--out {str(out)!r} is a folder; give the video file to write, e.g. {out / 'edited.mp4'}")
    if not out.parent.exists():
        raise CharmError(f"the folder of --out {str(out.parent)!r} does not exist; create it or choose another")
    if args.pti_steps < 0 or args.iters < 1 or args.batch < 1:
        print("error: --pti-steps must be >= 0, --iters and --batch >= 1", file=sys.stderr)
        return 2
    try:
        edits = ClipEdits(tuple(parse_edit(t) for t in args.edit))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = resolve_device(args.device)
    outputs = ("full",) + (("side_by_side",) if args.side_by_side else ()) + (("crop",) if args.crop_video else ())
    settings = VideoSettings(
        model=args.model,
        edits=edits,
        face_index=args.face,
        window_smoothing=args.smooth,
        max_gap=args.max_gap,
        iters=args.iters,
        batch=args.batch,
        warm_start=args.warm_start,
        latent_smoothing=args.latent_smoothing,
        fine_mean=args.fine_mean,
        expand=args.expand,
        paste=not args.no_paste,
        outputs=outputs,
        crf=args.crf,
        keep_audio=not args.no_audio,
        device=str(device),
    )
    settings = with_pti_steps(settings, args.pti_steps)
    if args.download:
        from engine.model_store import resolve_model

        run_in_terminal(lambda ctl: resolve_model(args.model, download=True, ctl=ctl))
    result = run_in_terminal(lambda ctl: run_video(args.input, out, settings, work=args.work, ctl=ctl))
    total = sum(result.seconds.values())
    extra = ""
    if result.passthrough:
        extra += f"; {len(result.passthrough)} frame(s) without a face left unedited"
    if result.flagged:
        extra += f"; check frames {', '.join(map(str, result.flagged[:8]))} (poor reconstruction)"
    if result.reused:
        extra += f"; reused: {', '.join(result.reused)}"
    fps = result.frames / total if total > 0 else float("inf")
    print(f"{result.frames} frames at {result.fps} fps in {total:.1f} s ({fps:.1f} frames/s){extra}")
    for kind, path in result.outputs.items():
        print(f"{kind}: {path}")
    return 0
