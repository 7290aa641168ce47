"""The ablation part of the report in headless Chromium (see test_browser.py): a real
``unitscope ablate all`` run of the colour classifier, rendered by ``unitscope report``."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from test_browser import browser, page  # noqa: F401  (fixtures)

from tests.ablate.test_ablate_run import MODEL, TWIN
from tests.helpers.ablate_models import write_colour_folder
from unitscope.catalog import Catalog
from unitscope.cli import main

pytestmark = pytest.mark.browser

CONCEPTS = {1: "green-c", 2: "red-c"}  # dissection labels of the colour units (unit 0, blue, has none)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """``ablate all`` with the twin, dissection labels and exemplar strips for two units, then the report."""
    root = tmp_path_factory.mktemp("ablation_report")
    write_colour_folder(root / "data")
    run = root / "run"
    assert (
        main(
            [
                "ablate",
                "all",
                "--model",
                MODEL,
                "--layer",
                "act",
                "--data",
                str(root / "data"),
                "--out",
                str(run),
                "--seeds",
                "2",
                "--attack-images",
                "3",
                "--attack-steps",
                "3",
                "--ns",
                "1,2",
                "--steer-units",
                "1",
                "--twin",
                TWIN,
                "--no-report",
                "--no-progress",
            ]
        )
        == 0
    )
    images = []
    for u, concept in CONCEPTS.items():
        rel = f"images/colours/act/unit{u:04d}.jpg"
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (96, 24), (0, 200, 0) if u == 1 else (200, 0, 0)).save(run / rel)
        images.append({"unit": u, "path": rel})
    with Catalog(run / "catalog.sqlite") as cat:
        cat.replace(
            "dissection",
            [
                {"unit": u, "concept": c, "category": "color", "iou": 0.3, "is_detector": 1, "threshold": 0.1}
                for u, c in CONCEPTS.items()
            ],
            model="colours",
            layer="act",
        )
        cat.replace("unit_images", images, model="colours", layer="act")
    assert main(["report", str(run)]) == 0
    return run / "index.html"


def test_ablation_figures_tables_and_key_units(report, page):
    page.open(report.as_uri())
    pg = page.page
    # the twin has its own section (its curves and selectivity); the model's is first
    assert pg.locator("section.layer .part-section.part-ablation").count() == 2
    part = "section.layer[id='layer:colours/act'] .part-section.part-ablation"
    pg.wait_for_selector(part)
    assert "4 units · train 24 / val 6 images · accuracy train 100.0%, val 100.0%" in pg.inner_text(part + " h3")
    # cumulative ablation: zero and noise (2 seeds, with bands) and the twin's two dashed curves
    curves = pg.locator(part + " svg[aria-label='Cumulative ablation (val)']")
    assert sorted(curves.locator("polyline").evaluate_all("ps => ps.map(p => p.dataset.series)")) == [
        "colours_twin noise",
        "colours_twin zero",
        "noise (2 seeds)",
        "zero (2 seeds)",
    ]
    assert curves.locator("polygon").count() == 2
    topn = pg.locator(part + ' svg[aria-label="Remove each class\'s top N (val)"]')
    assert topn.locator("polyline").count() == 4
    # the class's own accuracy falls to 0 with its top unit; the others stay at 100 % (y of 0 % is the bottom line)
    own = topn.locator("polyline[data-series='that class']").get_attribute("points").split()
    others = topn.locator("polyline[data-series='other classes']").get_attribute("points").split()
    assert float(own[0].split(",")[1]) > float(others[0].split(",")[1])
    # key units per class: red's first bar is unit 2 with its concept, its exemplar strip and a 100 % drop
    classes = pg.locator(part + " .classes .cls")
    assert classes.locator("h4").all_inner_texts() == ["blue", "green", "red"]
    red = classes.nth(2).locator(".bar").first
    assert red.locator("a").inner_text() == "#2" and red.locator("a").get_attribute("href") == "#colours/act/2"
    assert red.locator("span").inner_text() == "red-c" and "100.0%" in red.inner_text()
    img = red.locator("img")
    assert img.get_attribute("src") == "images/colours/act/unit0002.jpg"
    img.scroll_into_view_if_needed()
    pg.wait_for_function("img => img.complete && img.naturalWidth === 96", arg=img.element_handle())
    assert classes.nth(1).locator(".bar span").first.inner_text() == "green-c"
    # blue's unit changes no prediction (blue is the fallback) but is still its key unit: ties in
    # accuracy drop are ranked by the drop in the class's probability
    assert classes.nth(0).locator(".bar a").first.inner_text() == "#0"
    # steering matrix (3 x 3 classes, header row) and the attack table (2 methods x 2 budgets)
    assert pg.locator(part + " table.steer tr").count() == 4
    assert "100.0%" in pg.locator(part + " table.steer tr").nth(2).inner_text()  # green -> red flips
    attack_rows = pg.locator(part + " table:not(.steer) tr")
    assert attack_rows.count() == 5
    assert {attack_rows.nth(i).locator("td").nth(1).inner_text() for i in range(1, 5)} == {"4/255", "8/255"}
    figures = pg.locator(part + " figure img")
    assert figures.count() >= 2
    for i in range(figures.count()):
        figures.nth(i).scroll_into_view_if_needed()
        pg.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=figures.nth(i).element_handle())


def test_key_unit_link_opens_the_unit_page(report, page):
    page.open(report.as_uri())
    pg = page.page
    link = (
        pg.locator("section.layer[id='layer:colours/act'] .part-section.part-ablation .classes .cls")
        .nth(2)
        .locator(".bar a")
        .first
    )
    link.scroll_into_view_if_needed()
    link.click()
    pg.wait_for_selector("#unitpage[data-unit='colours/act/2']")
    assert pg.evaluate("location.hash") == "#colours/act/2"
    assert pg.is_hidden("#main")
    box = pg.locator("#unitpage .unit-part.part-ablation")
    assert "removing it costs red 100.0%" in box.inner_text()
    assert "class selectivity 1.00 (red)" in box.inner_text()
    pg.go_back()
    pg.wait_for_selector("#unitpage", state="hidden")
    assert pg.is_visible("section.layer[id='layer:colours/act'] .part-section.part-ablation")
