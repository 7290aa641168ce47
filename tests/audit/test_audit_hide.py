"""The hiding option of the probe world (unitscope.world.hide): one concept's pixels blurred or filled,
every other pixel and every label as in the plain world; recorded in world.json; clear errors."""

import json

import numpy as np
import pytest

from unitscope.world import make_world, render_image
from unitscope.world.hide import HideSpec, HideStyle, _grow, hide_mask
from unitscope.world.scenes import scene_of
from unitscope.world.vocab import SCENES, O


def kitchens(seed=1, n=3):
    return [i for i in range(200) if SCENES[scene_of(seed, i)] == "kitchen"][:n]


@pytest.mark.parametrize("how", ["blur", "fill"])
def test_only_the_concept_changes(how):
    spec = HideSpec("cabinet", how)
    for i in kitchens():
        plain = render_image(1, i, 64)
        hidden = render_image(1, i, 64, style=HideStyle(spec))
        mask = hide_mask(plain.full, "cabinet")
        assert mask.sum() > 50 and np.array_equal(mask, plain.full["object"] == O["cabinet"])
        grown = _grow(mask, 1)
        assert np.array_equal(hidden.rgb[~grown], plain.rgb[~grown])  # everything else untouched
        assert (hidden.rgb[mask] != plain.rgb[mask]).any(axis=-1).mean() > 0.5
        for name in set(plain.labels) - {"color"}:  # the masks stay; colour names the pixels as drawn
            assert np.array_equal(hidden.labels[name], plain.labels[name])
        if how == "fill":  # one flat colour over the concept
            assert len(np.unique(hidden.rgb[grown].reshape(-1, 3), axis=0)) == 1
        else:  # blur: the concept's pixels vary less than before
            assert hidden.rgb[mask].astype(float).std(0).sum() < plain.rgb[mask].astype(float).std(0).sum()


def test_images_without_the_concept_are_the_plain_ones():
    i = next(i for i in range(50) if SCENES[scene_of(1, i)] == "beach")
    assert np.array_equal(render_image(1, i, 64, style=HideStyle(HideSpec("cabinet"))).rgb, render_image(1, i, 64).rgb)


def test_world_records_the_option(tmp_path):
    w = make_world(tmp_path / "w", n=5, size=32, seed=1, workers=1, progress=False, hide=HideSpec("door", "fill"))
    assert json.loads((w / "world.json").read_text())["hide"] == {"concept": "door", "how": "fill", "blur": 1 / 12}
    with pytest.raises(ValueError, match="not both"):
        make_world(tmp_path / "x", n=5, size=32, cue=object(), hide=HideSpec("door"), progress=False)


def test_bad_specs_are_clear_errors():
    with pytest.raises(ValueError, match="did you mean cabinet"):
        HideSpec("cabinett")
    with pytest.raises(ValueError, match="blur or fill"):
        HideSpec.parse("cabinet,smudge")
    assert HideSpec.parse("cabinet, fill") == HideSpec("cabinet", "fill")
    assert HideSpec("cabinet").key() == "hide-cabinet-blur"


def test_cli_world_make_hide(tmp_path, capsys):
    from unitscope.cli import main

    assert (
        main(
            [
                "world",
                "make",
                str(tmp_path / "w"),
                "--n",
                "4",
                "--size",
                "32",
                "--hide",
                "cabinet,fill",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "w" / "world.json").read_text())["hide"]["how"] == "fill"
    capsys.readouterr()
    assert main(["world", "make", str(tmp_path / "x"), "--n", "4", "--hide", "cabinets", "--no-progress"]) != 0
    assert "did you mean cabinet" in capsys.readouterr().err
