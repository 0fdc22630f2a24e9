"""engine.session: the edit state, undo/redo, session files and identical re-renders."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from engine.models import ensure_random_bundle, load_bundle
from engine.render import render_state
from engine.session import SessionError, load_session, save_session
from engine.state import EditState, History
from engine.transforms import make_transform


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(ensure_random_bundle(tmp_path_factory.getbasetemp() / "bundles"))


@pytest.fixture(scope="module")
def state(bundle):
    G = bundle.generator
    with torch.no_grad():
        ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(2)))[0]
    layer = G.synthesis.layer_names[2]
    return EditState(
        model_id=str(bundle.folder),
        input_path="/photos/face.jpg",
        face_index=1,
        latent=ws,
        face_transform=make_transform(12.0, 0.05, -0.02),
        crop_quad=np.arange(8.0).reshape(4, 2),
        directions={"smile": 1.5, "age": -2.0},
        channels={(layer, 3): 2.0},
        angle_deg=15.0,
        tx=0.1,
        ty=-0.05,
        view="photo",
    )


def test_state_is_immutable_and_replace_copies(state):
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.tx = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        state.latent[0, 0] = 1.0
    s2 = state.with_direction("smile", 0.0).with_direction("glasses", 1.0)
    assert state.directions == {"smile": 1.5, "age": -2.0}
    assert s2.directions == {"age": -2.0, "glasses": 1.0}
    assert s2.reset_edits().directions == {} and s2.reset_edits().input_path == state.input_path
    assert state.same_as(state.replace()) and not state.same_as(s2)
    with pytest.raises(ValueError):
        state.replace(view="sideways")


def test_history_undo_redo_and_drag_checkpoint():
    h = History(EditState())
    h.set(h.state.with_direction("smile", 1.0))
    h.set(h.state.with_direction("smile", 2.0))
    assert h.state.directions["smile"] == 2.0
    assert h.undo() and h.state.directions["smile"] == 1.0
    assert h.redo() and h.state.directions["smile"] == 2.0
    assert not h.redo()
    origin = h.state  # a drag starts
    for v in (2.5, 3.0, 3.5):
        h.set(h.state.with_direction("smile", v), record=False)
    h.record_from(origin)
    h.record_from(h.state)  # a drag that changed nothing records nothing
    assert h.undo() and h.state.directions["smile"] == 2.0
    h.set(h.state.replace(tx=0.1))
    assert not h.can_redo
    h.set(h.state.replace())  # no change: nothing recorded
    assert h.undo() and h.state.tx == 0.0
    h.reset(EditState(input_path="x"))
    assert not h.can_undo and not h.can_redo


def test_session_round_trip_renders_identically(bundle, state, tmp_path):
    path = save_session(state, tmp_path / "my session")
    assert path.name == "my session.json" and (tmp_path / "my session.npz").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files must be renamed away"
    back = load_session(path)
    assert back.same_as(state)
    for view in ("aligned", "photo"):
        a = render_state(state, bundle, view=view)
        b = render_state(back, bundle, view=view)
        assert torch.equal(a, b)
    assert not torch.equal(render_state(state, bundle, "aligned"), render_state(state, bundle, "photo"))


def test_session_finds_moved_photo(state, tmp_path):
    photo = tmp_path / "a" / "face.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"x")
    path = save_session(state.replace(input_path=str(photo)), tmp_path / "a" / "s.json")
    assert path == tmp_path / "a" / "s.json"
    moved = tmp_path / "b"
    (tmp_path / "a").rename(moved)
    assert load_session(moved / "s.json").input_path == str((moved / "face.jpg").resolve())


def test_bad_session_files(state, tmp_path):
    with pytest.raises(SessionError, match="does not exist"):
        load_session(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SessionError, match="not a readable"):
        load_session(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(SessionError, match="not a Charm Studio session") as err:
        load_session(tmp_path / "other.json")
    assert "newer" not in str(err.value), "a foreign JSON file is not a session from a newer Charm Studio"
    (tmp_path / "future.json").write_text(json.dumps({"format": "charm-session/9"}))
    with pytest.raises(SessionError, match="newer Charm Studio"):
        load_session(tmp_path / "future.json")
    path = save_session(state, tmp_path / "s.json")
    path.with_suffix(".npz").unlink()
    with pytest.raises(SessionError, match="missing"):
        load_session(path)


def test_render_state_checks_latent_shape(bundle):
    with pytest.raises(ValueError, match="invert"):
        render_state(EditState(), bundle)
    with pytest.raises(ValueError, match="needs"):
        render_state(EditState(latent=np.zeros((3, 7), np.float32)), bundle)


def test_session_with_tuned_generator(bundle, state, tmp_path):
    from engine.checkpoints import load_generator, save_generator

    G = bundle.generator
    tuned = load_generator(bundle.folder / "generator.safetensors")
    with torch.no_grad():
        for name, p in tuned.synthesis.named_parameters():
            if not name.startswith("input."):
                p.mul_(1.01)
    gen_file = save_generator(tuned, tmp_path / "cache" / "pti.safetensors")
    s = state.replace(generator_file=str(gen_file))
    path = save_session(s, tmp_path / "out" / "s.json")
    assert (tmp_path / "out" / "s.generator.safetensors").is_file()
    back = load_session(path)
    assert back.generator_file == str((tmp_path / "out" / "s.generator.safetensors").resolve())
    a = render_state(s, bundle, generator=tuned)
    b = render_state(back, bundle, generator=load_generator(back.generator_file))
    assert torch.equal(a, b)
    assert not torch.equal(a, render_state(s, bundle, generator=G))


def test_edits_share_the_subject_and_undo_compares_edits(state):
    s2 = state.with_direction("smile", 0.5).replace(tx=0.2, view="aligned")
    assert s2.subject is state.subject and s2.latent is state.latent, "an edit must not copy the latent"
    s3 = s2.replace(latent=np.zeros_like(state.latent))
    assert s3.subject is not s2.subject and s3.edits is s2.edits
    h = History(state)
    h.set(state.replace(directions=dict(state.directions)))  # equal edits, same subject: nothing recorded
    assert not h.can_undo
    h.set(s2)
    assert h.can_undo and h.state.subject is state.subject
