"""Faces in: detection, FFHQ alignment, crops, the (r, tx, ty) transform and paste-back.

The accuracy tests build unaligned photos from the FFHQ-aligned ones in ../shared/faces by rotating,
scaling and shifting them onto a larger canvas (replicated border, so no mirrored faces appear), then
compare what the alignment recovers with what was applied. Run with ``-s`` to see the measured numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, load_script

from engine import align as A
from engine import faces as F
from engine.align import align_face, crop_quads_for_clip, detect_faces, paste_back
from engine.errors import ImageReadError, NoFaceError
from engine.imageio import load_image
from engine.transforms import make_transform, transform_params

CANVAS = (1500, 1400)  # (width, height) of the synthetic photos


def _place(base: np.ndarray, theta: float, scale: float, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``base`` turned counter-clockwise by theta degrees, scaled, its centre moved to ``centre``.

    Returns the canvas image and the 3x3 matrix mapping base pixels to canvas pixels.
    """
    c = ((base.shape[1] - 1) / 2, (base.shape[0] - 1) / 2)
    m = cv2.getRotationMatrix2D(c, theta, scale)
    m[:, 2] += np.asarray(centre, dtype=np.float64) - c
    img = cv2.warpAffine(base, m, CANVAS, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return img, np.vstack([m, [0.0, 0.0, 1.0]])


def _eyes_mouth(lm: np.ndarray) -> np.ndarray:
    """[4,2]: the two eye centres and the two mouth corners."""
    return np.stack([lm[36:42].mean(axis=0), lm[42:48].mean(axis=0), lm[48], lm[54]])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _report(line: str) -> None:
    print(f"\n[align metric] {line}")


def _similarity_warp(aligned: np.ndarray, angle: float, tx: float, ty: float, zoom: float = 1.0) -> np.ndarray:
    """What a generator given make_transform(angle, tx, ty) would make of ``aligned``: content turned
    counter-clockwise by ``angle`` about the centre, scaled by ``zoom``, shifted by (tx, ty) * size."""
    s = aligned.shape[0]
    m = cv2.getRotationMatrix2D(((s - 1) / 2, (s - 1) / 2), angle, zoom)
    m[:, 2] += (tx * s, ty * s)
    return cv2.warpAffine(aligned, m, (s, s), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def _face_disk(size: int, tx: float, ty: float, radius: float = 0.3) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    cx, cy = (size - 1) / 2 + tx * size, (size - 1) / 2 + ty * size
    return (xx - cx) ** 2 + (yy - cy) ** 2 < (radius * size) ** 2


# --------------------------------------------------------------------------------------------------
# Fixtures (module-scoped: detection is the slow part)


@pytest.fixture(scope="module")
def ffhq(faces_dir: Path) -> list[np.ndarray]:
    paths = sorted(faces_dir.glob("ffhq_*.jpg"))
    if not paths:
        pytest.skip(f"no ffhq_*.jpg in {faces_dir}")
    return [load_image(p) for p in paths]


@pytest.fixture(scope="module")
def face_b(faces_dir: Path) -> A.AlignedFace:
    """A real unaligned portrait with a clearly tilted head."""
    return align_face(faces_dir / "face_b.jpg", size=512)


class Placement:
    """One synthetic case: ``base`` placed on the canvas unmoved (theta 0, ``ref``) and moved (turned by
    ``theta`` degrees and shifted, ``moved``), both at one random scale, the moved one aligned in the
    unmoved one's crop window (``width`` px wide); ``m0``/``m1`` map base pixels to canvas pixels.
    ``realigned_pts`` are the eye and mouth landmarks re-detected on the moved one's aligned image."""

    def __init__(self, base: np.ndarray, ref_pts: np.ndarray, theta: float, rng: np.random.Generator):
        self.theta, self.ref_pts = theta, ref_pts
        self.scale = float(rng.uniform(0.7, 1.3))
        centre = np.array(CANVAS, dtype=np.float64) / 2 + rng.uniform(-60, 60, 2)
        img0, self.m0 = _place(base, 0.0, self.scale, centre)
        self.ref = align_face(img0, scale_mode="ffhq")
        self.width = float(np.linalg.norm(self.ref.crop_quad[3] - self.ref.crop_quad[0]))
        self.shift = rng.uniform(-0.15, 0.15, 2) * self.width
        self.img1, self.m1 = _place(base, theta, self.scale, centre + self.shift)
        self.moved = align_face(self.img1, crop_quad=self.ref.crop_quad, scale_mode="ffhq")
        self.realigned_pts = _eyes_mouth(detect_faces(self.moved.aligned)[0].landmarks)


@pytest.fixture(scope="module")
def synthetic(ffhq: list[np.ndarray]) -> list[Placement]:
    """Per photo: a placement at +-30 degrees, one at a random angle and one pure shift."""
    rng = np.random.default_rng(20240603)
    cases = []
    for k, base in enumerate(ffhq):
        ref_pts = _eyes_mouth(detect_faces(base)[0].landmarks)
        for theta in (30.0 if k % 2 else -30.0, float(rng.uniform(-30, 30)), 0.0):
            cases.append(Placement(base, ref_pts, theta, rng))
    return cases


# --------------------------------------------------------------------------------------------------
# Models and input handling


def test_models_are_found_without_importing_the_package(monkeypatch):
    monkeypatch.delitem(sys.modules, "face_recognition_models", raising=False)
    path = F.landmarks_model_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat" and path.is_file()
    assert "face_recognition_models" not in sys.modules


def test_face_models_load_once_and_are_shared():
    models = F.load_face_models()
    assert F.load_face_models() is models and A.load_face_models() is models
    assert type(models.detector).__name__ == "fhog_object_detector"
    assert type(models.predictor).__name__ == "shape_predictor"


def test_models_load_once_across_threads(monkeypatch):
    monkeypatch.setattr(F, "_models", None)
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(F.load_face_models())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(g is got[0] for g in got)
    assert F.load_face_models() is got[0]


def test_concurrent_first_calls_load_the_models_once(monkeypatch):
    """Two threads asking at once while loading is slow: one load, both get its models."""
    dlib = pytest.importorskip("dlib")
    calls: list[str] = []

    def slow(kind):
        def load(*args):
            calls.append(kind)
            time.sleep(0.2)  # both threads are inside load_face_models by now
            return object()

        return load

    monkeypatch.setattr(F, "_models", None)
    monkeypatch.setattr(dlib, "get_frontal_face_detector", slow("detector"))
    monkeypatch.setattr(dlib, "shape_predictor", slow("predictor"))
    start = threading.Barrier(2)
    got: list = []

    def call():
        start.wait()
        got.append(F.load_face_models())

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["detector", "predictor"]
    assert len(got) == 2 and got[0] is got[1] and F.load_face_models() is got[0]


def test_non_images_raise_image_read_error(tmp_path: Path, faces_dir: Path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.jpg"
    data = (faces_dir / "ffhq_0.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for bad in (garbage, text, truncated, empty, tmp_path / "missing.jpg", tmp_path):
        with pytest.raises(ImageReadError) as e:
            align_face(bad)
        assert bad.name in str(e.value)


def test_no_face_raises_no_face_error(faces_dir: Path):
    paths = sorted(faces_dir.glob("no_face_*.jpg"))
    assert paths
    for p in paths:
        with pytest.raises(NoFaceError) as e:
            align_face(p)
        assert p.name in str(e.value)


def test_two_faces_are_all_returned_largest_first(ffhq: list[np.ndarray]):
    big = cv2.resize(ffhq[0], (560, 560), interpolation=cv2.INTER_AREA)
    small = cv2.resize(ffhq[3], (420, 420), interpolation=cv2.INTER_AREA)
    small = cv2.copyMakeBorder(small, 70, 70, 0, 0, cv2.BORDER_REPLICATE)
    photo = np.ascontiguousarray(np.hstack([small, big]))  # the larger face is on the right
    first = align_face(photo, size=256)
    assert len(first.faces) == 2 and first.face_index == 0
    assert first.faces[0].area > first.faces[1].area
    assert first.quad.mean(axis=0)[0] > 420
    second = align_face(photo, size=256, face_index=1)
    assert second.quad.mean(axis=0)[0] < 420
    assert np.allclose(second.landmarks, first.faces[1].landmarks)
    with pytest.raises(NoFaceError):
        align_face(photo, size=256, face_index=2)


def test_exif_orientation_is_applied(tmp_path: Path, ffhq: list[np.ndarray]):
    Image = pytest.importorskip("PIL.Image")
    upright = cv2.resize(ffhq[1], (512, 512), interpolation=cv2.INTER_AREA)
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # turned 90 degrees counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    img = load_image(path)
    assert img.shape == upright.shape
    assert np.abs(img.astype(float) - upright).mean() < 3
    assert abs(align_face(path, size=256).angle_deg) < 3


def test_grey_rgba_and_16_bit_inputs(tmp_path: Path, ffhq: list[np.ndarray]):
    rgb = cv2.resize(ffhq[2], (512, 512), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    bgra = np.dstack([rgb[:, :, ::-1], np.full(grey.shape, 255, np.uint8)])
    bgra[:40, :40, 3] = 0  # transparent corner -> white
    cv2.imwrite(str(tmp_path / "alpha.png"), bgra)
    cv2.imwrite(str(tmp_path / "deep.png"), rgb[:, :, ::-1].astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "deep.tif"), rgb[:, :, ::-1].astype(np.uint16) * 257)

    g = load_image(tmp_path / "grey.png")
    assert g.shape == (512, 512, 3) and g.dtype == np.uint8 and np.array_equal(g[:, :, 0], grey)
    a = load_image(tmp_path / "alpha.png")
    assert np.all(a[:40, :40] == 255) and np.array_equal(a[100:, 100:], rgb[100:, 100:])
    for name in ("deep.png", "deep.tif"):
        d = load_image(tmp_path / name)
        assert d.dtype == np.uint8 and np.abs(d.astype(int) - rgb).max() <= 1, name
    assert np.abs(load_image(rgb.astype(np.float32) / 255).astype(int) - rgb).max() <= 1
    assert np.array_equal(load_image(grey)[:, :, 2], grey)
    for img in (tmp_path / "grey.png", tmp_path / "deep.png", rgb.astype(np.uint16) * 257):
        assert align_face(img, size=128).aligned.shape == (128, 128, 3)


def test_small_and_large_photos(ffhq: list[np.ndarray]):
    base = ffhq[4]
    small = cv2.resize(base, (180, 180), interpolation=cv2.INTER_AREA)  # face ~100 px: needs upsampling
    assert len(detect_faces(small)) == 1
    m = np.float64([[0.6, 0.0, 2400.0], [0.0, 0.6, 900.0]])
    large = cv2.warpAffine(base, m, (4000, 3000), borderMode=cv2.BORDER_REPLICATE)
    face = align_face(large, size=256)
    expected = _eyes_mouth(detect_faces(base)[0].landmarks) @ m[:, :2].T + m[:, 2]
    assert np.abs(_eyes_mouth(face.landmarks) - expected).max() < 0.01 * 0.6 * 1024


# --------------------------------------------------------------------------------------------------
# Accuracy on synthetic warps (the acceptance numbers)


def test_recovered_rotation(synthetic: list[Placement]):
    err = np.array([abs(c.moved.angle_deg - c.ref.angle_deg - c.theta) for c in synthetic])
    _report(f"angle error over {len(err)} placements: median {np.median(err):.3f} deg, max {err.max():.3f} deg")
    assert np.median(err) <= 0.5
    assert err.max() <= 1.5


def test_recovered_translation_in_a_fixed_window(synthetic: list[Placement]):
    errs = []
    for c in synthetic:
        # Where the unmoved face's centre lands after the applied move, relative to the fixed window.
        centre0 = c.ref.quad.mean(axis=0)
        centre1 = (c.m1 @ np.linalg.inv(c.m0) @ np.r_[centre0, 1.0])[:2]
        window = c.ref.crop_quad.mean(axis=0)
        expected = (centre1 - window) / c.width
        got = np.array([c.moved.tx, c.moved.ty])
        errs.append(np.abs(got - expected))
        assert np.allclose(c.moved.crop_quad, c.ref.crop_quad)
        assert abs(c.moved.zoom - 1.0) < 0.06  # same face size, measured from landmarks
    errs = np.array(errs) * 100
    _report(
        f"translation error (% of crop width) over {len(errs)} placements: "
        f"median {np.median(errs):.3f}, max {errs.max():.3f}"
    )
    assert np.median(errs) <= 0.5


def test_realigned_landmarks_land_where_ffhq_put_them(synthetic: list[Placement]):
    err = np.array([np.linalg.norm(c.realigned_pts - c.ref_pts, axis=1).mean() / 1024 * 100 for c in synthetic])
    _report(
        f"eye/mouth landmark error after re-alignment (% of image size): "
        f"median {np.median(err):.3f}, max {err.max():.3f}"
    )
    assert np.median(err) <= 1.0


# --------------------------------------------------------------------------------------------------
# The transform: geometry without a generator


def test_transform_matches_make_transform_and_is_exact_from_quads(face_b: A.AlignedFace):
    f = face_b
    assert f.transform.dtype.is_floating_point and tuple(f.transform.shape) == (3, 3)
    assert abs(f.zoom - 1.0) < 1e-9 and abs(f.tx) < 1e-9 and abs(f.ty) < 1e-9
    assert np.allclose(f.transform.numpy(), make_transform(f.angle_deg, f.tx, f.ty).numpy(), atol=1e-6)
    assert np.allclose(transform_params(f.transform), (f.angle_deg, f.tx, f.ty), atol=1e-4)
    # Normalised coordinates: the crop's corner (-.5, -.5) is the source point that the aligned image
    # shows at transform @ (-.5, -.5).
    g = f.transform.double().numpy() @ np.array([-0.5, -0.5, 1.0])
    c, x, y = f.quad.mean(axis=0), (f.quad[3] - f.quad[0]) / 2, (f.quad[1] - f.quad[0]) / 2
    assert np.allclose(c + 2 * x * g[0] + 2 * y * g[1], f.crop_quad[0], atol=1e-6)


def test_aligned_image_warped_by_the_transform_is_the_crop(face_b: A.AlignedFace):
    f, s = face_b, face_b.aligned.shape[0]
    assert f.angle_deg < -8  # the head is visibly tilted clockwise
    disk = _face_disk(s, f.tx, f.ty)
    good = np.abs(_similarity_warp(f.aligned, f.angle_deg, f.tx, f.ty).astype(float) - f.crop)[disk].mean()
    flipped = np.abs(_similarity_warp(f.aligned, -f.angle_deg, f.tx, f.ty).astype(float) - f.crop)[disk].mean()
    _report(
        f"face_b: angle {f.angle_deg:.2f} deg; mean |warp(aligned) - crop| in the face {good:.2f} "
        f"(opposite angle: {flipped:.2f})"
    )
    assert good < 2.0 and flipped > 5 * good


def test_fixed_window_transform_moves_and_zooms_the_face(faces_dir: Path, face_b: A.AlignedFace):
    q = face_b.crop_quad + np.array([60.0, -40.0])
    q = (q - q.mean(axis=0)) * 1.15 + q.mean(axis=0)  # window moved right/up and 15% larger
    f = align_face(faces_dir / "face_b.jpg", size=512, crop_quad=q)
    assert np.allclose(f.crop_quad, q)
    width = 2 * np.linalg.norm(q[3] - q[0]) / 2
    assert f.tx == pytest.approx(-60 / width, abs=1e-3) and f.ty == pytest.approx(40 / width, abs=1e-3)
    assert f.zoom == pytest.approx(1 / 1.15, rel=1e-3)
    assert f.angle_deg == pytest.approx(face_b.angle_deg, abs=1e-6)
    disk = _face_disk(512, f.tx, f.ty, radius=0.25)
    warped = _similarity_warp(f.aligned, f.angle_deg, f.tx, f.ty, f.zoom)
    assert np.abs(warped.astype(float) - f.crop)[disk].mean() < 2.0


def test_synthetic_placement_transform_reproduces_the_crop(synthetic: list[Placement]):
    c = next(c for c in synthetic if abs(c.theta) == 30.0)
    ref = align_face(c.img1, size=512, scale_mode="ffhq")
    assert abs(ref.angle_deg - c.moved.angle_deg) < 1e-6
    disk = _face_disk(512, ref.tx, ref.ty)
    diff = np.abs(_similarity_warp(ref.aligned, ref.angle_deg, ref.tx, ref.ty).astype(float) - ref.crop)
    assert diff[disk].mean() < 2.0


def test_both_scales_are_offered(ffhq: list[np.ndarray]):
    lm = detect_faces(ffhq[0])[0].landmarks.copy()
    lm[48:68, 1] += 150  # a long face: the mouth far below the eyes
    eyes, ffhq_q = A.face_quad(lm, "eyes"), A.face_quad(lm, "ffhq")
    e2e = lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0)
    e2m = (lm[48] + lm[54]) / 2 - (lm[36:48].mean(axis=0))
    assert np.linalg.norm(eyes[3] - eyes[0]) == pytest.approx(4 * np.linalg.norm(e2e))
    assert np.linalg.norm(ffhq_q[3] - ffhq_q[0]) == pytest.approx(3.6 * np.linalg.norm(e2m))
    with pytest.raises(ValueError):
        A.face_quad(lm, "huge")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Video windows


def test_smoothed_clip_windows():
    rng = np.random.default_rng(3)
    template = np.zeros((68, 2))
    template[36:42] = (400, 500)
    template[42:48] = (600, 500)
    template[48], template[54] = (430, 700), (570, 700)
    clip = [template + [3.0 * i, 0.0] + rng.normal(0, 4, 2) for i in range(40)]
    clip[7] = None  # a frame where detection failed
    raw = crop_quads_for_clip(clip, sigma=0)
    assert np.allclose(raw[0], A.crop_quad_for(A.face_quad(clip[0])))
    assert np.allclose(raw[7], (raw[6] + raw[8]) / 2)
    smooth = crop_quads_for_clip(clip, sigma=3)
    assert smooth.shape == (40, 4, 2)
    sides = smooth[:, 3, 0] - smooth[:, 0, 0]
    assert np.allclose(smooth[:, 1, 1] - smooth[:, 0, 1], sides)  # still axis-aligned squares
    jitter = lambda q: np.abs(np.diff(q.mean(axis=1), n=2, axis=0)).mean()  # noqa: E731
    assert jitter(smooth) < 0.3 * jitter(raw)
    aligned = A.smooth_quads([A.face_quad(lm) if lm is not None else None for lm in clip], sigma=3)
    assert aligned.shape == (40, 4, 2)


# --------------------------------------------------------------------------------------------------
# Paste-back


def test_paste_back_of_an_unedited_crop(ffhq: list[np.ndarray]):
    m = np.float64([[0.7, 0.0, 300.0], [0.0, 0.7, 250.0]])
    photo = cv2.warpAffine(ffhq[1], m, (1400, 1300), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    f = align_face(photo, size=1024)
    out = paste_back(photo, f.crop, f.crop_quad)
    q = f.crop_quad
    x0, y0 = np.floor(q.min(axis=0)).astype(int)
    x1, y1 = np.ceil(q.max(axis=0)).astype(int) + 1
    window = np.zeros(photo.shape[:2], bool)
    window[y0:y1, x0:x1] = True
    assert np.array_equal(out[~window], photo[~window])
    # The resampling error: the crop warped straight back with OpenCV, independently of paste_back.
    pts_src = np.float32([[0, 0], [0, 1023], [1023, 1023]])
    step = (q[2] - q[0]) / 1024
    pts_dst = np.float32(q[:3] + np.array([[0.5, 0.5], [0.5, -0.5], [-0.5, -0.5]]) * step)
    back = cv2.getAffineTransform(pts_src, pts_dst)
    roundtrip = cv2.warpAffine(f.crop, back, photo.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    inner = np.zeros_like(window)
    inner[y0 + 8 : y1 - 8, x0 + 8 : x1 - 8] = True
    psnr_paste, psnr_resample = _psnr(out[window], photo[window]), _psnr(roundtrip[inner], photo[inner])
    _report(
        f"paste-back of the unedited crop: PSNR inside the window {psnr_paste:.2f} dB "
        f"(plain resampling round trip {psnr_resample:.2f} dB); pixels changed outside: "
        f"{int(np.any(out != photo, axis=2)[~window].sum())}"
    )
    assert psnr_resample > 40
    assert psnr_paste >= psnr_resample - 0.1


def test_paste_back_of_an_edit_with_a_mask(face_b: A.AlignedFace, faces_dir: Path):
    photo = load_image(faces_dir / "face_b.jpg")
    edited = 255 - face_b.crop
    s = edited.shape[0]
    mask = np.zeros((s, s), np.uint8)
    cv2.ellipse(mask, (s // 2, s // 2), (s // 4, s // 3), 0, 0, 360, 255, -1)
    out = paste_back(photo, edited, face_b.crop_quad, mask=mask, feather=0.05)
    # Outside the ellipse (mapped to the photo) nothing changes, bit for bit.
    inside = A.paste_back(np.zeros_like(photo), np.full_like(edited, 255), face_b.crop_quad, mask=mask, feather=0.0)
    touched = np.any(inside > 0, axis=2)
    assert np.array_equal(out[~touched], photo[~touched])
    # The centre of the face takes the edit.
    c = np.round(face_b.crop_quad.mean(axis=0)).astype(int)
    patch = (slice(c[1] - 20, c[1] + 20), slice(c[0] - 20, c[0] + 20))
    assert np.abs(out[patch].astype(int) - (255 - photo[patch].astype(int))).mean() < 12
    # A smaller render of the same window lands in the same place.
    half = cv2.resize(face_b.crop, (256, 256), interpolation=cv2.INTER_AREA)
    assert _psnr(paste_back(photo, half, face_b.crop_quad), photo) > 30


# --------------------------------------------------------------------------------------------------
# CLI


def _align_args(photo: Path, out: Path, *options: str | Path) -> list[str]:
    """Command-line arguments of ``main.py align PHOTO --out OUT [options]``."""
    return ["align", str(photo), "--out", str(out), *map(str, options)]


def test_cli_writes_aligned_crop_and_transform(tmp_path: Path, faces_dir: Path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *_align_args(faces_dir / "face_b.jpg", out, "--size", "256")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    aligned, crop = cv2.imread(str(out / "aligned.png")), cv2.imread(str(out / "crop.png"))
    assert aligned.shape == crop.shape == (256, 256, 3)
    info = json.loads((out / "transform.json").read_text())
    assert np.allclose(
        np.array(info["transform"]), make_transform(info["angle_deg"], info["tx"], info["ty"]).numpy(), atol=1e-5
    )
    assert info["angle_deg"] < -8 and len(info["crop_quad"]) == 4
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_cli_reports_a_missing_face(tmp_path: Path, faces_dir: Path, capsys):
    code = load_script("main.py").main(_align_args(faces_dir / "no_face_car.jpg", tmp_path))
    assert code == 2
    assert "no_face_car.jpg" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_reuses_a_crop_window(tmp_path: Path, faces_dir: Path, face_b: A.AlignedFace):
    first = tmp_path / "first"
    first.mkdir()
    moved = face_b.crop_quad + np.array([40.0, 0.0])
    (first / "transform.json").write_text(json.dumps({"crop_quad": moved.tolist()}))
    main = load_script("main.py")
    photo = faces_dir / "face_b.jpg"
    assert main.main(_align_args(photo, tmp_path / "next", "--size", "128", "--window", first / "transform.json")) == 0
    info = json.loads((tmp_path / "next" / "transform.json").read_text())
    assert np.allclose(info["crop_quad"], moved)
    assert info["tx"] == pytest.approx(-40 / (moved[3, 0] - moved[0, 0]), abs=1e-3)
    assert main.main(_align_args(photo, tmp_path / "bad", "--window", photo)) == 2
