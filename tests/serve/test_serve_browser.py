"""The live probe page in headless Chromium, against a real uvicorn server on 127.0.0.1.

Upload -> grid -> sort -> click a unit -> detail -> hover dictionary; the fake webcam updates the
grid; no console errors. Skipped when Chromium or playwright is missing, except under ``CI=true``.
"""

from __future__ import annotations

import socket
import threading

import pytest

pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'unitscope[serve]'")
from test_serve_api import make_colour_run  # noqa: E402

from tests.helpers.serve_model import colour_net, red_blue_png  # noqa: E402
from tests.report.test_browser import Page, launch_chromium  # noqa: E402
from unitscope.serve import create_app  # noqa: E402

pytestmark = pytest.mark.browser
CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


class Server:
    """uvicorn in a background thread on a free loopback port; ``stop()`` ends it."""

    def __init__(self, app):
        import uvicorn

        # listening before uvicorn starts: the browser's first request waits in the backlog, so
        # nothing has to poll for the server to be up
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from conftest import build_run

    run = make_colour_run(build_run, tmp_path_factory.mktemp("serve") / "run")
    s = Server(create_app(colour_net(), run))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    yield from launch_chromium(CAMERA)


@pytest.fixture
def page(browser, server):
    p = Page(browser)
    p.open(server.url + "/")
    yield p
    p.close()  # asserts no console errors, page errors or failed requests


def probes(pg) -> int:
    return int(pg.get_attribute("#grid", "data-probes"))


def tile_order(pg) -> list[int]:
    return [int(u) for u in pg.eval_on_selector_all("#grid .tile", "ts => ts.map(t => t.dataset.unit)")]


def test_upload_grid_detail_dictionary(page, tmp_path):
    pg = page.page
    assert pg.inner_text("#model-line").startswith("colour")
    assert pg.input_value("#layer") == "relu"
    image = tmp_path / "red_blue.png"
    image.write_bytes(red_blue_png(6))
    pg.set_input_files("#file", str(image))
    pg.wait_for_function("document.querySelector('#grid').dataset.probes === '1'", timeout=10_000)
    assert tile_order(pg) == [0, 1, 2, 3]
    assert pg.locator("#top li .name").all_inner_texts() == ["red", "blue", "green"]
    assert pg.locator("#grid .tile .lab").all_inner_texts() == ["red", "(none)", "blue", "striped"]
    pg.select_option("#sort", "mean")  # relu means: 0.75, 0, 0.25, 0.375
    assert tile_order(pg) == [0, 3, 2, 1]
    # tile pixels: unit 0 is bright on the left (red) and dark on the right (blue)
    left, right = pg.evaluate("""() => { const c = document.querySelector('.tile[data-unit="0"] canvas');
        const d = c.getContext('2d').getImageData(0, 0, 8, 8).data; return [d[0] + d[1] + d[2], d[7 * 4] + d[7 * 4 + 1] + d[7 * 4 + 2]]; }""")
    assert left > 600 and right < 20
    pixel = """k => { const d = document.querySelector(`.tile[data-unit="${k}"] canvas`).getContext('2d')
        .getImageData(0, 0, 1, 1).data; return d[0] + d[1] + d[2]; }"""
    layer_scale = pg.evaluate(pixel, 3)  # unit 3 peaks at 0.5 of the layer's maximum
    pg.check("#unit-scale")
    assert pg.evaluate(pixel, 3) == left > layer_scale  # its own maximum: as bright as unit 0
    pg.uncheck("#unit-scale")
    pg.click('.tile[data-unit="0"]')
    pg.wait_for_selector("#detail:not([hidden]) #d-strip img")
    assert pg.inner_text("#d-title") == "relu · unit 0"
    assert pg.inner_text("#d-label .concept") == "red" and "IoU 0.300" in pg.inner_text("#d-label")
    assert pg.get_attribute("#d-strip img", "src") == "/run/images/colour/relu/unit0000.jpg"
    assert pg.get_attribute("#d-vis img", "src") == "/run/vis/relu/0.png"
    assert pg.locator("#d-imp tr td:first-child").all_inner_texts() == ["red", "blue", "selectivity"]
    assert pg.locator("#d-imp tr td").last.inner_text() == "0.800 (top class red)"
    pg.wait_for_function("[...document.querySelectorAll('#detail img')].every(i => i.complete && i.naturalWidth > 0)")
    assert pg.get_attribute("#d-map", "data-unit") == "0"
    # the map over the image: warm (unit fires) on the left, the plain blue photo on the right
    warm, cool = pg.evaluate("""() => { const c = document.querySelector('#d-map'), x = c.getContext('2d');
        const l = x.getImageData(5, c.height / 2, 1, 1).data, r = x.getImageData(c.width - 5, c.height / 2, 1, 1).data;
        return [l[0] - l[2], r[0] - r[2]]; }""")
    assert warm > 50 and cool < -50
    box = pg.locator("#photo").bounding_box()
    pg.mouse.move(box["x"] + box["width"] * 0.95, box["y"] + box["height"] / 2)  # blue side
    pg.wait_for_selector("#dict:not([hidden])")
    first = pg.locator("#dict .row").first
    assert first.get_attribute("data-unit") == "2" and "blue" in first.inner_text()
    pg.mouse.move(box["x"] + box["width"] * 0.05, box["y"] + box["height"] / 2)  # red side
    rows = pg.locator("#dict .row")
    pg.wait_for_function("document.querySelector('#dict .row').dataset.unit === '0'")
    assert [rows.nth(i).get_attribute("data-unit") for i in range(2)] == ["0", "3"]
    assert "red" in rows.nth(0).inner_text() and "striped" in rows.nth(1).inner_text()
    pg.mouse.move(0, 0)
    pg.wait_for_selector("#dict", state="hidden")


def test_search_box_opens_a_unit(page):
    pg = page.page
    pg.fill("#search", "striped")
    pg.press("#search", "Enter")
    pg.wait_for_selector("#hits:not([hidden]) #hit-list a")
    assert pg.locator("#hit-list a").all_inner_texts() == ["relu #3: striped (F1 0.50)"]
    assert pg.inner_text("#hit-count") == "1 units (relu: 1)"
    pg.click("#hit-list a")  # no image probed yet: the unit's facts from the run, no map
    pg.wait_for_selector("#detail:not([hidden])")
    assert pg.inner_text("#d-title") == "relu · unit 3"
    assert pg.inner_text("#d-label .concept") == "striped"
    pg.fill("#search", "dog")
    pg.press("#search", "Enter")
    pg.wait_for_function("document.querySelector('#hit-count').textContent === 'no unit matches'")
    assert pg.locator("#hit-list a").count() == 0


def test_sample_and_layer_picker(page):
    pg = page.page
    samples = pg.eval_on_selector_all("#sample option", "os => os.map(o => o.value)")
    assert "chelsea" in samples
    pg.select_option("#sample", "chelsea")
    pg.wait_for_function("document.querySelector('#grid').dataset.probes === '1'", timeout=10_000)
    pg.select_option("#layer", "pool")
    pg.wait_for_function("document.querySelector('#grid').dataset.layer === 'pool'", timeout=10_000)
    assert pg.locator("#grid .tile").count() == 4 and probes(pg) == 2
    assert pg.locator("#grid .tile .lab").all_inner_texts() == ["", "", "", ""]  # pool was not dissected


def test_drop_an_image(page):
    import base64

    pg = page.page
    data = base64.b64encode(red_blue_png(2)).decode()
    pg.evaluate(
        """b64 => { const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer(); dt.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
        document.querySelector('#drop').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true })); }""",
        data,
    )
    pg.wait_for_function("document.querySelector('#grid').dataset.probes === '1'", timeout=10_000)
    assert pg.locator("#top li .name").first.inner_text() == "blue"  # 6 of 8 columns blue


def test_fake_webcam_updates_the_grid(page):
    pg = page.page
    pg.click("#webcam")
    pg.wait_for_function("Number(document.querySelector('#grid').dataset.probes) >= 3", timeout=20_000)
    assert pg.inner_text("#webcam") == "Stop webcam"
    assert pg.locator("#grid .tile").count() == 4
    assert pg.locator("#top li").count() == 3
    pg.click("#webcam")
    assert pg.inner_text("#webcam") == "Start webcam"
    stopped = probes(pg)
    pg.wait_for_function("document.querySelector('#webcam').dataset.loop === 'ended'", timeout=20_000)
    assert probes(pg) <= stopped + 1  # the loop has ended: at most the frame in flight when stopped
