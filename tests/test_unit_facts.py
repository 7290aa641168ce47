"""One reader of unit facts: an analysis registered once (its report part with ``facts``) shows up
in the report's cards and unit-page data, in serve's ``/api/unit``, in ``unitscope explain``'s
labels and in ``open_run(...).unit()``, none of which names it; unregistered, it is gone from all."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from unitscope.catalog import TABLES, Catalog, define_table
from unitscope.facts import UnitFacts, layer_facts, sources, unit_facts
from unitscope.report import ReportPart, register_part, write_report
from unitscope.report.parts import unregister_part
from unitscope.results import open_run

# units 0..3 of colour_net's relu: detectors red, blue and striped; unit 1's "dog" is below threshold
RUN_LAYERS = {"relu": [("red", 0.3), ("dog", 0.01), ("blue", 0.2), ("striped", 0.05)]}


def toy_facts(cat: Catalog, model: str, layer: str, unit: int) -> UnitFacts | None:
    rows = cat.rows("toy_scores", model=model, layer=layer, unit=unit)
    if not rows:
        return None
    r = rows[0]
    return UnitFacts(
        label=r["word"],
        rows={"score": r["score"]},
        images={"picture": r["path"]},
        links={"toy page": f"toy/{unit}.html"},
    )


@pytest.fixture
def toy_run(make_run, tmp_path):
    """A dissected run plus a toy analysis' rows about units 1 and 2, registered once."""
    run = make_run(tmp_path / "run", model="colour", layers=RUN_LAYERS, rotations={})
    define_table(
        "toy_scores",
        (
            ("model", "TEXT"),
            ("layer", "TEXT"),
            ("unit", "INTEGER"),
            ("score", "REAL"),
            ("word", "TEXT"),
            ("path", "TEXT"),
        ),
        ("model", "layer", "unit"),
    )
    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace(
            "toy_scores",
            [
                {"unit": 1, "score": 0.25, "word": "fuzzy", "path": "toy/1.png"},
                {"unit": 2, "score": 0.75, "word": "round", "path": "toy/2.png"},
            ],
            model="colour",
            layer="relu",
        )
    (run / "toy").mkdir()
    for u in (1, 2):
        Image.new("RGB", (8, 8), (0, 40 * u, 0)).save(run / f"toy/{u}.png")
    register_part(ReportPart("toy", "Toy analysis", ("toy_scores",), facts=toy_facts, order=60))
    try:
        yield run
    finally:
        unregister_part("toy")
        TABLES.pop("toy_scores")


def test_one_registration_reaches_report_serve_explain_and_open_run(toy_run):
    from unitscope.attribution.page import _catalog_units

    # the report: a card per unit the toy's table names, its facts as the card data
    write_report(toy_run)
    report = json.loads((toy_run / "report.json").read_text())
    assert "toy" in report["part_order"] and report["part_titles"]["toy"] == "Toy analysis"
    (layer,) = report["layers"]
    cards = {c["unit"]: c["parts"] for c in layer["cards"]}
    assert {u for u, p in cards.items() if "toy" in p} == {1, 2}
    assert cards[2]["toy"] == {
        "label": "round",
        "rows": {"score": 0.75},
        "images": {"picture": "toy/2.png"},
        "links": {"toy page": "toy/2.html"},
    }
    assert "dissection" in cards[2]  # the built-in parts are still there

    # serve: /api/unit's facts block, image and link paths as /run/ URLs; older fields unchanged
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'unitscope[serve]'")
    from fastapi.testclient import TestClient

    from tests.helpers.serve_model import colour_net
    from unitscope.serve import create_app

    client = TestClient(create_app(colour_net(), toy_run))
    body = client.get("/api/unit", params={"layer": "relu", "unit": 1}).json()
    assert body["facts"]["toy"] == {
        "title": "Toy analysis",
        "label": "fuzzy",
        "rows": {"score": 0.25},
        "images": {"picture": "/run/toy/1.png"},
        "links": {"toy page": "/run/toy/1.html"},
    }
    assert list(body["facts"]) == ["dissection", "toy"]  # in part order
    assert body["facts"]["dissection"]["label"] is None and body["facts"]["dissection"]["rows"]["concept"] == "dog"
    assert body["dissection"] == {
        "concept": "dog",
        "category": "object",
        "iou": 0.01,
        "threshold": 1.1,
        "is_detector": False,
    }
    assert client.get(body["facts"]["toy"]["images"]["picture"]).status_code == 200
    assert "toy" not in client.get("/api/unit", params={"layer": "relu", "unit": 0}).json()["facts"]

    # explain: a unit's label is the first analysis' label (a detector's concept, else the toy's word)
    labels, _ = _catalog_units(toy_run, "colour", "relu")
    assert labels == {0: "red", 1: "fuzzy", 2: "blue", 3: "striped"}

    # open_run
    u = open_run(toy_run).unit("relu", 1)
    assert u["toy"].rows == {"score": 0.25} and u.label == "fuzzy" and "toy" in u
    html = u._repr_html_()
    assert "Toy analysis" in html and "fuzzy" in html and html.count("data:image/png;base64") == 1
    assert open_run(toy_run).unit("relu", 2).label == "blue"

    # unregistered: gone from every reader
    unregister_part("toy")
    assert "toy" not in [s.name for s in sources()]
    assert "toy" not in client.get("/api/unit", params={"layer": "relu", "unit": 1}).json()["facts"]
    assert "toy" not in open_run(toy_run).unit("relu", 1)
    assert _catalog_units(toy_run, "colour", "relu")[0] == {0: "red", 2: "blue", 3: "striped"}


def test_a_part_with_card_data_only_gives_its_cards_as_facts(toy_run):
    """A part registered without ``facts`` (as other analyses' parts may be) still reaches the readers."""
    unregister_part("toy")
    register_part(
        ReportPart(
            "toycards",
            "Toy cards",
            ("toy_scores",),
            order=60,
            units=lambda cat, m, ly: {
                r["unit"]: {"score": r["score"]} for r in cat.rows("toy_scores", model=m, layer=ly)
            },
        )
    )
    try:
        with Catalog(toy_run / "catalog.sqlite", create=False) as cat:
            facts = unit_facts(cat, "colour", "relu", 2)
            every = layer_facts(cat, "colour", "relu")
        assert facts["toycards"] == UnitFacts(rows={"score": 0.75})
        assert sorted(every) == [0, 1, 2, 3] and sorted(u for u, f in every.items() if "toycards" in f) == [1, 2]
        assert list(every[2]) == ["dissection", "toycards"]
        assert open_run(toy_run).unit("relu", 1)["toycards"].rows == {"score": 0.25}
    finally:
        unregister_part("toycards")


def test_builtin_facts_of_a_unit(toy_run):
    """Dissection's facts: concept, IoU, threshold, per-category bests (IoU descending), exemplars, strip."""
    with Catalog(toy_run / "catalog.sqlite", create=False) as cat:
        d = unit_facts(cat, "colour", "relu", 0)["dissection"]
    assert d.label == "red" and d.images == {"exemplars": "images/colour/relu/unit0000.jpg"}
    assert {k: d.rows[k] for k in ("concept", "category", "iou", "threshold", "is_detector")} == {
        "concept": "red",
        "category": "color",
        "iou": 0.3,
        "threshold": 1.0,
        "is_detector": True,
    }
    ious = [c["iou"] for c in d.rows["categories"]]
    assert ious[0] == 0.3 and ious == sorted(ious, reverse=True)
    assert [e["rank"] for e in d.rows["exemplars"]] == list(range(len(d.rows["exemplars"])))
    with pytest.raises(KeyError, match="analyses with facts"):
        open_run(toy_run).unit("relu", 0)["ablation"]
