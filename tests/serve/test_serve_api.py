"""The probe server's JSON API: exact numbers from a set-weight network, what a run folder knows,
and every kind of bad input answered with a clear error while the server keeps answering."""

from __future__ import annotations

import base64
import io
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'unitscope[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from tests.helpers.serve_model import colour_net, red_blue_png  # noqa: E402
from unitscope.cli import main  # noqa: E402
from unitscope.serve import create_app  # noqa: E402

NET = f"{Path(__file__).parents[1] / 'helpers' / 'serve_model.py'}:colour_net"
RUN_LAYERS = {"relu": [("red", 0.3), ("dog", 0.01), ("blue", 0.2), ("striped", 0.05)]}


def make_colour_run(make_run, path):
    """A run folder for colour_net's relu layer, with visualisation and importance tables."""
    run = make_run(path, model="colour", layers=RUN_LAYERS, rotations={})
    con = sqlite3.connect(run / "catalog.sqlite")
    with con:
        con.execute("UPDATE dissection SET concept = NULL, category = NULL WHERE unit = 1")
        # IF NOT EXISTS: the analyses that own these tables may have declared them already
        # (define_table), and then every catalog opened in this process has them.
        con.execute(
            "CREATE TABLE IF NOT EXISTS unit_visualizations (model TEXT, layer TEXT, unit INTEGER, "
            "path TEXT, objective TEXT, PRIMARY KEY (model, layer, unit))"
        )
        con.execute("INSERT INTO unit_visualizations VALUES ('colour', 'relu', 0, 'vis/relu/0.png', 'channel')")
        con.execute(
            "CREATE TABLE IF NOT EXISTS unit_importance (model TEXT, layer TEXT, unit INTEGER, class TEXT, "
            "accuracy_drop REAL, PRIMARY KEY (model, layer, unit, class))"
        )
        con.executemany(
            "INSERT INTO unit_importance (model, layer, unit, class, accuracy_drop) VALUES ('colour', 'relu', 0, ?, ?)",
            [("blue", 0.01), ("red", 0.4)],
        )
        con.execute(
            "CREATE TABLE IF NOT EXISTS unit_selectivity (model TEXT, layer TEXT, unit INTEGER, "
            "selectivity REAL, top_class TEXT, PRIMARY KEY (model, layer, unit))"
        )
        con.execute("INSERT INTO unit_selectivity VALUES ('colour', 'relu', 0, 0.8, 'red')")
        from unitscope.describe.tables import _UNIT, COLUMNS

        cols = [c for c, _ in _UNIT + COLUMNS]
        con.execute(
            f"CREATE TABLE IF NOT EXISTS descriptions ({', '.join(f'{c} {t}' for c, t in _UNIT + COLUMNS)}, "
            "PRIMARY KEY (model, layer, unit, kind))"
        )
        con.executemany(
            f"INSERT INTO descriptions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [
                [
                    {
                        "model": "colour",
                        "layer": "relu",
                        "unit": u,
                        "kind": "pmi",
                        "description": d,
                        "formula": d,
                        "length": 1,
                        "f1": f1,
                    }.get(c)
                    for c in cols
                ]
                for u, d, f1 in [(0, "red", 0.9), (2, "blue", 0.7), (3, "striped", 0.5)]
            ],
        )
    con.close()
    (run / "vis/relu").mkdir(parents=True)
    Image.new("RGB", (16, 16), (200, 10, 10)).save(run / "vis/relu/0.png")
    return run


@pytest.fixture(scope="module")
def model():
    return colour_net()


@pytest.fixture
def client(model, make_run, tmp_path):
    return TestClient(create_app(model, make_colour_run(make_run, tmp_path / "run")))


def upload(client, data: bytes = None, layer: str | None = None, name="im.png", ctype="image/png"):
    params = {"layer": layer} if layer else {}
    return client.post(
        "/api/probe", params=params, files={"image": (name, red_blue_png() if data is None else data, ctype)}
    )


def atlas_tiles(atlas) -> np.ndarray:
    """[C, h, w] uint8 tiles out of the atlas PNG."""
    grid = np.asarray(Image.open(io.BytesIO(base64.b64decode(atlas["png"]))))
    h, w = atlas["tile"]
    return np.stack(
        [grid[(k // atlas["cols"]) * h :][:h, (k % atlas["cols"]) * w :][:, :w] for k in range(len(atlas["lo"]))]
    )


def test_layers(client):
    body = client.get("/api/layers").json()
    assert body["model"] == "colour" and body["default"] == "relu"
    assert [(li["name"], li["units"], li["height"], li["width"], li["dissected"]) for li in body["layers"]] == [
        ("conv", 4, 8, 8, False),
        ("relu", 4, 8, 8, True),
        ("pool", 4, 1, 1, False),
    ]


def test_probe_numbers(client):
    body = upload(client, layer="conv").json()
    # pooled relu units 0..2 = 0.75, 0, 0.25 -> logits 3, 0, 1
    z = math.exp(3) + math.exp(0) + math.exp(1)
    assert [n for n, _ in body["top"]] == ["red", "blue", "green"]
    assert [p for _, p in body["top"]] == pytest.approx([math.exp(3) / z, math.exp(1) / z, 1 / z], abs=1e-6)
    assert body["shape"] == [4, 8, 8] and body["image"] == {"width": 8, "height": 8}
    units = [(u["unit"], u["max"], u["mean"]) for u in body["units"]]
    assert units == [(0, 1.0, 0.75), (1, 0.0, 0.0), (2, 1.0, 0.25), (3, 0.5, pytest.approx(0.125))]
    atlas = body["atlas"]
    assert atlas["lo"] == [0.0, 0.0, 0.0, -1.0] and atlas["hi"] == [1.0, 0.0, 1.0, 0.5]
    tiles = atlas_tiles(atlas)
    left = np.zeros((8, 8), np.uint8)
    left[:, :6] = 255
    assert (tiles[0] == left).all() and (tiles[1] == 0).all()
    assert (tiles[2] == 255 - left).all() and (tiles[3] == left).all()  # 0.5 -> 255, -1 -> 0


def test_probe_default_layer_and_raw_body(client):
    body = client.post("/api/probe", content=red_blue_png(2), headers={"content-type": "image/png"}).json()
    assert body["layer"] == "relu"
    assert [(u["max"], u["mean"]) for u in body["units"]] == [(1.0, 0.25), (0.0, 0.0), (1.0, 0.75), (0.5, 0.125)]


def test_exif_rotation_is_applied(client):
    """A photo stored sideways with EXIF orientation 6 (rotate 90 degrees clockwise) is probed upright."""
    stored = Image.open(io.BytesIO(red_blue_png(6))).rotate(90, expand=True)  # red rows at the bottom
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "PNG", exif=exif)
    plain = client.post(
        "/api/probe", params={"layer": "relu"}, files={"image": ("a.png", red_blue_png(6), "image/png")}
    )
    turned = client.post(
        "/api/probe", params={"layer": "relu"}, files={"image": ("b.png", buf.getvalue(), "image/png")}
    )
    assert turned.json()["atlas"] == plain.json()["atlas"]


def test_concurrent_probes_get_their_own_answers():
    """Hooks are model state: simultaneous probes of different layers must not see each other's.
    (Without the prober's lock and the app's single probe thread this fails: a slowed-down last
    layer keeps each trace open while other forward passes run.)"""
    import time
    from concurrent.futures import ThreadPoolExecutor

    slow = colour_net()
    slow.fc.register_forward_pre_hook(lambda module, inputs: time.sleep(0.02))
    client = TestClient(create_app(slow))

    jobs = [(layer, split) for layer in ("conv", "relu", "pool") for split in (1, 4, 7)] * 2
    expected = {job: upload(client, red_blue_png(job[1]), layer=job[0]).json() for job in set(jobs)}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda job: upload(client, red_blue_png(job[1]), layer=job[0]).json(), jobs))
    assert answers == [expected[job] for job in jobs]
    assert len({str(a["units"]) for a in expected.values()}) == 9  # nine different answers


def test_unit_from_run(client):
    body = client.get("/api/unit", params={"layer": "relu", "unit": 0}).json()
    assert body["dissection"] == {
        "concept": "red",
        "category": "color",
        "iou": 0.3,
        "threshold": 1.0,
        "is_detector": True,
    }
    assert body["categories"][0] == {"category": "color", "concept": "red", "iou": 0.3}
    assert [e["rank"] for e in body["exemplars"]] == [0, 1, 2, 3]
    assert body["strip"] == "/run/images/colour/relu/unit0000.jpg"
    assert body["visualizations"] == [{"objective": "channel", "url": "/run/vis/relu/0.png"}]
    assert body["importance"] == [{"class": "red", "accuracy_drop": 0.4}, {"class": "blue", "accuracy_drop": 0.01}]
    assert body["selectivity"] == {"selectivity": 0.8, "top_class": "red"}
    strip = client.get(body["strip"])
    assert strip.status_code == 200 and Image.open(io.BytesIO(strip.content)).size == (96, 24)
    assert client.get("/run/vis/relu/0.png").status_code == 200
    none = client.get("/api/unit", params={"layer": "relu", "unit": 1}).json()
    assert none["dissection"]["concept"] is None and none["dissection"]["is_detector"] is False
    conv = client.get("/api/unit", params={"layer": "conv", "unit": 0}).json()
    assert conv["dissection"] is None and conv["strip"] is None and conv["importance"] == []
    assert conv["selectivity"] is None
    labels = client.get("/api/labels", params={"layer": "relu"}).json()["labels"]
    assert [labels[str(k)]["concept"] for k in range(4)] == ["red", None, "blue", "striped"]


def test_search_units_by_description(client, model):
    body = client.get("/api/search", params={"q": "striped"}).json()
    assert body == {
        "query": "striped",
        "per_layer": {"relu": 1},
        "hits": [
            {
                "layer": "relu",
                "unit": 3,
                "description": "striped",
                "formula": "striped",
                "match": 1.0,
                "f1": 0.5,
                "p_f1": None,
            }
        ],
    }
    both = client.get("/api/search", params={"q": "red blue", "layer": "relu"}).json()["hits"]
    assert [(h["unit"], h["match"]) for h in both] == [(0, 0.5), (2, 0.5)]  # half the words each; F1 breaks the tie
    assert client.get("/api/search", params={"q": "dog"}).json()["hits"] == []
    empty = client.get("/api/search", params={"q": " "})
    assert empty.status_code == 400 and "empty query" in empty.json()["error"]
    bad = client.get("/api/search", params={"q": "red", "layer": "rellu"})
    assert bad.status_code == 404 and "relu" in bad.json()["close"]
    none = TestClient(create_app(model)).get("/api/search", params={"q": "red"})
    assert none.status_code == 404 and "--run" in none.json()["error"]


def test_no_run_folder(model):
    client = TestClient(create_app(model))
    body = client.get("/api/unit", params={"layer": "relu", "unit": 2}).json()
    assert body["dissection"] is None and body["exemplars"] == [] and body["visualizations"] == []
    assert client.get("/api/labels").json() == {"layer": "relu", "labels": {}}
    assert client.get("/run/images/x.jpg").status_code == 404


BAD_UPLOADS = {
    "text": (b"hello, not an image", "notes.txt", "text/plain", "not an image PIL can read"),
    "empty": (b"", "empty.png", "image/png", "is empty"),
    "truncated": (red_blue_png()[:60], "cut.png", "image/png", "could not be decoded"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_upload_is_400(client, case):
    data, name, ctype, says = BAD_UPLOADS[case]
    r = upload(client, data, name=name, ctype=ctype)
    assert r.status_code == 400 and says in r.json()["error"]
    assert upload(client).status_code == 200  # still answering


def test_bad_forms_are_400(client):
    r = client.post("/api/probe", data={"picture": "x"}, files={"other": ("a.png", red_blue_png(), "image/png")})
    assert r.status_code == 400 and "field 'image'" in r.json()["error"]
    r = client.post("/api/probe", json={"image": "x"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["error"]
    assert upload(client).status_code == 200


def test_oversized_uploads_are_413(model, client):
    big = b"\x89PNG" + bytes(10 * 1024 * 1024)  # default limit: 10 MB
    r = upload(client, big)
    assert r.status_code == 413 and "10,485,760 bytes" in r.json()["error"]
    small = TestClient(create_app(model, max_upload=1000))
    assert upload(small).status_code == 200  # an 8x8 PNG is well under 1,000 bytes
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    assert upload(small, buf.getvalue()).status_code == 413
    chunked = small.post(
        "/api/probe", content=(bytes(70_000) for _ in range(3)), headers={"content-type": "image/png"}
    )  # no Content-Length: counted as it comes
    assert chunked.status_code == 413
    bomb = io.BytesIO()
    Image.new("1", (8000, 6000)).save(bomb, "PNG")  # 48 M pixels in a few kB
    r = upload(client, bomb.getvalue())
    assert r.status_code == 413 and "8000x6000" in r.json()["error"]
    assert upload(client).status_code == 200 and upload(small).status_code == 200


def test_a_crash_is_a_json_500_and_the_server_goes_on(model):
    client = TestClient(create_app(model), raise_server_exceptions=False)
    prober = client.app.state.prober
    real = prober.probe
    prober.probe = lambda image, layer: 1 / 0
    r = upload(client)
    assert r.status_code == 500 and "ZeroDivisionError" in r.json()["error"]
    prober.probe = real
    assert upload(client).status_code == 200


def test_unknown_layer_or_unit_is_404_with_close_matches(client):
    r = upload(client, layer="rleu")
    assert r.status_code == 404 and r.json()["close"][0] == "relu" and "Close matches: relu" in r.json()["error"]
    r = upload(client, layer="fc")
    assert r.status_code == 404 and "no [C, H, W] output" in r.json()["error"]
    assert r.json()["close"] == ["pool", "relu", "conv"]
    r = client.get("/api/unit", params={"layer": "conv2", "unit": 0})
    assert r.status_code == 404 and "conv" in r.json()["close"]
    r = client.get("/api/unit", params={"layer": "relu", "unit": 4})
    assert r.status_code == 404 and r.json()["close"] == [3] and "numbered 0..3" in r.json()["error"]
    assert client.get("/api/unit", params={"layer": "relu", "unit": -1}).json()["close"] == [0]
    r = client.get("/api/unit", params={"layer": "relu", "unit": "two"})
    assert r.status_code == 400 and "integer" in r.json()["error"]
    r = client.get("/api/unit", params={"layer": "relu"})
    assert r.status_code == 400 and "unit" in r.json()["error"]
    r = client.get("/api/samples/chelsae")
    assert r.status_code == 404 and r.json()["close"] == ["chelsea"]
    assert upload(client).status_code == 200 and client.get("/api/layers").status_code == 200
    prober = client.app.state.prober
    assert not any(m._forward_hooks for m in prober.model.modules())  # no hook left behind


def test_page_and_scripts_are_local(client):
    html = client.get("/").text
    assert 'src="/static/app.js"' in html and "http" not in html.replace("http-equiv", "")
    for path in ("/static/app.js", "/static/app.css"):
        r = client.get(path)
        assert r.status_code == 200 and "http://" not in r.text and "https://" not in r.text


@pytest.mark.slow
def test_efficientnet_lite0_on_chelsea():
    from unitscope.models import create_model
    from unitscope.serve.samples import sample_jpeg

    client = TestClient(create_app(create_model("efficientnet_lite0")))
    assert client.get("/api/layers").json()["default"] == "bn2"  # the model's last default layer
    body = upload(client, sample_jpeg("chelsea"), layer="blocks.6", ctype="image/jpeg").json()
    assert body["top"][0][0] == "Egyptian cat" and body["shape"] == [320, 7, 7]
    assert body["image"] == {"width": 451, "height": 300}
    assert len(body["units"]) == 320 and atlas_tiles(body["atlas"]).shape == (320, 7, 7)


def test_cli(tmp_path, capsys, monkeypatch):
    import importlib.util

    missing = tmp_path / "nope"
    assert main(["serve", str(missing), "--model", NET]) == 2
    assert f"run folder {missing} does not exist" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "uvicorn" else real(n, *a))
    assert main(["serve", "--model", NET]) == 2
    assert "pip install 'unitscope[serve]'" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_command_answers_over_http(tmp_path, make_run):
    """`unitscope serve RUN` in a subprocess: serves the run's model on 127.0.0.1 with the run's
    labels, answers, and stops on SIGTERM."""
    import os
    import re
    import subprocess
    import sys

    import httpx

    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])
    )
    run = make_run(tmp_path / "run", model=NET, layers=RUN_LAYERS, rotations={})  # config.json names NET
    proc = subprocess.Popen(
        [sys.executable, "-m", "unitscope.cli", "serve", str(run), "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # serve prints its address once its socket listens (port 0: a free one, no race for it):
        # read up to that line, no polling
        said = []
        while not (said and said[-1].startswith("unitscope serve:")):
            line = proc.stdout.readline()
            assert line, f"unitscope serve ended before it listened: {''.join(said)}"
            said.append(line)
        url = re.search(r"http://127\.0\.0\.1:(\d+)", said[-1]).group(0)
        http = httpx.Client(base_url=url, timeout=120)  # generous: a busy machine is slow, not wrong
        layers = http.get("/api/layers").json()
        assert layers["default"] == "relu" and layers["model"] == NET
        assert [li["name"] for li in layers["layers"] if li["dissected"]] == ["relu"]
        unit = http.get("/api/unit", params={"layer": "relu", "unit": 2}).json()
        assert unit["dissection"]["concept"] == "blue"
        r = http.post("/api/probe", files={"image": ("a.png", b"junk", "image/png")})
        assert r.status_code == 400
        r = http.post("/api/probe", files={"image": ("a.png", red_blue_png(), "image/png")})
        assert r.status_code == 200 and r.json()["top"][0][0] == "red"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    # SIGTERM: uvicorn shuts down, then re-raises the signal (exit -15), with no traceback
    assert proc.returncode in (0, -15) and "Traceback" not in out, out
