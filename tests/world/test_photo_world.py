"""The photo world: exact cut-out masks, determinism, a valid Broden folder, clear errors.

Most tests use a tiny folder of synthetic "photographs" written here (``--sources``); the tests
of the curated Debian photographs skip when the packages are missing, except under ``CI=true``.
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unitscope.cli import main
from unitscope.data import BrodenDataset, decode_mask
from unitscope.data.label_store import STORE
from unitscope.world import make_world, render_image, sources
from unitscope.world.make import world_style
from unitscope.world.photo import MixedStyle, PhotoStyle, placed_mask
from unitscope.world.sources import MAX_CUTOUT, MissingSources, find_sources

CLASSES = {("animal", "cat"): (200, 60, 40), ("animal", "dog"): (40, 60, 200), (None, "ball"): (230, 220, 30)}
MATERIALS = {"wood": (120, 80, 40), "grass": (50, 150, 50), "snow": (235, 235, 240)}


def _blob(rng: np.random.Generator, h: int, w: int, rgb) -> Image.Image:
    """An RGBA cut-out: a soft-edged random ellipse (alpha ramps 0..255 across its rim)."""
    yy, xx = np.mgrid[:h, :w]
    r = ((yy - h / 2) / (h * rng.uniform(0.3, 0.48))) ** 2 + ((xx - w / 2) / (w * rng.uniform(0.3, 0.48))) ** 2
    alpha = np.clip((1.2 - r) * 600, 0, 255).astype(np.uint8)
    col = np.clip(np.asarray(rgb) + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([col, alpha]), "RGBA")


@pytest.fixture(scope="module")
def own(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    for (parent, cls), rgb in CLASSES.items():
        folder = root / "objects" / (f"{parent}/{cls}" if parent else cls)
        folder.mkdir(parents=True)
        for k in range(2):
            _blob(rng, int(rng.integers(40, 90)), int(rng.integers(40, 90)), rgb).save(folder / f"{k}.png")
    for mat, rgb in MATERIALS.items():
        (root / "materials" / mat).mkdir(parents=True)
        tile = np.clip(np.asarray(rgb) + rng.integers(-30, 30, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(tile).save(root / "materials" / mat / "t.png")
    return root


def _digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.relative_to(path).parts != (STORE, "store.json")  # it records the files' times
    }


def _debian_or_skip():
    try:
        return find_sources()
    except MissingSources as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc}; CI=true requires the photo-world tests to run")
        pytest.skip(str(exc))


def test_user_sources_become_labels(own):
    src = find_sources(own, system=False)
    assert src.classes == ["ball", "cat", "dog"] and src.parents == ["animal"]
    assert src.materials == ["grass", "snow", "wood"]
    style = PhotoStyle(src)
    names = {cat: [n for n, _ in v] for cat, v in style.vocab.items()}
    assert names["object"] == ["ball", "cat", "dog", "animal", "sky"]
    assert names["scene"] == ["field", "snowfield", "room", "yard"]  # the scenes whose materials exist


def _expected_planes(src, style, im):
    """Object and parent planes rebuilt from the source files alone, pasting in the drawing order."""
    S = im.rgb.shape[0]
    obj = np.zeros((S, S), np.int64)
    parent = np.zeros((S, S), np.int64)
    for p in im.placed:
        cut = src.cutouts[p.cutout]
        rgba = Image.open(Path(cut.source) / cut.path).convert("RGBA")
        rgba.thumbnail((MAX_CUTOUT, MAX_CUTOUT), Image.LANCZOS)
        alpha = np.asarray(rgba.resize((p.w, p.h), Image.BILINEAR))[..., 3]
        mask = (alpha[:, ::-1] if p.flip else alpha) >= 128
        big = np.zeros((S + 2 * p.h, S + 2 * p.w), bool)  # paste with clipping at the borders
        big[p.y + p.h : p.y + 2 * p.h, p.x + p.w : p.x + 2 * p.w] = mask
        m = big[p.h : p.h + S, p.w : p.w + S]
        obj[m] = style.num[cut.label]
        parent[m] = style.num[cut.parent] if cut.parent else 0
    return obj, parent


@pytest.mark.parametrize("kind", ["photo", "mixed"])
def test_masks_are_the_alpha_of_each_placed_cutout_in_drawing_order(own, kind):
    src = find_sources(own, system=False)
    style = PhotoStyle(src) if kind == "photo" else MixedStyle(src)
    cut_labels = {style.num[c] for c in src.classes}
    overlaps = 0
    for i in range(12):
        im = render_image(seed=4, index=i, size=96, style=style)
        obj, parent = _expected_planes(src, style, im)
        on = obj > 0
        assert on.any()
        np.testing.assert_array_equal(im.full["object"][on], obj[on])
        np.testing.assert_array_equal(im.full["parent"], parent)
        assert not np.isin(im.full["object"][~on], list(cut_labels)).any()  # nothing labelled outside
        assert not im.full["material"][on].any()  # a cut-out hides the ground's material
        masks = [placed_mask(src, p) for p in im.placed]
        overlaps += len(masks) > 1 and sum(int(m.sum()) for m in masks) > int(on.sum())
    assert overlaps >= 2  # occlusion really was exercised


def test_seeded_byte_identical_for_any_worker_count(own, tmp_path):
    kw = dict(n=8, size=48, style="photo", sources=own, system_sources=False, progress=False)
    a = make_world(tmp_path / "a", seed=5, workers=1, **kw)
    b = make_world(tmp_path / "b", seed=5, workers=2, **kw)
    c = make_world(tmp_path / "c", seed=6, workers=2, **kw)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_resume_keeps_written_images_and_matches_a_fresh_world(own, tmp_path):
    from unitscope.world.make import MARKER, PARTIAL

    kw = dict(n=6, size=48, style="mixed", sources=own, system_sources=False, workers=1, progress=False)
    out = make_world(tmp_path / "w", **kw)
    whole = _digest(out)
    (out / PARTIAL).write_text((out / MARKER).read_text())  # as if interrupted before the tables
    for name in (MARKER, "index.csv", "label.csv"):
        (out / name).unlink()
    (out / "images/world/000003_parent.png").unlink()
    keep = (out / "images/world/000001.jpg").stat().st_mtime_ns
    make_world(out, **kw)
    assert _digest(out) == whole
    assert (out / "images/world/000001.jpg").stat().st_mtime_ns == keep  # read back, not rendered again


def test_reader_validates_the_photo_world_and_sees_two_object_planes(own, tmp_path):
    out = make_world(
        tmp_path / "w", n=10, size=48, style="photo", sources=own, system_sources=False, workers=1, progress=False
    )
    ds = BrodenDataset(out, validate="full")
    planes = [ds.categories[g] for g in ds.plane_category.tolist()]
    assert planes == ["color", "object", "object", "material"]
    item = ds[0]
    parents = {ds.label_names[v] for v in np.unique(item["labels"][2].numpy()) if v}
    assert parents <= {"animal"}
    with open(out / "category.csv", newline="") as f:
        assert [r["name"] for r in csv.DictReader(f)] == ["color", "object", "material", "scene"]


def test_missing_packages_give_one_clear_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sources, "STAMPS_DIR", tmp_path / "no-stamps")
    monkeypatch.setattr(sources, "TEXTURES_ZIP", tmp_path / "no-textures.pk3")
    with pytest.raises(MissingSources, match="apt-get install -y tuxpaint-stamps-default nexuiz-textures"):
        world_style("photo")
    assert main(["world", "make", str(tmp_path / "w"), "--style", "photo", "--n", "2"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tuxpaint-stamps-default" in err[0], err
    with pytest.raises(MissingSources, match="no such folder"):
        find_sources(tmp_path / "nothing-here", system=False)
    from unitscope.commands.dissect import demo_style

    assert demo_style("auto") == "cartoon"
    assert "using the cartoon world" in capsys.readouterr().out


def test_allow_lists_name_installed_photographs():
    src = _debian_or_skip()
    assert len(src.cutouts) >= 250 and len(src.tiles) >= 90  # all curated files were found
    assert len(src.classes) >= 50 and len(src.materials) >= 12
    for k in (0, len(src.cutouts) // 2, len(src.cutouts) - 1):
        a = src.cutout(k)[..., 3]
        assert 0.02 < (a >= 128).mean() < 0.99  # a real cut-out: part opaque, part transparent


@pytest.mark.slow
def test_every_label_appears_in_a_500_image_photo_world(tmp_path):
    _debian_or_skip()
    out = make_world(tmp_path / "w", n=500, size=64, style="photo", workers=2, progress=False)
    with open(out / "label.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    unseen = [r["name"] for r in rows if int(r["frequency"]) == 0]
    assert not unseen, unseen
    # the counts are true: recount one label from the masks themselves
    cat = next(r for r in rows if r["name"] == "cattle")
    seen = sum(int(cat["number"]) in decode_mask(out / f"images/world/{i:06d}_object.png") for i in range(500))
    assert seen == int(cat["frequency"])
