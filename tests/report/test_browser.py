"""The report page in headless Chromium (Debian's ``chromium``, driven by playwright).

Skipped when Chromium or playwright is missing, except under ``CI=true``, where it fails.
``CHROMIUM=/path/to/chromium`` picks another browser binary.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.helpers.report_extras import add_concept_images, add_featvis, make_null_unit
from unitscope.catalog import Catalog
from unitscope.report import write_report

pytestmark = pytest.mark.browser

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires the browser test to run")
    pytest.skip(reason)


def launch_chromium(extra_args: list[str] = ()):
    """Yield headless Chromium (skipped when missing, failed under CI=true); for module fixtures."""
    chromium = os.environ.get("CHROMIUM") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
    )
    if not chromium or not os.path.exists(chromium):
        _missing(f"chromium is not installed at {chromium or '/usr/bin/chromium'} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed (pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=ARGS + list(extra_args))
        yield b
        b.close()


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


class Page:
    """A page that records console errors, page errors and failed requests."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"requestfailed: {r.url}"))

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector("html[data-ready]", state="attached", timeout=10_000)

    def visible(self) -> int:
        return self.page.locator(".card:not([hidden])").count()

    def shown(self) -> int:
        return int(self.page.get_attribute("#count", "data-visible"))

    def filter(self, text: str) -> int:
        self.page.fill("#filter", text)
        n = self.visible()
        assert self.shown() == n
        return n

    def in_view(self, selector: str) -> bool:
        return self.page.evaluate(
            """s => { const r = document.querySelector(s).getBoundingClientRect();
                      return r.top >= 0 && r.bottom <= window.innerHeight && r.height > 0; }""",
            selector,
        )

    def close(self) -> None:
        self.page.close()
        assert self.errors == []


@pytest.fixture
def page(browser):
    p = Page(browser)
    yield p
    p.close()


def test_cards_filter_and_links(synthetic_run, page):
    html = write_report(synthetic_run)
    page.open(html.as_uri())
    pg = page.page
    assert pg.locator(".card").count() == 40
    assert page.visible() == 40 and page.shown() == 40
    assert pg.inner_text("#count") == "Showing 40 of 40 units"
    headlines = pg.locator(".headline").all_inner_texts()
    assert headlines == [
        "10 of 20 units are detectors, covering 5 concepts",
        "13 of 20 units are detectors, covering 9 concepts",
    ]
    # the first card of layer4 is its best unit; cards show label, category, IoU and the strip
    first = pg.locator("section.layer").nth(1).locator(".card").first
    assert first.get_attribute("id") == "toy/layer4/0"
    assert first.locator(".label").inner_text() == "dog"
    assert first.locator(".iou").inner_text() == "IoU 0.250"
    assert first.locator("img").get_attribute("src") == "images/toy/layer4/unit0000.jpg"
    assert pg.locator("section.layer").nth(1).locator("svg[aria-label='detectors per concept'] rect").count() == 9
    assert pg.locator("table.rot tr").count() == 1 + 3 + 1  # header, 3 bases, mean
    # filter: concept, category + layer, unit number, nothing
    assert page.filter("dog") == 5  # layer3 unit 11; layer4 units 0, 1, 7, 16
    assert page.filter("texture layer3") == 5  # units 2, 3, 7, 14, 19
    assert page.filter("OBJECT") == 14
    assert page.filter("12") == 2
    assert page.filter("#12 layer4") == 1
    assert page.filter("zebra") == 0
    assert pg.inner_text("#count") == "Showing 0 of 40 units"
    assert page.filter("") == 40
    pg.check("#detectors-only")
    assert page.visible() == 23 and page.shown() == 23
    assert page.filter("object") == 8
    # a unit link opens the unit's page, clearing nothing; Back returns to the card, highlighted
    pg.evaluate("location.hash = '#toy/layer3/17'")
    pg.wait_for_selector("#unitpage[data-unit='toy/layer3/17']")
    assert pg.is_hidden("#main") and pg.is_hidden(".toolbar")
    pg.go_back()
    card = "[id='toy/layer3/17']"
    pg.wait_for_selector(card + ".target")
    assert page.visible() == 40  # the filter that hid it was cleared
    assert page.in_view(card)
    # each card's own link is that stable address
    assert pg.locator(card + " a.unit").get_attribute("href") == "#toy/layer3/17"
    assert pg.locator(".card.target").count() == 1


def test_opening_a_unit_link(synthetic_run, page):
    html = write_report(synthetic_run)
    page.open(html.as_uri() + "#toy/layer4/15")
    pg = page.page
    assert pg.get_attribute("#unitpage", "data-unit") == "toy/layer4/15"
    assert pg.inner_text("#unitpage h2") == "layer4 · unit 15"
    assert pg.is_hidden("#main")
    pg.click("#unitpage .back")  # no page of ours to go back to: the overview, at this unit's card
    card = "[id='toy/layer4/15']"
    pg.wait_for_selector(card + ".target")
    assert pg.locator(card).get_attribute("class").split() == ["card", "nodet", "target"]
    assert page.in_view(card)
    assert not page.in_view("[id='toy/layer3/13']")  # it scrolled away from the top


def test_thousand_cards(tmp_path, make_run, page):
    names = ["dog", "cat", "red", "striped", "wood", "street", "eye"]
    layers = {f"features.{i}": [(names[(u * 7 + i) % 7], (u % 50) / 400) for u in range(250)] for i in range(4)}
    run = make_run(tmp_path / "big", model="net", layers=layers, rotations={})
    html = write_report(run)
    page.open(html.as_uri())  # how long it takes is benchmarks/bench_report.py's, not a test's
    assert page.page.locator(".card").count() == 1000
    expected = sum(1 for units in layers.values() for c, _ in units if c == "cat")
    assert page.filter("cat") == expected
    assert page.filter("features.3 #249") == 1


def test_whole_word_filter_and_sort(synthetic_run, page):
    with Catalog(synthetic_run / "catalog.sqlite") as cat:  # a "carpet" unit beside the "car" ones
        cat.query(
            "UPDATE dissection SET concept = 'carpet', category = 'material' WHERE layer = 'layer4' AND unit = 14"
        )
    make_null_unit(synthetic_run, 5)
    page.open(write_report(synthetic_run).as_uri())
    pg = page.page
    assert page.filter("car") == 4  # layer3 unit 15; layer4 units 3, 13, 19 -- not carpet
    assert page.filter("carpet") == 1
    assert page.filter("car layer4") == 3
    assert page.filter("layer") == 0  # words, not prefixes of "layer3"
    assert page.filter("toy/layer4 object") == 11  # dog 4, cat 2, car 3, tree 2
    page.filter("")
    layer4 = "section.layer:nth-of-type(2) .card"

    def units(selector):
        return [int(x.lstrip("#")) for x in pg.locator(selector + " a.unit").all_inner_texts()]

    assert pg.eval_on_selector("#sort", "s => s.value") == "iou"
    assert units(layer4)[:4] == [0, 19, 1, 2]  # IoU descending, ties by unit
    pg.select_option("#sort", "unit")
    assert units(layer4) == list(range(20))
    pg.select_option("#sort", "concept")
    # blue, car x3, cat x2, carpet ... : alphabetical, ties by unit number
    assert units(layer4)[:7] == [18, 3, 13, 19, 14, 2, 12]
    assert units("section.layer:nth-of-type(1) .card")[-1] == 5  # no concept sorts last
    # the NULL-concept card says so and is no detector
    card = pg.locator("[id='toy/layer3/5']")
    assert card.locator(".label").inner_text() == "no activation above threshold"
    assert card.locator(".badge").inner_text() == "below threshold"
    assert pg.inner_text("section.layer .meta").endswith("detector: IoU > 0.04")


def test_lightbox_and_mask_toggle(synthetic_run, page):
    masks = add_concept_images(synthetic_run)  # layer4 only
    page.open(write_report(synthetic_run).as_uri())
    pg = page.page
    img = "[id='toy/layer4/0'] .strip img"
    assert pg.get_attribute(img, "src") == "images/toy/layer4/unit0000.jpg"
    assert pg.is_visible("#overlay")
    pg.check("#overlay")
    assert pg.get_attribute(img, "src") == masks[0] == "images/toy/layer4/unit0000_concept.jpg"
    assert pg.get_attribute("[id='toy/layer3/0'] .strip img", "src") == "images/toy/layer3/unit0000.jpg"
    pg.uncheck("#overlay")
    assert pg.get_attribute(img, "src") == "images/toy/layer4/unit0000.jpg"
    # click a strip: the lightbox shows its 4 exemplars as big tiles with their captions
    assert pg.is_hidden("#lightbox")
    pg.click(img)
    pg.wait_for_selector("#lb-tiles canvas")
    assert pg.locator("#lb-tiles canvas").count() == 4
    assert pg.locator("#lb-tiles canvas").first.bounding_box()["width"] > 150
    assert pg.locator("#lb-tiles figcaption").first.inner_text() == "image 1 · activation 10.00"
    assert pg.inner_text("#lb-cap") == "layer4 unit 0: dog · top 4 images"
    assert pg.get_attribute("#lb-src", "src") == "images/toy/layer4/unit0000.jpg"
    pg.click("#lb-alt")
    assert pg.get_attribute("#lb-src", "src") == "images/toy/layer4/unit0000_concept.jpg"
    assert pg.get_attribute("#lb-alt", "aria-pressed") == "true"
    pg.keyboard.press("Escape")
    assert pg.is_hidden("#lightbox")
    pg.focus("[id='toy/layer4/19'] .strip")  # the keyboard opens it too
    pg.keyboard.press("Enter")
    pg.wait_for_selector("#lightbox:not([hidden])")
    assert pg.inner_text("#lb-cap") == "layer4 unit 19: car · top 4 images"
    pg.keyboard.press("ArrowRight")  # the next card in page order (IoU sort: 0, 19, 1, ...)
    assert pg.inner_text("#lb-cap") == "layer4 unit 1: dog · top 4 images"
    pg.keyboard.press("ArrowLeft")
    pg.keyboard.press("ArrowLeft")
    assert pg.inner_text("#lb-cap") == "layer4 unit 0: dog · top 4 images"
    pg.click("#lb-close")
    assert pg.is_hidden("#lightbox")


def test_featvis_section_and_card_rows(synthetic_run, page):
    add_featvis(synthetic_run)
    page.open(write_report(synthetic_run).as_uri())
    pg = page.page
    assert pg.locator(".part-section.part-featvis").count() == 1
    section = pg.locator("section.layer").nth(1).locator(".part-featvis.part-section")
    assert section.locator(".gallery img").count() == 3
    assert section.locator("h3").inner_text().startswith("Feature visualisation")
    assert pg.locator(".card .part-featvis").count() == 3
    fv = pg.locator("[id='toy/layer4/7'] .part-featvis img")
    assert fv.get_attribute("src") == "featvis/layer4/unit0007.png"
    fv.scroll_into_view_if_needed()  # images load lazily
    pg.wait_for_function("s => document.querySelector(s).naturalWidth > 0", arg="[id='toy/layer4/7'] .part-featvis img")
    assert fv.evaluate("i => i.naturalWidth") == 16
    # beside the exemplars: same row, to the right of the strip
    strip = pg.locator("[id='toy/layer4/7'] .strip").bounding_box()
    box = fv.bounding_box()
    assert box["x"] >= strip["x"] + strip["width"] and box["y"] < strip["y"] + strip["height"]
    assert pg.locator("[id='toy/layer3/7'] .part-featvis").count() == 0


def test_featvis_only_run(tmp_path, page):
    run = tmp_path / "fv"
    add_featvis(run, layer="conv5", units=(1, 3), model="net")
    page.open(write_report(run).as_uri())
    pg = page.page
    assert pg.locator(".card").count() == 2 and pg.locator(".card .part-featvis img").count() == 2
    assert pg.locator(".part-dissection").count() == 0
    assert pg.eval_on_selector_all("#sort option", "os => os.map(o => o.value)") == ["unit"]
    assert pg.is_hidden("#overlay-label") and page.filter("channel") == 2 and page.filter("#3") == 1


def test_small_data_warning_and_significant_count(browser, synthetic_run):
    with Catalog(synthetic_run / "catalog.sqlite") as cat:  # layer4: 100 images, but 5,000 needed
        row = cat.rows("layers", model="toy", layer="layer4")[0]
        cat.replace("layers", [dict(row, detectors_significant=7, images_needed=5000)], model="toy", layer="layer4")
    page = Page(browser)
    page.open((write_report(synthetic_run)).as_uri())
    warnings = page.page.locator(".small-data-warning")
    assert warnings.count() == 1  # layer3 has no images_needed: no warning
    assert "100 images are too few" in warnings.inner_text() and "about 5000 images" in warnings.inner_text()
    assert "7 significant (p < 0.01" in page.page.locator(".significant").first.inner_text()
    assert page.errors == []


def test_saturation_warning_and_values(browser, synthetic_run):
    values = "pre-activation: input of ReLU6 at layer4.act, floored at 0 (the output without its cap)"
    with Catalog(synthetic_run / "catalog.sqlite") as cat:  # layer4 read before its cap, 3 units still warned
        row = cat.rows("layers", model="toy", layer="layer4")[0]
        cat.replace(
            "layers",
            [dict(row, activation_values=values, saturated_units=3, tied_units=2)],
            model="toy",
            layer="layer4",
        )
    page = Page(browser)
    page.open((write_report(synthetic_run)).as_uri())
    warnings = page.page.locator(".saturation-warning")
    assert warnings.count() == 1  # layer3 has no counts (a run made before them): no warning
    text = warnings.inner_text()
    assert (
        text.startswith("Warning: 3 of 20 units have their threshold at their largest value")
        and "2 of 20 units' exemplars all tie" in text
        and values in text
    )
    assert page.page.locator(".meta.values").inner_text() == "values thresholded and ranked: " + values
    assert page.errors == []
