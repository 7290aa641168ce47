"""The report page in headless Chromium (Debian's ``chromium``, driven by playwright).

Skipped when Chromium or playwright is missing, except under ``CI=true``, where it fails.
``CHROMIUM=/path/to/chromium`` picks another browser binary.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from unitscope.report import write_report

pytestmark = pytest.mark.browser

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires the browser test to run")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    chromium = os.environ.get("CHROMIUM") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium"))
    if not chromium or not os.path.exists(chromium):
        _missing(f"chromium is not installed at {chromium or '/usr/bin/chromium'} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed (pip install playwright)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=ARGS)
        yield b
        b.close()


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
                      return r.top >= 0 && r.bottom <= window.innerHeight && r.height > 0; }""", selector)

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
    assert headlines == ["10 of 20 units are detectors, covering 5 concepts",
                         "13 of 20 units are detectors, covering 9 concepts"]
    # the first card of layer4 is its best unit; cards show label, category, IoU and the strip
    first = pg.locator("section.layer").nth(1).locator(".card").first
    assert first.get_attribute("id") == "toy/layer4/0"
    assert first.locator(".label").inner_text() == "dog"
    assert first.locator(".iou").inner_text() == "IoU 0.250"
    assert first.locator("img").get_attribute("src") == "images/toy/layer4/unit0000.jpg"
    assert pg.locator("section.layer").nth(1).locator("svg[aria-label='detectors per concept'] rect").count() == 9
    assert pg.locator("table.rot tr").count() == 1 + 3 + 1  # header, 3 bases, mean
    # filter: concept, category + layer, unit number, nothing
    assert page.filter("dog") == 5            # layer3 unit 11; layer4 units 0, 1, 7, 16
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
    # a unit link scrolls to the card and highlights it, clearing a filter that hid it
    pg.evaluate("location.hash = '#toy/layer3/17'")
    card = "[id='toy/layer3/17']"
    pg.wait_for_selector(card + ".target")
    assert page.visible() == 40
    assert page.in_view(card)
    # each card's own link is that stable address
    assert pg.locator(card + " a.unit").get_attribute("href") == "#toy/layer3/17"
    assert pg.locator(".card.target").count() == 1


def test_opening_a_unit_link(synthetic_run, page):
    html = write_report(synthetic_run)
    page.open(html.as_uri() + "#toy/layer4/15")
    card = "[id='toy/layer4/15']"
    assert page.page.locator(card).get_attribute("class").split() == ["card", "nodet", "target"]
    assert page.in_view(card)
    assert not page.in_view("[id='toy/layer3/13']")  # it scrolled away from the top


def test_thousand_cards(tmp_path, make_run, page):
    names = ["dog", "cat", "red", "striped", "wood", "street", "eye"]
    layers = {f"features.{i}": [(names[(u * 7 + i) % 7], (u % 50) / 400) for u in range(250)]
              for i in range(4)}
    run = make_run(tmp_path / "big", model="net", layers=layers, rotations={})
    html = write_report(run)
    t0 = time.perf_counter()
    page.open(html.as_uri())
    assert page.page.locator(".card").count() == 1000
    took = time.perf_counter() - t0
    assert took < 10, f"1,000 cards took {took:.1f} s to render"
    t0 = time.perf_counter()
    expected = sum(1 for units in layers.values() for c, _ in units if c == "cat")
    assert page.filter("cat") == expected
    assert page.filter("features.3 #249") == 1
    assert time.perf_counter() - t0 < 10
