"""The procedural face renderer (factory.synthetic): determinism, geometry, labels, attributes, dlib."""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np
import pytest

from factory.synthetic import (
    FACTOR_NAMES,
    FACTORS,
    Factors,
    factor_index,
    ffhq_quad,
    render,
    render_clip,
    sample_factors,
)

POSE = ("roll", "tx", "ty", "scale")


def _one(**overrides: float) -> Factors:
    """A fixed, plain face (mid-range identity, neutral attributes) with some factors overridden."""
    v = np.array([0.5 * (f.low + f.high) for f in FACTORS], dtype=np.float32)
    base = dict(
        smile=0.0, age=0.2, glasses=0.0, beard=0.0, brow_raise=0.0, yaw=0.0, hair_length=0.2, fringe=0.0, light_dir=0.0
    )
    base.update(overrides)
    for k, val in base.items():
        v[factor_index(k)] = val
    return Factors(v)


def _box_diff(a: np.ndarray, b: np.ndarray, pts: np.ndarray, pad: float) -> float:
    """Mean absolute difference of two images inside the box around ``pts`` grown by ``pad`` px."""
    x0, y0 = np.floor(pts.min(axis=0) - pad).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0) + pad).astype(int)
    x0, y0 = max(x0, 0), max(y0, 0)
    return float(np.abs(a[y0:y1, x0:x1].astype(np.float32) - b[y0:y1, x0:x1]).mean())


def test_factor_table_is_consistent():
    assert len(set(FACTOR_NAMES)) == len(FACTORS)
    for f in FACTORS:
        assert f.kind in ("identity", "attribute", "pose"), f
        assert f.low < f.high and (f.low, f.high) in ((0.0, 1.0), (-1.0, 1.0)), f
        assert f.description
    kinds = {f.name: f.kind for f in FACTORS}
    for name in ("smile", "age", "glasses", "beard", "brow_raise", "yaw"):
        assert kinds[name] == "attribute"
    for name in POSE:
        assert kinds[name] == "pose"


def test_sampling_is_deterministic_and_in_range():
    a, b, c = sample_factors(64, seed=3), sample_factors(64, seed=3), sample_factors(64, seed=4)
    assert a.values.shape == (64, len(FACTORS)) and a.values.dtype == np.float32
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    lo = np.array([f.low for f in FACTORS])
    hi = np.array([f.high for f in FACTORS])
    assert np.all(a.values >= lo) and np.all(a.values <= hi)
    assert 0 < (a["glasses"] > 0).mean() < 1 and 0 < (a["beard"] > 0).mean() < 1
    assert a[3]["smile"][0] == a.values[3, factor_index("smile")]
    assert np.all(a.replace(smile=1.0)["smile"] == 1.0)


def test_render_is_deterministic_with_documented_shapes():
    f = sample_factors(3, seed=11)
    im1, lm1, lab1 = render(f, 96)
    im2, lm2, _ = render(f, 96)
    assert im1.shape == (3, 96, 96, 3) and im1.dtype == np.uint8
    assert lm1.shape == (3, 68, 2) and lm1.dtype == np.float32
    np.testing.assert_array_equal(im1, im2)
    np.testing.assert_array_equal(lm1, lm2)
    assert isinstance(lab1, Factors) and len(lab1) == 3
    assert np.all((lm1 > 0) & (lm1 < 95))
    assert im1.std() > 20  # not blank
    # a single factor vector works too
    im, lm, _ = render(f.values[0], 64)
    assert im.shape == (1, 64, 64, 3) and lm.shape == (1, 68, 2)


def test_labels_match_factors():
    f = sample_factors(4, seed=5)
    _, _, lab = render(f, 64, aligned=False)
    np.testing.assert_array_equal(lab.values, f.values)
    _, _, lab = render(f, 64, aligned=True)
    for name in FACTOR_NAMES:
        expect = np.zeros(4, np.float32) if name in POSE else f[name]
        np.testing.assert_array_equal(lab[name], expect, err_msg=name)


@pytest.mark.parametrize("scale_mode", ["eyes", "ffhq"])
def test_aligned_render_is_the_ffhq_crop(scale_mode):
    size = 128
    f = sample_factors(6, seed=2)
    _, lm, _ = render(f, size, aligned=True, scale_mode=scale_mode)
    for k in range(len(f)):
        c, x, y = ffhq_quad(lm[k], scale_mode)
        quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
        expect = np.array([[-0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5], [size - 0.5, -0.5]])
        np.testing.assert_allclose(quad, expect, atol=1e-3)
        eye_l, eye_r = lm[k, 36:42].mean(axis=0), lm[k, 42:48].mean(axis=0)
        e2e = np.hypot(*(eye_r - eye_l))
        if scale_mode == "eyes":
            assert e2e == pytest.approx(size / 4, abs=1e-3)
        else:
            assert e2e <= size / 4 + 1e-3
        # eyes sit where FFHQ puts them: left/right of the centre line, above the centre
        assert eye_l[0] < size / 2 < eye_r[0]
        assert 0.38 * size < 0.5 * (eye_l[1] + eye_r[1]) < 0.5 * size


def test_landmarks_scale_with_resolution():
    f = sample_factors(2, seed=8)
    _, lm_a, _ = render(f, 64)
    im_b, lm_b, _ = render(f, 1024)
    assert im_b.shape == (2, 1024, 1024, 3)
    np.testing.assert_allclose((lm_a + 0.5) * 16 - 0.5, lm_b, atol=1e-3)


def test_unaligned_render_aligns_back_to_the_aligned_render():
    """Warping an unaligned render with the FFHQ quad of its landmarks reproduces the aligned render."""
    f = sample_factors(3, seed=9)
    al, _, _ = render(f, 128, aligned=True)
    un, lm, _ = render(f, 256, aligned=False)
    for k in range(3):
        c, x, y = ffhq_quad(lm[k])
        # output pixel p samples the source at c + 2x((p+.5)/S - .5) + 2y(...)
        a = np.stack([2 * x, 2 * y], axis=1) / 128
        t = c - a @ np.array([63.5, 63.5])
        warped = cv2.warpAffine(
            un[k],
            np.hstack([a, t[:, None]]),
            (128, 128),
            flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
        assert np.abs(warped.astype(np.float32) - al[k]).mean() < 6.0


def test_pose_factors_move_the_face():
    base = _one()
    _, lm0, _ = render(base, 128, aligned=False)
    _, lm_r, _ = render(base.replace(roll=1.0), 128, aligned=False)
    d = lm_r[0, 45] - lm_r[0, 36]
    # +roll turns counter-clockwise on screen: the image-right eye goes up
    assert np.degrees(np.arctan2(-d[1], d[0])) == pytest.approx(25.0, abs=1.0)
    _, lm_t, _ = render(base.replace(tx=1.0, ty=-1.0), 128, aligned=False)
    shift = (lm_t[0] - lm0[0]).mean(axis=0)
    np.testing.assert_allclose(shift, [12.8, -12.8], atol=0.05)
    _, lm_s, _ = render(base.replace(scale=1.0), 128, aligned=False)
    assert np.ptp(lm_s[0, :, 0]) / np.ptp(lm0[0, :, 0]) == pytest.approx(0.65 / 0.575, rel=1e-3)


def test_attributes_change_the_right_region():
    size = 128
    plain = _one()
    im0, lm0, _ = render(plain, size)
    im0, lm0 = im0[0], lm0[0]
    eyes, mouth, brows = lm0[36:48], lm0[48:68], lm0[17:27]

    im, _, _ = render(plain.replace(glasses=1.0), size)
    assert _box_diff(im0, im[0], eyes, 8) > 4 * max(_box_diff(im0, im[0], mouth, 4), 0.5)

    im, lm, _ = render(plain.replace(smile=1.0), size)
    assert _box_diff(im0, im[0], mouth, 4) > 3 * max(_box_diff(im0, im[0], brows, 4), 0.5)
    assert (lm[0, 54, 0] - lm[0, 48, 0]) > (lm0[54, 0] - lm0[48, 0]) + 2  # wider mouth
    assert lm[0, 66, 1] - lm[0, 62, 1] > 3  # open, teeth show

    im, _, _ = render(plain.replace(beard=1.0), size)
    chin = lm0[5:12]
    assert _box_diff(im0, im[0], chin, 3) > 4 * max(_box_diff(im0, im[0], eyes, 3), 0.5)

    im, _, _ = render(plain.replace(age=1.0, hair_length=0.2), size)
    top = np.array([[size * 0.35, size * 0.05], [size * 0.65, size * 0.12]])  # hair above the forehead
    assert _box_diff(im0, im[0], top, 0) > 10  # grey hair

    _, lm, _ = render(plain.replace(brow_raise=1.0), size)
    assert lm[0, 17:27, 1].mean() < lm0[17:27, 1].mean() - 1.5

    _, lm, _ = render(plain.replace(yaw=1.0), size)
    nose_r = lm[0, 30, 0] - 0.5 * (lm[0, 36, 0] + lm[0, 45, 0])
    nose_0 = lm0[30, 0] - 0.5 * (lm0[36, 0] + lm0[45, 0])
    assert nose_r > nose_0 + 2  # +yaw: features (the nose most) shift to the image right


def test_clip_is_smooth_and_keeps_identity():
    f = sample_factors(1, seed=4)
    frames, lm, lab = render_clip(f, n_frames=12, size=64, seed=1)
    assert frames.shape == (12, 64, 64, 3) and lm.shape == (12, 68, 2) and len(lab) == 12
    frames2, _, _ = render_clip(f, n_frames=12, size=64, seed=1)
    np.testing.assert_array_equal(frames, frames2)
    moving = [factor_index(n) for n in ("roll", "tx", "ty", "yaw", "smile")]
    fixed = [i for i in range(len(FACTORS)) if i not in moving]
    np.testing.assert_array_equal(lab.values[:, fixed], np.repeat(f.values[:, fixed], 12, axis=0))
    assert np.all(np.ptp(lab.values[:, moving], axis=0) > 0.05)
    step = np.abs(np.diff(lab.values[:, moving], axis=0)).max()
    assert step < 0.5  # no jumps between frames
    centre = lm.mean(axis=1)
    assert np.abs(np.diff(centre, axis=0)).max() < 6.0


def _dlib_models():
    dlib = pytest.importorskip("dlib")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face_recognition_models (dlib's landmark model) is not installed")
    path = spec.submodule_search_locations[0] + "/models/shape_predictor_68_face_landmarks.dat"
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(path)


def test_dlib_finds_the_faces_and_their_landmarks():
    detector, predictor = _dlib_models()
    f = sample_factors(40, seed=1234)
    assert np.abs(f["roll"]).max() > 0.8  # rolls of up to ~25 degrees are exercised
    images, landmarks, _ = render(f, 256, aligned=False)
    found, errors = 0, []
    for img, lm in zip(images, landmarks):
        centre = lm.mean(axis=0)
        rects = [
            r for r in detector(img, 1) if r.left() <= centre[0] <= r.right() and r.top() <= centre[1] <= r.bottom()
        ]
        if not rects:
            continue
        found += 1
        shape = predictor(img, rects[0])
        pred = np.array([[shape.part(k).x, shape.part(k).y] for k in range(36, 68)], dtype=np.float64)
        w, h = np.ptp(lm, axis=0)
        errors.append(np.hypot(*(pred - lm[36:68]).T).mean() / np.sqrt(w * h))
    assert found >= 38, f"dlib found {found}/40 faces"
    assert np.median(errors) < 0.02, f"median eye+mouth landmark error {np.median(errors):.4f} of the face size"
