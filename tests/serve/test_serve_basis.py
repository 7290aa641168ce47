"""The live page's basis picker (issue 27, item 4): a run's basis is probed as its pseudo-layer
``relu#pl``, a direction's map equals the codes computed by hand, its labels, unit facts and the
semantic dictionary come from the run like a unit's; in headless Chromium, picking the basis turns
the tiles into the directions'. Skipped in the browser when Chromium or playwright is missing,
except under ``CI=true``."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'unitscope[serve]'")
from fastapi.testclient import TestClient  # noqa: E402
from test_serve_api import RUN_LAYERS, atlas_tiles, make_colour_run, upload  # noqa: E402

from tests.helpers.serve_model import colour_net, red_blue_png  # noqa: E402
from unitscope.bases import Basis  # noqa: E402
from unitscope.serve import create_app  # noqa: E402
from unitscope.serve.bases import run_bases  # noqa: E402

R2 = 1 / math.sqrt(2)
# Two directions over colour_net's relu units (R, G, B, 0.5 R - B): "red minus blue" and unit 3.
DIRECTIONS = torch.tensor([[R2, 0, -R2, 0], [0, 0, 0, 1.0]])
PL_LABELS = [("red", 0.5), ("blue", 0.3)]  # the run's dissection rows (make_colour_run blanks unit 1's concept)


def make_basis_run(make_run, path):
    """The colour run, plus a linear basis ``pl`` of relu saved as ``dissect --basis`` saves it and
    its directions' dissection rows under the pseudo-layer ``relu#pl``."""
    run = make_colour_run(lambda p, **kw: make_run(p, **{**kw, "layers": {**RUN_LAYERS, "relu#pl": PL_LABELS}}), path)
    folder = run / "bases" / "l0" / "pl"
    Basis("ica", DIRECTIONS, DIRECTIONS.clone(), torch.zeros(2), torch.zeros(4)).save(folder)
    (folder / "fit.json").write_text(json.dumps({"want": {"spec": "ica", "layer": "relu", "index": 0}}))
    with sqlite3.connect(
        run / "catalog.sqlite"
    ) as con:  # direction 0 described, as `describe --layers relu#pl` writes it
        con.execute(
            "INSERT INTO descriptions (model, layer, unit, kind, description, formula, length, f1) "
            "VALUES ('colour', 'relu#pl', 0, 'pmi', 'scarlet', 'scarlet', 1, 0.8)"
        )
    con.close()
    return run


def hand_codes(split: int = 6) -> np.ndarray:
    """[2, 8, 8]: relu of a red pixel is (1, 0, 0, 0.5), of a blue one (0, 0, 1, 0)."""
    red, blue = np.array([R2, 0.5]), np.array([-R2, 0.0])
    codes = np.zeros((2, 8, 8))
    codes[:, :, :split] = red[:, None, None]
    codes[:, :, split:] = blue[:, None, None]
    return codes


@pytest.fixture
def client(make_run, tmp_path):
    return TestClient(create_app(colour_net(), make_basis_run(make_run, tmp_path / "run")))


def test_run_bases_and_layers_list_the_basis(client, make_run, tmp_path):
    bases = run_bases(make_basis_run(make_run, tmp_path / "other"))
    assert list(bases) == ["relu#pl"] and bases["relu#pl"].layer == "relu" and bases["relu#pl"].directions == 2
    info = client.get("/api/layers").json()
    assert info["bases"] == [
        {"name": "relu#pl", "layer": "relu", "basis": "pl", "kind": "ica", "directions": 2, "dissected": True}
    ]
    assert "relu#pl" not in [li["name"] for li in info["layers"]]  # the layer picker keeps the model's layers


def test_a_directions_map_equals_the_codes_by_hand(client):
    r = client.post(
        "/api/probe", params={"layer": "relu#pl"}, files={"image": ("im.png", red_blue_png(6), "image/png")}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["layer"] == "relu#pl" and body["shape"] == [2, 8, 8]
    assert body["values"] == "pl codes of relu's output"
    want = hand_codes(6)
    got = [[u["max"], u["mean"]] for u in body["units"]]
    np.testing.assert_allclose(got, [[R2, R2 * (6 - 2) / 8], [0.5, 0.5 * 6 / 8]], atol=1e-6)
    np.testing.assert_allclose(body["atlas"]["lo"], want.reshape(2, -1).min(1), atol=1e-6)
    np.testing.assert_allclose(body["atlas"]["hi"], want.reshape(2, -1).max(1), atol=1e-6)
    tiles = atlas_tiles(body["atlas"]).astype(float)  # [2, 8, 8] in 0..255 between lo and hi
    lo, hi = np.array(body["atlas"]["lo"]), np.array(body["atlas"]["hi"])
    np.testing.assert_allclose(lo[:, None, None] + tiles / 255 * (hi - lo)[:, None, None], want, atol=1e-6)
    # the same image at the layer itself: the units the directions mix
    units = upload(client, layer="relu").json()
    assert units["shape"] == [4, 8, 8] and units["units"][3]["max"] == pytest.approx(0.5)


def test_probe_maps_are_the_basis_encoding_of_the_layer(make_run, tmp_path):
    """The prober's codes equal Basis.encode of the traced layer output at every position."""
    app = create_app(colour_net(), make_basis_run(make_run, tmp_path / "run"))
    prober = app.state.prober
    image = Image.new("RGB", (8, 8), (40, 200, 90))
    image.paste((250, 30, 10), (0, 0, 3, 5))
    res = prober.probe(image, "relu#pl")
    units = prober.probe(image, "relu").maps  # [4, 8, 8]
    want = (torch.from_numpy(units).reshape(4, -1).t() @ DIRECTIONS.t()).t().reshape(2, 8, 8)
    np.testing.assert_allclose(res.maps, want.numpy(), atol=1e-6)
    assert res.top == prober.probe(image, "relu").top


def test_labels_unit_facts_and_unknown_basis(client):
    labels = client.get("/api/labels", params={"layer": "relu#pl"}).json()
    assert labels["layer"] == "relu#pl"
    assert {k: (v["concept"], v["iou"]) for k, v in labels["labels"].items()} == {"0": ("red", 0.5), "1": (None, 0.3)}
    unit = client.get("/api/unit", params={"layer": "relu#pl", "unit": "0"}).json()
    assert unit["dissection"]["concept"] == "red" and unit["strip"] == "/run/images/colour/relu%23pl/unit0000.jpg"
    assert client.get(unit["strip"]).status_code == 200
    r = client.get("/api/unit", params={"layer": "relu#pl", "unit": "2"})
    assert r.status_code == 404 and "has 2 units" in r.json()["error"]
    r = client.get("/api/labels", params={"layer": "relu#pq"})
    assert r.status_code == 404 and r.json()["close"] == ["relu#pl"] and "dissect --basis" in r.json()["error"]


# -- in headless Chromium -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'unitscope[serve]'")
    from conftest import build_run
    from test_serve_browser import Server

    s = Server(create_app(colour_net(), make_basis_run(build_run, tmp_path_factory.mktemp("serve") / "run")))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    from tests.report.test_browser import launch_chromium

    yield from launch_chromium()


@pytest.fixture
def page(browser, server):
    from tests.report.test_browser import Page

    p = Page(browser)
    p.open(server.url + "/")
    yield p
    p.close()  # asserts no console errors, page errors or failed requests


@pytest.mark.browser
def test_pick_a_basis_and_the_tiles_become_its_directions(page, tmp_path):
    pg = page.page
    assert pg.is_visible("#basis-box")
    assert pg.eval_on_selector_all("#basis option", "os => os.map(o => o.value)") == ["", "pl"]
    image = tmp_path / "red_blue.png"
    image.write_bytes(red_blue_png(6))
    pg.set_input_files("#file", str(image))
    pg.wait_for_function("document.querySelector('#grid').dataset.probes === '1'", timeout=10_000)
    assert pg.locator("#grid .tile").count() == 4
    pg.select_option("#basis", "pl")
    pg.wait_for_function("document.querySelector('#grid').dataset.layer === 'relu#pl'", timeout=10_000)
    assert pg.locator("#grid .tile").count() == 2
    assert pg.locator("#grid .tile .lab").all_inner_texts() == ["red", "(none)"]
    assert pg.inner_text("#count").startswith("2 directions of relu#pl")
    # direction 0 (red minus blue): bright over the red columns, dark over the blue ones
    left, right = pg.evaluate("""() => { const c = document.querySelector('.tile[data-unit="0"] canvas');
        const d = c.getContext('2d').getImageData(0, 0, 8, 8).data; return [d[0] + d[1] + d[2], d[7 * 4] + d[7 * 4 + 1] + d[7 * 4 + 2]]; }""")
    assert left > 600 and right < 20
    pg.click('.tile[data-unit="0"]')
    pg.wait_for_selector("#detail:not([hidden]) #d-strip img")
    assert pg.inner_text("#d-title") == "relu#pl · direction 0"
    assert pg.inner_text("#d-label .concept") == "red" and "IoU 0.500" in pg.inner_text("#d-label")
    assert pg.get_attribute("#d-strip img", "src") == "/run/images/colour/relu%23pl/unit0000.jpg"
    # the semantic dictionary over the directions: on the red side direction 0 leads, then 1
    box = pg.locator("#photo").bounding_box()
    pg.mouse.move(box["x"] + box["width"] * 0.05, box["y"] + box["height"] / 2)
    pg.wait_for_selector("#dict:not([hidden])")
    rows = pg.locator("#dict .row")
    assert [rows.nth(i).get_attribute("data-unit") for i in range(rows.count())] == ["0", "1"]
    assert "relu#pl" in pg.inner_text("#dict b") and "red" in rows.nth(0).inner_text()
    pg.select_option("#basis", "")  # back to the units
    pg.wait_for_function("document.querySelector('#grid').dataset.layer === 'relu'", timeout=10_000)
    assert pg.locator("#grid .tile").count() == 4
    # a search hit on a direction opens it: the basis picker follows, the grid shows the directions
    pg.fill("#search", "scarlet")
    pg.press("#search", "Enter")
    pg.wait_for_selector("#hits:not([hidden]) #hit-list a")
    assert "relu#pl #0: scarlet (F1 0.80)" in pg.locator("#hit-list a").all_inner_texts()  # (and red units)
    pg.click('#hit-list a[data-layer="relu#pl"]')
    pg.wait_for_function("document.querySelector('#grid').dataset.layer === 'relu#pl'", timeout=10_000)
    assert pg.input_value("#layer") == "relu" and pg.input_value("#basis") == "pl"
    pg.wait_for_function("document.querySelector('#d-title').textContent === 'relu#pl · direction 0'")
