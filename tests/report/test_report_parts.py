"""Report parts: registration, a run with only feature visualisations, NULL concepts, mask strips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.report_extras import add_concept_images, add_featvis, make_null_unit
from unitscope.catalog import TABLES, Catalog, define_table
from unitscope.report import ReportPart, register_part, registered_parts, write_report
from unitscope.report.parts import unregister_part


def _report(run):
    write_report(run)
    return json.loads((run / "report.json").read_text())


def _cards(report, layer, part):
    (ly,) = [x for x in report["layers"] if x["layer"] == layer]
    return {c["unit"]: c["parts"][part] for c in ly["cards"] if part in c["parts"]}


def test_builtin_parts_and_registration_rules():
    names = [p.name for p in registered_parts()]
    assert names[:2] == ["dissection", "featvis"]  # by order: dissection first
    diss = next(p for p in registered_parts() if p.name == "dissection")
    assert diss.tables == (
        "layers",
        "dissection",
        "dissection_category",
        "exemplars",
        "unit_images",
        "rotations",
        "concept_images",
    )
    register_part(diss)  # the same part again: nothing happens
    with pytest.raises(ValueError, match="different report part named 'dissection'"):
        register_part(ReportPart("dissection", "Other", ("dissection",)))
    with pytest.raises(FileNotFoundError, match="nope.js"):
        register_part(ReportPart("nojs", "No script", ("dissection",), script="nope.js"))
    with pytest.raises(ValueError, match="letters, digits"):
        register_part(ReportPart("bad name", "x", ("dissection",)))
    assert "nojs" not in [p.name for p in registered_parts()]


def test_a_registered_part_adds_section_and_card_rows(synthetic_run):
    define_table(
        "probe_scores",
        (("model", "TEXT"), ("layer", "TEXT"), ("unit", "INTEGER"), ("score", "REAL")),
        ("model", "layer", "unit"),
    )
    with Catalog(synthetic_run / "catalog.sqlite") as cat:
        cat.replace("probe_scores", [{"unit": u, "score": u / 4} for u in (2, 5)], model="toy", layer="layer3")
        # a layer only this part knows: the report's layers are the union over the parts' tables
        cat.replace("probe_scores", [{"unit": 0, "score": 1.5}], model="toy", layer="layer5")
    part = ReportPart(
        "probe",
        "Probe",
        ("probe_scores",),
        order=50,
        layer=lambda cat, m, ly: {
            "mean": cat.query("SELECT AVG(score) AS a FROM probe_scores WHERE model = ? AND layer = ?", (m, ly))[0]["a"]
        },
        units=lambda cat, m, ly: {
            r["unit"]: {"score": r["score"]} for r in cat.rows("probe_scores", model=m, layer=ly)
        },
        script="featvis.js",
    )  # any shipped script will do for the inlining check
    register_part(part)
    try:
        report = _report(synthetic_run)
    finally:
        unregister_part("probe")
        TABLES.pop("probe_scores")  # leave no table behind for later tests
    assert report["part_order"] == ["dissection", "probe"]
    assert [ly["id"] for ly in report["layers"]] == ["toy/layer3", "toy/layer4", "toy/layer5"]
    l3, l4, l5 = report["layers"]
    assert l3["parts"]["probe"] == {"mean": pytest.approx(0.875)} and "probe" not in l4["parts"]
    assert _cards(report, "layer3", "probe") == {2: {"score": 0.5}, 5: {"score": 1.25}}
    assert l5["units"] == 1 and l5["cards"] == [{"id": "toy/layer5/0", "unit": 0, "parts": {"probe": {"score": 1.5}}}]
    assert l3["cards"][2]["parts"].keys() == {"dissection", "probe"}
    assert '<script data-part="probe">' in (synthetic_run / "index.html").read_text()


def test_featvis_part(synthetic_run, tmp_path):
    add_featvis(synthetic_run)
    report = _report(synthetic_run)
    assert report["part_order"] == ["dissection", "featvis"]
    l4 = report["layers"][1]
    assert l4["parts"]["featvis"] == {"units": 3, "objectives": ["channel"]}
    assert "featvis" not in report["layers"][0]["parts"]
    fv = _cards(report, "layer4", "featvis")
    assert fv == {u: {"image": f"featvis/layer4/unit{u:04d}.png", "objective": "channel"} for u in (0, 7, 15)}
    assert all((synthetic_run / v["image"]).is_file() for v in fv.values())
    assert 'data-part="featvis"' in (synthetic_run / "index.html").read_text()

    # a run folder with only feature visualisations still gets a report
    run = tmp_path / "fv-only"
    add_featvis(run, layer="conv5", units=(1, 3), model="net")
    report = _report(run)
    assert report["part_order"] == ["featvis"] and report["title"] == "net: feature visualisation"
    (ly,) = report["layers"]
    assert (ly["id"], ly["units"], [c["unit"] for c in ly["cards"]]) == ("net/conv5", 2, [1, 3])
    assert "dissection" not in report["parts"] and ly["parts"].keys() == {"featvis"}


def test_null_concept_and_mask_strips(synthetic_run):
    make_null_unit(synthetic_run, 5)
    masks = add_concept_images(synthetic_run)
    report = _report(synthetic_run)
    card = _cards(report, "layer3", "dissection")[5]
    assert (card["concept"], card["category"], card["is_detector"]) == (None, None, False)
    l3 = report["layers"][0]["parts"]["dissection"]
    # unit 5 (wood, 0.03) was no detector: the counts stay, the bar chart has no null concept
    assert (l3["detectors"], l3["unique_concepts"]) == (10, 5)
    assert None not in [c["concept"] for c in l3["concepts"]]
    l4 = _cards(report, "layer4", "dissection")
    assert [l4[u]["mask_image"] for u in range(20)] == masks
    assert all(c["mask_image"] is None for c in _cards(report, "layer3", "dissection").values())


class _Labelled:
    """Four 4x4 images; label 7 covers image i's top-left (i+1)x(i+1) pixels; image 3 also has
    image-level label 9."""

    def load_image(self, i):
        from PIL import Image

        return Image.new("RGB", (8, 8), (100, 100, 100))

    def get(self, i, image=True, labels=True):
        planes = np.zeros((1, 4, 4), np.int64)
        planes[0, : i + 1, : i + 1] = 7
        return {"labels": planes, "image_labels": np.array([9 if i == 3 else 0])}


class _Dissected:
    def __init__(self, labels):
        self.best_label = np.array(labels)

    def concept(self, u):
        return {7: "sky", 9: "beach", 0: None}[int(self.best_label[u])]


def test_concept_strips_tint_the_ground_truth(tmp_path):
    import torch
    from PIL import Image

    from unitscope.dissect.exemplars import _MIN_THUMB, thumb_size, write_concept_strips

    assert thumb_size(_Labelled()) == _MIN_THUMB  # 8 px images: the smallest tile
    _THUMB = _MIN_THUMB

    tops = {"conv": (None, torch.tensor([[1, 0, -1], [3, 2, 1], [0, 1, 2]]))}
    rows = write_concept_strips(tmp_path, _Labelled(), ["conv"], {"conv": "l0"}, tops, {"conv": _Dissected([7, 9, 0])})
    assert rows == {
        "conv": [
            {"unit": 0, "path": "images/l0/unit0000_concept.jpg"},
            {"unit": 1, "path": "images/l0/unit0001_concept.jpg"},
        ]
    }  # unit 2 has no concept
    strip = np.asarray(Image.open(tmp_path / rows["conv"][0]["path"]), dtype=np.float32)
    assert strip.shape == (_THUMB, 3 * (_THUMB + 2), 3)
    tinted = 100 * 0.55 + np.array([0, 229, 255]) * 0.45
    q = _THUMB // 4
    # tile 0 is image 1: label 7 on its top-left 2x2 of 4x4 -> the top-left half of the thumbnail
    assert np.abs(strip[q, q] - tinted).max() < 12  # inside: tinted cyan
    assert np.abs(strip[3 * q, 3 * q] - 100).max() < 12  # outside: untouched
    edge = np.abs(strip[q, 2 * q - 2] - [0, 229, 255]).max()
    assert edge < 40 and edge < np.abs(strip[q, q] - [0, 229, 255]).max() - 30  # the mask's edge: outlined
    # tile 1 is image 0 (1x1 of 4x4); tile 2 is empty (no exemplar)
    assert np.abs(strip[q // 2, _THUMB + 2 + q // 2] - tinted).max() < 12
    assert np.abs(strip[q + 4, _THUMB + 2 + q + 4] - 100).max() < 12
    assert strip[:, 2 * (_THUMB + 2) + 4 :].min() > 240
    # unit 1's concept is an image-level label of image 3 only: all of tile 0 tinted, tile 1 not
    strip = np.asarray(Image.open(tmp_path / rows["conv"][1]["path"]), dtype=np.float32)
    assert np.abs(strip[2 * q, 2 * q] - tinted).max() < 12
    assert np.abs(strip[2 * q, _THUMB + 2 + 2 * q] - 100).max() < 12


def test_entry_point_parts_are_loaded(monkeypatch):
    import unitscope.report.parts as parts

    part = ReportPart("plugin", "Plugin", ("plugin_rows",))
    called = []

    class EP:
        def __init__(self, name, obj):
            self.name, self.value, self.obj = name, f"pkg:{name}", obj

        def load(self):
            return self.obj

    eps = [EP("a", part), EP("b", lambda: called.append(True))]
    monkeypatch.setattr(parts, "entry_points", lambda group: eps if group == parts.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(parts, "_LOADED", False)
    try:
        assert "plugin" in [p.name for p in registered_parts()] and called == [True]
    finally:
        unregister_part("plugin")

    class Broken(EP):
        def load(self):
            raise ModuleNotFoundError("No module named 'gone'")

    monkeypatch.setattr(parts, "entry_points", lambda group: [Broken("c", None)])
    monkeypatch.setattr(parts, "_LOADED", False)
    with pytest.raises(ImportError, match="entry point 'c' .*No module named 'gone'"):
        registered_parts()


def test_thumbnails_follow_the_data_set_size():
    from PIL import Image

    from unitscope.dissect.exemplars import thumb_size

    class Sized:
        def __init__(self, w, h):
            self.w, self.h = w, h

        def load_image(self, i):
            return Image.new("RGB", (self.w, self.h))

    assert [thumb_size(Sized(w, h)) for w, h in [(112, 112), (300, 200), (224, 224), (20, 30)]] == [112, 224, 224, 64]


def test_dissection_writes_concept_strips_only_for_detectors(tmp_path):
    """The engine asks for ground-truth strips of detectors only: a non-detector's best label is
    not a label the report stands behind (and its strip would cost as much as a detector's)."""
    import torch

    from unitscope.dissect.exemplars import write_unit_strips

    class Scored(_Dissected):
        detectors = np.array([False, True, False])  # unit 0 has a concept but IoU under the cut-off

    tops = {"conv": (None, torch.tensor([[1, 0, -1], [3, 2, 1], [0, 1, 2]]))}
    strips, rows = write_unit_strips(
        tmp_path,
        _Labelled(),
        ["conv"],
        {"conv": "l0"},
        tops,
        dissected={"conv": Scored([7, 9, 0])},
        detectors_only=True,
    )
    assert strips == {} and rows == {"conv": [{"unit": 1, "path": "images/l0/unit0001_concept.jpg"}]}
    assert not (tmp_path / "images/l0/unit0000_concept.jpg").exists()
    _, rows = write_unit_strips(
        tmp_path, _Labelled(), ["conv"], {"conv": "l0"}, tops, dissected={"conv": Scored([7, 9, 0])}
    )
    assert [r["unit"] for r in rows["conv"]] == [0, 1]


def test_exemplar_strips_dim_outside_the_unit_mask_and_outline_it(tmp_path):
    import torch
    from PIL import Image

    from unitscope.dissect.exemplars import _MIN_THUMB, write_exemplar_strips

    class Maps:  # unit 0 of image i fires on the left half of its 2x2 map, above the threshold 0.5
        def read(self, tag, positions):
            maps = np.zeros((len(positions), 1, 2, 2), np.float32)
            maps[:, 0, :, 0] = 1.0
            return maps

    tops = {"conv": (None, torch.tensor([[2, 0, -1]]))}
    paths = write_exemplar_strips(
        tmp_path, _Labelled(), ["conv"], {"conv": "l0"}, None, Maps(), {"conv": torch.tensor([0.5])}, tops
    )
    assert paths == {"conv": ["images/l0/unit0000.jpg"]}
    strip = np.asarray(Image.open(tmp_path / paths["conv"][0]), dtype=np.float32)
    size = _MIN_THUMB
    assert strip.shape == (size, 3 * (size + 2), 3)
    for tile in (0, 1):
        x0, q = tile * (size + 2), size // 4
        assert np.abs(strip[2 * q, x0 + q] - 100).max() < 12  # inside the mask: as it was
        assert np.abs(strip[2 * q, x0 + 3 * q] - (100 * 0.3 + 20)).max() < 12  # outside: dimmed
        edge = strip[2 * q, x0 + 2 * q - 8 : x0 + 2 * q + 8]  # the mask's right edge: a yellow line (JPEG
        brightest = edge[edge.sum(axis=1).argmax()]  # halves its chroma), brighter than both sides
        assert brightest[0] > 200 and brightest[1] > 200 and brightest[2] < brightest[0] - 60, edge
    # the gap (JPEG bleeds the next tile's yellow edge into its blue) and the empty slot stay white
    assert strip[:, size : size + 2, :2].min() > 240 and strip[:, 2 * (size + 2) + 4 :].min() > 240
