"""Exemplar strips for unit cards (used by :mod:`unitscope.dissect`'s engine), and the same strips
with the ground-truth mask of each unit's concept.

    source = strip_source(acts, labels, cache=cache, label_cache=label_cache)   # any sources
    strips, concept_rows = write_unit_strips(run_dir, source, layers, tags, tops, thresholds=thresholds,
                                             dissected=result.layers)

One JPEG per unit: its top-k images side by side, the region where the unit's upsampled map
exceeds T_k shown bright with a yellow outline, the rest dimmed. The strips read everything
through a :class:`StripSource`: pictures from :meth:`ActivationSource.picture` (a data set's
images, a generator's samples), maps from the activation cache or the source's forward pass,
label planes from the label cache or the label source (a segmenter on the samples). So any pair
of sources gets strips; a Broden data set (or anything with its ``load_image``/``get``) still
works as the source, and gives the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

import numpy as np
import torch

from unitscope.dissect.iou import mask_pixel_lists
from unitscope.dissect.schedule import Gate
from unitscope.dissect.sources import ActivationSource, Items, LabelSource, collate_items
from unitscope.runs import IMAGES, atomic_writer

_THUMB = 224  # px per exemplar at most: a 224 px data set's images stay sharp at full size on the unit page
_MIN_THUMB = 64  # tiny test images are still drawn large enough to see a mask
# thumbnails kept decoded (at most 154 MB at 224 px): units are drawn in unit order and their
# exemplars spread over the data set, so a cache smaller than the images in use misses on nearly
# every tile (256 entries: 15,252 decodes for 21,920 tiles of a 300-image run)
_THUMB_CACHE = 1024
_BOX_AREA = 4  # a mask whose bounding box is at most this many times its pixels is drawn on its box
_GROUP = 64  # units whose exemplar masks are found at once by one thread (then drawn by it)


Planes = tuple[np.ndarray, np.ndarray]  # one position's label planes [K, S, S'] and image-level labels [M]


@dataclass
class StripSource:
    """What the strips read, by run position: ``picture(pos)`` a PIL image; ``maps(layer, positions)``
    the layer's maps there, ``[n, C, h, w]`` float on the CPU (needed for exemplar strips);
    ``labels(positions)`` each position's label planes in Broden numbering (for concept strips)."""

    picture: Callable[[int], Any]
    maps: Callable[[str, list[int]], torch.Tensor] | None = None
    labels: Callable[[list[int]], list[Planes]] | None = None


def strip_source(
    acts: ActivationSource, labels: LabelSource | None = None, *, cache=None, label_cache=None
) -> StripSource:
    """The strips' view of a dissection's sources: pictures from ``acts.picture``; maps from
    ``cache`` (an :class:`~.cache.ActivationCache`) or else ``acts`` run on the positions; labels
    from a complete ``label_cache`` or else ``labels`` (after ``acts`` ran, for labels of the
    forward pass). Nothing is read until a strip needs it."""

    def batch_of(positions: list[int], with_acts: bool, with_labels: bool) -> dict[str, Any]:
        items = Items(len(acts), acts if with_acts else None, labels if with_labels else None)
        batch = collate_items([items[p] for p in positions])
        if batch["bad"]:
            raise ValueError(f"exemplar strips: {batch['bad'][0][1]}")
        return batch

    def maps(layer: str, positions: list[int]) -> torch.Tensor:
        if cache is not None:
            return torch.from_numpy(cache.read(layer, np.asarray(positions)))
        return acts.activations(batch_of(positions, True, False))[layer].cpu()

    def planes(positions: list[int]) -> list[Planes]:
        if label_cache is not None and label_cache.complete:
            parts = label_cache.read(np.asarray(positions))
        else:
            assert labels is not None
            batch = batch_of(positions, labels.needs_forward, True)
            if labels.needs_forward:
                acts.activations(batch)
            parts = labels.label_batch(batch)
        return list(zip(np.asarray(parts[0]), np.asarray(parts[1])))

    return StripSource(acts.picture, maps, planes if labels is not None or label_cache is not None else None)


def _dataset_source(dataset, tag: dict[str, str], forward=None, cache=None) -> StripSource:
    """A Broden-format data set as a :class:`StripSource`: ``load_image``, ``get`` (or ``[i]``) for the
    planes, maps from ``cache.read(tag, positions)`` or ``forward(images [n, 3, H, W], index [n])``."""
    if isinstance(dataset, StripSource):
        return dataset

    def maps(layer: str, positions: list[int]) -> torch.Tensor:
        if cache is not None:
            return torch.from_numpy(cache.read(tag[layer], np.array(positions)))
        batch = torch.stack([dataset[i]["image"] for i in positions])
        return forward(batch, torch.tensor(positions))[layer].cpu()

    def planes(positions: list[int]) -> list[Planes]:
        items = [dataset.get(i, image=False, labels=True) if hasattr(dataset, "get") else dataset[i] for i in positions]
        return [(np.asarray(it["labels"]), np.asarray(it["image_labels"])) for it in items]

    return StripSource(dataset.load_image, maps if cache is not None or forward is not None else None, planes)


def thumb_size(source) -> int:
    """Pixels per exemplar tile: the source's own image size (its first picture), clamped to
    ``[_MIN_THUMB, _THUMB]``, so a 112 px world does not pay for 224 px tiles it cannot fill.
    ``source``: a :class:`StripSource` or a data set with ``load_image``."""
    picture = source.picture if isinstance(source, StripSource) else source.load_image
    try:
        width, height = picture(0).size
    except Exception:  # noqa: BLE001 - an empty or unreadable set: the strips fail later with a clear error
        return _THUMB
    return max(_MIN_THUMB, min(_THUMB, max(width, height)))


class Thumbnails:
    """The exemplar tiles by run position, each decoded once while it stays in the cache (the same
    images recur across units): ``tile(i)`` the picture at ``size`` px, ``dimmed(i)`` and
    ``tinted(i)`` the same through the dimming and tinting tables (each made on first use), all
    ``[size, size]`` packed RGBX pixels (:func:`_pack`). Shared by threads: a tile two threads ask
    for at once may be made twice, never wrong. ``picture``: run position -> PIL image."""

    def __init__(self, picture: Callable[[int], Any], size: int, capacity: int = _THUMB_CACHE):
        self.picture, self.size = picture, size
        # the cache holds the loader, not ``self``: no reference cycle, so the tiles (hundreds of MB
        # for a layer's exemplars) go as soon as the strips drop the object, not at a later
        # collection of the cycle garbage (three dissections in one process held three layers' tiles)
        self._entry = lru_cache(maxsize=capacity)(partial(_load_tile, picture, size))

    def tile(self, i: int) -> np.ndarray:
        return self._entry(i)[0]

    def dimmed(self, i: int) -> np.ndarray:
        entry = self._entry(i)
        if entry[1] is None:  # every byte through the table (X too: the JPEG encoder ignores it), two at a time
            entry[1] = np.take(_DIM2, entry[0].view(np.uint16)).view(np.uint32)
        return entry[1]

    def tinted(self, i: int) -> np.ndarray:
        entry = self._entry(i)
        if entry[2] is None:  # each channel through its own table
            pixels = entry[0].view(np.uint8).reshape(*entry[0].shape, 4)
            out = np.empty_like(pixels)
            for c in range(3):
                np.take(_TINT[c], pixels[..., c], out=out[..., c])
            out[..., 3] = 255
            entry[2] = out.view(np.uint32)[..., 0]
        return entry[2]


def _load_tile(picture: Callable[[int], Any], size: int, i: int) -> list:
    """A :class:`Thumbnails` entry: ``[tile, None, None]`` (the dimmed and tinted tiles made on
    first use), the picture of run position ``i`` at ``size`` px as packed RGBX pixels."""
    from PIL import Image

    image = picture(i)
    image.load()  # decoded now: a lazily opened file is not held open in the cache
    image = image if image.mode == "RGB" else image.convert("RGB")
    if image.size != (size, size):  # a 224 px world at 224 px tiles needs no resampling
        image = image.resize((size, size), Image.BILINEAR)
    # PIL's own RGBX bytes, one copy (15x faster than packing an RGB array); read-only, never written
    tile = np.frombuffer(image.tobytes("raw", "RGBX"), np.uint32).reshape(size, size)
    return [tile, None, None]


def _pack(rgb: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[H, W]`` uint32, each pixel's RGBX bytes (X = 255; the strips never
    read it) in one element (PIL's own layout: a strip of them is encoded without a copy, and a
    pixel moves in one step)."""
    out = np.full((*rgb.shape[:2], 4), 255, np.uint8)
    out[..., :3] = rgb
    return out.view(np.uint32)[..., 0]


def _rgb(packed: np.ndarray) -> np.ndarray:
    """``[H, W]`` packed RGBX pixels (:func:`_pack`) -> ``[H, W, 3]`` uint8."""
    return np.ascontiguousarray(packed).view(np.uint8).reshape(*packed.shape, 4)[..., :3]


def _save_strip(run_dir, rel: str, strip: np.ndarray) -> None:
    """``strip``: ``[H, W]`` packed RGBX pixels (:func:`_pack`), encoded in place, straight into the
    file: PIL's JPEG encoder lets other threads run while it writes to a file descriptor, not while
    it fills a buffer (2 threads encoding into ``BytesIO`` took 2.4x the time of one, into files 1.3x)."""
    from PIL import Image

    image = Image.frombuffer("RGBX", (strip.shape[1], strip.shape[0]), np.ascontiguousarray(strip), "raw", "RGBX", 0, 1)
    with atomic_writer(run_dir / rel, fsync=False) as f:  # made again by a rerun: no flush per file
        image.save(f, format="JPEG", quality=85)


def write_exemplar_strips(run_dir, dataset, layers, tag, forward, cache, thresholds, tops) -> dict[str, list[str]]:
    """One JPEG per unit: its top-k images, the region above T_k bright and outlined, the rest dimmed.

    Memory stays bounded whatever the data set size: only the k maps of each unit are kept, and
    thumbnails come through a small cache. ``dataset``: a :class:`StripSource` or a data set
    (maps from ``cache`` or ``forward``, as :func:`write_unit_strips`).
    """
    return write_unit_strips(run_dir, dataset, layers, tag, tops, forward=forward, cache=cache, thresholds=thresholds)[
        0
    ]


def write_layer_strips(
    run_dir,
    source: StripSource,
    layer: str,
    tag: str,
    images: torch.Tensor,
    thresholds: torch.Tensor,
    units: Sequence[int] | None = None,
    *,
    thumbs: Thumbnails | None = None,
    gate: Gate | None = None,
) -> list[str]:
    """The exemplar strips of one layer's units from its top-k and thresholds alone (e.g. in a
    background thread as soon as pass 2 has them): the same files :func:`write_unit_strips` writes
    for them. ``images [C, k]``: each unit's top-k run positions (-1: none), ``thresholds [C]``:
    its T_k, ``units``: which units (default all), ``tag``: the layer's folder under ``images/``,
    ``source``: a :class:`StripSource` with maps, ``thumbs``: a :class:`Thumbnails` to share
    decoded tiles with other calls, ``gate``: a :class:`~.schedule.Gate` each group of strips is
    drawn in (the cores the caller leaves). Returns each unit's strip path (relative to
    ``run_dir``), in ``units`` order."""
    if source.maps is None:
        raise ValueError("exemplar strips need the units' maps: a StripSource with maps")
    thumbs = thumbs if thumbs is not None else Thumbnails(source.picture, thumb_size(source))
    units = list(range(images.shape[0])) if units is None else [int(u) for u in units]
    chosen = images.cpu()[units] if units else images.cpu()[:0]
    th = thresholds.detach().cpu().float()[units]
    maps = _exemplar_maps(chosen, layer, source.maps)
    k = int(images.shape[1])

    def render(rows: range) -> list[str]:  # a group's masks found together, then drawn, on one thread
        packed = _exemplar_masks(chosen, maps, th, thumbs.size, rows)
        paths = []
        for row in rows:
            idx = [int(i) for i in chosen[row].tolist() if i >= 0]
            paths.append(f"{IMAGES}/{tag}/unit{units[row]:04d}.jpg")
            _save_strip(run_dir, paths[-1], _exemplar_strip(thumbs, idx, k, packed.get(row)))
        return paths

    return [path for part in _in_threads(render, _groups(len(units)), gate) for path in part]


def _exemplar_strip(
    thumbs: Thumbnails, idx: list[int], k: int, packed: tuple[np.ndarray, np.ndarray] | None
) -> np.ndarray:
    """A unit's exemplar strip ``[size, k * (size + 2)]`` (packed RGBX pixels, :func:`_pack`): the
    tiles of ``idx`` dimmed, each one's mask pixels (``packed``: each tile's first ``[n + 1]`` and
    pixel ``[E]``, :func:`_exemplar_masks`) as they were, or yellow where a mask pixel has a 4-neighbour outside the
    mask (the outline, as :func:`_outline`); gaps and empty slots white. NumPy on the cached tiles:
    a compact mask (its bounding box at most ``_BOX_AREA`` times its pixels) drawn on its box, a
    scattered one pixel by pixel, so the cost follows the mask's pixels, not its box's area."""
    size = thumbs.size
    strip = _blank_strip(size, k, len(idx))
    for j, i in enumerate(idx):
        strip[:, j * (size + 2) : j * (size + 2) + size] = thumbs.dimmed(i)
    flat = strip.reshape(-1)
    wide = size + 2  # the mask drawn on a tile padded by one pixel: outside it counts as outside the mask
    canvas = np.zeros(wide * wide, bool)
    for j, pix in _tile_pixels(packed, len(idx)):
        row = pix // size
        col = pix - row * size
        y0, y1, x0, x1 = int(row.min()), int(row.max()) + 1, int(col.min()), int(col.max()) + 1
        if (y1 - y0) * (x1 - x0) <= _BOX_AREA * len(pix):
            _draw_on_box(strip[:, j * wide : j * wide + size], thumbs.tile(idx[j]), row, col, (y0, y1, x0, x1))
            continue
        at = pix + row * 2 + (wide + 1)  # [P]: each pixel on the padded canvas
        canvas[at] = True
        inner = canvas[at - 1] & canvas[at + 1] & canvas[at - wide] & canvas[at + wide]
        canvas[at] = False
        values = np.where(inner, thumbs.tile(idx[j]).reshape(-1)[pix], _YELLOW)
        flat[pix + row * (strip.shape[1] - size) + j * wide] = values
    return strip


def _draw_on_box(
    place: np.ndarray, tile: np.ndarray, row: np.ndarray, col: np.ndarray, box: tuple[int, int, int, int]
) -> None:
    """One tile's mask (pixels at ``row``, ``col``, inside ``box`` = y0, y1, x0, x1) drawn on
    ``place`` ``[size, size]`` (the tile's place in the strip, dimmed): inside the mask ``tile``'s
    pixels, on its outline (:func:`_outline` of the mask cut to its box: past the box's edge no
    pixel is in the mask) yellow."""
    y0, y1, x0, x1 = box
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    mask[row - y0, col - x0] = True
    edge = _outline(mask, 1)
    out = place[y0:y1, x0:x1]
    np.copyto(out, tile[y0:y1, x0:x1], where=mask & ~edge)
    out[edge] = _YELLOW


def _blank_strip(size: int, k: int, filled: int = 0) -> np.ndarray:
    """``[size, k * (size + 2)]`` packed RGBX pixels, white but for the places of the first ``filled``
    tiles (left unset: the caller fills them)."""
    strip = np.empty((size, k * (size + 2)), np.uint32)
    strip.reshape(size, k, size + 2)[:, :filled, size:] = _WHITE  # the gaps after them
    strip[:, filled * (size + 2) :] = _WHITE
    return strip


def _tile_pixels(packed: tuple[np.ndarray, np.ndarray] | None, n: int):
    """``(tile, pixel [P])`` of each of the ``n`` tiles with mask pixels in ``packed`` (``first
    [n + 1]``, ``pixel [E]``: :func:`_exemplar_masks`)."""
    if packed is None:
        return
    first, pix = packed
    for j in range(min(n, len(first) - 1)):
        if first[j + 1] > first[j]:
            yield j, pix[first[j] : first[j + 1]]


def write_unit_strips(
    run_dir,
    source,
    layers,
    tag,
    tops,
    *,
    forward=None,
    cache=None,
    thresholds=None,
    dissected=None,
    detectors_only: bool = False,
    thumbs: Thumbnails | None = None,
    gate: Gate | None = None,
) -> tuple[dict[str, list[str]], dict[str, list[dict]]]:
    """Both strips of every unit, each thumbnail decoded once for both: the exemplar strip (when
    ``thresholds`` is given, :func:`write_layer_strips`) and the ground-truth strip of the unit's
    concept (when ``dissected`` is given, see :func:`write_concept_strips`; with ``detectors_only``,
    only for units whose IoU passes the cut-off: a non-detector's best label is not a label the
    report stands behind). ``source``: a :class:`StripSource` (:func:`strip_source`), or a data set
    with maps from ``cache`` (``read(tag, positions)``) or ``forward``; ``thumbs``: a
    :class:`Thumbnails` shared with earlier calls (e.g. :func:`write_layer_strips` in the background);
    ``gate``: as :func:`write_layer_strips`.
    Returns ``({layer: [path per unit]}, {layer: [{"unit", "path"}]})``.
    """
    source = _dataset_source(source, tag, forward, cache)
    thumbs = thumbs if thumbs is not None else Thumbnails(source.picture, thumb_size(source))
    wanted = _concept_units(layers, dissected, detectors_only) if dissected is not None else {}
    if dissected is not None and source.labels is None:
        raise ValueError("concept strips need label planes: a StripSource with labels")
    if thresholds is not None and source.maps is None:
        raise ValueError("exemplar strips need the units' maps: a StripSource with maps")
    hits = (
        _concept_hits(source.labels, _wanted_concepts(layers, tops, dissected, wanted)) if dissected is not None else {}
    )
    strips: dict[str, list[str]] = {}
    concept_rows: dict[str, list[dict]] = {}
    for layer in layers:
        images = tops[layer][1].cpu()
        if thresholds is not None:
            strips[layer] = write_layer_strips(
                run_dir, source, layer, tag[layer], images, thresholds[layer], thumbs=thumbs, gate=gate
            )
        if dissected is not None:
            units = sorted(wanted.get(layer, ()))
            labels = dissected[layer].best_label

            def render(u: int, layer: str = layer, images: torch.Tensor = images, labels=labels) -> dict:
                idx = [int(i) for i in images[u].tolist() if i >= 0]
                path = f"{IMAGES}/{tag[layer]}/unit{u:04d}_concept.jpg"
                masks = [_label_mask(hits[i, int(labels[u])], thumbs.size) for i in idx]
                _save_strip(run_dir, path, _concept_strip(thumbs, idx, int(images.shape[1]), masks))
                return {"unit": u, "path": path}

            concept_rows[layer] = _in_threads(render, units, gate)
    return strips, concept_rows


def _concept_strip(thumbs: Thumbnails, idx: list[int], k: int, masks: list[np.ndarray]) -> np.ndarray:
    """The tiles of ``idx`` with ``masks [size, size]`` (the concept's ground truth) tinted cyan and
    outlined 2 px wide (still visible when the page shows the strip small); gaps and empty slots white.
    ``[size, k * (size + 2)]`` packed RGBX pixels (:func:`_pack`), from the cached tiles (only each
    mask's bounding box composited)."""
    size = thumbs.size
    strip = _blank_strip(size, k, min(len(idx), len(masks)))
    for j, (i, mask) in enumerate(zip(idx, masks)):
        strip[:, j * (size + 2) : j * (size + 2) + size] = thumbs.tile(i)
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if not len(rows):
            continue
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        inside = mask[y0:y1, x0:x1]
        at = strip[y0:y1, j * (size + 2) + x0 : j * (size + 2) + x1]
        np.copyto(at, thumbs.tinted(i)[y0:y1, x0:x1], where=inside)
        at[_outline(inside, 2)] = _CYAN
    return strip


def _groups(n: int) -> list[range]:
    """``range(n)`` cut into groups of at most ``_GROUP``, as many as a multiple of the threads of
    :func:`_in_threads`, so that no thread draws the last group alone (320 units on 2 threads: 6
    groups of 53-54, not 5 of 64)."""
    threads = _threads()
    count = -(-n // _GROUP)
    count = -(-count // threads) * threads
    cuts = [n * i // count for i in range(count + 1)] if n else [0]
    return [range(lo, hi) for lo, hi in zip(cuts, cuts[1:]) if hi > lo]


def _threads() -> int:
    return max(1, min(16, os.cpu_count() or 1))


def _in_threads(fn, items, gate: Gate | None = None) -> list:
    """``[fn(x) for x in items]`` on a thread per core (at most 16): image decoding, PIL's
    compositing, JPEG encoding into a file (:func:`_save_strip`) and the large NumPy operations of a
    strip release the GIL, so the strips use every core. ``gate``: each call runs inside it (at
    most ``gate.limit`` at once: the cores the dissection's passes leave)."""
    from concurrent.futures import ThreadPoolExecutor

    def call(x):
        if gate is None:
            return fn(x)
        with gate:
            return fn(x)

    with ThreadPoolExecutor(max_workers=_threads()) as pool:
        return list(pool.map(call, items))


# value -> dimmed value, the same for every channel (taken byte by byte: ``Thumbnails.dimmed``)
_DIM = np.clip(np.arange(256, dtype=np.float32) * 0.3 + 20, 0, 255).astype(np.uint8)
# the same table on pairs of bytes (each byte of a uint16 through _DIM, whatever the byte order): one
# lookup dims two bytes, 0.08 ms a 224 px tile against 0.15 ms byte by byte
_DIM2 = _DIM[np.arange(1 << 16) & 255].astype(np.uint16) | _DIM[np.arange(1 << 16) >> 8].astype(np.uint16) << 8
_YELLOW = _pack(np.array([[(255, 220, 0)]], np.uint8))[0, 0]
_WHITE = _pack(np.full((1, 1, 3), 255, np.uint8))[0, 0]


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` px inner border of ``mask`` (outside the array counts as outside the mask, so a
    mask that reaches a tile's edge is outlined there too): each step keeps the pixels whose 4
    neighbours all passed the previous one."""
    inner = mask
    for _ in range(width):
        eroded = np.zeros_like(inner)
        core = eroded[1:-1, 1:-1]  # the border has a neighbour outside
        np.logical_and(inner[:-2, 1:-1], inner[2:, 1:-1], out=core)
        core &= inner[1:-1, :-2]
        core &= inner[1:-1, 2:]
        inner = eroded
    return mask & ~inner


def _exemplar_maps(
    images: torch.Tensor, layer: str, read: Callable[[str, list[int]], torch.Tensor] | None, chunk: int = 32
) -> dict[tuple[int, int], torch.Tensor]:
    """The map ``[h, w]`` of each (exemplar image, unit) pair of ``images [C, k]``: ``read(layer,
    positions)`` (the activation cache, or the source run on the exemplar images only)."""
    assert read is not None
    needed: dict[int, list[int]] = {}
    for u, row in enumerate(images.tolist()):
        for i in row:
            if i >= 0:
                needed.setdefault(i, []).append(u)
    order = sorted(needed)
    maps: dict[tuple[int, int], torch.Tensor] = {}
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        acts = read(layer, part)
        for i, a in zip(part, acts):
            for u in needed[i]:
                maps[i, u] = a[u].clone()
    return maps


def _exemplar_masks(
    images: torch.Tensor,
    maps: dict[tuple[int, int], torch.Tensor],
    thresholds: torch.Tensor,
    size: int,
    rows: Iterable[int] | None = None,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each unit's exemplar masks (its maps ``maps[image, unit]`` upsampled bilinearly to ``size``
    and thresholded at its T_k), found for many units at once (the windowed masks of
    :func:`~.iou.mask_pixel_lists`, exact where PyTorch's arithmetic is confirmed): ``unit ->
    (first [n + 1], pixel [E])``, exemplar j's mask pixels ``pixel[first[j]:first[j + 1]]`` (int32)
    for its ``n`` exemplars; a unit whose masks are empty is left out. The pixels are cut by each
    map's count, never labelled one by one (16 M pixels for ``blocks.6``'s 320 units at 224 px).
    ``images [C, k]``; ``rows``: the units to do (default all)."""
    th = thresholds.detach().cpu().float()
    rows = range(len(images)) if rows is None else rows
    units = [(u, [i for i in images[u].tolist() if i >= 0]) for u in rows]
    units = [(u, idx) for u, idx in units if idx]
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    step = 256  # units at once: their maps as the channels of one image
    for start in range(0, len(units), step):
        part = units[start : start + step]
        unit_of = torch.tensor([u for u, idx in part for _ in idx])  # [B]: each row's unit
        first = np.cumsum([0] + [len(idx) for _, idx in part])  # [U + 1]: each unit's first row
        stacked = torch.stack([maps[i, u] for u, idx in part for i in idx]).float()[None]  # [1, B, h, w]
        count = torch.zeros(len(unit_of), dtype=torch.long)  # [B]: each row's mask pixels
        pixels = []
        for chunk in mask_pixel_lists(stacked, th.index_select(0, unit_of), (size, size)):
            pair, pix = chunk.pair, chunk.pix
            if len(pair) > 1 and not bool((pair[1:] >= pair[:-1]).all()):  # the kernels list them by pair
                order = torch.argsort(pair, stable=True)
                pair, pix = pair[order], pix[order]
            count.index_add_(0, chunk.unit, torch.bincount(pair, minlength=len(chunk.unit)))
            pixels.append(pix.to(torch.int32))
        if not pixels:
            continue
        # the chunks' pairs are the rows in order (one image: pairs by unit), so the pixels are too
        pix = torch.cat(pixels).numpy()
        ends = np.concatenate([[0], np.cumsum(count.numpy())])  # [B + 1]
        for k, (u, _) in enumerate(part):
            lo, hi = ends[first[k]], ends[first[k + 1]]
            if hi > lo:
                out[u] = (ends[first[k] : first[k + 1] + 1] - lo, pix[lo:hi])
    return out


def _unpack_masks(packed: tuple[np.ndarray, np.ndarray] | None, n: int, size: int) -> np.ndarray:
    """``[n, size, size]`` bool from a unit's mask pixels (:func:`_exemplar_masks`)."""
    masks = np.zeros((n, size * size), dtype=bool)
    for j, pix in _tile_pixels(packed, n):
        masks[j, pix] = True
    return masks.reshape(n, size, size)


_MASK_RGB = np.array((0, 229, 255), np.float32)  # cyan: the ground truth, apart from the yellow unit outline
# value -> tinted value towards _MASK_RGB, per channel (``[3, 256]``: ``_TINT[c][value]``)
_TINT = np.clip(np.arange(256, dtype=np.float32)[None] * 0.55 + _MASK_RGB[:, None] * 0.45, 0, 255).astype(np.uint8)
_CYAN = _pack(_MASK_RGB.astype(np.uint8)[None, None])[0, 0]


def write_concept_strips(run_dir, source, layers, tag, tops, dissected) -> dict[str, list[dict]]:
    """The exemplar strips again, each image with the ground-truth mask of its unit's concept tinted
    and outlined in cyan (the report's mask toggle). ``dissected[layer]`` is the layer's
    :class:`~unitscope.dissect.LayerDissection`; units without a concept get no strip.

    Returns ``{layer: [{"unit", "path"}]}``, the ``concept_images`` rows.
    """
    return write_unit_strips(run_dir, source, layers, tag, tops, dissected=dissected)[1]


def _concept_units(layers, dissected, detectors_only: bool) -> dict[str, set[int]]:
    """``layer -> the units that get a concept strip``: those with a concept (and a detector's IoU)."""
    out = {}
    for layer in layers:
        d = dissected[layer]
        units = {u for u in range(len(d.best_label)) if d.concept(u)}
        if detectors_only:
            units &= set(np.flatnonzero(d.detectors).tolist())
        out[layer] = units
    return out


def _wanted_concepts(layers, tops, dissected, units: dict[str, set[int]]) -> dict[int, set[int]]:
    """``image -> the concept labels`` the concept strips of ``units[layer]`` need."""
    wanted: dict[int, set[int]] = {}
    for layer in layers:
        d, images = dissected[layer], tops[layer][1].cpu()
        for u, row in enumerate(images.tolist()):
            if u in units[layer]:
                for i in row:
                    if i >= 0:
                        wanted.setdefault(i, set()).add(int(d.best_label[u]))
    return wanted


def _concept_hits(
    read: Callable[[list[int]], list[Planes]], wanted: dict[int, set[int]], chunk: int = 32
) -> dict[tuple[int, int], tuple | None]:
    """``(image, label) ->`` where the label's pixels are (``[sh, sw]`` bool at label-plane resolution,
    bit-packed with its shape so thousands of exemplars stay small), or None for an image-level
    label; each image's label planes are read once (``read(positions)``), in image order."""
    hits: dict[tuple[int, int], tuple | None] = {}
    order = sorted(wanted)
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        for i, (planes, labels) in zip(part, read(part)):
            _add_hits(hits, i, planes, {int(x) for x in labels.ravel()}, wanted[i])
    return hits


def _add_hits(
    hits: dict[tuple[int, int], tuple | None], i: int, planes: np.ndarray, image_labels: set[int], wanted: set[int]
) -> None:
    for label in wanted:
        if label in image_labels:
            hits[i, label] = None
        else:
            hit = (planes == label).any(axis=0) if planes.size else np.zeros((1, 1), bool)
            hits[i, label] = (np.packbits(hit), hit.shape)


def _label_mask(packed: tuple | None, size: int) -> np.ndarray:
    """``[size, size]`` bool: a packed hit mask (see :func:`_concept_hits`) nearest-neighbour scaled,
    or (None, an image-level label) the whole image."""
    if packed is None:
        return np.ones((size, size), bool)
    bits, (sh, sw) = packed
    hit = np.unpackbits(bits, count=sh * sw).reshape(sh, sw).astype(bool)
    ys = np.arange(size) * sh // size
    xs = np.arange(size) * sw // size
    return hit[ys][:, xs]
