"""Exemplar strips for unit cards (private; used by :mod:`unitscope.dissect`).

    paths = write_exemplar_strips(run_dir, dataset, layers, tags, forward, cache, thresholds, tops)

One JPEG per unit: its top-k images side by side, the region where the unit's upsampled map
exceeds T_k shown bright with a yellow outline, the rest dimmed.
"""

from __future__ import annotations

from functools import lru_cache
from io import BytesIO

import numpy as np
import torch

from unitscope.dissect.iou import upsample_masks
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
