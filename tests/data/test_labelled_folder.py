"""Image folders labelled by each photo-world image's dominant object, and class tables that let
one data class stand for several model outputs (the photo world's ImageNet classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unitscope.ablate.split import LabelledData, class_map
from unitscope.cli import main
from unitscope.data.labelled import dominant_object_folder, imagenet_class_table, read_class_table
from unitscope.world import make_world
from unitscope.world.photo import PhotoStyle
from unitscope.world.sources import ALLOW_LISTS, find_sources

COLOURS = {"cat": (200, 60, 40), "dog": (40, 60, 200), "ball": (230, 220, 30)}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    """A 40-image photo world of synthetic cut-outs (full-size masks), and its sources folder."""
    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(1)
    for cls, rgb in COLOURS.items():
        (root / "src" / "objects" / cls).mkdir(parents=True)
        h, w = 60, 50
        yy, xx = np.mgrid[:h, :w]
        alpha = np.where(((yy - h / 2) / (h / 2.2)) ** 2 + ((xx - w / 2) / (w / 2.2)) ** 2 <= 1, 255, 0)
        Image.fromarray(np.dstack([np.full((h, w, 3), rgb), alpha]).astype(np.uint8), "RGBA").save(
            root / "src" / "objects" / cls / "0.png"
        )
    (root / "src" / "materials" / "grass").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
        root / "src" / "materials" / "grass" / "t.png"
    )
    make_world(
        root / "world",
        n=40,
        size=64,
        mask_size=64,
        seed=3,
        workers=1,
        progress=False,
        style="photo",
        sources=root / "src",
        system_sources=False,
    )
    return root / "world", root / "src"


def expected_dominant(src: Path, n: int, classes: set[str], min_area: float) -> dict[int, str | None]:
    """Recompose each image and count its object labels directly (no files read back)."""
    style = PhotoStyle(find_sources(src, system=False))
    names = {num: name for name, num in style.num.items()}
    out = {}
    for i in range(n):
        _, layers, _, _ = style.compose(seed=3, index=i, size=64)
        counts = {
            names[k]: int(c)
            for k, c in zip(*np.unique(layers["object"], return_counts=True))
            if k and names[k] != "sky"
        }
        best = max(counts, key=lambda c: counts[c], default=None)
        out[i] = best if best in classes and counts[best] >= min_area * 64 * 64 else None
    return out


def test_folder_holds_each_image_under_its_dominant_object(world, tmp_path):
    path, src = world
    made = dominant_object_folder(path, tmp_path / "objects", classes=["cat", "dog"], min_area=0.05)
    want = expected_dominant(src, 40, {"cat", "dog"}, 0.05)
    got = {int(p.stem): p.parent.name for p in (tmp_path / "objects").rglob("*.jpg")}
    assert got == {i: c for i, c in want.items() if c is not None}
    assert made.skipped == sum(c is None for c in want.values()) > 0  # balls and small objects left out
    assert made.counts == {c: sum(v == c for v in got.values()) for c in ("cat", "dog")}
    assert (tmp_path / "objects" / "cat" / f"{min(k for k, v in got.items() if v == 'cat'):06d}.jpg").read_bytes() == (
        path / "images" / "world" / f"{min(k for k, v in got.items() if v == 'cat'):06d}.jpg"
    ).read_bytes()
    data = LabelledData(tmp_path / "objects")
    assert data.class_names == ["cat", "dog"] and len(data) == len(got)


def test_cli_imagefolder_and_clear_errors(world, tmp_path, capsys):
    path, _ = world
    assert main(["world", "imagefolder", str(path), "--out", str(tmp_path / "f"), "--min-area", "0"]) == 0
    assert "3 classes" in capsys.readouterr().out
    assert (
        main(["world", "imagefolder", str(path), "--out", str(tmp_path / "h"), "--imagenet", "--classes", "cat"]) == 2
    )
    assert "no ImageNet counterpart" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no object label"):
        dominant_object_folder(path, tmp_path / "g", classes=["unicorn"])
    with pytest.raises(ValueError, match="lower --min-area"):
        dominant_object_folder(path, tmp_path / "g", classes=["cat"], min_area=0.99)


def test_class_table_ranges_and_one_class_per_output(tmp_path):
    (tmp_path / "t.txt").write_text("# comment\ncat 3,5-7   # felines\ndog 0-1\n")
    assert read_class_table(tmp_path / "t.txt") == {"cat": [3, 5, 6, 7], "dog": [0, 1]}
    (tmp_path / "bad.txt").write_text("cat 3-5\ndog 5\n")
    with pytest.raises(ValueError, match="line 2: output 5 already stands for 'cat'"):
        read_class_table(tmp_path / "bad.txt")
    # outputs 3, 5, 6, 7 are "cat" (0), 0 and 1 "dog" (1), the rest "other" (2)
    m = class_map(["cat", "dog"], [], 9, {"cat": [3, 5, 6, 7], "dog": [0, 1], "cow": [8]})
    assert m.tolist() == [1, 1, 2, 0, 2, 0, 0, 0, 2]
    with pytest.raises(ValueError, match="not in the class table"):
        class_map(["cat", "emu"], [], 9, {"cat": [3]})
    with pytest.raises(ValueError, match="has 9 outputs"):
        class_map(["cat"], [], 9, {"cat": [12]})


def test_imagenet_table_names_photo_classes_and_imagenet_indices():
    table = imagenet_class_table()
    photo = {
        line.split()[1]
        for line in (ALLOW_LISTS / "tuxpaint_stamps.txt").read_text().splitlines()
        if line.split("#", 1)[0].strip()
    }
    assert set(table) <= photo and len(table) >= 30
    assert all(0 <= i < 1000 for idx in table.values() for i in idx)
    assert table["cattle"] == [345, 346, 347] and table["penguin"] == [145]
    assert len(class_map(list(table), [], 1000, table)) == 1000
    assert torch.equal(
        class_map(["penguin"], [], 1000, table).nonzero().flatten(), torch.tensor([i for i in range(1000) if i != 145])
    )
