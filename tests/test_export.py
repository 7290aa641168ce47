"""NetDissect-Lite's tally.csv from a real (planted) dissection: columns, order and numbers."""

import csv

import numpy as np

from tests.dissect.test_dissect import colour_fractions, dataset, planted, world  # noqa: F401 - fixture


def test_tally_csv_of_a_planted_dissection(world, tmp_path):  # noqa: F811
    from tests.helpers.planted import COLOURS
    from unitscope.cli import main
    from unitscope.dissect import dissect, load_layer_arrays

    model = planted(world)
    ds = dataset(world, model)
    q = min(0.45, max(colour_fractions(ds, COLOURS).values()) * 1.2)
    run = tmp_path / "run"
    result = dissect(model, ds, ["feat"], run, quantile=q, topk=4, batch_size=8, progress=False)
    assert main(["export", str(run)]) == 0
    with open(run / "export" / "tally-feat.csv") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    categories = [h[: -len("-label")] for h in header if h.endswith("-label")]
    assert header[:4] == ["unit", "category", "label", "score"] and "color" in categories
    assert header[4:] == [f"{c}-{x}" for c in categories for x in ("label", "truth", "activation", "intersect", "iou")]
    d, a = result.layers["feat"], load_layer_arrays(run, "feat")
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and sorted(int(r["unit"]) for r in rows) == [1, 2, 3]
    for r in rows:
        u = int(r["unit"]) - 1
        assert (r["category"], r["label"]) == ("color", COLOURS[u])
        assert np.isclose(float(r["score"]), d.best_iou[u], rtol=1e-6)
        label = ds.label_index(COLOURS[u])
        inter, truth, act = int(r["color-intersect"]), int(r["color-truth"]), int(r["color-activation"])
        assert (inter, truth) == (int(a["intersection"][u, label]), int(a["label_area"][label]))
        assert np.isclose(float(r["color-iou"]), inter / (act + truth - inter), rtol=1e-4)
