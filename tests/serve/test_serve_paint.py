"""The paint API (GANPaint) on the hand-built door generator of tests/helpers/gan_models.py, its image
upsampled to 8x8 so that a cell of the 4x4 layer is a 2x2 patch: painting the door unit into a wall
region paints door pixels exactly there (as gan.effects' insertion does), never in the sky; removing
it removes them; the pixel shares equal a direct count; bad requests get clear 400/404 answers."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'unitscope[serve]'")
from fastapi.testclient import TestClient  # noqa: E402

from tests.helpers.gan_models import ToyGenerator, door_segmenter  # noqa: E402
from unitscope.ablate import cut_model  # noqa: E402
from unitscope.gan import cache_samples, insertion_in_context, latents  # noqa: E402
from unitscope.models import ModelInfo, attach_info  # noqa: E402
from unitscope.serve import create_app  # noqa: E402
from unitscope.serve.paint import LEVEL_QUANTILE, LEVEL_SAMPLES, Painter, pixel_region  # noqa: E402


class BigDoors(nn.Module):
    """ToyGenerator with its 4x4 image upsampled (nearest) to 8x8."""

    def __init__(self) -> None:
        super().__init__()
        self.toy = ToyGenerator()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(self.toy(z), scale_factor=2, mode="nearest")


def big_doors() -> nn.Module:
    return attach_info(
        BigDoors(),
        ModelInfo(
            name="big-doors",
            input_size=(16, 1, 1),
            kind="generator",
            output_size=(3, 8, 8),
            default_layers=["toy.feat"],
        ),
    )


def door_run(path: Path) -> Path:
    """A real dissection of the generator: unit 0 labelled door (IoU 1), unit 1 nothing."""
    from unitscope.dissect import Options, dissect_sources
    from unitscope.gan import GeneratorActivations, SegmenterLabels

    acts = GeneratorActivations(big_doors(), ["toy.feat"], n=200, seed=0)
    opts = Options(quantile=0.05, topk=2, batch_size=100, exemplar_images=False, progress=False, null_draws=0)
    dissect_sources(acts, SegmenterLabels(door_segmenter()), path, opts)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return door_run(tmp_path_factory.mktemp("paint") / "run")


@pytest.fixture(scope="module")
def client(run):
    return TestClient(create_app(big_doors(), run, segmenter=door_segmenter()))


def a_of(seed: int) -> torch.Tensor:
    """The 4x4 map ``a`` of a seed's sample (sample 0 of that seed)."""
    return latents(1, seed, (16, 1, 1)).view(4, 4)


def seed_where(test, start: int = 0) -> int:
    return next(s for s in range(start, 1000) if test(a_of(s)))


def decode(b64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def level0() -> float:
    """Unit 0's 99.5th percentile over the 200 samples of seed 0, computed here from ``a``."""
    a = latents(LEVEL_SAMPLES, 0, (16, 1, 1)).view(-1, 4, 4)
    unit0 = torch.relu(a - 1.5) * (torch.arange(4) >= 2).view(1, 4, 1)
    return float(torch.quantile(unit0.flatten(), LEVEL_QUANTILE))


def with_hook(seed: int, region: torch.Tensor, value: float) -> np.ndarray:
    """The generator run whole, unit 0 of ``feat`` set to ``value`` in ``region`` by a forward hook:
    the expected image as uint8 [8, 8, 3]."""
    g = big_doors()

    def hook(module, inputs, output):
        out = output.clone()
        out[:, 0][:, region] = value
        return out

    handle = g.toy.feat.register_forward_hook(hook)
    with torch.no_grad():
        image = g(latents(1, seed, (16, 1, 1)))[0]
    handle.remove()
    return (image.clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def door_share(pixels: np.ndarray, region: torch.Tensor) -> float:
    """Share of red (door) pixels of an [8, 8, 3] image inside the 2x2 patches of ``region`` [4, 4]."""
    seg = door_segmenter().segment(torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255)["object"][0]
    return float((seg[pixel_region(region, 8, 8)] == 3).float().mean())


def test_info_lists_the_layer_and_the_run_concepts(client, run):
    import sqlite3

    with sqlite3.connect(run / "catalog.sqlite") as db:
        (iou,) = db.execute("SELECT iou FROM dissection WHERE unit = 0 AND concept = 'door'").fetchone()
    body = client.get("/api/paint/info").json()
    assert body["model"] == "big-doors" and body["default"] == "toy.feat" and body["kind"] == "generator"
    (layer,) = body["layers"]
    assert (layer["name"], layer["units"], layer["height"], layer["width"], layer["dissected"]) == (
        "toy.feat",
        2,
        4,
        4,
        True,
    )
    assert layer["concepts"] == [
        {"concept": "door", "category": "object", "detectors": 1, "units": [0], "iou": [round(iou, 4)]}
    ]
    assert layer["labels"]["0"]["concept"] == "door" and layer["labels"]["1"]["concept"] is None
    assert body["image"] == {"width": 8, "height": 8} and body["labels"] == ["sky", "wall", "door"]


def test_sample_is_the_generator_output_and_its_segmentation(client):
    seed = seed_where(lambda a: bool((a[2:] > 1.5).any()))
    body = client.get("/api/paint/sample", params={"seed": seed}).json()
    expected = with_hook(seed, torch.zeros(4, 4, dtype=torch.bool), 0.0)  # an empty region: no edit
    assert body["grid"] == [4, 4] and (decode(body["image"]["png"]) == expected).all()
    doors = int((a_of(seed)[2:] > 1.5).sum())
    legend = {row["label"]: row["share"] for row in body["segmentation"]["legend"]}
    assert legend == {"sky": 0.5, "wall": (8 - doors) / 16, "door": doors / 16}
    assert "edit" not in body and body["share"] is None
    assert len(body["atlas"]["lo"]) == 2


def test_adding_the_door_concept_paints_doors_on_the_wall_cells_only(client):
    seed = seed_where(lambda a: not bool((a[2:] > 1.5).any()))  # no door yet
    region = torch.zeros(4, 4, dtype=torch.bool)
    region[0, 1] = region[2, 1] = region[2, 2] = True  # one sky cell, two wall cells
    body = client.post(
        "/api/paint", json={"seed": seed, "action": "add", "concept": "door", "mask": region.int().tolist()}
    ).json()
    level = level0()
    assert body["edit"]["units"] == [0] and body["edit"]["levels"] == [pytest.approx(level)] and level > 0
    assert body["edit"]["cells"] == 3 and body["edit"]["pixels"] == 12
    image = decode(body["image"]["png"])
    assert (image == with_hook(seed, region, level)).all()
    red = (image[..., 0] > 200) & (image[..., 1] < 60)
    expected = np.zeros((8, 8), bool)
    expected[4:6, 2:6] = True  # the 2x2 patches of wall cells (2, 1) and (2, 2); the sky cell stays sky
    assert (red == expected).all()
    assert body["share"] == {"concept": "door", "before": 0.0, "after": pytest.approx(8 / 12)}
    assert body["share"]["after"] == pytest.approx(door_share(image, region))
    # gan.effects' insertion of the same unit at the same level and sample agrees, cell by cell
    g = big_doors()
    cut = cut_model(g, "toy.feat")
    inserted = insertion_in_context(
        cut,
        cache_samples(cut, g, n=1, seed=seed),
        door_segmenter(),
        units=[0],
        level=torch.tensor([level, 0.0]),
        concept="door",
        cells=[(0, 1), (2, 1), (2, 2)],
        patch_min=0.5,
    )
    assert inserted.appeared == {"wall": 2} and inserted.trials == {"sky": 1, "wall": 2}


def test_removing_the_door_unit_removes_the_doors_in_the_region(client):
    seed = seed_where(lambda a: int((a[2:] > 1.5).sum()) >= 2)
    doors = torch.zeros(4, 4, dtype=torch.bool)
    doors[2:] = a_of(seed)[2:] > 1.5
    first = doors.nonzero()[0].tolist()
    region = torch.zeros(4, 4, dtype=torch.bool)
    region[first[0], first[1]] = True  # one door cell brushed
    mask = pixel_region(region, 8, 8).int().tolist()  # sent on the image's 8x8 grid
    body = client.post("/api/paint", json={"seed": seed, "action": "remove", "concept": "door", "mask": mask}).json()
    assert body["edit"]["region"] == region.int().tolist()
    image = decode(body["image"]["png"])
    assert (image == with_hook(seed, region, 0.0)).all()
    assert body["share"] == {"concept": "door", "before": 1.0, "after": 0.0}
    legend = {row["label"]: row["share"] for row in body["segmentation"]["legend"]}
    assert legend["door"] == (int(doors.sum()) - 1) / 16  # the other doors stay


def test_strokes_apply_in_order_and_the_head_runs_once_per_seed(client, monkeypatch):
    painter: Painter = client.app.state.painter
    seed = seed_where(lambda a: not bool((a[2:] > 1.5).any()))
    calls = []
    cut = painter.cut("toy.feat")
    painter.levels("toy.feat")  # the add stroke's levels run the head too, once per app: made before counting
    head = cut.head
    monkeypatch.setattr(cut, "head", lambda x: calls.append(1) or head(x))
    painter._heads.clear()
    wall = torch.zeros(4, 4, dtype=torch.bool)
    wall[3] = True
    add = {"action": "add", "concept": "door", "mask": wall.int().tolist()}
    remove = {"action": "remove", "units": [0], "concept": "door", "mask": wall.int().tolist()}
    one = client.post("/api/paint", json={"seed": seed, "edits": [add]}).json()
    two = client.post("/api/paint", json={"seed": seed, "edits": [add, remove]}).json()
    assert one["share"] == {"concept": "door", "before": 0.0, "after": 1.0}
    assert two["share"] == {"concept": "door", "before": 1.0, "after": 0.0}  # before: after the first stroke
    assert (decode(two["image"]["png"]) == with_hook(seed, wall, 0.0)).all()
    assert calls == [1]  # the layers before the cut ran once for this seed


def test_units_by_number_and_a_painter_without_a_run():
    painter = Painter(big_doors(), door_segmenter())
    seed = seed_where(lambda a: not bool((a[2:] > 1.5).any()))
    region = torch.ones(4, 4, dtype=torch.bool)
    nothing = painter.paint(
        seed, None, [painter.edit("toy.feat", {"action": "add", "units": [1], "mask": region.tolist()})]
    )
    assert nothing.share is None and bool((nothing.segmentation["object"] != 3).all())  # unit 1 paints nothing
    doors = painter.paint(
        seed, None, [painter.edit("toy.feat", {"units": [0], "concept": "door", "mask": region.tolist()})]
    )
    assert doors.share == (0.0, 0.5)  # every wall cell, none of the sky
    client = TestClient(create_app(big_doors(), segmenter=door_segmenter()))
    r = client.post("/api/paint", json={"seed": 1, "concept": "door", "mask": region.int().tolist()})
    assert r.status_code == 404 and "no run folder" in r.json()["error"] and "units" in r.json()["error"]
    with pytest.raises(ValueError, match="with a segmenter"):
        create_app(big_doors())


@pytest.mark.parametrize(
    "request_body, status, text, close",
    [
        ({"layer": "toy.fet", "concept": "door"}, 404, "no layer 'toy.fet'", ["toy.feat"]),
        ({"concept": "dor"}, 404, "no label 'dor'", ["door"]),
        ({"units": [0, 5]}, 404, "there is no unit 5", [1]),
        ({"units": "0"}, 400, "units must be a list", None),
        ({"concept": "door", "action": "paint"}, 400, "action must be 'add' or 'remove'", None),
        ({"concept": "door", "mask": [[1, 0], [0, 1]]}, 400, "layer's grid 4x4 or the image's 8x8; got 2x2", None),
        ({"concept": "door", "mask": [[0] * 4] * 4}, 400, "selects no cell", None),
        ({"concept": "door", "seed": -1}, 400, "seed must be an integer from 0", None),
        ({"concept": "door", "seed": 2**64}, 400, "seed must be an integer from 0", None),
        ({"concept": "door", "k": 0}, 400, "k (how many", None),
        ({}, 400, "say what to paint", None),
        ({"concept": "door", "layer": 3}, 400, "layer must be a name", None),
        ({"edits": {"concept": "door"}}, 400, "edits must be a list", None),
        ({"concept": "door", "category": "objekt"}, 404, "no category 'objekt'", ["object"]),
    ],
)
def test_bad_requests_are_answered_clearly(client, request_body, status, text, close):
    body = {"mask": [[1] * 4] * 4, **request_body}
    r = client.post("/api/paint", json=body)
    assert r.status_code == status, r.json()
    answer = r.json()
    assert text in answer["error"] and answer["status"] == status
    if close is not None:
        assert answer["close"] == close
    assert client.get("/api/paint/info").status_code == 200  # the server keeps answering


def test_non_json_body_and_unknown_sample_layer(client):
    r = client.post("/api/paint", content=b"seed=1", headers={"content-type": "text/plain"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = client.get("/api/paint/sample", params={"seed": 1, "layer": "feat"})
    assert r.status_code == 404 and r.json()["close"] == ["toy.feat"]


@pytest.mark.slow
def test_serve_command_picks_the_paint_page_for_a_generator(tmp_path):
    """`unitscope serve RUN` for a run whose config.json names a generator file and a segmenter
    file: the paint page and its API answer over HTTP."""
    import json
    import os
    import re
    import subprocess

    import httpx

    from tests.helpers.gan_models import toy_generator
    from unitscope.dissect import Options, dissect_sources
    from unitscope.gan import GeneratorActivations, SegmenterLabels

    here = Path(__file__).parents[1] / "helpers"
    gen, seg = f"{here / 'gan_models.py'}:toy_generator", f"{here / 'gan_models.py'}:door_segmenter"
    run = tmp_path / "run"
    dissect_sources(
        GeneratorActivations(toy_generator(), ["feat"], n=100, seed=0),
        SegmenterLabels(door_segmenter()),
        run,
        Options(quantile=0.05, topk=2, exemplar_images=False, progress=False, null_draws=0),
    )
    (run / "config.json").write_text(json.dumps({"model": gen, "segmenter": seg}))
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "unitscope.cli", "serve", str(run), "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        said: list[str] = []
        while not (said and said[-1].startswith("unitscope serve:")):  # printed once it listens
            line = proc.stdout.readline()
            assert line, f"unitscope serve ended before it listened: {''.join(said)}"
            said.append(line)
        url = re.search(r"http://127\.0\.0\.1:(\d+)", said[-1]).group(0)
        http = httpx.Client(base_url=url, timeout=120)
        assert "unitscope paint" in http.get("/").text
        info = http.get("/api/paint/info").json()
        assert info["segmenter"] == seg and info["layers"][0]["concepts"][0]["units"] == [0]
        seed = seed_where(lambda a: not bool((a[2:] > 1.5).any()))
        body = http.post(
            "/api/paint", json={"seed": seed, "concept": "door", "mask": [[0] * 4, [0] * 4, [1] * 4, [0] * 4]}
        ).json()
        assert body["share"] == {"concept": "door", "before": 0.0, "after": 1.0}
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode in (0, -15) and "Traceback" not in out, out
