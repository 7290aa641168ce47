import csv
import json

import pytest
from conftest import SYNTHETIC_LAYERS

from unitscope.catalog import Catalog
from unitscope.cli import main
from unitscope.compare import compare_runs, format_table


@pytest.fixture
def two_runs(tmp_path, make_run):
    a = make_run(tmp_path / "a")  # toy: layer3, layer4
    # a second model whose only layer dissects like layer3, with two more units not detectors
    b = make_run(
        tmp_path / "b",
        model="other",
        images=False,
        rotations={},
        layers={"conv5": SYNTHETIC_LAYERS["layer3"] + [("dog", 0.01), ("car", 0.0)]},
    )
    return a, b


def _cells(rows):
    return {(r["model"], r["layer"], r["category"]): (r["detectors"], r["unique_concepts"], r["units"]) for r in rows}


def test_compare_runs_counts(two_runs):
    a, b = two_runs
    rows = compare_runs([a, b])
    assert tuple(rows[0]) == ("run", "model", "layer", "category", "detectors", "unique_concepts", "units", "share")
    assert len(rows) == 3 * 6  # 3 layers x 6 categories, zeros included
    cells = _cells(rows)
    assert cells[("toy", "layer4", "object")] == (8, 4, 20)
    assert cells[("toy", "layer4", "part")] == (2, 2, 20)
    assert cells[("toy", "layer4", "texture")] == (0, 0, 20)
    assert cells[("toy", "layer3", "color")] == (6, 2, 20)
    assert cells[("other", "conv5", "color")] == (6, 2, 22)
    assert cells[("other", "conv5", "object")] == (0, 0, 22)
    assert {r["run"] for r in rows} == {str(a), str(b)}
    assert [r["category"] for r in rows[:6]] == ["object", "scene", "part", "material", "texture", "color"]
    for layer, total in (("layer3", 10), ("layer4", 13), ("conv5", 10)):
        assert sum(r["detectors"] for r in rows if r["layer"] == layer) == total
        assert sum(r["share"] for r in rows if r["layer"] == layer) == pytest.approx(1, abs=1e-3)
    assert next(r for r in rows if r["layer"] == "layer4" and r["category"] == "object")["share"] == round(8 / 13, 4)
    assert next(r for r in rows if r["layer"] == "conv5" and r["category"] == "color")["share"] == 0.6


def test_compare_table_and_cli(two_runs, tmp_path, capsys):
    a, b = two_runs
    table = format_table(compare_runs([a, b]))
    lines = table.splitlines()
    assert lines[1].split() == ["model", "toy", "toy", "other"]
    assert lines[2].split() == ["category", "\\", "layer", "layer3", "layer4", "conv5"]
    assert lines[4].split() == ["object", "0", "(0)", "8", "(4)", "0", "(0)"]
    assert next(x for x in lines if x.startswith("total")).split() == ["total", "10", "(5)", "13", "(9)", "10", "(5)"]
    assert next(x for x in lines if x.startswith("units")).split() == ["units", "20", "20", "22"]
    shares = lines[lines.index("share of each column's detectors by category") + 1 :]
    assert shares[0].split() == ["object", "0%", "62%", "0%"]
    assert shares[-1].split() == ["color", "60%", "8%", "60%"]  # 6/10, 1/13, 6/10

    out = tmp_path / "cmp.csv"
    assert main(["compare", str(a), str(b), "--csv", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    with open(out, newline="") as f:
        from_csv = list(csv.DictReader(f))
    assert len(printed) == len(from_csv) == 18
    row = next(r for r in from_csv if r["layer"] == "layer4" and r["category"] == "object")
    assert row == {
        "run": str(a),
        "model": "toy",
        "layer": "layer4",
        "category": "object",
        "detectors": "8",
        "unique_concepts": "4",
        "units": "20",
        "share": "0.6154",
    }
    assert [{k: str(v) for k, v in r.items()} for r in printed] == from_csv

    assert main(["compare", str(a)]) == 0
    assert "13 (9)" in capsys.readouterr().out


def test_compare_errors(two_runs, tmp_path, capsys):
    a, _ = two_runs
    notrun = tmp_path / "not-a-run"
    notrun.mkdir()
    with pytest.raises(FileNotFoundError, match="not-a-run is not a run folder"):
        compare_runs([a, notrun])
    assert main(["compare", str(a), str(notrun)]) == 2
    err = capsys.readouterr().err
    assert str(notrun) in err and "catalog.sqlite" in err
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert "missing does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    with Catalog(empty / "catalog.sqlite"):
        pass
    with pytest.raises(ValueError, match="no dissection results"):
        compare_runs([empty])
