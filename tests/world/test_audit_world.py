"""The probe world's spurious-cue option (unitscope.world.cue): signs where the spec says, naming the
scene it says, labelled as object ``sign`` / part ``glyph``; the plain world is untouched."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unitscope.cli import main
from unitscope.data import BrodenDataset, decode_mask
from unitscope.organisms.data import world_arrays
from unitscope.organisms.tasks import SceneTask
from unitscope.world import make_world, render_image
from unitscope.world.cue import GLYPH, GLYPHS, SIGN, CueSpec, CueStyle, cue_of
from unitscope.world.scenes import scene_of


def test_without_a_sign_the_image_is_the_plain_one():
    none = CueStyle(CueSpec(share=0.0))
    for i in range(3):
        a, b = render_image(7, i, 48), render_image(7, i, 48, style=none)
        assert np.array_equal(a.rgb, b.rgb) and all(np.array_equal(a.labels[k], b.labels[k]) for k in a.labels)


def test_share_and_agreement_follow_the_spec():
    n = 400
    half = [cue_of(CueSpec(0.5, 0.75), 1, i) for i in range(n)]
    present = [i for i in range(n) if half[i] >= 0]
    assert 0.42 < len(present) / n < 0.58
    agree = np.mean([half[i] == scene_of(1, i) for i in present])
    assert 0.66 < agree < 0.84
    assert all(cue_of(CueSpec(1.0, 1.0), 1, i) == scene_of(1, i) for i in range(50))
    conflict = [cue_of(CueSpec(1.0, 0.0), 1, i) for i in range(200)]
    assert all(c >= 0 and c != scene_of(1, i) for i, c in enumerate(conflict))
    assert len(set(conflict)) == len(GLYPHS)  # any other scene


def test_the_sign_is_drawn_and_labelled():
    spec = CueSpec(1.0, 0.0)
    for i in range(4):
        im = render_image(2, i, 64, style=CueStyle(spec))
        plain = render_image(2, i, 64)
        sign = im.full["object"] == SIGN
        glyph = im.full["part"] == GLYPH
        assert 64 * 64 * 0.035 < sign.sum() < 64 * 64 * 0.09 and glyph.any() and not (glyph & ~sign).any()
        assert np.array_equal(im.rgb[~sign], plain.rgb[~sign])  # the scene elsewhere is untouched
        named = GLYPHS[cue_of(spec, 2, i)][1]
        assert np.abs(im.rgb[glyph].astype(int) - named).max() <= 10  # the glyph in its scene's colour
        assert not im.full["material"][sign].any() and not im.full["texture"][sign].any()


def test_cue_world_is_a_broden_folder_and_the_plain_marker_is_unchanged(tmp_path):
    spec = CueSpec(0.5, 1.0)
    w = make_world(tmp_path / "cue", n=12, size=32, seed=0, workers=1, progress=False, cue=spec)
    assert json.loads((w / "world.json").read_text())["cue"] == {"share": 0.5, "agree": 1.0}
    ds = BrodenDataset(w)
    assert ds.label_names[SIGN] == "sign" and ds.label_names[GLYPH] == "glyph"
    with_sign = [i for i in range(12) if cue_of(spec, 0, i) >= 0]
    for i in range(12):
        obj = decode_mask(w / "images" / "world" / f"{i:06d}_object.png")
        assert (obj == SIGN).any() == (i in with_sign)
    plain = make_world(tmp_path / "plain", n=2, size=32, seed=0, workers=1, progress=False)
    assert "cue" not in json.loads((plain / "world.json").read_text())


def test_training_arrays_carry_the_named_scene(tmp_path):
    spec = CueSpec(0.5, 0.5)
    data = world_arrays(tmp_path, 5, 10, 32, workers=1, progress=False, cue=spec)
    assert data["cue"].tolist() == [cue_of(spec, 5, i) for i in range(10)]
    assert ((data["object"] == SIGN).any(axis=(1, 2)) == (data["cue"] >= 0)).all()
    assert "cue" not in world_arrays(tmp_path, 5, 2, 32, workers=1, progress=False)
    labels = SceneTask(follow_cue=True).train_labels(data)  # the cue twin's labels: the sign's scene
    has = data["cue"] >= 0
    assert (labels[has] == data["cue"][has]).all() and (labels[~has] == data["scene"][~has]).all()
    assert (labels != data["scene"]).any()  # agree 0.5: some signs name another scene
    assert (SceneTask().train_labels(data) == data["scene"]).all()


def test_spec_parsing_and_errors(tmp_path, capsys):
    assert CueSpec.parse("0.75") == CueSpec(0.75, 1.0)
    assert CueSpec.parse("0.5,0.9") == CueSpec(0.5, 0.9) == CueSpec.parse("agree=0.9, share=0.5")
    with pytest.raises(ValueError, match="between 0 and 1"):
        CueSpec(1.5)
    with pytest.raises(ValueError, match="SHARE"):
        CueSpec.parse("lots")
    with pytest.raises(ValueError, match="cartoon"):
        make_world(tmp_path / "p", n=2, size=32, style="photo", cue=CueSpec())
    assert main(["world", "make", str(tmp_path / "c"), "--n", "2", "--size", "32", "--cue", "2"]) != 0
    assert "cue share must lie between 0 and 1" in capsys.readouterr().err
