"""The probe world: labels agree with the rendering, the folder is Broden, output is deterministic."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unitscope.cli import main
from unitscope.data import BrodenDataset, decode_mask
from unitscope.data.label_store import STORE
from unitscope.world import make_world, render_image
from unitscope.world.make import MARKER, PARTIAL
from unitscope.world.vocab import ALLOWED_PARENTS, COLOR_PROTOTYPES, C, O, P, color_labels, srgb_to_lab

N, SIZE = 40, 64
PROTO_LAB = srgb_to_lab(np.array([p for c in C for p in COLOR_PROTOTYPES[c]], np.float32))
PROTO_NAME = np.array([C[c] for c in C for _ in COLOR_PROTOTYPES[c]])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return make_world(tmp_path_factory.mktemp("w") / "world", n=N, size=SIZE, seed=3, workers=2, progress=False)


def _rows(path: Path, name: str) -> list[dict[str, str]]:
    with open(path / name, newline="") as f:
        return list(csv.DictReader(f))


def _tree_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.relative_to(path).parts != (STORE, "store.json")  # it records the files' times
    }


def test_colour_labels_agree_with_the_pixels_as_saved(world):
    agree = total = 0
    red_pixels = []
    for i in range(N):
        jpg = np.asarray(Image.open(world / "images" / f"world/{i:06d}.jpg").convert("RGB").resize((32, 32), Image.BOX))
        lab = decode_mask(world / "images" / f"world/{i:06d}_color.png")
        agree += int((color_labels(jpg) == lab).sum())
        total += lab.size
        red_pixels.append(jpg[lab == C["red"]])
        # every pixel's label is, within JPEG's tolerance, the nearest colour name of the saved pixel
        d = np.sqrt(((srgb_to_lab(jpg).reshape(-1, 1, 3) - PROTO_LAB[None]) ** 2).sum(-1))
        per_name = np.stack([d[:, PROTO_NAME == num].min(1) for num in range(1, 12)], 1)
        gap = per_name[np.arange(len(d)), lab.ravel() - 1] - per_name.min(1)
        assert np.mean(gap < 8) > 0.97, (i, float(np.mean(gap < 8)))
    assert agree / total > 0.85, agree / total
    red = np.concatenate(red_pixels).astype(int)
    assert len(red) > 50
    # pixels labelled red are red: red channel well above green and blue
    assert np.mean((red[:, 0] > red[:, 1] + 50) & (red[:, 0] > red[:, 2] + 50)) > 0.9


def test_every_pixel_has_a_colour_and_parts_lie_inside_their_objects(world):
    for i in range(N):
        color = decode_mask(world / "images" / f"world/{i:06d}_color.png")
        obj = decode_mask(world / "images" / f"world/{i:06d}_object.png")
        part = decode_mask(world / "images" / f"world/{i:06d}_part.png")
        assert (color > 0).all()
        for p in np.unique(part[part > 0]):
            parents = np.unique(obj[part == p])
            assert set(parents.tolist()) <= ALLOWED_PARENTS[int(p)], (i, int(p), parents)


def test_part_and_object_layers_at_full_resolution():
    im = render_image(seed=0, index=8, size=96)  # a street: houses with roofs, windows, doors
    obj, part = im.full["object"], im.full["part"]
    assert (obj[part == P["roof"]] == O["house"]).all() and (part == P["roof"]).sum() > 20
    assert im.labels["object"].shape == (48, 48) and im.rgb.shape == (96, 96, 3)


def test_every_label_occurs_and_tables_count_them(world):
    labels = _rows(world, "label.csv")
    assert list(labels[0]) == ["number", "name", "category", "frequency", "coverage", "syns"]
    assert [int(r["number"]) for r in labels] == list(range(1, len(labels) + 1))
    # recount from the masks: the frequency of every pixel label is the number of images containing it
    counts: dict[int, int] = {}
    for i in range(N):
        for cat in ("color", "object", "part", "material", "texture"):
            for v in np.unique(decode_mask(world / "images" / f"world/{i:06d}_{cat}.png")):
                counts[int(v)] = counts.get(int(v), 0) + 1
    index = _rows(world, "index.csv")
    for r in index:
        counts[int(r["scene"])] = counts.get(int(r["scene"]), 0) + 1
    for r in labels:
        m = re.fullmatch(r"(\w+)\((\d+)\)", r["category"])
        assert m, r
        assert int(r["frequency"]) == int(m.group(2)) == counts.get(int(r["number"]), 0) > 0, r
        assert re.fullmatch(r"\d+\.\d+", r["coverage"])
    cats = _rows(world, "category.csv")
    assert [c["name"] for c in cats] == ["color", "object", "part", "material", "scene", "texture"]
    assert sum(int(c["count"]) for c in cats) == len(labels)
    assert len([r for r in labels if r["category"].startswith("color(")]) == 11
    for c in cats:
        crow = _rows(world, f"c_{c['name']}.csv")
        assert [int(r["code"]) for r in crow] == list(range(1, int(c["count"]) + 1))
        assert int(crow[0]["number"]) == int(c["first"]) and int(crow[-1]["number"]) == int(c["last"])


def test_index_layout_and_splits(world):
    index = _rows(world, "index.csv")
    header = (world / "index.csv").read_text().splitlines()[0]
    assert header == "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture"
    assert len(index) == N
    assert [r["split"] for r in index].count("val") == N // 5
    for r in index:
        assert (int(r["ih"]), int(r["iw"]), int(r["sh"]), int(r["sw"])) == (SIZE, SIZE, SIZE // 2, SIZE // 2)
        assert Image.open(world / "images" / r["image"]).size == (SIZE, SIZE)
        png = Image.open(world / "images" / r["part"])
        assert png.format == "PNG" and png.mode == "RGB" and png.size == (SIZE // 2, SIZE // 2)


def test_same_seed_same_bytes_any_workers_other_seed_differs(tmp_path):
    a = make_world(tmp_path / "a", n=10, size=48, seed=5, workers=1, progress=False)
    b = make_world(tmp_path / "b", n=10, size=48, seed=5, workers=2, progress=False)
    c = make_world(tmp_path / "c", n=10, size=48, seed=6, workers=2, progress=False)
    da, db, dc = _tree_digest(a), _tree_digest(b), _tree_digest(c)
    assert da == db and len(da) == 10 * 6 + 10 + 1  # the label store's planes too
    assert sum(da[k] != dc[k] for k in da) > 50


def test_make_world_is_idempotent_resumes_and_rebuilds(tmp_path):
    out = make_world(tmp_path / "w", n=6, size=32, seed=0, workers=1, progress=False)
    marker = json.loads((out / MARKER).read_text())
    assert marker["n"] == 6 and marker["mask_size"] == 16 and not (out / PARTIAL).exists()
    whole = _tree_digest(out)
    jpg = out / "images" / "world" / "000002.jpg"
    stamp = jpg.stat().st_mtime_ns
    make_world(out, n=6, size=32, seed=0, workers=1, progress=False)
    assert jpg.stat().st_mtime_ns == stamp  # complete and same parameters: nothing rewritten
    # as an interrupted run leaves it: no marker, tables missing, image 4 half done, a temporary file
    (out / MARKER).unlink()
    (out / "label.csv").unlink()
    (out / PARTIAL).write_text(json.dumps(marker))
    (out / "images/world/000004.jpg").unlink()
    (out / "images/world/000004_part.png").write_bytes(b"half")
    (out / "images/world/.000005.jpg.tmp").write_bytes(b"half")
    make_world(out, n=6, size=32, seed=0, workers=1, progress=False)
    assert _tree_digest(out) == whole and jpg.stat().st_mtime_ns == stamp  # completed, whole images kept
    make_world(out, n=4, size=32, seed=0, workers=1, progress=False)  # other parameters: rebuilt
    assert len(_rows(out, "index.csv")) == 4 and not (out / "images" / "world" / "000005.jpg").exists()
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a probe world"):
        make_world(foreign, n=2, size=32, progress=False)


def test_round_trip_through_the_reader(world):
    ds = BrodenDataset(world)
    assert ds.categories == ["color", "object", "part", "material", "scene", "texture"]
    assert ds.mask_size == (SIZE // 2, SIZE // 2) and ds.image_size == (SIZE, SIZE)
    assert ds.scene_names == ["street", "forest", "beach", "ski_slope", "bedroom", "harbour", "field", "kitchen"]
    assert ds.label_names[C["red"]] == "red" and ds.label_category[0] == -1
    assert ds.label_category[O["house"]] == 1 and ds.label_category[P["roof"]] == 2
    for i in (0, 7, 33):
        item = ds[i]
        im = render_image(seed=3, index=i, size=SIZE)
        for k, cat in enumerate(("color", "object", "part", "material", "texture")):
            assert torch.equal(item["labels"][k], torch.from_numpy(im.labels[cat].astype(np.int64)))
        assert item["scene"] == im.scene and item["image_labels"].tolist() == [im.scene_label]
        assert item["index"] == i and item["category_present"].all()
        assert (item["image"] * 255 - torch.from_numpy(im.rgb).permute(2, 0, 1)).abs().mean() < 6  # JPEG
    val = BrodenDataset(world, split="val", categories=["object", "scene"])
    assert len(val) == N // 5 and all(val.split_of(j) == "val" for j in range(len(val)))
    assert val[0]["index"] == 4 and val[0]["labels"].shape == (1, SIZE // 2, SIZE // 2)
    assert BrodenDataset(world, categories=["color"])[9]["scene"] == (9 + 3) % 8  # scene without the category
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2)))
    assert batch["labels"].shape == (8, 5, SIZE // 2, SIZE // 2) and batch["scene"].shape == (8,)


def test_scene_decides_the_objects(world):
    ds = BrodenDataset(world, categories=["object", "scene"])
    has = {name: [] for name in ds.scene_names}
    for i in range(len(ds)):
        item = ds[i]
        has[ds.scene_names[item["scene"]]].append(set(item["labels"].unique().tolist()))
    frac = {
        s: {o: np.mean([O[o] in h for h in hs]) for o in ("boat", "bed", "car", "sea", "cabinet")}
        for s, hs in has.items()
    }
    assert frac["harbour"]["boat"] == 1 and frac["forest"]["boat"] < 0.5
    assert frac["street"]["car"] == 1 and frac["kitchen"]["cabinet"] == 1 and frac["kitchen"]["sea"] == 0


def test_cli_make_and_show(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["world", "make", str(out), "--n", "4", "--size", "48", "--no-progress", "--workers", "1"]) == 0
    assert len(_rows(out, "index.csv")) == 4
    sheet = tmp_path / "sheet.png"
    assert main(["world", "show", str(out), "--n", "4", "--png", str(sheet), "--panel", "64"]) == 0
    w, h = Image.open(sheet).size
    assert w == 2 * 6 * 64 + 6 and h > 2 * 64
    assert main(["world", "make", str(tmp_path / "x"), "--n", "0"]) == 2
    assert "n must be at least 1" in capsys.readouterr().err
