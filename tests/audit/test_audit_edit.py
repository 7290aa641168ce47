"""The editing experiment (unitscope.audit.edit) on a hand-built model whose unit 1 alone carries a
spurious cue (tests/helpers/audit_models.py), and the saved edit (unitscope.edited) reloading as a model."""

import json
from pathlib import Path

import pytest
import torch

from tests.helpers.audit_models import cue_model, images
from unitscope.audit.edit import EvalSet, accuracy, edit_experiment, find_units, write_tables
from unitscope.catalog import Catalog
from unitscope.describe import tables  # noqa: F401  (declares descriptions)
from unitscope.edited import EditFile, is_edit_file
from unitscope.hooks import Ablate
from unitscope.models import create_model

MODEL = str(Path(__file__).parents[1] / "helpers" / "audit_models.py") + ":cue_model"
FORMULAS = {0: ("grass", "grass"), 1: ("sign", "signs"), 2: ("sky AND NOT sign", "sky, not signs")}


def described_run(tmp_path: Path) -> Path:
    """A run folder whose catalog holds one pmi description per unit of layer ``relu``."""
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"unit": u, "kind": "pmi", "formula": f, "description": d, "f1": 0.5} for u, (f, d) in FORMULAS.items()]
    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace("descriptions", rows, model="cue_model", layer="relu")
    return run


def sets() -> dict[str, EvalSet]:
    y2 = torch.tensor([0] * 4 + [1] * 4)
    return {
        "clean": EvalSet(torch.cat([images(0, False), images(1, False)]), y2),
        "agree": EvalSet(images(1, True), torch.ones(4, dtype=torch.long)),
        "conflict": EvalSet(images(0, True), torch.zeros(4, dtype=torch.long)),
    }


def test_the_model_follows_the_cue_and_its_unit():
    model, s = cue_model(), sets()
    assert accuracy(model, s["clean"]) == 1.0 and accuracy(model, s["agree"]) == 1.0
    assert accuracy(model, s["conflict"]) == 0.0  # the sign wins: logits (2, 3.5)
    assert accuracy(model, s["conflict"], {"relu": [1]}) == 1.0  # (2, 0.5)
    assert accuracy(model, s["clean"], {"relu": [0]}) == 0.5  # class 0 falls to (0, 0.5)


def test_query_finds_the_cue_unit_and_not_the_negated_one(tmp_path):
    hits = find_units(described_run(tmp_path), "sign")
    assert [(h["layer"], h["unit"]) for h in hits] == [("relu", 1)]  # "sky AND NOT sign" is no sign unit


def test_removing_the_described_units_restores_the_true_class(tmp_path):
    run, model, s = described_run(tmp_path), cue_model(), sets()
    out = edit_experiment(model, run, "sign", s, s, draws=3, seed=0, model_name=MODEL, say=lambda *_: None)
    by = {(r["kind"], r["draw"]): r for r in out["results"]}
    assert (by["none", 0]["conflict"], by["none", 0]["clean"]) == (0.0, 1.0)
    assert (by["described", 0]["units"], by["described", 0]["conflict"], by["described", 0]["clean"]) == (1, 1.0, 1.0)
    # the most important unit is unit 0: clean class 0 fails, the cue still wins
    assert (by["important", 0]["conflict"], by["important", 0]["clean"]) == (0.0, 0.5)
    assert out["removal"] == {"relu": [1]}
    assert [u["single_accuracy"] for u in out["units"]] == [1.0] and out["units"][0]["removed"] == 1
    for d in range(3):  # a random unit restores the class only when it is unit 1
        r = by["random", d]
        assert r["units"] == 1 and r["conflict"] in (0.0, 1.0)
    assert [c["conflict"] for c in out["curve"]] == [0.0, 1.0]
    write_tables(run, out)
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        assert len(cat.rows("edit_results", model=MODEL)) == 3 + 3
        assert cat.rows("edit_units", model=MODEL)[0]["unit"] == 1
    from unitscope.report import write_report

    write_report(run, title="edit")  # the audit part: the units found and the test table
    layer = next(ly for ly in json.loads((run / "report.json").read_text())["layers"] if "audit" in ly["parts"])
    q = layer["parts"]["audit"]["queries"][0]
    assert [u["unit"] for u in q["units"]] == [1] and q["layers"] == ["relu"]
    kinds = [r["kind"] for r in q["results"]]
    assert kinds == ["none", "described", "random", "random", "random", "random mean", "important"]
    assert q["results"][1]["conflict"] == 1.0
    assert "audit.js" in (run / "index.html").read_text() or "UNITSCOPE_PARTS.audit" in (run / "index.html").read_text()


def test_saved_edit_reloads_to_the_same_outputs(tmp_path):
    run, model, s = described_run(tmp_path), cue_model(), sets()
    out = edit_experiment(model, run, "sign", s, s, draws=1, model_name=MODEL, say=lambda *_: None)
    path = out["edit"].save(tmp_path / "cue.edit.json")
    assert is_edit_file(str(path))
    x = torch.cat([images(0, True), images(1, False), torch.rand(3, 3, 4, 4)])
    with torch.no_grad(), Ablate(model, "relu", [1]):
        expected = model(x)
    edited = create_model(str(path))
    with torch.no_grad():
        got = edited(x)
    assert torch.equal(got, expected)
    assert got[:4].argmax(1).tolist() == [0] * 4  # the sign no longer names the class
    assert create_model(MODEL)(x[:4]).argmax(1).tolist() == [1] * 4  # the unedited model is unchanged
    assert EditFile.read(path).about["test"]["described"]["conflict"] == 1.0


def test_bad_edit_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        EditFile("m", [{"layer": "relu", "units": [1], "mode": "scramble"}])
    bad = tmp_path / "x.json"
    bad.write_text('{"kind": "something else"}')
    assert not is_edit_file(str(bad))
    with pytest.raises(ValueError, match="not an edit file"):
        EditFile.read(bad)
    edit = EditFile(MODEL, [{"layer": "relu", "units": [7]}]).save(tmp_path / "e.json")
    with pytest.raises(ValueError, match="3 units"):
        create_model(str(edit))(images(0, True))


def test_no_matching_unit_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no unit .* matching 'dragon'"):
        edit_experiment(cue_model(), described_run(tmp_path), "dragon", sets(), sets(), say=lambda *_: None)


def test_edit_command_refuses_a_model_of_other_classes(tmp_path, capsys):
    from unitscope.cli import main

    assert main(["edit", "--model", MODEL, "--run", str(described_run(tmp_path)), "--out", str(tmp_path / "o")]) != 0
    assert "does not classify the probe world's scenes" in capsys.readouterr().err


def test_shipped_edit_loads_and_zeroes_its_units():
    from unitscope.hooks import Trace

    path = Path(__file__).parents[2] / "docs" / "world_scenes_cue.edit.json"
    model = create_model(str(path))
    layers = EditFile.read(path).layers
    with torch.no_grad(), Trace(model, layers[0]["layer"]) as t:
        model(torch.rand(2, 3, 64, 64))
    assert float(t.output[:, layers[0]["units"]].abs().sum()) == 0.0 and float(t.output.abs().sum()) > 0
