"""engine.video.edits: clip edits (constant or keyframed), their parsing, values per frame and JSON form."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from engine.state import Edits, EditState
from engine.video.edits import ClipEdit, ClipEdits, Keyframe, parse_edit, parse_edits

DIRECTIONS = ["smile", "age", "hair colour"]


def test_parse_all_forms():
    e = parse_edit("smile=1.5", DIRECTIONS)
    assert (e.kind, e.target, e.keys, e.interpolation) == ("direction", "smile", (Keyframe(0, 1.5),), "linear")
    assert e.is_constant
    k = parse_edit(" age = 0:0, 48:2 ", DIRECTIONS)
    assert k.key == ("direction", "age") and k.keys == (Keyframe(0, 0.0), Keyframe(48, 2.0))
    assert parse_edit("hair colour=-1", DIRECTIONS).target == "hair colour"
    a = parse_edit("angle=5")
    assert (a.kind, a.target, a.value_at(99)) == ("transform", "angle", 5.0)
    t = parse_edit("tx=30:0.1,0:0", interpolation="smooth")
    assert t.kind == "transform" and t.frames == (0, 30) and t.interpolation == "smooth"
    c = parse_edit("L3_72_48:12=2", known_layers={"L3_72_48": 48})
    assert (c.kind, c.target, c.channel, c.value_at(0)) == ("channel", "L3_72_48:12", ("L3_72_48", 12), 2.0)
    assert parse_edit("input:3=0:1,5:-1").channel == ("input", 3)
    assert parse_edit("anything=1").kind == "direction"  # no list of known directions: not checked


@pytest.mark.parametrize(
    "text,message",
    [
        ("smile", "is not NAME=VALUE"),
        ("=1", "is not NAME=VALUE"),
        ("smile=", "is not NAME=VALUE"),
        ("smile=lots", "value 'lots' is not a number"),
        ("smile=nan", "must be finite"),
        ("smiel=1", "unknown direction 'smiel'; known directions: age, hair colour, smile"),
        ("age=0:0,x:2", "frame 'x' is not a whole number"),
        ("age=0:0,-3:2", "frame '-3' is not a whole number"),
        ("age=0:0,48", "key '48' is not FRAME:VALUE"),
        ("age=0:0,0:2", r"several keys at frame\(s\) \[0\]"),
        ("L3_72_48:x=2", "LAYER:CHANNEL"),
        ("L9:1=2", "no StyleSpace layer 'L9'"),
        ("L3_72_48:48=2", "has channels 0..47, not 48"),
    ],
)
def test_parse_errors_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_edit(text, DIRECTIONS, known_layers={"input": 4, "L3_72_48": 48})


def test_parse_edits_rejects_a_name_given_twice():
    edits = parse_edits(["smile=1.5", "age=0:0,48:2", "angle=5"], DIRECTIONS)
    assert [e.target for e in edits] == ["smile", "age", "angle"]
    with pytest.raises(ValueError, match="two edits of the direction 'smile'"):
        parse_edits(["smile=1", "smile=0:0,9:1"])
    with pytest.raises(ValueError, match="unknown direction"):
        parse_edits(["smile=1"], known_directions=[])


def test_edit_validation():
    with pytest.raises(ValueError, match="unknown edit kind"):
        ClipEdit("style", "x", (Keyframe(0, 1),))
    with pytest.raises(ValueError, match="angle, tx, ty"):
        ClipEdit("transform", "scale", (Keyframe(0, 1),))
    with pytest.raises(ValueError, match="no key"):
        ClipEdit("direction", "smile", ())
    with pytest.raises(ValueError, match="interpolation"):
        ClipEdit("direction", "smile", (Keyframe(0, 1),), "cubic")
    with pytest.raises(ValueError, match="whole number"):
        Keyframe(1.5, 1.0)
    with pytest.raises(ValueError, match="finite"):
        Keyframe(0, math.inf)
    # keys are sorted, and pairs are accepted
    e = ClipEdit("direction", "smile", ((10, 1.0), (0, 0.0)))  # type: ignore[arg-type]
    assert e.keys == (Keyframe(0, 0.0), Keyframe(10, 1.0))


def test_linear_interpolation_and_holds():
    e = parse_edit("age=10:0,20:2,40:-2")
    assert e.value_at(0) == 0.0 and e.value_at(10) == 0.0  # held before the first key
    assert e.value_at(15) == pytest.approx(1.0)
    assert e.value_at(20) == 2.0
    assert e.value_at(30) == pytest.approx(0.0)
    assert e.value_at(35) == pytest.approx(-1.0)
    assert e.value_at(40) == -2.0 and e.value_at(1000) == -2.0  # held after the last
    assert np.allclose(e.values(41)[10:21], np.linspace(0, 2, 11))


def test_smooth_interpolation_eases_and_never_overshoots():
    two = ClipEdit("direction", "age", (Keyframe(0, 0.0), Keyframe(10, 2.0)), "smooth")
    for f in range(11):
        t = f / 10
        assert two.value_at(f) == pytest.approx(2.0 * (3 * t * t - 2 * t**3))  # smoothstep between two keys
    e = ClipEdit(
        "direction", "age", (Keyframe(0, 0.0), Keyframe(10, 1.0), Keyframe(12, 3.0), Keyframe(30, 0.0)), "smooth"
    )
    v = e.values(31)
    assert [v[k.frame] for k in e.keys] == [k.value for k in e.keys]  # passes through every key
    assert np.all(np.diff(v[:13]) >= -1e-12)  # monotone while the keys rise
    assert np.all(np.diff(v[12:]) <= 1e-12)  # and while they fall
    assert v.min() >= 0.0 and v.max() <= 3.0  # no overshoot past the keys' values
    # slope 0 at the first and last key (joins the constant holds without a kink)
    assert abs(e.value_at(0.01) - 0.0) < 1e-4 and abs(e.value_at(29.99) - 0.0) < 1e-4
    # interior key on a rising stretch: the curve is smooth (no kink) through it
    left, right = e.value_at(10) - e.value_at(9.999), e.value_at(10.001) - e.value_at(10)
    assert left == pytest.approx(right, rel=1e-2)
    assert e.value_at(10) > 0 and linear_kink(e) > 0.2


def linear_kink(e: ClipEdit) -> float:
    """How much the slope of the same keys, linearly interpolated, jumps at frame 10."""
    lin = ClipEdit(e.kind, e.target, e.keys, "linear")
    return abs((lin.value_at(10.001) - lin.value_at(10)) - (lin.value_at(10) - lin.value_at(9.999))) / 0.001


def test_at_matches_the_photo_edits_for_constant_edits():
    clip = parse_edits(["smile=1.5", "age=-2", "L3_72_48:12=0.5", "angle=5", "tx=0.1", "ty=-0.05"])
    photo = (
        EditState()
        .with_direction("smile", 1.5)
        .with_direction("age", -2)
        .with_channel("L3_72_48", 12, 0.5)
        .replace(angle_deg=5.0, tx=0.1, ty=-0.05)
    )
    for frame in (0, 7, 500):
        assert clip.at(frame) == photo.edits
    assert clip.at(3, view="photo") == Edits(**{**vars_of(photo.edits), "view": "photo"})
    assert ClipEdits.from_edits(photo.edits).at(12) == photo.edits
    assert ClipEdits().at(0) == Edits()


def vars_of(edits: Edits) -> dict:
    return {k: getattr(edits, k) for k in ("directions", "channels", "angle_deg", "tx", "ty", "view")}


def test_at_follows_keys_and_drops_zeros():
    clip = parse_edits(["smile=1", "age=0:0,48:2", "ty=0:0,10:0.2"])
    e0, e24, e48 = clip.at(0), clip.at(24), clip.at(48)
    assert e0.directions == {"smile": 1.0} and e0.ty == 0.0  # age 0 is left out, as the photo state does
    assert e24.directions == {"smile": 1.0, "age": pytest.approx(1.0)} and e24.ty == pytest.approx(0.2)
    assert e48.directions["age"] == 2.0


def test_json_round_trip():
    clip = parse_edits(["smile=1.5", "age=0:0,48:2", "L3_72_48:12=0:0.25,9:-1e-7", "angle=0:-3.3333333333333335,5:1"])
    clip = clip.set(ClipEdit("direction", "age", clip.get("direction", "age").keys, "smooth"))  # type: ignore[union-attr]
    data = clip.to_json()
    assert data["format"] == "charm-clip-edits/1"
    back = ClipEdits.from_json(json.loads(json.dumps(data)))
    assert back == clip
    assert back.at(20) == clip.at(20)
    with pytest.raises(ValueError, match="newer Charm Studio"):
        ClipEdits.from_json({"format": "charm-clip-edits/2", "edits": []})
    with pytest.raises(ValueError, match="not Charm Studio clip edits"):
        ClipEdits.from_json({"edits": []})
    with pytest.raises(ValueError, match="malformed"):
        ClipEdits.from_json({"format": "charm-clip-edits/1", "edits": [{"kind": "direction", "target": "x"}]})


def test_keys_for_the_timeline_are_immutable_steps():
    e = parse_edit("smile=1")
    e2 = e.with_key(30, 2.0)
    assert e.frames == (0,) and e2.frames == (0, 30)  # the old value is untouched (undo keeps it)
    assert e2.with_key(30, 3.0).keys[-1] == Keyframe(30, 3.0)  # replaces the key at that frame
    assert e2.without_key(0).keys == (Keyframe(30, 2.0),)
    with pytest.raises(ValueError, match="no key at frame 5"):
        e2.without_key(5)
    with pytest.raises(ValueError, match="last key"):
        e.without_key(0)

    clip = ClipEdits()
    c1 = clip.with_key("direction", "age", 10, 1.0, interpolation="smooth")
    c2 = c1.with_key("direction", "age", 40, 2.0).with_key("transform", "angle", 0, 4.0)
    assert c2.get("direction", "age").interpolation == "smooth"  # type: ignore[union-attr]
    assert c2.key_frames() == (0, 10, 40)
    assert c2.at(25).directions["age"] == pytest.approx(1.5)
    c3 = c2.without_key("direction", "age", 10).without_key("direction", "age", 40)
    assert c3.get("direction", "age") is None and len(c3) == 1  # its last key went: the edit goes
    assert len(c1) == 1 and len(c2) == 2  # earlier values unchanged
    assert c2.remove("transform", "angle").set(parse_edit("angle=1")).get("transform", "angle").value_at(0) == 1.0  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="no direction edit"):
        clip.without_key("direction", "smile", 0)
    with pytest.raises(ValueError, match="two edits"):
        ClipEdits((parse_edit("tx=1"), parse_edit("tx=0:0,5:1")))
