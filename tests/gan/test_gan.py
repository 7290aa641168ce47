"""Generator dissection on a hand-built generator whose unit 0 paints doors (only on walls) and
whose unit 1 paints nothing (tests/helpers/gan_models.py): the engine labels them, removal takes the doors
away, insertion paints a door in a wall cell and never in the sky; the CLI runs it from files."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.gan_models import door_segmenter, toy_generator
from unitscope.ablate import cut_model
from unitscope.dissect import Options, dissect_sources
from unitscope.gan import (
    GeneratorActivations,
    SegmenterLabels,
    cache_samples,
    insertion_in_context,
    latents,
    removal_curve,
)

HELPERS = Path(__file__).parents[1] / "helpers"
ROOT = Path(__file__).parents[2]


def test_samples_are_reproducible_by_seed_and_the_source_feeds_the_segmenter() -> None:
    g = toy_generator()
    acts = GeneratorActivations(g, ["feat"], n=6, seed=3)
    assert torch.equal(acts.z, latents(6, 3, (16, 1, 1))) and torch.equal(
        acts.z, GeneratorActivations(g, ["feat"], n=6, seed=3).z
    )
    assert not torch.equal(acts.z, GeneratorActivations(g, ["feat"], n=6, seed=4).z)
    assert acts.shapes() == {"feat": (2, 4, 4)}
    batch = {"z": acts.z[:4], "pos": torch.arange(4)}
    maps = acts.activations(batch)["feat"]
    labels, image_labels, present = SegmenterLabels(door_segmenter()).label_batch(batch)
    doors = labels[:, 0] == 3
    assert torch.equal(doors, maps[:, 0] > 0)  # unit 0 fires exactly where the doors are
    assert bool((labels[:, 0, :2] == 1).all()) and image_labels.shape == (4, 0) and present.all()
    with pytest.raises(ValueError, match="is not a generator"):
        GeneratorActivations(torch.nn.Identity(), ["feat"])


def test_the_engine_labels_the_door_unit_and_not_the_empty_one(tmp_path) -> None:
    acts = GeneratorActivations(toy_generator(), ["feat"], n=400, seed=0)
    opts = Options(quantile=0.05, topk=3, batch_size=50, exemplar_images=False, progress=False)
    result = dissect_sources(acts, SegmenterLabels(door_segmenter()), tmp_path / "run", opts)
    d = result.layers["feat"]
    assert d.concept(0) == "door" and d.best_iou[0] == pytest.approx(1.0)
    assert d.concept(1) is None and d.best_iou[1] == 0.0
    assert d.p_value[0] < 1e-3
    with sqlite3.connect(tmp_path / "run" / "catalog.sqlite") as db:
        assert db.execute("SELECT model, unit, concept FROM dissection ORDER BY unit").fetchall() == [
            ("toy-generator", 0, "door"),
            ("toy-generator", 1, None),
        ]


def test_removing_the_door_unit_removes_every_door_and_a_random_unit_half_of_them() -> None:
    g = toy_generator()
    cut = cut_model(g, "feat")
    assert cut.exact_tail  # the layers before "feat" ran once, into the cache
    samples = cache_samples(cut, g, n=300, seed=1, batch_size=64)
    result = removal_curve(cut, samples, door_segmenter(), order=[0, 1], concept="door", ks=[1, 2], random_draws=4)
    assert result.curve("door").tolist() == [-1.0, -1.0]
    assert result.curve("sky").tolist() == [0.0, 0.0]
    before = result.before[result.names.index("door")] / result.before[result.names.index("wall")]
    np.testing.assert_allclose(result.curve("wall"), [before, before], rtol=1e-5)  # doors became wall
    # every sample lost all its doors: its change is minus its door share, and the interval their spread
    doors = (latents(300, 1, (16, 1, 1)).view(300, 4, 4)[:, 2:] > 1.5).double().sum((1, 2)) / 16
    expected_ci = 2.5758293035489004 * doors.std() * 300**0.5 / doors.sum()
    np.testing.assert_allclose(result.ci[1:3, result.names.index("door")], [expected_ci] * 2, rtol=1e-5)
    # random units: k = 1 picks unit 0 in some draws (all doors gone) and unit 1 in others (none)
    draws = [float(result.change[result.rows(d), result.names.index("door")][0]) for d in range(4)]
    assert sorted(set(draws)) == [-1.0, 0.0] and result.random_curve("door")[1] == -1.0
    assert result.largest_other(1) == ("wall", pytest.approx(before, rel=1e-5))
    assert "top 1 'door' units off: -100% of its pixels" in result.summary(1)
    assert "largest change of another object: wall" in result.summary(1)
    with pytest.raises(ValueError, match="no label 'tree'"):
        removal_curve(cut, samples, door_segmenter(), order=[0], concept="tree", ks=[1])


def test_inserting_the_door_unit_paints_doors_on_walls_never_in_the_sky() -> None:
    g = toy_generator()
    cut = cut_model(g, "feat")
    samples = cache_samples(cut, g, n=40, seed=2, batch_size=16)
    result = insertion_in_context(
        cut,
        samples,
        door_segmenter(),
        units=[0],
        level=torch.tensor([2.0, 0.0]),
        concept="door",
        patch_min=0.5,
        max_batch=64,
    )
    # 16 cells x 40 samples: the 8 sky cells are trials in every sample; a wall cell that had a door already is none
    assert result.trials["sky"] == 8 * 40 and result.appeared.get("sky", 0) == 0
    doors_before = int((latents(40, 2, (16, 1, 1)).view(40, 4, 4)[:, 2:] > 1.5).sum())
    assert result.trials["wall"] == 8 * 40 - doors_before and result.rate("wall") == 1.0
    assert [row["context"] for row in result.table()] == ["wall", "sky"]
    # the 'nothing' unit inserts nothing anywhere
    none = insertion_in_context(
        cut, samples, door_segmenter(), units=[1], level=torch.tensor([0.0, 5.0]), concept="door", patch_min=0.5
    )
    assert sum(none.appeared.values()) == 0


@pytest.mark.slow
def test_dissect_command_on_a_generator_file_and_a_segmenter_file(tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("UNITSCOPE_FAULT", None)
    cmd = [
        sys.executable,
        "-m",
        "unitscope.cli",
        "dissect",
        "--model",
        f"{HELPERS / 'gan_models.py'}:toy_generator",
        "--segmenter",
        f"{HELPERS / 'gan_models.py'}:door_segmenter",
        "--samples",
        "200",
        "--quantile",
        "0.05",
        "--out",
        str(tmp_path / "run"),
        "--no-progress",
        "--no-report",
        "--workers",
        "0",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "feat: 1 of 2 units are detectors" in done.stdout, done.stdout
    assert sorted(p.name for p in (tmp_path / "run/images/l0").iterdir()) == [  # strips of generated samples
        "unit0000.jpg",
        "unit0000_concept.jpg",
        "unit0001.jpg",
    ]
    refused = subprocess.run(
        cmd[:6] + ["--out", str(tmp_path / "x"), "--no-progress"], env=env, capture_output=True, text=True, timeout=300
    )
    assert refused.returncode == 2 and "a generator is dissected against a segmenter" in refused.stderr
