"""Exemplar strips for unit cards (private; used by :mod:`unitscope.dissect`), and the same strips
with the ground-truth mask of each unit's concept (``write_concept_strips``).

    paths = write_exemplar_strips(run_dir, dataset, layers, tags, forward, cache, thresholds, tops)

One JPEG per unit: its top-k images side by side, the region where the unit's upsampled map
exceeds T_k shown bright with a yellow outline, the rest dimmed.
"""

from __future__ import annotations

from functools import lru_cache
from io import BytesIO

import numpy as np
import torch

from unitscope._iou import upsample_masks
from unitscope.runs import atomic_write_bytes

_THUMB = 96


def write_exemplar_strips(run_dir, dataset, layers, tag, forward, cache, thresholds, tops) -> dict[str, list[str]]:
    """One JPEG per unit: its top-k images, the region above T_k bright and outlined, the rest dimmed.

    Memory stays bounded whatever the data set size: only the k maps of each unit are kept, and
    thumbnails come through a small cache.
    """
    from PIL import Image

    @lru_cache(maxsize=256)
    def thumb(i: int) -> np.ndarray:
        image = dataset.load_image(i).convert("RGB").resize((_THUMB, _THUMB), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)

    out: dict[str, list[str]] = {}
    for layer in layers:
        images = tops[layer][1].cpu()
        c, k = images.shape
        maps = _exemplar_maps(images, layer, tag[layer], dataset, forward, cache)  # (image, unit) -> [h, w]
        paths = []
        for u in range(c):
            idx = [int(i) for i in images[u].tolist() if i >= 0]
            strip = np.full((_THUMB, k * (_THUMB + 2), 3), 255, dtype=np.uint8)
            if idx:
                unit_maps = torch.stack([maps[i, u] for i in idx])
                masks = upsample_masks(unit_maps, thresholds[layer][u].cpu().expand(len(idx)), (_THUMB, _THUMB)).numpy()
                for j, (i, mask) in enumerate(zip(idx, masks)):
                    strip[:, j * (_THUMB + 2):j * (_THUMB + 2) + _THUMB] = _highlight(thumb(i), mask)
            buf = BytesIO()
            Image.fromarray(strip).save(buf, format="JPEG", quality=85)
            atomic_write_bytes(run_dir / "images" / tag[layer] / f"unit{u:04d}.jpg", buf.getvalue())
            paths.append(f"images/{tag[layer]}/unit{u:04d}.jpg")
        out[layer] = paths
    return out


def _highlight(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Dim outside ``mask``, draw its outline in yellow."""
    image = image.astype(np.float32)
    shown = np.where(mask[..., None], image, image * 0.3 + 20)
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    shown[edge] = (255, 220, 0)
    return shown.clip(0, 255).astype(np.uint8)


def _exemplar_maps(images: torch.Tensor, layer: str, tag: str, dataset, forward, cache,
                   chunk: int = 32) -> dict[tuple[int, int], torch.Tensor]:
    """The map ``[h, w]`` of each (exemplar image, unit) pair of ``images [C, k]``: read from the
    activation cache, or recomputed for the exemplar images only."""
    needed: dict[int, list[int]] = {}
    for u, row in enumerate(images.tolist()):
        for i in row:
            if i >= 0:
                needed.setdefault(i, []).append(u)
    order = sorted(needed)
    maps: dict[tuple[int, int], torch.Tensor] = {}
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        if cache is not None:
            acts = torch.from_numpy(cache.read(tag, np.array(part)))
        else:
            batch = torch.stack([dataset[i]["image"] for i in part])
            acts = forward(batch, torch.tensor(part))[layer].cpu()
        for i, a in zip(part, acts):
            for u in needed[i]:
                maps[i, u] = a[u].clone()
    return maps


_MASK_RGB = np.array((0, 229, 255), np.float32)  # cyan: the ground truth, apart from the yellow unit outline


def write_concept_strips(run_dir, dataset, layers, tag, tops, dissected) -> dict[str, list[dict]]:
    """The exemplar strips again, each image with the ground-truth mask of its unit's concept tinted
    and outlined in cyan (the report's mask toggle). ``dissected[layer]`` is the layer's
    :class:`~unitscope.dissect.LayerDissection`; units without a concept get no strip.

    Returns ``{layer: [{"unit", "path"}]}``, the ``concept_images`` rows.
    """
    from PIL import Image

    @lru_cache(maxsize=256)
    def thumb(i: int) -> np.ndarray:
        image = dataset.load_image(i).convert("RGB").resize((_THUMB, _THUMB), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)

    @lru_cache(maxsize=256)
    def labels(i: int) -> tuple[np.ndarray, frozenset]:
        item = dataset.get(i, image=False, labels=True) if hasattr(dataset, "get") else dataset[i]
        return np.asarray(item["labels"]), frozenset(int(x) for x in np.asarray(item["image_labels"]).ravel())

    out: dict[str, list[dict]] = {}
    for layer in layers:
        d, images = dissected[layer], tops[layer][1].cpu()
        k, rows = images.shape[1], []
        for u in range(images.shape[0]):
            if not d.concept(u):
                continue
            label = int(d.best_label[u])
            strip = np.full((_THUMB, k * (_THUMB + 2), 3), 255, dtype=np.uint8)
            for j, i in enumerate(i for i in images[u].tolist() if i >= 0):
                planes, image_labels = labels(i)
                strip[:, j * (_THUMB + 2):j * (_THUMB + 2) + _THUMB] = _tint(thumb(i), _label_mask(
                    planes, image_labels, label))
            buf = BytesIO()
            Image.fromarray(strip).save(buf, format="JPEG", quality=85)
            rel = f"images/{tag[layer]}/unit{u:04d}_concept.jpg"
            atomic_write_bytes(run_dir / rel, buf.getvalue())
            rows.append({"unit": u, "path": rel})
        out[layer] = rows
    return out


def _label_mask(planes: np.ndarray, image_labels: frozenset, label: int) -> np.ndarray:
    """Where ``label`` is in the image, ``[_THUMB, _THUMB]`` bool: its pixels in the label planes
    ``[K, sh, sw]`` (nearest-neighbour scaled), or the whole image for an image-level label."""
    if label in image_labels:
        return np.ones((_THUMB, _THUMB), bool)
    hit = (planes == label).any(axis=0) if planes.size else np.zeros((1, 1), bool)
    sh, sw = hit.shape
    ys = np.arange(_THUMB) * sh // _THUMB
    xs = np.arange(_THUMB) * sw // _THUMB
    return hit[ys][:, xs]


def _tint(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Tint ``mask`` cyan and outline it; the image edge counts as an outline of a full mask."""
    shown = image.astype(np.float32)
    shown[mask] = shown[mask] * 0.55 + _MASK_RGB * 0.45
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    shown[mask & ~inner] = _MASK_RGB
    return shown.clip(0, 255).astype(np.uint8)
