"""`unitscope describe` on a dissection run folder: planted colour units are described by their
colour with held-out F1 1, the catalog holds the table, and search finds them."""

import sqlite3
from pathlib import Path

import pytest
import torch

from tests.helpers.planted import dissect_planted

PLANTED = str(Path(__file__).parents[1] / "helpers" / "planted.py")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from unitscope.models import create_model
    from unitscope.world import make_world

    world = make_world(tmp_path_factory.mktemp("world") / "w64", n=30, size=64, seed=3, workers=1, progress=False)
    model = create_model(f"{PLANTED}:colour_units", world=str(world))
    return dissect_planted(model, world, tmp_path_factory.mktemp("run") / "run")


def _colour_planes(run, colour, positions):
    """``[n, 32, 32]`` bool: where the positions' colour planes say ``colour`` (read by hand)."""
    import json

    from unitscope.data import BrodenDataset

    ds = BrodenDataset(json.loads((run / "config.json").read_text())["data"], validate="none")
    plane = int((ds.plane_category == ds.categories.index("color")).nonzero()[0, 0])
    return torch.stack([ds.get(p, image=False)["labels"][plane] == ds.label_index(colour) for p in positions])


def test_planted_colours_described_and_scored(run):
    from tests.helpers.planted import COLOURS
    from unitscope.describe import scores
    from unitscope.describe.exemplars import threshold, unit_maps
    from unitscope.describe.run import Options, describe_run, held_out

    # the planted units fire (1 + a ramp) exactly on their colour and are 0 elsewhere: with the
    # threshold at their median (0) the mask is the colour's pixels (the 0.99 quantile would keep
    # only the ramp's top)
    out = describe_run(run, opts=Options(quantile=0.5, draws=20, progress=False))
    rows = out["feat"]
    assert list(out) == ["feat"] and out.run_dir == run
    assert out.summary() == "feat: 3 of 3 units described, 3 distinct descriptions, 3 with held-out F1 p < 0.01"
    page = out._repr_html_()
    assert [page.count(f"<td>{c}</td>") for c in COLOURS] == [1, 1, 1] and "<h4 " in page
    held = torch.nonzero(held_out(30)).flatten().tolist()
    assert held == [4, 9, 14, 19, 24, 29]
    maps = unit_maps(run, "feat", held)  # [6, 3, 32, 32]: the label resolution, no resampling
    for u, colour in enumerate(COLOURS):
        concept = _colour_planes(run, colour, held)
        mask = maps[:, u] > threshold(run, "feat", 0.5)[u]
        tp, fp, fn = (mask & concept).sum().item(), (mask & ~concept).sum().item(), (~mask & concept).sum().item()
        for kind in ("pmi", "ml", "fair_label", "label"):
            r = rows[kind][u]
            assert r["formula"] == colour and r["description"] == colour, (kind, r)
            assert r["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn)) and r["f1"] > 0.95
            assert r["iou"] == pytest.approx(tp / (tp + fp + fn))
            assert r["base_rate"] == pytest.approx(concept.float().mean().item())
            assert r["unit_rate"] == pytest.approx(mask.float().mean().item())
            assert r["auprc"] == pytest.approx(scores.auprc(maps[:, u], concept.float()))
            assert r["pearson"] == pytest.approx(scores.pearson(maps[:, u], concept.float()))
            assert r["p_f1"] < 0.01 and r["images"] == 6
        assert rows["pmi"][u]["exemplar_iou"] > 0.95
    with sqlite3.connect(run / "catalog.sqlite") as db:
        got = db.execute("SELECT unit, kind, description, formula FROM descriptions ORDER BY unit, kind").fetchall()
    assert got == [(u, k, c, c) for u, c in enumerate(COLOURS) for k in ("fair_label", "label", "ml", "pmi")]


def test_threshold_is_the_dissections_quantile(run):
    from unitscope.describe.exemplars import threshold, unit_maps
    from unitscope.dissect import load_layer_arrays

    arrays = load_layer_arrays(run, "feat")
    j = int((torch.as_tensor(arrays["quantile_levels"]) - 0.99).abs().argmin())
    assert torch.equal(threshold(run, "feat"), torch.as_tensor(arrays["quantiles"][:, j]).float())
    with pytest.raises(ValueError, match="not 0.991"):
        threshold(run, "feat", 0.991)
    assert unit_maps(run, "feat", [0, 1]).shape == (2, 3, 32, 32)


def test_exemplars_api(run):
    import unitscope
    from unitscope.describe.exemplars import threshold, unit_maps

    # k = 5 over the dissection's top 4: ranked here by map maximum, from the kept activation cache
    ex = unitscope.exemplars(run, "feat", unit=0, k=5, quantile=0.99, size=(32, 32))
    maps = unit_maps(run, "feat", range(30))[:, 0]
    peaks = maps.flatten(1).amax(1)
    assert ex.positions.tolist() == peaks.topk(5).indices.tolist() and ex.of == 30
    assert torch.equal(ex.activations, maps[ex.positions]) and torch.equal(ex.peaks, peaks[ex.positions])
    assert ex.masks.shape == (5, 32, 32)
    assert torch.equal(ex.masks, ex.activations > threshold(run, "feat")[0])  # same size: no resampling


def test_exemplars_of_a_planted_unit_are_its_colour(run):
    """The planted red unit: its exemplars are the dissection's top 4, their pictures the data set's
    pixels, its maps the model's, and its mask above the median (0) exactly where it fires: the
    world's red pixels."""
    import json

    import numpy as np

    import unitscope
    from tests.helpers.planted import colour_units
    from unitscope.data import BrodenDataset
    from unitscope.dissect import load_layer_arrays
    from unitscope.hooks import TraceDict
    from unitscope.models import get_info

    ex = unitscope.exemplars(run, "feat", 0, k=4, quantile=0.5, size=(32, 32))
    top = load_layer_arrays(run, "feat")["top_images"][0]
    assert ex.positions.tolist() == top.tolist() and ex.threshold == 0.0
    data = json.loads((run / "config.json").read_text())["data"]
    model = colour_units(data)  # the planted unit, run here on the exemplars: fires > 0 is the mask
    ds = BrodenDataset(data, validate="none", transform=get_info(model).transform())
    with TraceDict(model, ["feat"]) as td:
        model(torch.stack([ds[p]["image"] for p in top.tolist()]))
    assert torch.equal(ex.activations, td["feat"].output[:, 0]) and torch.equal(ex.masks, ex.activations > 0)
    red = _colour_planes(run, "red", top.tolist())  # the world's own red pixels: all but a few
    assert ex.masks.any() and (ex.masks & red).sum() / (ex.masks | red).sum() > 0.95
    pixels = np.stack([np.asarray(ds.load_image(p).convert("RGB")) for p in top.tolist()])
    assert ex.images.shape == (4, 3, 64, 64)
    assert torch.equal((ex.images * 255).round().to(torch.uint8), torch.from_numpy(pixels).permute(0, 3, 1, 2))
    # by default the masks take the images' size and the dissection's own threshold T_k
    full = unitscope.exemplars(run, "feat", 0, k=4)
    assert full.masks.shape == (4, 64, 64)
    assert full.threshold == pytest.approx(float(load_layer_arrays(run, "feat")["thresholds"][0]))
    assert full.summary().startswith(f"feat unit 0: top 4 of 30 images (peaks {full.peaks.max().item():.4g}")
    with pytest.raises(ValueError, match="units 0..2, not 7"):
        unitscope.exemplars(run, "feat", 7, k=4)


def test_search_finds_planted_units_by_paraphrase(run, tmp_path):
    from tests.describe.test_describe_search import write_wordnet
    from unitscope.describe.run import Options, describe_run
    from unitscope.describe.search import per_layer, search_units

    describe_run(run, opts=Options(quantile=0.5, draws=20, progress=False))
    assert [h["unit"] for h in search_units(run, "red")] == [0]
    wn = write_wordnet(tmp_path / "wordnet")
    hits = search_units(run, "scarlet", wordnet=wn)  # a synonym of red in the WordNet written here
    assert [(h["unit"], h["description"], h["match"]) for h in hits] == [(0, "red", 0.9)]
    assert per_layer(hits) == {"feat": 1}
    assert search_units(run, "automobile", wordnet=wn) == []


def test_report_and_api_show_descriptions(run):
    import json

    from unitscope.describe.run import Options, describe_run
    from unitscope.report import write_report
    from unitscope.serve.runinfo import RunInfo

    describe_run(run, opts=Options(quantile=0.5, draws=20, progress=False))
    write_report(run)
    report = json.loads((run / "report.json").read_text())
    (layer,) = report["layers"]
    summary = layer["parts"]["describe"]
    assert summary["units"] == 3 and summary["pmi"]["described"] == 3 and summary["pmi"]["distinct"] == 3
    cards = {c["unit"]: c["parts"]["describe"] for c in layer["cards"]}
    assert [cards[u]["chosen"]["description"] for u in range(3)] == ["red", "green", "blue"]
    assert cards[0]["label"]["f1"] == pytest.approx(cards[0]["chosen"]["f1"])
    assert cards[0]["fair_label"]["description"] == "red" and cards[0]["fair_label"]["f1"] == cards[0]["label"]["f1"]
    assert summary["fair_label"]["described"] == 3 and summary["label"]["described"] == 3
    assert "window.UNITSCOPE_PARTS.describe = {" in (run / "index.html").read_text()  # the part's script, inlined
    info = RunInfo(run, model="planted-colours").unit("feat", 1)
    assert [d["kind"] for d in info["descriptions"]] == ["pmi", "ml", "fair_label", "label"]
    assert info["descriptions"][0]["description"] == "green"


def test_summary_counts_a_p_value_of_zero():
    """A p-value of exactly 0 (the score beyond every draw, no spread) is significant, not missing."""
    from unitscope.describe.result import DescribeResult

    rows = [
        {"unit": 0, "description": "red", "p_f1": 0.0},
        {"unit": 1, "description": "sky", "p_f1": 0.5},
        {"unit": 2, "description": "sky", "p_f1": None},
        {"unit": 3, "description": None},
    ]
    out = DescribeResult(Path("run"), {"feat": {"pmi": rows}})
    assert out.summary() == "feat: 3 of 4 units described, 2 distinct descriptions, 1 with held-out F1 p < 0.01"
