"""The paint page in headless Chromium against a real uvicorn server: a scripted brush stroke (mouse
events over the canvas) paints the door unit into wall cells, and the page's before/after shares of
door pixels in the brushed region are the ones the API answers for the same request; a second stroke
removes them, undo brings them back. Skipped without Chromium or playwright, except under CI=true."""

from __future__ import annotations

import pytest

pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'unitscope[serve]'")
from test_serve_browser import Server  # noqa: E402
from test_serve_paint import a_of, big_doors, door_run, door_segmenter, seed_where  # noqa: E402

from tests.report.test_browser import Page, launch_chromium  # noqa: E402
from unitscope.serve import create_app  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = door_run(tmp_path_factory.mktemp("paint") / "run")
    s = Server(create_app(big_doors(), run, segmenter=door_segmenter()))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium()


@pytest.fixture
def page(browser, server):
    p = Page(browser)
    p.open(server.url + "/")
    yield p
    p.close()  # asserts no console errors, page errors or failed requests


def paints(pg) -> int:
    return int(pg.get_attribute("#grid", "data-paints"))


def stroke(pg, cells: list[tuple[int, int]]) -> None:
    """Press the mouse in the first cell of the 4x4 grid, move through the others, release."""
    box = pg.locator("#canvas").bounding_box()
    at = [(box["x"] + (x + 0.5) * box["width"] / 4, box["y"] + (y + 0.5) * box["height"] / 4) for y, x in cells]
    n = paints(pg)
    pg.mouse.move(*at[0])
    pg.mouse.down()
    for point in at[1:]:
        pg.mouse.move(*point, steps=4)
    pg.mouse.up()
    pg.wait_for_function(f"Number(document.querySelector('#grid').dataset.paints) > {n}", timeout=10_000)


def shares(pg) -> tuple[float, float]:
    return float(pg.get_attribute("#share", "data-before")), float(pg.get_attribute("#share", "data-after"))


def test_a_brush_stroke_paints_doors_as_the_api_says(page, server):
    import httpx

    pg = page.page
    assert pg.inner_text("#model-line").startswith("big-doors")
    assert paints(pg) == 1 and pg.locator("#grid .tile").count() == 2
    seed = seed_where(lambda a: not bool((a[2:] > 1.5).any()), start=1)  # not the page's first seed, 0
    pg.fill("#seed", str(seed))
    pg.press("#seed", "Tab")  # change: the new sample
    pg.wait_for_function("document.querySelector('#grid').dataset.paints === '2'", timeout=10_000)
    pg.select_option("#concept", "door")
    pg.select_option("#brush", "1")
    stroke(pg, [(2, 0), (2, 1), (2, 2)])
    sent = pg.evaluate("window.lastPaint")
    (edit,) = sent["edits"]
    assert edit["action"] == "add" and edit["concept"] == "door"
    assert edit["mask"] == [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]] and sent["seed"] == seed
    answer = httpx.post(server.url + "/api/paint", json=sent).json()
    assert shares(pg) == (answer["share"]["before"], answer["share"]["after"]) == (0.0, 1.0)
    assert "door" in pg.inner_text("#legend") and "100.0%" in pg.inner_text("#share")
    red = pg.evaluate("""() => { const c = document.querySelector('#canvas'), d = c.getContext('2d')
        .getImageData(c.width * 3 / 8, c.height * 5 / 8, 1, 1).data; return [d[0], d[1], d[2]]; }""")
    assert red[0] > 200 and red[1] < 60  # cell (2, 1) is a door on the page
    pg.select_option("#action", "remove")
    stroke(pg, [(2, 1)])
    assert len(pg.evaluate("window.lastPaint")["edits"]) == 2
    assert shares(pg) == (1.0, 0.0)
    n = paints(pg)
    pg.click("#undo")
    pg.wait_for_function(f"Number(document.querySelector('#grid').dataset.paints) > {n}", timeout=10_000)
    assert shares(pg) == (0.0, 1.0)
    assert bool((a_of(seed)[2:] <= 1.5).all())


def test_units_by_number_and_an_error_in_the_status_line(page):
    pg = page.page
    pg.select_option("#concept", "")
    pg.click('#grid .tile[data-unit="1"]')  # a tile click adds its unit number
    assert pg.input_value("#units") == "1"
    stroke(pg, [(3, 3)])
    assert pg.evaluate("window.lastPaint")["edits"][0]["units"] == [1]
    assert pg.get_attribute("#share", "data-after") == ""  # no concept: no share
    pg.fill("#units", "7")
    box = pg.locator("#canvas").bounding_box()
    pg.mouse.move(box["x"] + 5, box["y"] + 5)
    pg.mouse.down()
    pg.mouse.up()
    pg.wait_for_function("document.querySelector('#status').classList.contains('error')", timeout=10_000)
    assert "there is no unit 7" in pg.inner_text("#status")
    assert len(page.errors) == 1 and "404" in page.errors[0]  # the browser logs the refused request
    page.errors.clear()
