"""BrodenDataset: real-Broden conventions, and one clear error per kind of damage."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unitscope.data import BrodenDataset, decode_mask
from unitscope.world import make_world


def _mask(path: Path, label: np.ndarray) -> None:
    rgb = np.zeros(label.shape + (3,), np.uint8)
    rgb[..., 0], rgb[..., 1] = label % 256, label // 256
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)


@pytest.fixture
def broden_like(tmp_path) -> Path:
    """A tiny folder written the way the real Broden1_224 is: labels in several categories, several
    part masks in one cell, scene and texture as image-level numbers, empty cells, label numbers
    above 255, no c_scene.csv."""
    root = tmp_path / "broden"
    img = root / "images"
    for name in ("ade20k/a.jpg", "dtd/b.jpg", "pascal/c.jpg"):
        (img / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (200, 10, 10)).save(img / name)
    obj = np.zeros((4, 4), np.int64)
    obj[:2] = 300  # label > 255 needs the green channel
    obj[2:, :2] = 3
    _mask(img / "ade20k/a_object.png", obj)
    _mask(img / "ade20k/a_part_1.png", np.full((4, 4), 4))
    _mask(img / "ade20k/a_part_2.png", np.eye(4, dtype=np.int64) * 5)
    _mask(img / "pascal/c_object.png", np.full((4, 4), 3))
    (root / "index.csv").write_text(
        "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture\n"
        "ade20k/a.jpg,train,8,8,4,4,,ade20k/a_object.png,ade20k/a_part_1.png;ade20k/a_part_2.png,,6,\n"
        "dtd/b.jpg,train,8,8,4,4,,,,,,7;8\n"
        "pascal/c.jpg,val,8,8,4,4,,pascal/c_object.png,,,,\n"
    )
    (root / "label.csv").write_text(
        "number,name,category,frequency,coverage,syns\n"
        "1,red-c,color(1),1,0.5,\n"
        "3,wheel,object(1);part(4),5,1.25,\n"
        "4,door,part(2),2,0.5,\n"
        "5,window,part(1),1,0.25,pane;glass\n"
        "6,street-s,scene(1),1,1.0,\n"
        "7,striped,texture(1),1,1.0,\n"
        "8,dotted,texture(1),1,1.0,\n"
        "300,sky,object(2),2,1.0,\n"
    )
    (root / "category.csv").write_text(
        "name,first,last,count,frequency\ncolor,1,1,1,1\nobject,3,300,2,2\npart,3,5,3,1\n"
        "material,0,0,0,0\nscene,6,6,1,1\ntexture,7,8,2,1\n"
    )
    return root


def test_reads_real_broden_conventions(broden_like):
    ds = BrodenDataset(broden_like)
    assert len(ds) == 3 and ds.mask_size == (4, 4) and ds.image_size == (8, 8)
    assert ds.categories == ["color", "object", "part", "material", "scene", "texture"]
    assert ds.num_planes == 3 and ds.plane_category.tolist() == [1, 2, 2]  # object; part, part
    assert ds.label_names[300] == "sky" and ds.label_names[2] == "" and len(ds.label_names) == 301
    # wheel is listed as object(1);part(4): its primary category is the one with more images
    assert ds.label_category[3] == 2 and ds.label_category[300] == 1 and ds.label_category[0] == -1
    assert ds.scene_names == ["street"]
    a, b, c = ds[0], ds[1], ds[2]
    assert a["labels"][0, 0].tolist() == [300] * 4 and a["labels"][0, 3, :2].tolist() == [3, 3]
    assert a["labels"][1].unique().tolist() == [4] and a["labels"][2].diagonal().tolist() == [5] * 4
    assert a["image_labels"].tolist() == [6, 0] and a["scene"] == 0
    assert a["category_present"].tolist() == [False, True, True, False, True, False]
    assert b["labels"].abs().sum() == 0 and b["image_labels"].tolist() == [7, 8] and b["scene"] == -1
    assert ds.split_of(2) == "val" and c["index"] == 2 and c["labels"][0].unique().tolist() == [3]
    assert a["image"].shape == (3, 8, 8) and abs(float(a["image"][0].mean()) - 200 / 255) < 0.03
    assert set(ds.get(0, image=False)) == {"index", "scene", "category_present", "labels", "image_labels"}
    assert set(ds.get(0, labels=False)) == {"index", "scene", "category_present", "image"}
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["labels"].shape == (3, 3, 4, 4) and batch["image_labels"].shape == (3, 2)
    only = BrodenDataset(broden_like, categories=["part"], split="train", transform=lambda im: torch.zeros(3, 2, 2))
    assert len(only) == 2 and only[0]["labels"].shape == (2, 4, 4) and only[0]["image"].shape == (3, 2, 2)
    assert only.label_category[3] == 0 and only.label_category[300] == -1


# ---------------------------------------------------------------- one test per kind of damage


def test_missing_table(broden_like):
    (broden_like / "label.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"label\.csv: missing"):
        BrodenDataset(broden_like)


def test_missing_image_file(broden_like):
    (broden_like / "images/dtd/b.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"index\.csv line 3: image file .*dtd/b\.jpg is missing"):
        BrodenDataset(broden_like)


def test_missing_mask_file(broden_like):
    (broden_like / "images/ade20k/a_part_2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"index\.csv line 2: mask file .*a_part_2\.png is missing"):
        BrodenDataset(broden_like)


def test_wrong_mask_size(broden_like):
    _mask(broden_like / "images/pascal/c_object.png", np.full((5, 4), 3))
    msg = r"index\.csv line 4: mask pascal/c_object\.png: is 5x4, expected sh x sw = 4x4"
    with pytest.raises(ValueError, match=msg):
        BrodenDataset(broden_like)


def test_mask_label_missing_from_label_csv(broden_like):
    _mask(broden_like / "images/pascal/c_object.png", np.full((4, 4), 2))  # 2 is not in label.csv
    msg = r"index\.csv line 4: mask pascal/c_object\.png: label number\(s\) \[2\] are not in label\.csv"
    with pytest.raises(ValueError, match=msg):
        BrodenDataset(broden_like, validate="full")
    ds = BrodenDataset(broden_like)  # the quick check does not decode masks; reading does
    with pytest.raises(ValueError, match=msg):
        ds[2]


@pytest.mark.parametrize(
    "table, old, new, message",
    [
        pytest.param(
            "index.csv",
            ",,,,,,7;8",
            ",,,,,,7;99",
            r"index\.csv line 3: texture label 99 is not in label\.csv",
            id="image-level label missing from label.csv",
        ),
        pytest.param(
            "index.csv",
            "dtd/b.jpg,train,8,8",
            "dtd/b.jpg,train,8,eight",
            r"index\.csv line 3: iw 'eight' is not an integer",
            id="malformed index row",
        ),
        pytest.param(
            "index.csv",
            "pascal/c_object.png,,,,",
            "pascal/c_object.png,,,x y,",
            r"index\.csv line 4: scene cell token 'x y' is neither a label number",
            id="malformed index cell",
        ),
        pytest.param(
            "label.csv",
            "4,door,part(2)",
            "4,door,part(2",
            r"label\.csv line 4: category 'part\(2' is not written",
            id="malformed label row",
        ),
    ],
)
def test_damaged_table(broden_like, table, old, new, message):
    text = (broden_like / table).read_text()
    assert old in text, f"the fixture's {table} changed: {old!r} is no longer in it"
    (broden_like / table).write_text(text.replace(old, new))
    with pytest.raises(ValueError, match=message):
        BrodenDataset(broden_like)


def test_index_row_with_wrong_cell_count(broden_like):
    with open(broden_like / "index.csv", "a") as f:
        f.write("pascal/c.jpg,val,8,8\n")
    with pytest.raises(ValueError, match=r"index\.csv line 5: expected 12 cells"):
        BrodenDataset(broden_like)


def test_unknown_category_and_split(broden_like):
    with pytest.raises(ValueError, match=r"no column for categor\(ies\) \['objects'\]"):
        BrodenDataset(broden_like, categories=["objects"])
    with pytest.raises(ValueError, match=r"no rows in split 'test'; splits present: \['train', 'val'\]"):
        BrodenDataset(broden_like, split="test")


def test_damaged_world_is_caught(tmp_path):
    world = make_world(tmp_path / "w", n=3, size=32, workers=1, progress=False)
    BrodenDataset(world, validate="full")
    copy = tmp_path / "copy"
    shutil.copytree(world, copy)
    _mask(copy / "images/world/000001_part.png", np.zeros((8, 8), np.int64))
    with pytest.raises(ValueError, match=r"line 3: mask world/000001_part\.png: is 8x8, expected sh x sw = 16x16"):
        BrodenDataset(copy)


def test_the_one_broden_writer_round_trips_masks_and_writes_exact_label_tables(tmp_path):
    """encode_mask is decode_mask's inverse (R + 256·G); the label tables carry the counts given,
    coverage as 6 decimals, or 0 when the labeller measures none (segmenter-labelled folders)."""
    from unitscope.data.broden_writer import encode_mask, write_label_tables

    labels = np.array([[0, 1, 255], [256, 4097, 65535]], np.int64)
    (tmp_path / "m.png").write_bytes(encode_mask(labels))
    assert np.array_equal(decode_mask(tmp_path / "m.png"), labels)

    vocab = {"object": [("house", 3), ("tree", 4)], "color": [("red", 1)]}
    freq = {"object": np.array([0, 0, 0, 5, 2]), "color": np.array([0, 7])}
    cov = {"object": np.array([0, 0, 0, 0.25, 0.125]), "color": np.array([0, 1.5])}
    write_label_tables(tmp_path, ["color", "object"], vocab, freq, cov, n=9)
    assert (tmp_path / "label.csv").read_text() == (
        "number,name,category,frequency,coverage,syns\n1,red,color(7),7,1.500000,\n"
        "3,house,object(5),5,0.250000,\n4,tree,object(2),2,0.125000,\n"
    )
    assert (tmp_path / "category.csv").read_text() == "name,first,last,count,frequency\ncolor,1,1,1,9\nobject,3,4,2,9\n"
    assert (
        tmp_path / "c_object.csv"
    ).read_text() == "code,number,name,frequency,coverage\n1,3,house,5,0.250000\n2,4,tree,2,0.125000\n"
    write_label_tables(tmp_path, ["object"], vocab, freq, None, n=9)
    assert (
        tmp_path / "c_object.csv"
    ).read_text() == "code,number,name,frequency,coverage\n1,3,house,5,0\n2,4,tree,2,0\n"
