"""The unit page (``index.html#model/layer/unit``) in headless Chromium; see test_browser.py."""

from __future__ import annotations

import sys

import pytest
from test_browser import browser, page  # noqa: F401  (fixtures)

from tests.helpers.report_extras import add_concept_images, add_featvis, add_unit_arrays
from unitscope.report import ReportPart, register_part, write_report
from unitscope.report.parts import unregister_part

pytestmark = pytest.mark.browser

PROBE_JS = """
window.UNITSCOPE_PARTS.probe = {
  card: function (el, d, c) { el.append(window.UNITSCOPE.h("span", {class: "probe-card", text: "p" + d.unit})); },
  unit: function (el, d, c) {
    el.append(window.UNITSCOPE.h("p", {class: "probe-unit", text: c.id + " " + d.unit + " " + c.page.mark}));
  }
};
window.UNITSCOPE_PARTS.probecard = {
  card: function (el, d, c) { el.append(window.UNITSCOPE.h("b", {class: "probe-fallback", text: "fallback " + c.unit})); }
};
"""


@pytest.fixture
def probe_parts(tmp_path, monkeypatch):
    """Two parts on every dissected unit: ``probe`` has a unit renderer and page data,
    ``probecard`` only a card renderer (its script comes with ``probe``'s)."""
    pkg = tmp_path / "probe_part_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "probe.js").write_text(PROBE_JS)
    monkeypatch.syspath_prepend(str(tmp_path))
    units = lambda cat, m, ly: {r["unit"]: {"unit": r["unit"]} for r in cat.rows("dissection", model=m, layer=ly)}  # noqa: E731
    register_part(
        ReportPart(
            "probe",
            "Probe",
            ("dissection",),
            units=units,
            order=60,
            script="probe_part_pkg:probe.js",
            page=lambda cat, m, ly: {"mark": "page-" + ly},
        )
    )
    register_part(ReportPart("probecard", "Probe card", ("dissection",), units=units, order=70))
    yield
    unregister_part("probe")
    unregister_part("probecard")
    sys.modules.pop("probe_part_pkg", None)


def test_unit_page_from_a_card(synthetic_run, page, probe_parts):
    add_unit_arrays(synthetic_run)
    add_concept_images(synthetic_run)
    add_featvis(synthetic_run)
    page.open(write_report(synthetic_run).as_uri())
    pg = page.page
    card = "[id='toy/layer4/19']"
    pg.locator(card).scroll_into_view_if_needed()
    pg.evaluate("window.scrollBy(0, 37)")
    y = pg.evaluate("window.scrollY")
    assert y > 300
    pg.click(card + " a.unit")
    pg.wait_for_selector("#unitpage[data-unit='toy/layer4/19']")
    assert pg.evaluate("location.hash") == "#toy/layer4/19"
    assert pg.is_hidden("#main") and pg.evaluate("window.scrollY") == 0
    # the IoU chart: 10 bars, best first, the detector cut-off marked
    chart = "#unitpage svg[aria-label='top concepts by IoU']"
    bars = pg.locator(chart + " g.bar")
    assert bars.count() == 10
    ious = [float(bars.nth(i).get_attribute("data-iou")) for i in range(10)]
    assert ious == sorted(ious, reverse=True) and ious[0] == 0.2
    assert bars.first.get_attribute("data-concept") == "car"
    assert pg.locator(chart + " line.cutoff").count() == 1
    assert "detector: IoU > 0.04" in pg.inner_text("#unitpage .top-concepts")
    # full-size exemplars with captions; the mask toggle swaps to the concept's mask strip
    tiles = "#unitpage .tiles"
    pg.wait_for_selector(tiles + " canvas")
    assert pg.locator(tiles + " canvas").count() == 4
    assert pg.locator(tiles + " canvas").first.bounding_box()["width"] >= 150
    assert pg.locator(tiles + " figcaption").first.inner_text() == "image 48 · activation 8.10"
    pg.click("#unitpage button.mask")
    pg.wait_for_selector(tiles + "[data-src='images/toy/layer4/unit0019_concept.jpg']")
    assert pg.locator(tiles + " canvas").count() == 4
    # histogram and threshold, rank and rotation context
    assert pg.locator("#unitpage svg[aria-label='activation histogram'] g.bar").count() == 40
    assert "threshold T = 2.900" in pg.inner_text("#unitpage .activations")
    assert "rank 2 of 20 in layer4 by IoU" in pg.inner_text("#unitpage .summary")
    assert pg.locator("#unitpage .context table.rot tr").count() == 1 + 3 + 1
    # every part's rows: featvis large, the probe's unit renderer, the card fallback
    assert pg.locator("#unitpage > .unit-part > h3").all_inner_texts() == ["Network dissection", "Probe", "Probe card"]
    assert pg.locator("#unitpage .part-featvis img.fv-large").count() == 0  # unit 19 has none
    assert pg.inner_text("#unitpage .probe-unit") == "toy/layer4/19 19 page-layer4"
    assert pg.inner_text("#unitpage .probe-fallback") == "fallback 19"
    # the previous unit (19 is the layer's last: no next), then Back twice: unit 19, then the
    # overview where the user was
    assert pg.locator("#unitpage a.next").count() == 0
    pg.click("#unitpage a.prev")
    pg.wait_for_selector("#unitpage[data-unit='toy/layer4/18']")
    assert pg.inner_text("#unitpage h2") == "layer4 · unit 18"
    pg.keyboard.press("ArrowLeft")  # the keyboard steps too
    pg.wait_for_selector("#unitpage[data-unit='toy/layer4/17']")
    pg.go_back()
    pg.wait_for_selector("#unitpage[data-unit='toy/layer4/18']")
    pg.go_back()
    pg.wait_for_selector("#unitpage[data-unit='toy/layer4/19']")
    pg.go_back()
    pg.wait_for_selector("#main:not([hidden])")
    assert pg.evaluate("window.scrollY") == y
    assert pg.locator(card).get_attribute("class").split()[-1] == "target"
    assert pg.locator("#unitpage *").count() == 0


def test_featvis_large_on_the_unit_page(synthetic_run, page):
    add_featvis(synthetic_run)
    page.open(write_report(synthetic_run).as_uri() + "#toy/layer4/7")
    pg = page.page
    img = pg.locator("#unitpage .part-featvis img.fv-large")
    assert img.get_attribute("src") == "featvis/layer4/unit0007.png"
    assert img.bounding_box()["width"] == 320
    # no arrays saved: the page says so instead of drawing empty charts
    assert "saved no IoU matrix" in pg.inner_text("#unitpage .top-concepts")
    assert "saved no activation quantiles" in pg.inner_text("#unitpage .activations")


def test_a_facts_only_part_is_drawn_plainly(synthetic_run, page):
    """A part that registers unit facts and no script: its label, rows, image and link on the card
    and on the unit page (unitscope.facts)."""
    from unitscope.facts import UnitFacts

    def facts(cat, model, layer, unit):
        if layer != "layer4" or unit % 2:
            return None
        return UnitFacts(
            label=f"even {unit}",
            rows={"score": unit / 8},
            images={"exemplars": "images/toy/layer4/unit0004.jpg"},
            links={"strip file": "images/toy/layer4/unit0004.jpg"},
        )

    register_part(ReportPart("plainfacts", "Plain facts", ("dissection",), facts=facts, order=80))
    try:
        url = write_report(synthetic_run).as_uri()
    finally:
        unregister_part("plainfacts")
    page.open(url + "#toy/layer4/4")
    pg = page.page
    box = "#unitpage .unit-part.part-plainfacts"
    pg.wait_for_selector(box)
    assert pg.inner_text(box + " h3") == "Plain facts"
    assert pg.inner_text(box + " .fact-label") == "even 4"
    assert pg.inner_text(box + " .fact[data-fact='score']") == "score: 0.500"
    assert pg.locator(box + " img").get_attribute("src") == "images/toy/layer4/unit0004.jpg"
    assert pg.locator(box + " a").get_attribute("href") == "images/toy/layer4/unit0004.jpg"
    pg.evaluate("location.hash = ''")
    pg.wait_for_selector("#main:not([hidden])")
    assert pg.inner_text("[id='toy/layer4/6'] .part-plainfacts .fact-label") == "even 6"
    assert pg.locator("[id='toy/layer4/5'] .part-plainfacts").count() == 0
