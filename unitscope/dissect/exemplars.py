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
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO
from typing import Any

import numpy as np
import torch

from unitscope.dissect.iou import mask_pixel_lists
from unitscope.dissect.sources import ActivationSource, Items, LabelSource, collate_items
from unitscope.runs import IMAGES, atomic_write_bytes

_THUMB = 224  # px per exemplar at most: a 224 px data set's images stay sharp at full size on the unit page
_MIN_THUMB = 64  # tiny test images are still drawn large enough to see a mask
# thumbnails kept decoded (at most 154 MB at 224 px): units are drawn in unit order and their
# exemplars spread over the data set, so a cache smaller than the images in use misses on nearly
# every tile (256 entries: 15,252 decodes for 21,920 tiles of a 300-image run)
_THUMB_CACHE = 1024


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


def _thumbnails(picture: Callable[[int], Any], size: int):
    """``thumb(i) -> [size, size, 3] uint8`` with a small cache (the same images recur across units)."""
    from PIL import Image

    @lru_cache(maxsize=_THUMB_CACHE)
    def thumb(i: int) -> np.ndarray:
        image = picture(i)
        image = image if image.mode == "RGB" else image.convert("RGB")
        if image.size != (size, size):  # a 224 px world at 224 px tiles needs no resampling
            image = image.resize((size, size), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)

    return thumb


def _place(tiles: list[np.ndarray], k: int, size: int, fill: int | bool) -> np.ndarray:
    """``k`` slots of ``size`` px side by side, 2 px apart: ``tiles`` in the first slots, ``fill`` in
    the gaps and in slots without a tile. An int ``fill`` places RGB tiles ``[size, size, 3]``
    uint8, a bool one masks ``[size, size]``."""
    rgb = not isinstance(fill, bool)
    out = np.full((size, k * (size + 2), *((3,) if rgb else ())), fill, dtype=np.uint8 if rgb else bool)
    for j, tile in enumerate(tiles):
        out[:, j * (size + 2) : j * (size + 2) + size] = tile
    return out


def _save_strip(run_dir, rel: str, strip) -> None:
    """``strip``: a PIL image or ``[H, W, 3]`` uint8."""
    from PIL import Image

    buf = BytesIO()
    (strip if isinstance(strip, Image.Image) else Image.fromarray(strip)).save(buf, format="JPEG", quality=85)
    atomic_write_bytes(run_dir / rel, buf.getvalue(), fsync=False)  # made again by a rerun: no flush per file


def write_exemplar_strips(run_dir, dataset, layers, tag, forward, cache, thresholds, tops) -> dict[str, list[str]]:
    """One JPEG per unit: its top-k images, the region above T_k bright and outlined, the rest dimmed.

    Memory stays bounded whatever the data set size: only the k maps of each unit are kept, and
    thumbnails come through a small cache. ``dataset``: a :class:`StripSource` or a data set
    (maps from ``cache`` or ``forward``, as :func:`write_unit_strips`).
    """
    return write_unit_strips(run_dir, dataset, layers, tag, tops, forward=forward, cache=cache, thresholds=thresholds)[
        0
    ]


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
) -> tuple[dict[str, list[str]], dict[str, list[dict]]]:
    """Both strips of every unit in one pass over its top-k images, each thumbnail decoded once:
    the exemplar strip (when ``thresholds`` is given) and the ground-truth strip of the unit's
    concept (when ``dissected`` is given, see :func:`write_concept_strips`; with ``detectors_only``,
    only for units whose IoU passes the cut-off: a non-detector's best label is not a label the
    report stands behind). ``source``: a :class:`StripSource` (:func:`strip_source`), or a data set
    with maps from ``cache`` (``read(tag, positions)``) or ``forward``.
    Returns ``({layer: [path per unit]}, {layer: [{"unit", "path"}]})``.
    """
    source = _dataset_source(source, tag, forward, cache)
    size = thumb_size(source)
    thumb = _thumbnails(source.picture, size)
    wanted = _concept_units(layers, dissected, detectors_only) if dissected is not None else {}
    if dissected is not None and source.labels is None:
        raise ValueError("concept strips need label planes: a StripSource with labels")
    hits = (
        _concept_hits(source.labels, _wanted_concepts(layers, tops, dissected, wanted)) if dissected is not None else {}
    )
    strips: dict[str, list[str]] = {}
    concept_rows: dict[str, list[dict]] = {}
    for layer in layers:
        images = tops[layer][1].cpu()
        c, k = images.shape
        filled = [_place([np.ones((size, size), bool)] * n, k, size, False) for n in range(k + 1)]  # where n tiles are
        if thresholds is not None and source.maps is None:
            raise ValueError("exemplar strips need the units' maps: a StripSource with maps")
        maps = _exemplar_maps(images, layer, source.maps) if thresholds is not None else {}  # (image, unit) -> [h, w]
        unit_masks = _exemplar_masks(images, maps, thresholds[layer], size) if thresholds is not None else {}
        d = dissected[layer] if dissected is not None else None
        strip_units = wanted.get(layer, ())

        def render(
            u: int,
            layer: str = layer,
            images: torch.Tensor = images,
            k: int = k,
            unit_masks: dict = unit_masks,
            d=d,
            strip_units=strip_units,
            filled=filled,
        ) -> tuple[str | None, str | None]:
            idx = [int(i) for i in images[u].tolist() if i >= 0]
            picture = _place([thumb(i) for i in idx], k, size, 255)
            exemplar = concept = None
            if thresholds is not None:
                masks = []
                if idx:
                    masks = list(_unpack_masks(unit_masks.get(u), len(idx), size))
                tiles = filled[len(idx)]
                exemplar = f"{IMAGES}/{tag[layer]}/unit{u:04d}.jpg"
                _save_strip(run_dir, exemplar, _highlight(picture, _place(masks, k, size, False), tiles))
            if u in strip_units:
                label = int(d.best_label[u])
                concept = f"{IMAGES}/{tag[layer]}/unit{u:04d}_concept.jpg"
                mask = _place([_label_mask(hits[i, label], size) for i in idx], k, size, False)
                _save_strip(run_dir, concept, _tint(picture, mask))
            return exemplar, concept

        done = _in_threads(render, range(c))
        if thresholds is not None:
            strips[layer] = [e for e, _ in done]
        if d is not None:
            concept_rows[layer] = [{"unit": u, "path": p} for u, (_, p) in enumerate(done) if p is not None]
    return strips, concept_rows


def _in_threads(fn, items) -> list:
    """``[fn(x) for x in items]`` on a thread per core (at most 16): image decoding, PIL's
    compositing, JPEG encoding and the large NumPy operations of a strip release the GIL, so the
    strips use every core."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(16, os.cpu_count() or 1))) as pool:
        return list(pool.map(fn, items))


# value -> dimmed value, per channel (a PIL point table)
_DIM = np.tile(np.clip(np.arange(256, dtype=np.float32) * 0.3 + 20, 0, 255).astype(np.uint8), 3).tolist()
_YELLOW = (255, 220, 0)


def _restyle(strip: np.ndarray, region: np.ndarray, table: list[int]):
    """``strip`` as a PIL image with the pixels of ``region`` passed through the point ``table`` (in
    PIL's C loops: several times faster than NumPy's fancy indexing on a 10-tile strip). It stays a
    PIL image until the JPEG is written: no copies back and forth (the same bytes, a quarter less time)."""
    from PIL import Image

    image = Image.fromarray(strip)
    return Image.composite(image.point(table), image, Image.fromarray(region))


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` px inner border of ``mask`` (outside the array counts as outside the mask, so a
    mask that reaches a tile's edge is outlined there too)."""
    inner = mask
    for _ in range(width):
        padded = np.pad(inner, 1, constant_values=False)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def _highlight(strip: np.ndarray, mask: np.ndarray, tiles: np.ndarray):
    """Dim the ``tiles`` outside ``mask``, outline ``mask`` in yellow (gaps stay white)."""
    shown = _restyle(strip, tiles & ~mask, _DIM)
    _paint(shown, _outline(mask, 1), _YELLOW)
    return shown


def _paint(image, where: np.ndarray, color) -> None:
    """The pixels ``where`` of PIL ``image`` set to ``color`` (an RGB triple)."""
    from PIL import Image

    image.paste(tuple(int(c) for c in color), mask=Image.fromarray(where))


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
    images: torch.Tensor, maps: dict[tuple[int, int], torch.Tensor], thresholds: torch.Tensor, size: int
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each unit's exemplar masks (its maps ``maps[image, unit]`` upsampled bilinearly to ``size``
    and thresholded at its T_k), found for many units at once (the windowed masks of
    :func:`~.iou.mask_pixel_lists`, exact where PyTorch's arithmetic is confirmed): ``unit ->
    (exemplar [E], pixel [E])`` of its mask pixels; a unit whose masks are empty is left out."""
    th = thresholds.detach().cpu().float()
    units = [(u, [i for i in row if i >= 0]) for u, row in enumerate(images.tolist())]
    units = [(u, idx) for u, idx in units if idx]
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    step = 256  # units at once: their maps as the channels of one image
    for start in range(0, len(units), step):
        part = units[start : start + step]
        unit_of = torch.tensor([u for u, idx in part for _ in idx])  # [B]: each row's unit
        slot = torch.tensor([j for _, idx in part for j in range(len(idx))])  # [B]: its exemplar
        stacked = torch.stack([maps[i, u] for u, idx in part for i in idx]).float()[None]  # [1, B, h, w]
        rows, pixels = [], []
        for chunk in mask_pixel_lists(stacked, th.index_select(0, unit_of), (size, size)):
            rows.append(chunk.unit.index_select(0, chunk.pair))
            pixels.append(chunk.pix)
        if not rows:
            continue
        row, pix = torch.cat(rows), torch.cat(pixels)
        order = torch.argsort(unit_of.index_select(0, row), stable=True)  # grouped by unit
        row, pix = row[order], pix[order]
        unit = unit_of.index_select(0, row)
        cuts = torch.searchsorted(unit, torch.tensor([u for u, _ in part] + [int(unit_of.max()) + 1]))
        for k, (u, _) in enumerate(part):
            lo, hi = int(cuts[k]), int(cuts[k + 1])
            if hi > lo:
                out[u] = (slot.index_select(0, row[lo:hi]).numpy(), pix[lo:hi].numpy())
    return out


def _unpack_masks(packed: tuple[np.ndarray, np.ndarray] | None, n: int, size: int) -> np.ndarray:
    """``[n, size, size]`` bool from a unit's mask pixels (:func:`_exemplar_masks`)."""
    masks = np.zeros((n, size * size), dtype=bool)
    if packed is not None:
        masks[packed[0], packed[1]] = True
    return masks.reshape(n, size, size)


_MASK_RGB = np.array((0, 229, 255), np.float32)  # cyan: the ground truth, apart from the yellow unit outline
# channel-major point table: each channel's value tinted towards _MASK_RGB
_TINT = np.clip(np.arange(256, dtype=np.float32)[None] * 0.55 + _MASK_RGB[:, None] * 0.45, 0, 255).astype(np.uint8)
_TINT = _TINT.ravel().tolist()


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


def _tint(strip: np.ndarray, mask: np.ndarray):
    """Tint ``mask`` cyan and outline it 2 px wide (still visible when the page shows the strip small)."""
    shown = _restyle(strip, mask, _TINT)
    _paint(shown, _outline(mask, 2), _MASK_RGB.astype(np.uint8))
    return shown
