"""Screenshot of the studio: start the app, load a photo, apply an edit, save the window as a PNG.

    python tools/screenshot.py [--photo PATH | --synthetic SEED | --video SEED] [--out PNG]
                               [--model demo|random|FOLDER] [--edit smile=2,age=-1] [--angle 10] [--split]
                               [--size 1400x860]

``--video SEED`` shows video mode: a procedural clip (``factory.synthetic.render_clip``, 640x360) is
opened, tracked and inverted; the edits are keyframed from 0 at the first frame to their value at the
last, and the playhead stands at three quarters of the clip.

Runs under Xvfb when ``--xvfb`` is given and ``xvfb-run`` exists (the real X11 code path), else on
Qt's offscreen platform; either way the image is ``QWidget.grab()`` of the main window, so it does not
depend on a window manager.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = ROOT.parent / "shared" / "faces" / "face_a.jpg"
DEFAULT_OUT = Path(tempfile.gettempdir()) / "charm-studio-screenshot.png"


def parse_edits(text: str) -> dict[str, float]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        out[name.strip()] = float(value)
    return out


class StudioDriver:
    """The studio window driven by a script (this one, bench/gui_latency.py): a themed QApplication on
    the current Qt platform, the main window shown at ``size``, every dialog dismissed, and waits that
    end the script (SystemExit) when the window shows an error or ``timeout`` seconds pass."""

    def __init__(
        self,
        model: str | None,
        size: tuple[int, int],
        threads: int | None = None,
        timeout: float = 120.0,
        poll_ms: int = 20,
    ):
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication

        from app.launch import apply_theme, create_main_window
        from app.settings import APP_NAME

        self.app = QApplication.instance() or QApplication([sys.argv[0]])
        self.app.setApplicationName(APP_NAME)
        apply_theme(self.app)
        self.win = create_main_window(model=model, threads=threads)
        self.win.resize(*size)
        self.timeout, self.poll_ms = timeout, poll_ms
        self.errors: list[str] = []
        self.win.errorShown.connect(lambda title, msg: self.errors.append(f"{title}: {msg}"))
        self.win.dialog_hook = lambda dlg: QTimer.singleShot(0, dlg.close)
        self.win.show()

    def wait_for(self, check, what: str) -> None:
        """Run the event loop until ``check()`` holds (polled every ``poll_ms``)."""
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        timer = QTimer()
        timer.timeout.connect(lambda: (check() or self.errors) and loop.quit())
        timer.start(self.poll_ms)
        QTimer.singleShot(int(self.timeout * 1000), loop.quit)
        loop.exec()
        timer.stop()
        if self.errors:
            raise SystemExit(f"error while waiting for {what}: {self.errors[0]}")
        if not check():
            raise SystemExit(f"timed out waiting for {what}")

    def shown(self) -> bool:
        """The render of the window's current state is on the canvas."""
        win = self.win
        return win.last_render is not None and win.last_render.state.same_as(win.state)

    def settled(self) -> bool:
        """Shown, and no work left in flight."""
        return self.shown() and not self.win.busy

    def wait_for_model(self) -> None:
        self.wait_for(lambda: self.win.bundle is not None, "the model")

    def open_video(self, clip: str | Path) -> None:
        """Open ``clip`` and wait until it is tracked and inverted and an edited frame is shown."""
        done: list[str] = []
        shown: list[int] = []
        self.win.stageFinished.connect(done.append)
        self.win.frameShown.connect(shown.append)
        self.win.open_video(clip)
        self.wait_for(lambda: "invert" in done and bool(shown), "the inverted clip")

    def open_photo(self, photo: str | Path) -> None:
        """Open ``photo`` and wait until it is inverted and its render shown."""
        self.win.open_photo(photo)
        self.wait_for(self.settled, "the inverted photo")


def write_clip(path: Path, seed: int, frames: int = 48) -> Path:
    """A procedural face moving in a 640x360 clip at 25 fps (no audio)."""
    from fractions import Fraction

    import numpy as np

    from engine.video.io import VideoWriter
    from factory.synthetic import render_clip, sample_factors

    clip, _, _ = render_clip(sample_factors(1, seed=seed), n_frames=frames, size=256, seed=seed, motion=0.6)
    with VideoWriter(path, 640, 360, Fraction(25), crf=14) as w:
        for f in clip:
            frame = np.full((360, 640, 3), 90, np.uint8)
            frame[52:308, 192:448] = f
            w.write(frame)
    return path


def video_shot(studio: StudioDriver, seed: int, edits: dict[str, float], split: bool) -> str:
    """Video mode on a procedural clip, edits keyframed from 0 to their value; returns a description."""
    win = studio.win
    clip = write_clip(Path(tempfile.mkdtemp()) / f"synthetic_clip_{seed}.mp4", seed)
    studio.open_video(clip)
    n = win.video.clip.frames
    win.set_keyframing(True)
    known = {k: v for k, v in edits.items() if k in win.directions_panel.sliders}
    for frame, scale in ((0, 0.0), (n - 1, 1.0)):
        win.seek(frame)
        for name, value in known.items():
            win.set_edit(name, value * scale)
    win.set_compare_mode("split" if split else "side")
    shown: list[int] = []
    win.frameShown.connect(shown.append)
    target = (3 * n) // 4
    win.seek(target)
    studio.wait_for(lambda: target in shown and not win.busy, "the edited frame")
    return f"video mode, frame {target + 1} of {n}; keyframed {known}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", default=str(DEFAULT_PHOTO))
    ap.add_argument(
        "--synthetic",
        type=int,
        default=None,
        metavar="SEED",
        help="use a 512 px photo of a procedural face (factory.synthetic, the demo model's domain)",
    )
    ap.add_argument(
        "--video",
        type=int,
        default=None,
        metavar="SEED",
        help="video mode on a procedural 640x360 clip; --edit values are keyframed from 0 to them",
    )
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--model", default=None, help="'demo', 'random' or a bundle folder (default: as the app)")
    ap.add_argument("--edit", default="smile=2,age=-1.5", help="direction=value,... (unknown names are skipped)")
    ap.add_argument("--angle", type=float, default=0.0, help="rotation in degrees")
    ap.add_argument("--split", action="store_true", help="split view instead of side by side")
    ap.add_argument("--size", default="1400x860")
    ap.add_argument("--xvfb", action="store_true", help="run under xvfb-run when available")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each step")
    args = ap.parse_args(argv)

    if args.xvfb and not os.environ.get("CHARM_UNDER_XVFB"):
        if shutil.which("xvfb-run"):
            env = dict(os.environ, CHARM_UNDER_XVFB="1", QT_QPA_PLATFORM="xcb")
            cmd = ["xvfb-run", "-a", "-s", "-screen 0 1920x1080x24", sys.executable, __file__] + [
                a for a in (argv if argv is not None else sys.argv[1:])
            ]
            return subprocess.call(cmd, env=env)
        print("xvfb-run not found (apt-get install -y xvfb); using the offscreen platform", file=sys.stderr)
    if not os.environ.get("CHARM_UNDER_XVFB"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    sys.path.insert(0, str(ROOT))

    w, h = (int(v) for v in args.size.lower().split("x"))
    studio = StudioDriver(model=args.model, size=(w, h), timeout=args.timeout)
    win = studio.win
    studio.wait_for_model()
    if args.video is not None:
        what = video_shot(studio, args.video, parse_edits(args.edit), args.split)
        studio.app.processEvents()
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not win.grab().save(str(out)):
            raise SystemExit(f"could not write {out}")
        print(f"{out} ({win.bundle.title}; {what})")
        win.close()
        return 0
    photo = args.photo
    if args.synthetic is not None:
        from factory.synthetic import write_photo

        photo = str(write_photo(Path(tempfile.mkdtemp()) / f"synthetic_{args.synthetic}.png", args.synthetic))
    studio.open_photo(photo)
    state = win.state
    for name, value in parse_edits(args.edit).items():
        if name in win.directions_panel.sliders:
            state = state.with_direction(name, value)
    if args.angle:
        state = state.replace(angle_deg=args.angle)
    win.set_state(state)
    win.set_compare_mode("split" if args.split else "side")
    studio.wait_for(studio.settled, "the edited render")
    studio.app.processEvents()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not win.grab().save(str(out)):
        raise SystemExit(f"could not write {out}")
    print(f"{out} ({win.bundle.title}; edits {dict(win.state.directions)}; angle {win.state.angle_deg:g})")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
