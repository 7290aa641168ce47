"""The class-critical tables of the bases part in headless Chromium (see test_browser.py): a real
``unitscope ablate critical`` run of the colour classifier (its units and a saved mixed basis), with
dissection labels and a description of two directions, rendered by ``unitscope report``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_browser import browser, page  # noqa: F401  (fixtures)

from tests.bases.test_bases_importance import mixed_basis
from tests.helpers.ablate_models import write_colour_folder
from unitscope.catalog import Catalog
from unitscope.cli import main
from unitscope.describe import tables as _descriptions  # noqa: F401  (declares the descriptions table)

pytestmark = pytest.mark.browser
MODEL = str(Path(__file__).parents[1] / "helpers" / "ablate_models.py") + ":colour_classifier"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("critical_report")
    write_colour_folder(root / "data", per_class=5)
    run = root / "run"
    mixed_basis().save(run / "bases" / "l0" / "ica")
    (run / "bases" / "l0" / "ica" / "fit.json").write_text(json.dumps({"want": {"layer": "act"}}))
    args = ["ablate", "critical", "--model", MODEL, "--layer", "act", "--data", str(root / "data"), "--out", str(run)]
    assert main(args + ["--bases", "units,ica", "--ns", "1,4", "--seeds", "2", "--no-report", "--no-progress"]) == 0
    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace(
            "dissection",
            [{"unit": 2, "concept": "red-c", "category": "color", "iou": 0.25, "is_detector": 1}],
            model="colours",
            layer="act#ica",
        )
        cat.replace(
            "descriptions",
            [
                {
                    "unit": 2,
                    "kind": "pmi",
                    "description": "red things",
                    "f1": 0.5,
                    "iou": 0.4,
                    "auprc": 0.6,
                    "p_f1": 0.001,
                }
            ],
            model="colours",
            layer="act#ica",
        )
    assert main(["report", str(run)]) == 0
    return run / "index.html"


def test_a_table_per_basis_with_labels_and_descriptions(report, page):
    page.open(report.as_uri())
    pg = page.page
    part = "section.layer[id='layer:colours/act'] .part-section.part-bases"
    pg.wait_for_selector(part + " table.critical")
    assert pg.locator(part + " h4").all_inner_texts() == ["units (act)", "ica (act#ica)"]
    ica = pg.locator(part + " table.critical[data-basis='ica'] tr")
    assert ica.count() == 1 + 3 + 1  # header, 3 classes, mean
    red = ica.nth(3).locator("td").all_inner_texts()
    assert red[:4] == ["red", "100.0%", "0.0%", "0.0%"]  # before, top 1 and top 4 removed
    assert (
        red[-1].startswith("#2 red-c 0.25*")
        and "\u201cred things\u201d F1 0.50 IoU 0.40 AUPRC 0.60 (p<0.01)" in red[-1]
    )
    assert "#0 (no label)" in red[-1]
    assert "described 3 of 12" in ica.nth(4).inner_text()  # #2 is in each class's top 4 of the 4
