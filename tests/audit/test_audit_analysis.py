"""Analysis by description (unitscope.audit.analysis): the orderings from hand-written description rows,
and the cumulative curves on a hand-built model (tests/helpers/audit_models.py:switches) equal hand-computed
accuracies; the rows reach the catalog, the PNG and the report."""

import json

import numpy as np
import pytest
import torch

from tests.helpers.audit_models import switches
from unitscope.audit.analysis import (
    EvalSet,
    cooccurrence_relation,
    description_ablation,
    description_groups,
    is_single,
    joins_unrelated,
    plot_curves,
    unit_orders,
    write_ablation,
)
from unitscope.catalog import Catalog
from unitscope.describe import tables  # noqa: F401  (declares descriptions)

# sky and sea go together; sky, bed never (lift 0); bed and pillow together
PRESENCE = {
    "sky": np.array([1, 1, 0, 0], bool),
    "sea": np.array([1, 1, 0, 0], bool),
    "bed": np.array([0, 0, 1, 1], bool),
    "pillow": np.array([0, 0, 1, 0], bool),
}
ROWS = [  # unit, formula, f1
    {"unit": 0, "formula": "sky OR bed", "description": "sky or beds", "f1": 0.3},
    {"unit": 1, "formula": "sea", "description": "sea", "f1": 0.4},
    {"unit": 2, "formula": "(bed OR pillow) AND NOT sky", "description": "beds or pillows, not sky", "f1": 0.9},
    {"unit": 3, "formula": "sky", "description": "sky", "f1": 0.8},
]


def test_relation_and_features_of_descriptions():
    related = cooccurrence_relation(PRESENCE)
    assert related("sky", "sea") and related("bed", "pillow")  # lift 2 and 4/3
    assert not related("sky", "bed") and not related("sky", "pillow")  # never together
    assert related("sky", "top")  # a position word, no concept of the images: it joins nothing
    assert not joins_unrelated("sky AND top", related)
    assert is_single("sky") and not is_single("sky OR bed") and not is_single("sky AND NOT sea")
    assert joins_unrelated("sky OR bed", related) and not joins_unrelated("sky AND sea", related)
    assert not joins_unrelated("(bed OR pillow) AND NOT sky", related)  # sky is negated
    groups = description_groups(ROWS, related)
    assert [r["unit"] for r in groups["unrelated"]] == [0]
    assert [r["unit"] for r in groups["single"]] == [3, 1]  # by F1, best first


def test_orders_put_the_group_first_then_the_seeds_permutation():
    orders = unit_orders(4, {"unrelated": [0], "single": [3, 1]}, seeds=[0, 1])
    for s in (0, 1):
        perm = torch.randperm(4, generator=torch.Generator().manual_seed(s)).tolist()
        assert orders["random"][s] == perm
        assert orders["single"][s] == [3, 1] + [u for u in perm if u not in (3, 1)]
        assert orders["unrelated"][s] == [0] + [u for u in perm if u != 0]


def data() -> EvalSet:
    """Unit 0 on in 3 images, unit 1 in 1, unit 2 in 2, unit 3 in 2 (all class 1); 2 all-zero images (class 0)."""
    on = [0, 0, 0, 1, 2, 2, 3, 3]
    x = torch.zeros(10, 4, 1, 1)
    for i, u in enumerate(on):
        x[i, u] = 1.0
    return EvalSet(x, torch.tensor([1] * 8 + [0, 0]))


def hand_accuracy(order: list[int], k: int) -> float:
    images = {0: 3, 1: 1, 2: 2, 3: 2}
    return (2 + sum(n for u, n in images.items() if u not in order[:k])) / 10


def described_run(tmp_path):
    run = tmp_path / "run"
    rows = [dict(r, kind="pmi") for r in ROWS]
    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace("descriptions", rows, model="switches", layer="relu")
    return run


def test_curves_equal_hand_computed_accuracies(tmp_path):
    run = described_run(tmp_path)
    out = description_ablation(
        switches(),
        run,
        "relu",
        data(),
        seeds=3,
        steps=4,
        model_name="switches",
        related=cooccurrence_relation(PRESENCE),
    )
    assert out["units"] == 4 and out["fractions"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    orders = unit_orders(4, {"unrelated": [0], "single": [3, 1]}, range(3))
    for name in ("unrelated", "single", "random"):
        want = np.array([[hand_accuracy(orders[name][s], k) for k in range(5)] for s in range(3)])
        np.testing.assert_allclose(out["accuracy"][name], want)
    # unit 0 (in 3 images) goes first in the unrelated order: 1.0 -> 0.7 at a quarter
    assert out["accuracy"]["unrelated"][:, 1].tolist() == [0.7, 0.7, 0.7]
    assert out["accuracy"]["single"][:, 2].tolist() == [0.7, 0.7, 0.7]  # units 3 and 1: 3 images
    write_ablation(run, out)
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        rows = cat.rows("desc_ablation", model="switches", ordering="single", seed=0)
        assert [(r["units"], r["accuracy"]) for r in sorted(rows, key=lambda r: r["fraction"])][:3] == [
            (0, 1.0),
            (1, 0.8),
            (2, 0.7),
        ]
        assert [
            r["unit"] for r in sorted(cat.rows("desc_ablation_units", ordering="single"), key=lambda r: r["rank"])
        ] == [3, 1]
    from unitscope.report.parts.audit_analysis import plot_name

    png = plot_curves(out, run / plot_name("relu"))
    from PIL import Image

    assert Image.open(png).size == (640, 400)
    from unitscope.report import write_report

    write_report(run, title="analysis")
    layer = next(ly for ly in json.loads((run / "report.json").read_text())["layers"] if ly["layer"] == "relu")
    part = layer["parts"]["desc_ablation"]
    assert part["plot"] == "desc-ablation-relu.png" and part["curves"]["single"]["mean"][2] == pytest.approx(0.7)
    assert [u["unit"] for u in part["first"]["unrelated"]] == [0]


def test_orders_must_be_permutations():
    from unitscope.ablate.curves import ablation_curves
    from unitscope.ablate.cut import cut_model
    from unitscope.ablate.evaluate import cache_layer

    d = data()
    cut = cut_model(switches(), "relu")
    cache = cache_layer(cut, torch.utils.data.TensorDataset(d.x, d.y))
    with pytest.raises(ValueError, match="not a permutation"):
        ablation_curves(cut, cache, torch.arange(2), 2, modes=("zero",), orders=[[0, 1, 1, 3]])


def test_cli_ablate_needs_a_scene_model(tmp_path, capsys):
    from pathlib import Path

    from unitscope.cli import main

    model = str(Path(__file__).parents[1] / "helpers" / "audit_models.py") + ":switches"
    out = ["--out", str(tmp_path / "r"), "--no-progress"]
    assert main(["audit", "ablate", "--model", model, "--metric", "accuracy"] + out) != 0
    assert "does not classify the probe world's scenes" in capsys.readouterr().err
    assert main(["audit", "ablate", "--model", model, "--metric", "top5"] + out) != 0
    assert "unknown --metric 'top5'; choose accuracy, fidelity or auto" in capsys.readouterr().err
    assert main(["audit", "ablate", "--model", model, "--seeds", "0", "--no-progress"]) != 0
    assert "--seeds and --steps must be at least 1" in capsys.readouterr().err
