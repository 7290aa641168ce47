"""Descriptions of directions (issue 27, item 4): ``describe`` of ``feat#nmf`` on a layer whose
channels mix three planted colour detectors (tests/helpers/planted.py's units, each channel the sum of two
colours): NMF recovers the colours (a non-negative mixture of codes that never overlap), the
description of each NMF direction names its colour, the raw channels' descriptions name mixtures,
and the rows reach search and the unit facts like units' rows."""

import sqlite3
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers.planted import dissect_planted

PLANTED = str(Path(__file__).parents[1] / "helpers" / "planted.py")
MIX = torch.tensor([[1.0, 1, 0], [0, 1, 1], [1, 0, 1]])  # channel i = colour i + colour i + 1


pytestmark = pytest.mark.slow  # a world, a dissection of two layers and their descriptions: ~25 s of CPU


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from unitscope.models import create_model
    from unitscope.world import make_world

    world = make_world(tmp_path_factory.mktemp("world") / "w64", n=30, size=64, seed=3, workers=1, progress=False)
    model = create_model(f"{PLANTED}:colour_units", world=str(world))
    mix = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        mix.weight.copy_(MIX.view(3, 3, 1, 1))
    model.feat = mix  # the layer "feat" is now the mixture of the planted colour maps
    return dissect_planted(model, world, tmp_path_factory.mktemp("run") / "run", basis=["units", "nmf:n=3:passes=30"])


@pytest.fixture(scope="module")
def described(run):
    """The run with both layers described: what every test here reads, whatever order they run in."""
    from unitscope.describe.run import Options, describe_run

    describe_run(run, ["feat", "feat#nmf"], Options(quantile=0.5, draws=10, progress=False))
    return run


def test_describe_a_basis_names_its_planted_colours(run, described):
    from tests.helpers.planted import COLOURS
    from unitscope.bases import load_basis, stability
    from unitscope.describe.run import run_layers

    assert run_layers(run, ["feat#nmf"]) == ["feat#nmf"]
    with pytest.raises(ValueError, match="feat#nmf"):
        run_layers(run, ["feat#sae"])  # the error lists the run's layers, pseudo-layers included
    nmf = load_basis(run / "bases" / "l0" / "nmf")
    assert stability(nmf.directions, torch.nn.functional.normalize(MIX.t(), dim=1)) > 0.999  # the colours' rows
    with sqlite3.connect(run / "catalog.sqlite") as db:
        rows = db.execute(
            "SELECT layer, unit, formula, f1 FROM descriptions WHERE kind = 'pmi' ORDER BY layer, unit"
        ).fetchall()
    nmf_rows = [(f, f1) for layer, _, f, f1 in rows if layer == "feat#nmf"]
    assert sorted(f for f, _ in nmf_rows) == sorted(COLOURS) and min(f1 for _, f1 in nmf_rows) > 0.95
    unit_rows = [f for layer, _, f, _ in rows if layer == "feat"]  # each channel is two colours
    assert sorted(unit_rows) == sorted(f"{a} OR {b}" for a, b in [("green", "red"), ("blue", "green"), ("blue", "red")])


def test_direction_descriptions_reach_search_and_the_unit_facts(described):
    from unitscope.describe.search import search_units
    from unitscope.serve.runinfo import RunInfo

    run = described

    hits = search_units(run, "red")
    assert any(h["layer"] == "feat#nmf" and h["description"] == "red" for h in hits)
    k = next(h["unit"] for h in hits if h["layer"] == "feat#nmf")
    info = RunInfo(run).unit("feat#nmf", k)
    assert {d["kind"]: d["description"] for d in info["descriptions"]}["pmi"] == "red"
    assert info["dissection"]["concept"] == "red"
