"""The explain page in headless Chromium: loads offline without errors, every image loads, the
semantic dictionary shows a cell's top units when clicked. Skipped like ``test_browser.py``."""

from __future__ import annotations

import json

import pytest

from tests.attribution.test_attribution import explain_run
from tests.report.test_browser import Page, browser  # noqa: F401  (the browser fixture)

pytestmark = pytest.mark.browser


def test_explain_page_renders_and_dictionary_cells_respond(tmp_path, browser):  # noqa: F811
    page_dir = explain_run(tmp_path)
    data = json.loads((page_dir / "explain.json").read_text())
    p = Page(browser)
    p.open((page_dir / "index.html").as_uri())
    pg = p.page
    assert pg.inner_text("#title") == "tiny · relu1 · noise.png"
    assert data["target"]["name"] in pg.inner_text("#pred")
    assert pg.locator("#channels tbody tr").count() == len(data["channels"])
    assert pg.locator("#dictgrid > div").count() == 16
    assert pg.locator("#agrid img").count() == 16 and pg.locator("#groups figure").count() == 2
    broken = pg.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert broken == []
    pg.click("[data-cell='2,3']")
    units = [int(t.split()[0][1:]) for t in pg.locator("#dictcell .unit div:nth-child(2)").all_inner_texts()]
    assert units == [e["unit"] for e in data["dictionary"][2][3]]
    assert pg.locator("#dictgrid .on").get_attribute("data-cell") == "2,3"
    p.close()  # asserts no console errors, page errors or failed requests
