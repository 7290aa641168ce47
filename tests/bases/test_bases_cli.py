"""``unitscope dissect --basis`` end to end on the planted colour units (tests/helpers/planted.py): the
layer's units and its bases dissected in one run, their metrics in the catalog and the report."""

import json
import sqlite3
from pathlib import Path

import pytest

from unitscope.cli import main

PLANTED = str(Path(__file__).parents[1] / "helpers" / "planted.py")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from unitscope.world import make_world

    return make_world(tmp_path_factory.mktemp("world") / "w64", n=8, size=64, seed=3, workers=1, progress=False)


@pytest.mark.slow
def test_dissect_basis_from_the_command_line(world, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLANTED_WORLD", str(world))
    out = tmp_path / "run"
    args = [
        "dissect",
        "--model",
        f"{PLANTED}:colour_units",
        "--data",
        str(world),
        "--layers",
        "feat",
        "--basis",
        "units,rotation,pca,nmf:passes=20",
        "--quantile",
        "0.05",
        "--topk",
        "3",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    assert "bases of feat:\n| basis | directions | FVU" in capsys.readouterr().out
    with sqlite3.connect(out / "catalog.sqlite") as db:
        layers = dict(db.execute("SELECT layer, units FROM layers").fetchall())
        metrics = {
            r[0]: r[1:]
            for r in db.execute(
                "SELECT basis, directions, fvu, mean_l0, dead_fraction, stability FROM basis_metrics WHERE layer = 'feat'"
            )
        }
    assert layers == {"feat": 3, "feat#rotation": 3, "feat#pca": 3, "feat#nmf": 3}
    assert set(metrics) == {"units", "rotation", "pca", "nmf"}
    units = metrics["units"]
    assert units[:2] == (3, 0.0) and 0 < units[2] < 1  # a pixel has at most one colour: L0 below 1
    assert metrics["rotation"][1] < 1e-9 and metrics["pca"][1] < 1e-9  # full-rank bases lose nothing
    assert metrics["pca"][4] == 1.0 and 0.99 < metrics["nmf"][4] <= 1.0 + 1e-9  # NMF of one-hot codes: stable
    report = json.loads((out / "report.json").read_text())
    feat = next(layer for layer in report["layers"] if layer["layer"] == "feat")
    rows = feat["parts"]["bases"]["rows"]
    assert [r["basis"] for r in rows] == ["units", "rotation", "pca", "nmf"]
    assert rows[0]["detectors"] == 3 and rows[0]["unique_concepts"] == 3
    bad = list(args)
    bad[bad.index("--basis") + 1] = "units,sea"
    assert main(bad) == 2
    assert "did you mean sae" in capsys.readouterr().err
