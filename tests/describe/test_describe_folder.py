"""``describe`` on an image folder with no dissection run: the exemplars computed by the
dissection engine (top images, masks above the 0.99 quantile), then captioned (an unlabelled
folder) or described from its class sub-folders (a labelled one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from unitscope.cli import main

PLANTED = str(Path(__file__).parents[1] / "helpers" / "planted.py")
CAPTIONER = """
def factory():
    def caption(images, masks):
        inside = (images * masks[:, None]).sum((0, 2, 3)) / masks.sum().clamp_min(1)
        return ["reddish", "greenish", "bluish"][int(inside.argmax())] + " regions"
    return caption
"""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from unitscope.world import make_world

    return make_world(tmp_path_factory.mktemp("world") / "w64", n=30, size=64, seed=3, workers=1, progress=False)


@pytest.fixture(scope="module")
def folders(world, tmp_path_factory):
    """The world's images as a plain folder, and as class sub-folders: ``apple`` where red covers
    more than 5% of the image, else ``field``."""
    from unitscope.data import BrodenDataset

    ds = BrodenDataset(world, validate="none")
    red = ds.label_names.index("red")
    root = tmp_path_factory.mktemp("folders")
    plain, classes = root / "plain", root / "classes"
    plain.mkdir()
    for i in range(len(ds)):
        frac = float((ds.get(i, image=False)["labels"] == red).any(0).float().mean())
        cls = classes / ("apple" if frac > 0.05 else "field")
        cls.mkdir(parents=True, exist_ok=True)
        shutil.copy(ds.image_path(i), plain / ds.image_path(i).name)
        shutil.copy(ds.image_path(i), cls / ds.image_path(i).name)
    return plain, classes


@pytest.fixture
def planted(world, monkeypatch):
    monkeypatch.setenv("PLANTED_WORLD", str(world))
    return f"{PLANTED}:colour_units"


def test_unlabelled_folder_is_captioned_end_to_end(folders, planted, tmp_path):
    from unitscope.catalog import Catalog
    from unitscope.describe import exemplars as ex
    from unitscope.describe.folder import FolderData
    from unitscope.describe.run import held_out
    from unitscope.models import create_model, get_info

    cap = tmp_path / "cap.py"
    cap.write_text(CAPTIONER)
    out = tmp_path / "run"
    args = [
        "describe",
        "--model",
        planted,
        "--images",
        str(folders[0]),
        "--layers",
        "feat",
        "--out",
        str(out),
        "--no-labels",
        "--captioner",
        f"{cap}:factory",
        "--exemplars",
        "5",
        "--batch-size",
        "10",
        "--no-progress",
    ]
    assert main(args) == 0
    with Catalog(out / "catalog.sqlite", create=False) as cat:
        rows = cat.rows("descriptions", kind="caption")
    # the planted units fire on red, green and blue pixels (tests/helpers/planted.py)
    assert [(r["unit"], r["description"]) for r in rows] == [
        (0, "reddish regions"),
        (1, "greenish regions"),
        (2, "bluish regions"),
    ]
    # the exemplars are the model's: the top images by peak among the search images, the
    # threshold the 0.99 quantile of every map value
    model = create_model(planted)
    data = FolderData(folders[0], transform=get_info(model).transform())
    with torch.no_grad():
        maps = _feat(model, torch.stack([data[i]["image"] for i in range(len(data))]))  # [30, 3, h, w]
    search = torch.nonzero(~held_out(len(data))).flatten()
    tops, _ = ex.top_images(out, "feat", search, 5)
    peaks = maps[search].flatten(2).amax(2).t()  # [3, n]
    assert torch.equal(
        torch.sort(peaks.gather(1, (tops[:, :, None] == search).float().argmax(2)), 1).values,
        torch.sort(peaks.topk(5, dim=1).values, 1).values,
    )
    q = torch.quantile(maps.transpose(0, 1).flatten(1), 0.99, dim=1)
    assert torch.allclose(ex.threshold(out, "feat"), q, atol=2e-3)
    # a rerun reuses the exemplars (the dissection resumes) and captions again
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["images"] == str(folders[0].resolve())


def _feat(model, images):
    from unitscope.hooks import TraceDict

    with TraceDict(model, ["feat"], stop=True) as td:
        model(images)
    return td["feat"].output


def test_labelled_folder_is_described_from_its_classes(folders, planted, tmp_path):
    from unitscope.describe.folder import exemplar_run
    from unitscope.describe.run import Options, describe_run
    from unitscope.models import create_model

    out = exemplar_run(
        create_model(planted), folders[1], ["feat"], tmp_path / "run", batch_size=10, progress=False, null_draws=0
    )
    rows = describe_run(out, None, Options(exemplars=5, draws=4, progress=False))["feat"]
    # the red unit's exemplars are the red images: the class 'apple' (whole images) fits it best
    assert rows["pmi"][0]["description"] == "apples" and rows["pmi"][0]["formula"] == "apple"
    assert rows["label"][0]["description"] == "apples"  # the dissection against the classes agrees
    assert rows["pmi"][0]["p_f1"] is not None  # scored on the held-out images like any run
    # chosen among the top-3 PMI candidates by F1 on validation images: still the class of red images
    again = describe_run(out, None, Options(exemplars=5, draws=4, progress=False, validate=3))["feat"]
    assert again["pmi"][0]["description"] == "apples"
    # and the command line, with the default captioner beside (no download)
    args = [
        "describe",
        "--model",
        planted,
        "--images",
        str(folders[1]),
        "--layers",
        "feat",
        "--out",
        str(tmp_path / "cli"),
        "--captioner",
        "default",
        "--exemplars",
        "5",
        "--draws",
        "4",
        "--batch-size",
        "10",
        "--no-progress",
    ]
    assert main(args) == 0
    from unitscope.catalog import Catalog

    with Catalog(tmp_path / "cli" / "catalog.sqlite", create=False) as cat:
        said = {(r["kind"], r["unit"]): r["description"] for r in cat.rows("descriptions")}
    assert said[("pmi", 0)] == "apples" and "red" in said[("caption", 0)]


def test_folder_errors_say_what_to_do(folders, planted, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["describe", "--model", planted, "--layers", "feat", "--out", str(tmp_path / "r")]
    assert main(base + ["--images", str(folders[0])]) != 0  # unlabelled, and no captioner
    assert "--no-labels --captioner default" in capsys.readouterr().err
    assert main(base + ["--images", str(empty), "--no-labels", "--captioner", "default"]) != 0
    assert "no images" in capsys.readouterr().err
    assert main(["describe", "--images", str(folders[0]), "--no-labels", "--captioner", "default"]) != 0
    assert "--model M, --layers L and --out RUN" in capsys.readouterr().err
    assert main(["describe"]) != 0
    assert "--model M --images FOLDER" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any work
