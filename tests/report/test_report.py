import json

import pytest

from unitscope.catalog import Catalog
from unitscope.cli import main
from unitscope.report import write_report


def _layers(report):
    return {ly["layer"]: ly for ly in report["layers"]}


def _diss(layer):
    """A layer's dissection section and its cards' dissection rows by unit."""
    return layer["parts"]["dissection"], {c["unit"]: c["parts"]["dissection"] for c in layer["cards"]}


def test_report_numbers(synthetic_run):
    html = write_report(synthetic_run)
    assert html == synthetic_run / "index.html"
    report = json.loads((synthetic_run / "report.json").read_text())
    assert report["part_order"] == ["dissection"]  # featvis is registered but has no rows here
    assert report["parts"]["dissection"]["categories"] == ["object", "scene", "part", "material", "texture", "color"]
    assert [ly["id"] for ly in report["layers"]] == ["toy/layer3", "toy/layer4"]
    (l3, c3), (l4, c4) = _diss(_layers(report)["layer3"]), _diss(_layers(report)["layer4"])
    assert (l3["units"], l3["detectors"], l3["unique_concepts"]) == (20, 10, 5)
    assert (l4["units"], l4["detectors"], l4["unique_concepts"]) == (20, 13, 9)
    assert [(c["category"], c["detectors"], c["unique_concepts"]) for c in l3["categories"]] == [
        ("part", 1, 1),
        ("texture", 3, 2),
        ("color", 6, 2),
    ]
    assert [(c["category"], c["detectors"], c["unique_concepts"]) for c in l4["categories"]] == [
        ("object", 8, 4),
        ("scene", 1, 1),
        ("part", 2, 2),
        ("material", 1, 1),
        ("color", 1, 1),
    ]
    # bar chart: grouped by category (NetDissect order), most detectors first within a group
    assert [(c["concept"], c["detectors"]) for c in l4["concepts"]] == [
        ("dog", 3),
        ("car", 2),
        ("tree", 2),
        ("cat", 1),
        ("street", 1),
        ("eye", 1),
        ("wheel", 1),
        ("wood", 1),
        ("red", 1),
    ]
    assert [(c["concept"], c["detectors"]) for c in l3["concepts"]] == [
        ("eye", 1),
        ("striped", 2),
        ("dotted", 1),
        ("red", 4),
        ("blue", 2),
    ]
    # cards in unit order (the page sorts them), one per unit, with stable ids
    layer4 = _layers(report)["layer4"]
    assert [c["unit"] for c in layer4["cards"]] == list(range(20)) and layer4["units"] == 20
    assert sum(c["is_detector"] for c in c3.values()) == 10
    card = c4[7]
    assert layer4["cards"][7]["id"] == "toy/layer4/7"
    assert card["concept"] == "dog" and card["category"] == "object"
    assert card["iou"] == pytest.approx(0.06) and card["is_detector"] is True
    assert card["image"] == "images/toy/layer4/unit0007.jpg" and card["mask_image"] is None
    assert (synthetic_run / card["image"]).is_file()
    assert [x["category"] for x in card["labels"]] == report["parts"]["dissection"]["categories"]
    assert [x["rank"] for x in card["exemplars"]] == [0, 1, 2, 3]
    assert card["exemplars"][0] == {
        "rank": 0,
        "image": (7 * 13 + 1) % 100,
        "activation": pytest.approx(9.3),
        "y": 0,
        "x": 0,
    }
    # histogram: bins of a round width from 0 past the maximum, counting every unit
    for ly, width, top in ((l3, 0.01, 0.15), (l4, 0.02, 0.25)):
        edges, counts = ly["histogram"]["edges"], ly["histogram"]["counts"]
        assert sum(counts) == 20 and len(edges) == len(counts) + 1
        assert edges[0] == 0 and edges[1] == pytest.approx(width) and edges[-1] > top
    assert l3["histogram"]["counts"][:5] == [2, 1, 3, 4, 2]  # [0,.01) [.01,.02) ... [.04,.05)
    assert l4["rotations"] == [
        {"rotation": 0, "detectors": 13, "unique_concepts": 9},
        {"rotation": 1, "detectors": 4, "unique_concepts": 3},
        {"rotation": 2, "detectors": 5, "unique_concepts": 4},
    ]
    assert l3["rotations"] == []
    assert report["config"]["model"] == "toy"
    assert report["title"] == "toy: network dissection"


def test_report_page_files(synthetic_run):
    write_report(synthetic_run, title="My <dissection>")
    page = (synthetic_run / "index.html").read_text()
    assert "<title>My &lt;dissection&gt;</title>" in page
    assert '<script src="report.js"></script>' in page
    # the parts' scripts are inlined (file:// cannot load them otherwise), only the parts used
    assert page.count("<script src=") == 1
    assert '<script data-part="dissection">' in page and "UNITSCOPE_PARTS.dissection" in page
    assert 'data-part="featvis"' not in page
    for banned in ("http://", "https://", "//cdn"):  # works offline: nothing fetched from the web
        assert banned not in page.replace("http://www.w3.org/2000/svg", "")
    js = (synthetic_run / "report.js").read_text()
    prefix = "window.UNITSCOPE_REPORT = "
    assert js.startswith(prefix) and js.rstrip().endswith(";")
    embedded = json.loads(js[len(prefix) :].rstrip().rstrip(";"))
    assert embedded == json.loads((synthetic_run / "report.json").read_text())
    assert embedded["title"] == "My <dissection>"


def test_report_of_empty_and_partial_runs(tmp_path):
    run = tmp_path / "empty"
    with Catalog(run / "catalog.sqlite"):
        pass
    write_report(run)
    assert json.loads((run / "report.json").read_text())["layers"] == []
    # a layer with dissection rows but no layers row / images: units = rows, no image path
    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace(
            "dissection",
            [
                dict(unit=u, concept="sky", category="scene", iou=0.1 * u, is_detector=u > 0, threshold=1.0)
                for u in range(3)
            ],
            model="m",
            layer="conv",
        )
    write_report(run)
    (layer,) = json.loads((run / "report.json").read_text())["layers"]
    ly, cards = _diss(layer)
    assert (ly["units"], ly["detectors"], ly["unique_concepts"]) == (3, 2, 1)
    assert [c["image"] for c in cards.values()] == [None, None, None]
    assert ly["iou_threshold"] is None and sum(ly["histogram"]["counts"]) == 3


def test_report_cli(synthetic_run, tmp_path, capsys):
    assert main(["report", str(synthetic_run), "--title", "T"]) == 0
    assert json.loads((synthetic_run / "report.json").read_text())["title"] == "T"
    assert "index.html" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "not a folder" in err
    (tmp_path / "plain").mkdir()
    assert main(["report", str(tmp_path / "plain")]) == 2
    assert "no catalog.sqlite" in capsys.readouterr().err
