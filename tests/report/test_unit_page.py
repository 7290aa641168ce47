"""The unit pages' data: top concepts from the IoU matrix, histograms from quantiles, ranks."""

from __future__ import annotations

import json

import numpy as np

from tests.helpers.report_extras import add_unit_arrays
from unitscope.report import write_report
from unitscope.report.unit_page import activation_histogram, cdf, ranks, top_concepts


def _pages(run, layer="layer4"):
    write_report(run)
    report = json.loads((run / "report.json").read_text())
    (ly,) = [x for x in report["layers"] if x["layer"] == layer]
    return ly["unit_pages"]["dissection"]


def test_top_concepts_best_first_ties_by_label():
    iou = np.array([[0.9, 0.1, 0.3, 0.2, 0.3], [0.5, 0.0, 0.0, 0.0, 0.0]])
    labels, values = top_concepts(iou, k=3)
    assert labels.tolist() == [[2, 4, 3], [1, 2, 3]]  # label 0 ("unlabelled") never counts
    assert values.tolist() == [[0.3, 0.3, 0.2], [0.0, 0.0, 0.0]]


def test_cdf_from_quantiles_has_point_masses():
    values, levels = np.array([0.0, 0.0, 2.0, 4.0]), np.array([0.0, 0.5, 0.9, 1.0])
    assert cdf(values, levels, np.array([-1, 0, 1, 2, 3, 4, 5])).tolist() == [0, 0.5, 0.7, 0.9, 0.95, 1, 1]


def test_histogram_from_quantiles():
    # half the positions at 0, the rest uniform on (0, 4]: bins of width 1
    h = activation_histogram(np.array([0.0, 0.0, 4.0]), np.array([0.0, 0.5, 1.0]), positions=800, bins=4)
    assert h == {"lo": 0.0, "hi": 4.0, "counts": [500, 100, 100, 100]}
    # a constant unit: one bin
    assert activation_histogram(np.array([3.0, 3.0]), np.array([0.0, 1.0]), 10) == {
        "lo": 3.0,
        "hi": 3.0,
        "counts": [10],
    }
    # a histogram of real samples: quantiles at fine levels give the same counts within 1 %
    x = np.random.default_rng(0).gamma(2.0, size=100_000)
    levels = np.linspace(0, 1, 1001)
    h = activation_histogram(np.quantile(x, levels), levels, len(x), bins=20)
    exact, _ = np.histogram(x, bins=20, range=(h["lo"], h["hi"]))
    assert np.abs(np.array(h["counts"]) - exact).max() < 0.01 * len(x) / 5


def test_ranks_by_iou_ties_by_unit():
    assert ranks({0: 0.1, 1: 0.3, 2: 0.1, 3: None, 4: 0.2}) == {1: 1, 4: 2, 0: 3, 2: 4, 3: 5}


def test_unit_pages_in_report(synthetic_run):
    add_unit_arrays(synthetic_run)
    pages = _pages(synthetic_run)
    assert pages["positions"] == 100 * 7 * 7
    u0 = pages["units"]["0"]
    # unit 0: dog 0.25, then label j at 0.25 * j / 100 from the highest j down
    top = [pages["labels"][i] for i in u0["top"]]
    assert top == ["dog", "blue", "red", "dotted", "striped", "metal", "wood", "street", "wheel", "eye"]
    assert u0["iou"] == [0.25, 0.0325, 0.03, 0.0275, 0.025, 0.0225, 0.02, 0.0175, 0.015, 0.0125]
    assert [pages["categories"][i] for i in u0["top"][:3]] == ["object", "color", "color"]
    assert u0["rank"] == 1 and pages["units"]["19"]["rank"] == 2 and pages["units"]["15"]["rank"] == 20
    # unit 15 has IoU 0 everywhere: ties by label number
    assert [pages["labels"][i] for i in pages["units"]["15"]["top"]][:3] == ["dog", "cat", "car"]
    # unit 3 (T = 1.3): half the positions at 0, 49.5 % spread to T, 0.5 % from T to 2 T
    h = pages["units"]["3"]["hist"]
    assert (h["lo"], h["hi"]) == (0.0, 2.6)
    assert h["counts"] == [2571] + [121] * 19 + [1] * 20


def test_unit_pages_without_arrays_or_quantiles(synthetic_run):
    pages = _pages(synthetic_run, "layer3")  # no arrays for layer3: ranks only
    assert pages["labels"] == [] and pages["positions"] is None
    assert pages["units"]["13"] == {"rank": 1}
    add_unit_arrays(synthetic_run, quantiles=False)  # a run from before the quantiles were saved
    u = _pages(synthetic_run)["units"]["0"]
    assert "hist" not in u and len(u["top"]) == 10


def test_dissection_saves_quantiles_and_label_names(tmp_path):
    """A real dissection of the planted colour units: the saved quantiles are the threshold's own
    statistic (level 1 - q equals T_k exactly; levels 0 and 1 the exact extremes) and the unit
    pages name each unit's concept first."""
    from pathlib import Path

    import torch

    from unitscope.data import BrodenDataset
    from unitscope.dissect import dissect, load_layer_arrays
    from unitscope.hooks import TraceDict
    from unitscope.models import create_model, get_info
    from unitscope.world import make_world

    world = make_world(tmp_path / "w", n=12, size=64, seed=3, workers=1, progress=False)
    model = create_model(f"{Path(__file__).parents[1] / 'helpers' / 'planted.py'}:colour_units", world=str(world))
    ds = BrodenDataset(world, transform=get_info(model).transform())
    run = tmp_path / "run"
    dissect(model, ds, ["feat"], run, quantile=0.05, topk=2, batch_size=5, exemplar_images=False, progress=False)
    arrays = load_layer_arrays(run, "feat")
    levels, q = arrays["quantile_levels"], arrays["quantiles"]
    assert levels[0] == 0 and levels[-1] == 1 and np.all(np.diff(levels) > 0) and q.shape == (3, len(levels))
    assert np.allclose(q[:, np.isclose(levels, 0.95)][:, 0], arrays["thresholds"], rtol=1e-6, atol=0)
    with torch.no_grad(), TraceDict(model, ["feat"], as_map=True) as td:
        model(torch.stack([ds[i]["image"] for i in range(len(ds))]))
        acts = td["feat"].output.float()
    assert np.allclose(q[:, 0], acts.amin((0, 2, 3)).numpy()) and np.allclose(q[:, -1], acts.amax((0, 2, 3)).numpy())
    assert json.loads((run / "labels.json").read_text())["names"] == list(ds.label_names)
    pages = _pages(run, "feat")
    assert [pages["labels"][pages["units"][str(u)]["top"][0]] for u in range(3)] == ["red", "green", "blue"]
    n, _, h, w = acts.shape
    assert pages["positions"] == n * h * w
    assert all(abs(sum(pages["units"][str(u)]["hist"]["counts"]) - n * h * w) <= 40 for u in range(3))
