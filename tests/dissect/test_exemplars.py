"""Exemplar and concept strips: composited from cached tiles (only each mask's bounding box pasted
back and outlined), the same pixels as compositing the whole strip at once; one layer's strips
rendered alone (``write_layer_strips``) are the files ``write_unit_strips`` writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from unitscope.dissect import exemplars as ex
from unitscope.dissect.iou import upsample_masks

SIZE, K, N, C = 64, 3, 6, 5
YELLOW, CYAN = (255, 220, 0), (0, 229, 255)  # the unit's outline, the concept's


class _World:
    """``N`` random 64 px pictures, maps ``[N, C, 4, 4]``, one label plane ``[1, 8, 8]`` (labels
    0-3) and image-level label 4 on image 5."""

    def __init__(self) -> None:
        g = np.random.default_rng(3)
        self.pixels = g.integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8)
        self.maps = g.random((N, C, 4, 4), dtype=np.float32)
        self.maps[:2, 2, 0, :] = 2.0  # unit 2 fires on a map edge in images 0 and 1: masks at the tile's border
        self.planes = g.integers(0, 4, (N, 1, 8, 8))
        self.image_labels = np.zeros((N, 1), np.int64)
        self.image_labels[5, 0] = 4

    def source(self) -> ex.StripSource:
        return ex.StripSource(
            lambda i: Image.fromarray(self.pixels[i]),
            lambda layer, pos: torch.from_numpy(self.maps[pos]),
            lambda pos: [(self.planes[p], self.image_labels[p]) for p in pos],
        )


# top-k images of each unit: unit 1 has two exemplars, unit 4 none
_IMAGES = torch.tensor([[0, 1, 2], [5, 3, -1], [4, 0, 1], [2, 5, 3], [-1, -1, -1]])


def _thresholds(world: _World) -> torch.Tensor:
    th = torch.quantile(torch.from_numpy(world.maps).transpose(0, 1).flatten(1), 0.8, dim=1)
    th[3] = 5.0  # no map reaches it: every tile dimmed, nothing outlined
    return th


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    inner = mask
    for _ in range(width):
        p = np.pad(inner, 1, constant_values=False)
        inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def _strip_of(tiles: list[np.ndarray], fill) -> np.ndarray:
    shape = (SIZE, K * (SIZE + 2), *tiles[0].shape[2:]) if tiles else (SIZE, K * (SIZE + 2), 3)
    out = np.full(shape, fill, dtype=tiles[0].dtype if tiles else np.uint8)
    for j, t in enumerate(tiles):
        out[:, j * (SIZE + 2) : j * (SIZE + 2) + SIZE] = t
    return out


def _table(scale: float, add: np.ndarray) -> np.ndarray:
    """``[3, 256]``: value -> value * scale + add (per channel), as the strips' point tables."""
    return np.clip(np.arange(256, dtype=np.float32)[None] * scale + add[:, None], 0, 255).astype(np.uint8)


def _reference_exemplar(world: _World, u: int, th: torch.Tensor) -> np.ndarray:
    """The whole strip at once: every unit's maps upsampled on their own, dimmed outside, outlined."""
    idx = [i for i in _IMAGES[u].tolist() if i >= 0]
    picture = _strip_of([world.pixels[i] for i in idx], 255)
    masks = upsample_masks(torch.from_numpy(world.maps[idx, u]), th[u].expand(len(idx)), (SIZE, SIZE)).numpy()
    mask = _strip_of(list(masks), False) if idx else np.zeros(picture.shape[:2], bool)
    tiles = _strip_of([np.ones((SIZE, SIZE), bool)] * len(idx), False) if idx else mask
    dim = _table(0.3, np.full(3, 20, np.float32))
    out = picture.copy()
    for ch in range(3):
        out[..., ch] = np.where(tiles & ~mask, dim[ch][picture[..., ch]], picture[..., ch])
    out[_outline(mask, 1)] = YELLOW
    return out


@pytest.mark.parametrize("box_area", [0, 4, 10**9])  # pixel by pixel; either, by the mask; on the box
def test_exemplar_strips_equal_the_whole_strip_composited_at_once(box_area, monkeypatch):
    monkeypatch.setattr(ex, "_BOX_AREA", box_area)
    world = _World()
    source, th = world.source(), _thresholds(world)
    thumbs = ex.Thumbnails(source.picture, SIZE)
    packed = ex._exemplar_masks(_IMAGES, ex._exemplar_maps(_IMAGES, "conv", source.maps), th, SIZE)
    assert 3 not in packed and 4 not in packed and {0, 1, 2} <= packed.keys()
    for u in range(C):
        idx = [i for i in _IMAGES[u].tolist() if i >= 0]
        got = ex._rgb(ex._exemplar_strip(thumbs, idx, K, packed.get(u)))
        assert np.array_equal(got, _reference_exemplar(world, u, th)), u
    # unit 2's masks reach the tile's top edge: outlined there, on the first row
    strip = ex._rgb(ex._exemplar_strip(thumbs, [4, 0, 1], K, packed[2]))
    assert (strip[0, SIZE + 2 : 2 * SIZE + 2] == YELLOW).all(1).sum() > SIZE // 2


def test_concept_strips_equal_the_whole_strip_tinted_at_once():
    world = _World()
    thumbs = ex.Thumbnails(world.source().picture, SIZE)
    hits: dict = {}
    for i in range(N):
        ex._add_hits(hits, i, world.planes[i], {int(x) for x in world.image_labels[i]}, {2, 4})
    tint = _table(0.55, ex._MASK_RGB * 0.45)
    for idx, label in (([0, 1, 2], 2), ([5, 3], 4), ([], 2)):
        masks = [ex._label_mask(hits[i, label], SIZE) for i in idx]
        got = ex._rgb(ex._concept_strip(thumbs, idx, K, masks))
        picture = _strip_of([world.pixels[i] for i in idx], 255)
        mask = _strip_of(masks, False) if idx else np.zeros(picture.shape[:2], bool)
        want = picture.copy()
        for ch in range(3):
            want[..., ch] = np.where(mask, tint[ch][picture[..., ch]], picture[..., ch])
        want[_outline(mask, 2)] = CYAN
        assert np.array_equal(got, want), (idx, label)
        if label == 4:  # image 5 has label 4 at image level: its whole tile tinted, image 3 (no label 4) untouched
            assert mask[:, :SIZE].all() and not mask[:, SIZE:].any()


def test_outline_equals_the_padded_erosion():
    g = np.random.default_rng(0)
    for shape in ((1, 1), (1, 7), (6, 1), (9, 13), (40, 40)):
        for density in (0.3, 0.8, 1.0):
            mask = g.random(shape) < density
            for width in (1, 2):
                assert np.array_equal(ex._outline(mask, width), _outline(mask, width)), (shape, density, width)


class _Dissected:
    best_label = np.array([2, 4, 0, 2, 2])
    detectors = np.array([True, True, False, False, True])

    def concept(self, u: int) -> str | None:
        return {2: "two", 4: "four"}.get(int(self.best_label[u]))


def test_one_layers_strips_alone_are_the_files_write_unit_strips_writes(tmp_path, monkeypatch):
    world = _World()
    th = _thresholds(world)
    tops = {"conv": (None, _IMAGES)}
    paths, rows = ex.write_unit_strips(
        tmp_path / "all",
        world.source(),
        ["conv"],
        {"conv": "l0"},
        tops,
        thresholds={"conv": th},
        dissected={"conv": _Dissected()},
        detectors_only=True,
    )
    assert paths == {"conv": [f"images/l0/unit{u:04d}.jpg" for u in range(C)]}
    assert rows == {"conv": [{"unit": u, "path": f"images/l0/unit{u:04d}_concept.jpg"} for u in (0, 1, 4)]}
    alone = ex.write_layer_strips(tmp_path / "alone", world.source(), "conv", "l0", _IMAGES, th, [3, 1])
    assert alone == ["images/l0/unit0003.jpg", "images/l0/unit0001.jpg"]
    assert sorted(p.name for p in (tmp_path / "alone/images/l0").iterdir()) == ["unit0001.jpg", "unit0003.jpg"]
    for p in alone:
        assert (tmp_path / "alone" / p).read_bytes() == (tmp_path / "all" / p).read_bytes(), p
    # every unit, in groups of 2 units (masks found and drawn a group at a time), sharing a thumbnail
    # cache: the whole layer's files again
    monkeypatch.setattr(ex, "_GROUP", 2)
    # serial: two threads asking for one tile at once may both decode it (Thumbnails allows it), so
    # the count of decodes below is exact only without threads (the files are the same either way)
    monkeypatch.setattr(ex, "_in_threads", lambda fn, items, gate=None: [fn(x) for x in items])
    source, decoded = world.source(), []
    picture = source.picture
    source.picture = lambda i: decoded.append(i) or picture(i)
    thumbs = ex.Thumbnails(source.picture, SIZE)
    every = ex.write_layer_strips(tmp_path / "every", source, "conv", "l0", _IMAGES, th, thumbs=thumbs)
    # then the concept strips alone, through the same thumbnails: each image decoded once for both
    no_paths, again = ex.write_unit_strips(
        tmp_path / "every",
        source,
        ["conv"],
        {"conv": "l0"},
        tops,
        dissected={"conv": _Dissected()},
        detectors_only=True,
        thumbs=thumbs,
    )
    assert every == paths["conv"] and no_paths == {} and again == rows
    assert sorted(decoded) == sorted(set(_IMAGES.flatten().tolist()) - {-1})
    for p in every + [r["path"] for r in rows["conv"]]:
        assert (tmp_path / "every" / p).read_bytes() == (tmp_path / "all" / p).read_bytes(), p


def test_thumbnails_and_their_tiles_go_with_the_last_reference():
    """No reference cycle: a layer's decoded tiles (hundreds of MB) are freed when the strips drop
    their Thumbnails, not at some later collection (repeated dissections in one process held every
    earlier run's tiles)."""
    import gc
    import weakref

    thumbs = ex.Thumbnails(_World().source().picture, SIZE)
    tile = thumbs.dimmed(0)
    assert tile.shape == (SIZE, SIZE)
    gone, tile_gone = weakref.ref(thumbs), weakref.finalize(thumbs.tile(0), lambda: None)
    del tile
    enabled = gc.isenabled()
    gc.disable()  # refcounting alone, no collector
    try:
        del thumbs
        assert gone() is None and not tile_gone.alive
    finally:
        if enabled:
            gc.enable()
