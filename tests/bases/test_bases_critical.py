"""Class-critical directions into the catalog and the report (issue 27, the third finding): on the
set-weight colour classifier (tests/helpers/ablate_models.py: units 0, 1, 2 of ``act`` carry blue,
green, red; logit k = 4 x unit k; all-zero logits are called blue), the units against a mixed
basis of units 0 and 1 (tests/bases/test_bases_importance.py's), by hand."""

import json
from pathlib import Path

import pytest
import torch

from tests.bases.test_bases_importance import colour_data, mixed_basis
from tests.helpers.ablate_models import colour_classifier, write_colour_folder
from unitscope.ablate import cache_layer, cut_model
from unitscope.bases.critical import class_critical, write_critical
from unitscope.bases.source import identity_basis
from unitscope.bases.tables import critical_markdown, critical_view
from unitscope.catalog import Catalog
from unitscope.describe import tables as _descriptions  # noqa: F401  (declares the descriptions table)

MODEL = str(Path(__file__).parents[1] / "helpers" / "ablate_models.py") + ":colour_classifier"
NAMES = ["blue", "green", "red"]


@pytest.fixture(scope="module")
def result():
    cut = cut_model(colour_classifier(), "act")
    cache = cache_layer(cut, colour_data(), batch_size=5)
    bases = {"units": identity_basis(4), "ica": mixed_basis()}
    return class_critical(cut, cache, cache, bases, torch.arange(3), NAMES, ns=[1, 4], seeds=2, top=2)


def test_critical_rows_by_hand(result):
    got = {(name, r["class"], r["n"]): r for name, b in result.items() for r in b["rows"]}
    for name in ("units", "ica"):
        assert result[name]["base_accuracy"] == 1.0 and result[name]["directions"] == 4
        assert all(got[name, c, n]["before"] == 1.0 for c in NAMES for n in (1, 4))
    for c in NAMES:
        # every unit removed: the layer is 0, every image is called blue (a tie), also at random
        r = got["units", c, 4]
        want = 1.0 if c == "blue" else 0.0
        assert (r["after"], r["random"]) == (want, want)
        assert r["others"] == {"blue": 0.0, "green": 0.5, "red": 0.5}[c]
    # one unit: green's unit 1 / red's unit 2 cost their class every image, the others nothing;
    # blue's top unit is unit 0 by its softmax mass, but without it a blue image is still blue (a tie)
    assert [(got["units", c, 1]["after"], got["units", c, 1]["others"]) for c in NAMES] == [
        (1.0, 1.0),
        (0.0, 1.0),
        (0.0, 1.0),
    ]
    # the mixed basis: d1 tops blue and green (removing it turns green images blue), d2 is red's
    assert [(got["ica", c, 1]["after"], got["ica", c, 1]["others"]) for c in NAMES] == [
        (1.0, 0.5),
        (0.0, 1.0),
        (0.0, 1.0),
    ]
    tops = {(name, t["class"], t["rank"]): t for name, b in result.items() for t in b["top"]}
    assert len(tops) == 2 * 3 * 2
    assert [tops["ica", c, 0]["unit"] for c in NAMES] == [1, 1, 2]
    assert tops["ica", "green", 0]["accuracy_drop"] == 1.0 and tops["ica", "blue", 0]["accuracy_drop"] == 0.0
    assert tops["ica", "red", 1]["unit"] == 0  # no other direction changes red: by number


def test_critical_view_joins_labels_and_descriptions(result, tmp_path):
    write_critical(tmp_path, "colours", "act", result)
    with Catalog(tmp_path / "catalog.sqlite") as cat:
        cat.replace(
            "dissection",
            [
                {"unit": 1, "concept": "green", "category": "color", "iou": 0.5, "is_detector": 1},
                {"unit": 2, "concept": "red", "category": "color", "iou": 0.25, "is_detector": 1},
                {"unit": 0, "concept": "sky", "category": "object", "iou": 0.01, "is_detector": 0},
            ],
            model="colours",
            layer="act#ica",
        )
        cat.replace(
            "descriptions",
            [
                {"unit": 1, "kind": "pmi", "description": "green", "f1": 0.8, "iou": 0.6, "auprc": 0.9, "p_f1": 0.001},
                {"unit": 2, "kind": "pmi", "description": "red", "f1": 0.4, "iou": 0.2, "auprc": 0.5, "p_f1": 0.2},
            ],
            model="colours",
            layer="act#ica",
        )
        view = critical_view(cat, "colours", "act")
    assert [b["basis_layer"] for b in view] == ["act", "act#ica"]  # units first
    ica = view[1]
    assert ica["ns"] == [1, 4] and [c["class"] for c in ica["classes"]] == NAMES
    red = ica["classes"][2]
    assert red["before"] == 1.0 and red["after"] == {1: 0.0, 4: 0.0}
    assert [(t["unit"], t["concept"], t["description"]) for t in red["top"]] == [(2, "red", "red"), (0, "sky", None)]
    m = ica["mean"]
    # tops: blue (1, 0), green (1, 0), red (2, 0): 6 directions, 3 detectors, IoU (3 x 0.01 + 2 x 0.5 + 0.25) / 6
    assert m["directions"] == 6 and m["detectors"] == 0.5 and m["distinct_labels"] == 3
    assert m["label_iou"] == pytest.approx((0.03 + 1.0 + 0.25) / 6)
    assert m["described"] == 3 and m["f1"] == pytest.approx(2.0 / 3) and m["significant"] == pytest.approx(2 / 3)
    assert m["after"][1] == pytest.approx(1 / 3)
    table = critical_markdown(view)
    assert "| units | 100.0% | 33.3% / 33.3% |" in table and "3 of 6" in table


def test_ablate_critical_command_and_report_part(tmp_path):
    from unitscope.bases.basis import Basis
    from unitscope.cli import main

    write_colour_folder(tmp_path / "data", per_class=5)
    run = tmp_path / "run"
    basis: Basis = mixed_basis()
    basis.save(run / "bases" / "l0" / "ica")
    (run / "bases" / "l0" / "ica" / "fit.json").write_text(json.dumps({"want": {"layer": "act"}}))
    args = ["ablate", "critical", "--model", MODEL, "--layer", "act", "--data", str(tmp_path / "data")]
    args += ["--out", str(run), "--bases", "units,ica", "--ns", "1,4,500", "--seeds", "2", "--no-progress"]
    assert main(args) == 0
    with Catalog(run / "catalog.sqlite") as cat:
        rows = cat.rows("basis_critical", model="colours", layer="act")
    assert {(r["basis_layer"], r["n"]) for r in rows} == {(b, n) for b in ("act", "act#ica") for n in (1, 4)}  # 500 > 4
    report = json.loads((run / "report.json").read_text())
    layer = next(x for x in report["layers"] if x["layer"] == "act")
    crit = layer["parts"]["bases"]["critical"]
    assert [b["basis"] for b in crit] == ["units", "ica"] and crit[0]["mean"]["after"]["4"] == pytest.approx(1 / 3)


def test_an_unknown_basis_lists_the_runs_bases(tmp_path):
    from unitscope.bases.critical import run_bases
    from unitscope.errors import UsageError

    mixed_basis().save(tmp_path / "bases" / "l0" / "ica")
    (tmp_path / "bases" / "l0" / "ica" / "fit.json").write_text(json.dumps({"want": {"layer": "act"}}))
    assert set(run_bases(tmp_path, "act", ["units", "ica"], 4)) == {"units", "ica"}
    with pytest.raises(UsageError, match="no basis 'sae' of act: it has units, ica"):
        run_bases(tmp_path, "act", ["sae"], 4)
    with pytest.raises(UsageError, match="no basis 'ica' of conv"):  # fitted on another layer
        run_bases(tmp_path, "conv", ["ica"], 4)
