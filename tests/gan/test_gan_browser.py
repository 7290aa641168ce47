"""The generator part of the report in headless Chromium (see test_browser.py): the soft door
generator's `unitscope gan` run (tests/gan/test_gan_run.py), rendered by the report writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_gan_run import run  # noqa: F401  (fixture)

from tests.report.test_browser import browser, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def report(run: Path) -> Path:  # noqa: F811
    from unitscope.report import write_report

    return write_report(run, title="soft door")


def test_generator_section_curves_tables_grids_and_card_rows(report, page):  # noqa: F811
    page.open(report.as_uri())
    pg = page.page
    part = ".part-section.part-gan"
    pg.wait_for_selector(part)
    chart = pg.locator(part + " svg[aria-label='relative change of door pixels against k']")
    assert sorted(chart.locator("polyline").evaluate_all("ps => ps.map(p => p.dataset.series)")) == [
        "ace",
        "iou",
        "random",
    ]
    assert chart.locator("polygon").count() == 2  # 99% bands of the IoU and ACE curves; random has none
    rows = pg.locator(part + " table.ace-vs-iou tr").all_inner_texts()
    assert rows[1].split("\t")[:2] == ["1", "-100%"] and rows[1].split("\t")[-1] == "tie"
    first = pg.locator(part + " table.insertion tr").nth(1).inner_text().split("\t")
    assert first[0] == "wall" and first[-1] == "100%"
    assert pg.locator(part + " figure img").count() == 3
    assert pg.locator(part + " figure img").evaluate_all("ims => ims.every(i => i.naturalWidth > 0)")
    card = pg.locator(".part-gan .gan-card").first.inner_text()
    assert "'door' ACE" in card and "artifact rank" in card
    # unit 0's page: the grids it is edited in (removed in the removal grid, forced in the insertion one)
    report_data = json.loads((report.parent / "report.json").read_text())
    (layer,) = [layer for layer in report_data["layers"] if "gan" in layer["parts"]]
    page.open(report.as_uri() + "#" + layer["id"] + "/0")
    pg.wait_for_selector("#unitpage[data-unit='" + layer["id"] + "/0'] .part-gan figure.gan-grid img")
    kinds = pg.locator("#unitpage .part-gan figure.gan-grid").evaluate_all("fs => fs.map(f => f.dataset.kind)")
    assert "removal:door" in kinds and "insertion:door" in kinds
    srcs = pg.locator("#unitpage .part-gan figure.gan-grid img").evaluate_all(
        "ims => ims.map(i => i.getAttribute('src'))"
    )
    assert all((report.parent / src).read_bytes()[:4] == b"\x89PNG" for src in srcs)
    assert page.errors == []
