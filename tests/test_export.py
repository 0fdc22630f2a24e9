"""Exports: the face-shaped paste-back mask (no square halo, the photo kept bit-exact outside the face),
upscaled aligned/framed images, landmarks kept in the state and in sessions, and the export dialog."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.align import paste_back
from engine.face_mask import face_mask, landmark_face_region, landmarks_in_crop
from engine.quads import crop_quad_for, face_quad, output_to_source


def _synthetic_face(seed: int = 3, size: int = 640) -> tuple[np.ndarray, np.ndarray]:
    """A procedural photo ([size,size,3] uint8) and its true landmarks (float32 [68,2] source px)."""
    from factory.synthetic import render, sample_factors

    images, landmarks, _ = render(sample_factors(1, seed=seed), size, aligned=False)
    return images[0], landmarks[0]


def _face_frame(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(brow midpoint, unit 'up' from the chin to the brows, face height brow-to-chin) of landmarks."""
    brow = lm[17:27].mean(axis=0)
    up = brow - lm[8]
    height = float(np.hypot(*up))
    return brow, up / height, height


def _side(quad: np.ndarray) -> int:
    """The window's side in source px (the size paste_back builds its face mask at)."""
    return round(float(np.hypot(*(quad[2] - quad[1]))))


def _window_mask(mask: np.ndarray, quad: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(bool [H,W]: photo px inside the square window, float [H,W]: the mask warped onto the photo)."""
    s = mask.shape[0]
    a, t = output_to_source(quad, s)
    ai = np.linalg.inv(a)
    mat = np.hstack([ai, (-ai @ t)[:, None]])
    h, w = shape
    warped = cv2.warpAffine(
        mask, mat, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT
    )
    inside = cv2.warpAffine(
        np.ones_like(mask), mat, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0.0
    )
    return inside > 0, warped


def _clear_of(m: np.ndarray) -> np.ndarray:
    """bool: photo px at least 2 px away from any pixel where the warped mask ``m`` is > 0 (a margin for
    the resampling's rounding, so the test checks the mask and not the last bit of the warp)."""
    return cv2.dilate((m > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0


# --------------------------------------------------------------------------------------------------
# The mask


def test_mask_covers_forehead_and_hair_and_excludes_the_window_corners():
    _, lm = _synthetic_face()
    quad = crop_quad_for(face_quad(lm))
    size = 256
    m = face_mask(lm, quad, size)
    assert m.shape == (size, size) and m.dtype == np.float32
    assert m.min() == 0.0 and m.max() == 1.0
    crop_lm = landmarks_in_crop(lm, quad, size)
    brow, up, height = _face_frame(crop_lm)
    for lift in (0.2, 0.4, 0.55):  # forehead and hairline above the brows
        x, y = np.round(brow + lift * height * up).astype(int)
        assert m[y, x] == 1.0, f"forehead {lift} face heights above the brows is not in the mask"
    x, y = np.round(crop_lm[30]).astype(int)  # nose tip
    assert m[y, x] == 1.0
    corner = size // 8
    for patch in (m[:corner, :corner], m[:corner, -corner:], m[-corner:, :corner], m[-corner:, -corner:]):
        assert patch.max() == 0.0, "a corner of the crop window is in the face mask"
    edge = max(m[0].max(), m[-1].max(), m[:, 0].max(), m[:, -1].max())
    assert edge < 0.01, "the mask must fade to 0 at the window's edge (half a pixel outside the edge pixels)"
    x, y = np.clip(np.round(crop_lm[8] - 0.1 * height * up).astype(int), 0, size - 1)  # the neck below the chin
    assert m[y, x] == 0.0


def test_mask_soft_edge_and_parameters():
    _, lm = _synthetic_face()
    quad = crop_quad_for(face_quad(lm))
    hard = face_mask(lm, quad, 256, feather=0.0)
    soft = face_mask(lm, quad, 256, feather=0.08)
    assert set(np.unique(hard)) <= {0.0, 1.0}
    assert ((soft > 0) & (soft < 1)).sum() > 0.05 * (hard > 0).sum(), "no soft edge"
    assert np.all(soft <= hard), "the soft edge is laid inside the region, never outside"
    low = face_mask(lm, quad, 256, forehead=0.1, feather=0.0)
    assert low.sum() < hard.sum() and np.all(low <= hard)
    with pytest.raises(ValueError, match="68x2"):
        face_mask(lm[:10], quad, 256)
    with pytest.raises(ValueError, match=">= 0"):
        face_mask(lm, quad, 256, feather=-1)


def test_mask_turns_with_the_face():
    """A rolled face (and its window turned with it) gives the same mask, turned: no axis bias."""
    _, lm = _synthetic_face()
    quad = face_quad(lm)  # the aligned quad: the mask in aligned pixels
    c = lm.mean(axis=0)
    ang = np.deg2rad(30)
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    lm_r = (lm - c) @ rot.T + c
    quad_r = (quad - c) @ rot.T + c
    a = face_mask(lm, quad, 128, feather=0.0)
    b = face_mask(lm_r, quad_r, 128, feather=0.0)
    assert np.mean(a != b) < 0.01  # both are the same region in the face's own frame, up to rasterisation


def test_mask_provider_plugs_in():
    _, lm = _synthetic_face()
    quad = crop_quad_for(face_quad(lm))
    seen: list[tuple[np.ndarray, int]] = []

    def disc(crop_lm: np.ndarray, size: int) -> np.ndarray:
        seen.append((crop_lm, size))
        out = np.zeros((size, size), np.float32)
        cv2.circle(out, (size // 2, size // 2), size // 6, 1.0, -1)
        return out

    m = face_mask(lm, quad, 100, provider=disc)
    assert m[50, 50] == 1.0 and m[50, 5] == 0.0
    assert seen[0][1] == 100 and np.allclose(seen[0][0], landmarks_in_crop(lm, quad, 100))
    assert np.array_equal(landmark_face_region(seen[0][0], 100), face_mask(lm, quad, 100))
    with pytest.raises(ValueError, match="shape"):
        face_mask(lm, quad, 100, provider=lambda _lm, s: np.zeros((s, s + 1), np.float32))


# --------------------------------------------------------------------------------------------------
# Paste-back


def _negative_render(photo: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    """A stand-in render of the window that differs from the photo everywhere: its negative."""
    from engine.quads import warp_quad

    return 255 - warp_quad(photo, quad, size)


def test_paste_back_keeps_pixels_outside_the_face_bit_exact():
    photo, lm = _synthetic_face(seed=5)
    quad = crop_quad_for(face_quad(lm))
    render = _negative_render(photo, quad, 128)
    square = paste_back(photo, render, quad)
    shaped = paste_back(photo, render, quad, landmarks=lm)
    inside, m = _window_mask(face_mask(lm, quad, _side(quad)), quad, photo.shape[:2])
    outside_face = inside & _clear_of(m)
    assert outside_face.sum() > 0.3 * inside.sum()
    changed = np.any(shaped != photo, axis=2)
    assert not changed[outside_face].any(), "pixels outside the face mask changed"
    assert not changed[~inside].any(), "pixels outside the window changed"
    # no square halo: the window's corners (inside the window, outside the face) are the photo's own
    q = np.round(quad).astype(int)
    h, w = photo.shape[:2]
    for cx, cy in q:
        x, y = np.clip([cx, cy], 0, [w - 1, h - 1])
        if inside[y, x]:
            assert np.array_equal(shaped[y, x], photo[y, x])
    halo = np.abs(square.astype(int) - photo.astype(int)).max(axis=2)[outside_face]
    assert halo.max() > 50, "the square paste should show its halo here (the test would prove nothing)"
    brow, up, height = _face_frame(lm)
    x, y = np.round(brow + 0.3 * height * up).astype(int)
    assert np.array_equal(shaped[y, x], square[y, x]), "the forehead takes the render"
    x, y = np.round(lm[30]).astype(int)
    assert np.array_equal(shaped[y, x], square[y, x]), "the face takes the render"


def test_paste_back_mask_and_landmarks_are_exclusive():
    photo, lm = _synthetic_face()
    quad = crop_quad_for(face_quad(lm))
    with pytest.raises(ValueError, match="either"):
        paste_back(photo, photo[:64, :64], quad, mask=np.ones((64, 64)), landmarks=lm)


def test_paste_back_real_photo(faces_dir):
    from engine.align import align_face
    from engine.imageio import load_image

    photo = load_image(faces_dir / "face_a.jpg")
    face = align_face(photo, size=256)
    render = _negative_render(photo, face.crop_quad, 256)
    out = paste_back(photo, render, face.crop_quad, landmarks=face.landmarks)
    quad = face.crop_quad
    inside, m = _window_mask(face_mask(face.landmarks, quad, _side(quad)), quad, photo.shape[:2])
    changed = np.any(out != photo, axis=2)
    assert not changed[_clear_of(m)].any()
    assert changed[m == 1].mean() > 0.99
    assert 0.2 < (m > 0)[inside].mean() < 0.7, "the face mask should cover part, not all, of the window"


# --------------------------------------------------------------------------------------------------
# State and sessions


def test_state_keeps_landmarks_read_only():
    from engine.state import EditState

    _, lm = _synthetic_face()
    s = EditState(landmarks=lm)
    assert s.landmarks.dtype == np.float32 and s.landmarks.shape == (68, 2)
    assert not s.landmarks.flags.writeable
    edited = s.with_direction("smile", 1.0)
    assert edited.subject is s.subject and edited.landmarks is s.landmarks
    assert EditState().landmarks is None
    with pytest.raises(ValueError, match="shape"):
        EditState(landmarks=np.zeros((5, 2)))


def test_session_round_trips_landmarks_and_opens_old_sessions(tmp_path):
    from engine.session import load_session, save_session
    from engine.state import EditState

    _, lm = _synthetic_face()
    state = EditState(
        latent=np.ones((4, 8), np.float32), crop_quad=crop_quad_for(face_quad(lm)), landmarks=lm, input_path="p.png"
    )
    path = save_session(state, tmp_path / "s")
    back = load_session(path)
    assert back.same_as(state) and np.array_equal(back.landmarks, lm)

    # A session written before landmarks were kept: its .npz has no 'landmarks'.
    old = tmp_path / "old.json"
    data = json.loads(path.read_text())
    data["arrays"] = "old.npz"
    old.write_text(json.dumps(data))
    with np.load(path.with_suffix(".npz")) as z:
        np.savez(tmp_path / "old.npz", **{k: z[k] for k in z.files if k != "landmarks"})
    reopened = load_session(old)
    assert reopened.landmarks is None
    assert np.array_equal(reopened.latent, state.latent) and np.array_equal(reopened.crop_quad, state.crop_quad)


# --------------------------------------------------------------------------------------------------
# Export options and export through the studio


def test_export_options_validation(tmp_path):
    from engine.export import ExportOptions

    ok = ExportOptions(str(tmp_path), "x", "jpeg", ("pasted",), upscale=4)
    assert ok.extension == "jpg"
    assert ExportOptions(str(tmp_path), "x", upscale=np.int64(2)).upscale == 2
    for kwargs, message in (
        ({"upscale": 3}, "upscale must be one of 1, 2, 4"),
        ({"upscale": True}, "upscale"),
        ({"upscale": 2.0}, "upscale"),
        ({"fmt": "gif"}, "unknown export format"),
        ({"kinds": ("aligned", "bogus")}, "unknown export kind"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"jpeg_quality": 9.5}, "jpeg_quality"),
    ):
        with pytest.raises(ValueError, match=message):
            ExportOptions(str(tmp_path), "x", **kwargs)
    with pytest.raises(ValueError, match="folder"):
        ExportOptions(" ", "x")
    with pytest.raises(ValueError, match="name"):
        ExportOptions(str(tmp_path), "")


@pytest.fixture(scope="module")
def studio_photo(tmp_path_factory):
    """A studio on the random development bundle with a procedural photo opened and inverted:
    (studio, photo face, state)."""
    from conftest import torch_threads

    from engine.state import EditState
    from engine.studio import RANDOM_SPEC, Studio
    from factory.synthetic import write_photo

    tmp = tmp_path_factory.mktemp("export")
    photo = write_photo(tmp / "face.png", seed=11, size=600)
    with torch_threads(1):
        studio = Studio(tmp / "cache")
        studio.load_model(RANDOM_SPEC)
        face = studio.open_photo(str(photo))
        latent = studio.invert(face.aligned, 1)
        state = EditState(
            model_id=RANDOM_SPEC,
            input_path=face.path,
            latent=latent,
            face_transform=face.face_transform,
            crop_quad=face.crop_quad,
            landmarks=face.face.landmarks,
        )
        yield studio, face, state


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, path
    return img[:, :, ::-1]


def test_export_upscales_aligned_and_framed(studio_photo, tmp_path):
    from engine.export import ExportOptions
    from engine.render import render_picture

    studio, face, state = studio_photo
    res = studio.bundle.resolution
    one = studio.export(state, ExportOptions(str(tmp_path), "one", kinds=("aligned", "framed")))
    two = studio.export(state, ExportOptions(str(tmp_path), "two", upscale=2))
    assert [p.name for p in one] == ["one_aligned.png", "one_framed.png"]
    assert [p.name for p in two] == ["two_aligned.png", "two_framed.png", "two_pasted.png"]
    for p in one:
        assert _read(p).shape == (res, res, 3)
    aligned2, framed2, pasted2 = (_read(p) for p in two)
    assert aligned2.shape == framed2.shape == (2 * res, 2 * res, 3)
    assert np.array_equal(_read(one[0]), render_picture(state, studio.bundle, view="aligned"))
    lanczos = cv2.resize(_read(one[1]), (2 * res, 2 * res), interpolation=cv2.INTER_LANCZOS4)
    assert np.array_equal(framed2, lanczos)
    assert pasted2.shape == face.image.shape, "the pasted photo keeps the photo's size"


def test_export_pasted_uses_the_face_mask(studio_photo, tmp_path):
    from engine.export import ExportOptions

    studio, face, state = studio_photo
    (path,) = studio.export(state, ExportOptions(str(tmp_path), "p", kinds=("pasted",)))
    pasted = _read(path)
    photo = face.image
    quad = face.crop_quad
    inside, m = _window_mask(face_mask(face.face.landmarks, quad, _side(quad)), quad, photo.shape[:2])
    changed = np.any(pasted != photo, axis=2)
    assert not changed[inside & _clear_of(m)].any(), "a square halo: pixels outside the face changed"
    assert not changed[~inside].any()
    assert changed[m == 1].mean() > 0.5, "the edited face was not pasted"

    # An older state without landmarks: the face is detected again, the same mask, the same picture.
    (again,) = studio.export(state.replace(landmarks=None), ExportOptions(str(tmp_path), "old", kinds=("pasted",)))
    assert np.array_equal(_read(again), pasted)

    # No face matches the window (it was moved away): the whole window is pasted with a soft edge.
    moved = state.replace(landmarks=None, crop_quad=quad + np.array([photo.shape[1] * 0.3, 0.0]))
    (square,) = studio.export(moved, ExportOptions(str(tmp_path), "sq", kinds=("pasted",)))
    assert np.any(_read(square) != photo)


# --------------------------------------------------------------------------------------------------
# The dialog


def test_export_dialog_upscale_and_size(qapp, tmp_path):
    from app.dialogs import ExportDialog

    dlg = ExportDialog(str(tmp_path), "x", resolution=64)
    try:
        assert dlg.options().upscale == 1
        assert "64 \u00d7 64 px" in dlg.size_label.text()
        assert "interpolation" in dlg.upscale.toolTip()
        dlg.upscale.setCurrentIndex(dlg.upscale.findData(4))
        assert dlg.options().upscale == 4
        assert "256 \u00d7 256 px" in dlg.size_label.text() and "interpolated" in dlg.size_label.text()
        dlg.folder.setText("")
        dlg.accept()
        assert dlg.result() == 0 and "folder" in dlg.error.text().lower(), "invalid options keep the dialog open"
    finally:
        dlg.deleteLater()
    plain = ExportDialog(str(tmp_path), "x")
    try:
        assert "model size" in plain.size_label.text()
    finally:
        plain.deleteLater()
