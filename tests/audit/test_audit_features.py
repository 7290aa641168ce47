"""Continuous description features (unitscope.audit.features) and the fidelity metric: orders from
hand-written description rows (highest / lowest first, undescribed units last, ties in the seed's
permutation), the summary of hand-made per-image results (areas, seed range, bootstrap, gap), the
curves of the hand-built ``switches`` model under feature orders and fidelity, and the CLI on an image
classifier of no scene (``colour_means``) with held-out images of a small world."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_audit_analysis import PRESENCE, ROWS, data, described_run, hand_accuracy

from tests.helpers.audit_models import switches
from unitscope.audit.analysis import EvalSet, cooccurrence_relation, description_ablation, write_ablation
from unitscope.audit.features import area_weights, feature_orders, feature_value, ordered_by, summarise
from unitscope.catalog import Catalog

MODELS = str(Path(__file__).parents[1] / "helpers" / "audit_models.py")
# lengths 2, 1, 3, 1 (unit 4: no description)
LONG = [dict(r, length=n) for r, n in zip(ROWS, (2, 1, 3, 1))]


def test_feature_orders_high_low_nan_last_ties_by_seed():
    assert [feature_value(r, "length") for r in ROWS] == [2.0, 1.0, 2.0, 1.0]  # positive concepts, no column
    assert [feature_value(r, "length") for r in LONG] == [2.0, 1.0, 3.0, 1.0]
    with pytest.raises(ValueError, match="known: length, f1, lift"):
        feature_value(ROWS[0], "lenght")
    assert ordered_by([1.0, 5.0, float("nan"), 5.0], True, [3, 2, 1, 0]) == [3, 1, 0, 2]
    orders = feature_orders(LONG, 5, ["length", "f1"], seeds=[0, 1])
    for s in (0, 1):
        perm = torch.randperm(5, generator=torch.Generator().manual_seed(s)).tolist()
        ones = sorted([1, 3], key=perm.index)  # the tie (length 1) in the seed's order
        assert orders["length_high"][s] == [2, 0] + ones + [4]
        assert orders["length_low"][s] == ones + [0, 2, 4]
        assert orders["f1_high"][s] == [2, 3, 1, 0, 4]
        assert orders["f1_low"][s] == [0, 1, 3, 2, 4]


def test_lift_is_the_least_lift_of_the_asserted_concepts():
    # sky-bed never together (lift 0); bed-pillow 4 * 1 / (2 * 1) = 2 (sky negated); one concept: none
    assert [feature_value(r, "lift", PRESENCE) for r in ROWS[::2]] == [0.0, 2.0]
    assert np.isnan(feature_value(ROWS[1], "lift", PRESENCE)) and np.isnan(feature_value(ROWS[3], "lift", PRESENCE))
    with pytest.raises(ValueError, match="needs which images show each concept"):
        feature_value(ROWS[0], "lift")
    orders = feature_orders(ROWS, 4, ["lift"], seeds=[2], presence=PRESENCE)
    perm = torch.randperm(4, generator=torch.Generator().manual_seed(2)).tolist()
    none = sorted([1, 3], key=perm.index)
    assert orders["lift_low"][0] == [0, 2] + none and orders["lift_high"][0] == [2, 0] + none


def test_summary_of_hand_made_results():
    np.testing.assert_allclose(area_weights([0, 0.5, 1]), [0.25, 0.5, 0.25])
    # [O=2, S=2, F=3, N=2]: random's mean curve 1, .75, 0; "x" falls faster: 1, .25, 0
    c = np.array(
        [
            [[[1, 1], [1, 0], [0, 0]], [[1, 1], [1, 1], [0, 0]]],
            [[[1, 1], [0, 0], [0, 0]], [[1, 1], [0, 1], [0, 0]]],
        ]
    )
    rnd, x = summarise([0, 0.5, 1], c, ["random", "x"])
    assert (rnd["auc"], rnd["auc_min"], rnd["auc_max"], rnd["gap"]) == (0.625, 0.5, 0.75, 0.0)
    assert (x["auc"], x["auc_min"], x["auc_max"], x["gap"]) == (0.375, 0.25, 0.5, -0.25)
    # per image: random .75, .5; x .25, .5: the paired gaps -.5 and 0 bound the interval
    assert (x["gap_lo"], x["gap_hi"]) == (-0.5, 0.0) and (x["auc_lo"], x["auc_hi"]) == (0.25, 0.5)
    assert (x["at_fraction"], x["at_mean"], x["at_min"], x["at_max"]) == (0.5, 0.25, 0.0, 0.5)
    assert (x["ref_mean"], x["ref_min"], x["ref_max"]) == (0.75, 0.5, 1.0)


def test_feature_curves_and_fidelity_on_the_hand_built_model(tmp_path):
    run = described_run(tmp_path)
    d = data()
    wrong = EvalSet(d.x, torch.zeros(10, dtype=torch.long))  # labels fidelity must not read
    kw = dict(seeds=2, steps=4, model_name="switches", related=cooccurrence_relation(PRESENCE), features=["length"])
    fid = description_ablation(switches(), run, "relu", wrong, metric="fidelity", **kw)
    acc = description_ablation(switches(), run, "relu", wrong, metric="accuracy", **kw)
    assert acc["accuracy"]["random"][:, 0].tolist() == [0.2, 0.2]  # 2 of 10 images are class 0
    # the unablated model is right on every image, so fidelity is the accuracy against the true classes
    orders = feature_orders(ROWS, 4, ["length"], range(2))
    assert list(fid["accuracy"]) == ["unrelated", "single", "random", "length_high", "length_low"]
    for name in ("length_high", "length_low"):
        want = np.array([[hand_accuracy(orders[name][s], k) for k in range(5)] for s in range(2)])
        np.testing.assert_allclose(fid["accuracy"][name], want)
    # length_high removes units 0 and 2 (two concepts each: 5 images) first: 1.0, .7 or .8, .5
    assert fid["accuracy"]["length_high"][:, 2].tolist() == [0.5, 0.5]
    rows = {r["ordering"]: r for r in fid["summary"]}
    assert rows["random"]["gap"] == 0.0 and rows["length_high"]["metric"] == "fidelity"
    w = area_weights(fid["fractions"])
    assert rows["length_high"]["auc"] == pytest.approx(float((fid["accuracy"]["length_high"] @ w).mean()))
    write_ablation(run, fid)
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        got = {r["ordering"]: r["auc"] for r in cat.rows("desc_ablation_summary", model="switches")}
        assert got["length_low"] == pytest.approx(rows["length_low"]["auc"]) and len(got) == 5
    from unitscope.report import write_report

    write_report(run, title="features")
    layer = next(ly for ly in json.loads((run / "report.json").read_text())["layers"] if ly["layer"] == "relu")
    part = layer["parts"]["desc_ablation"]
    assert list(part["curves"]) == ["unrelated", "single", "random", "length_high", "length_low"]
    assert [r["ordering"] for r in part["summary"]] == list(part["curves"])
    assert part["summary"][3]["auc"] == pytest.approx(rows["length_high"]["auc"])


def test_cli_fidelity_on_a_classifier_of_no_scene(tmp_path, capsys):
    from unitscope.cli import main
    from unitscope.world import make_world

    world = make_world(tmp_path / "w", n=10, size=64, seed=3, workers=1, progress=False)
    run = tmp_path / "run"
    rows = [
        {"unit": 0, "formula": "red", "description": "red", "f1": 0.5, "length": 1},
        {"unit": 1, "formula": "green OR blue", "description": "green or blue", "f1": 0.2, "length": 2},
        {"unit": 2, "formula": "blue", "description": "blue", "f1": 0.1, "length": 1},
    ]
    model = f"{MODELS}:colour_means"  # the name a dissection of it records
    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace("descriptions", [dict(r, kind="pmi") for r in rows], model=model, layer="relu")
    (run / "config.json").write_text(json.dumps({"data": str(world), "model": model}))
    args = ["audit", "ablate", "--model", model, "--layer", "relu", "--out", str(run)]
    args += ["--data", str(world), "--test-data", str(world), "--seeds", "2", "--steps", "3", "--no-progress"]
    assert main(args + ["--test-offset", "2", "--test-images", "8"]) == 0
    assert "fidelity at fractions 0.00 0.33 0.67 1.00" in capsys.readouterr().out
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        summary = cat.rows("desc_ablation_summary", model=model)
        curves = cat.rows("desc_ablation", model=model, fraction=0.0)
    assert {r["metric"] for r in summary} == {"fidelity"} and {r["images"] for r in summary} == {8}
    assert len(summary) == 9 and {r["accuracy"] for r in curves} == {1.0}  # nothing removed: full agreement
    assert main(args + ["--test-offset", "5", "--test-images", "8"]) != 0
    assert "has 10 images: --test-offset 5 + --test-images 8 does not fit" in capsys.readouterr().err
    assert main(args + ["--metric", "accuracy"]) != 0
    assert "does not classify the probe world's scenes" in capsys.readouterr().err
    assert main(args + ["--features", "lenght"]) != 0
    assert "unknown description feature 'lenght'; known: length, f1" in capsys.readouterr().err
