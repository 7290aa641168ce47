"""A unit's exemplars: its top images, its maps and its 0.99-quantile mask, from a dissection run.

    ex = exemplars("runs/lite0", "bn2", unit=7, k=15)
    ex["images"]       # [15] data-set positions, best first
    ex["activations"]  # [15, h, w] the unit's maps there
    ex["masks"]        # [15, S, S'] bool: maps upsampled bilinearly to the label resolution, > threshold

Which values a unit's map has (:func:`unit_maps`) and its threshold (:func:`threshold`) are each
decided in ONE function here, so that they can follow the dissection if it changes them (e.g.
pre-activation values for layers after a bounded activation). The threshold is read from the
dissection's saved quantiles (levels every 0.01), never recomputed: MILAN's setting, the top 1%.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from unitscope.describe.defaults import EXEMPLARS, QUANTILE
from unitscope.runs import CONFIG


def threshold(run: str | Path, layer: str, q: float = QUANTILE) -> torch.Tensor:
    """``[C]``: each unit's ``q`` quantile over all positions of all images, as the dissection saved it."""
    from unitscope.dissect import load_layer_arrays

    arrays = load_layer_arrays(run, layer)
    if "quantiles" not in arrays:
        raise ValueError(f"the dissection of {layer!r} in {run} saved no quantiles: dissect it again")
    levels = np.asarray(arrays["quantile_levels"], dtype=np.float64)
    j = int(np.abs(levels - q).argmin())
    if abs(levels[j] - q) > 1e-6:
        raise ValueError(f"the dissection saved quantiles at {levels.tolist()}, not {q}")
    return torch.as_tensor(np.asarray(arrays["quantiles"])[:, j], dtype=torch.float32)


def unit_maps(run: str | Path, layer: str, positions) -> torch.Tensor:
    """``[n, C, h, w]`` float32: the maps of every unit of ``layer`` at data-set ``positions``, in
    the values the dissection thresholded (a bounded activation's input, where it read that), so
    that they share a scale with :func:`threshold`'s quantiles."""
    from unitscope.dissect import open_activation_cache

    with open_activation_cache(run, layer) as cache:
        return cache.read(positions, values="pre" if cache.values == "pre" else "post")


def num_images(run: str | Path, layer: str) -> int:
    from unitscope.dissect import open_activation_cache

    with open_activation_cache(run, layer) as cache:
        return cache.images


def masks_of(maps: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``maps [..., h, w]`` of units with ``thresholds`` broadcast to ``maps.shape[:-2]`` -> bool
    ``[..., *size]``: upsampled bilinearly and thresholded, as the dissection makes unit masks."""
    lead = maps.shape[:-2]
    up = F.interpolate(maps.reshape(-1, 1, *maps.shape[-2:]).float(), size=size, mode="bilinear",
                       align_corners=False).view(*lead, *size)
    return up > thresholds.reshape(*thresholds.shape, 1, 1)


def top_images(run: str | Path, layer: str, positions: torch.Tensor, k: int = EXEMPLARS,
               batch: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [C, k], peaks [C, k])``: each unit's ``k`` positions (among ``positions``) with the
    highest map maximum, best first."""
    peaks = []
    for start in range(0, len(positions), batch):
        peaks.append(unit_maps(run, layer, positions[start:start + batch].tolist()).flatten(2).amax(2))
    peak = torch.cat(peaks).t()  # [C, n]
    values, order = peak.topk(min(k, peak.shape[1]), dim=1)
    return positions[order], values


def exemplars(run: str | Path, layer: str, unit: int, k: int = EXEMPLARS,
              positions: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Unit ``unit``'s top ``k`` images (among ``positions``, default all) with its maps there and its
    masks at the label resolution (see the module docstring)."""
    n = num_images(run, layer)
    positions = torch.arange(n) if positions is None else torch.as_tensor(positions)
    images, values = top_images(run, layer, positions, k)
    images = images[unit]
    maps = unit_maps(run, layer, images.tolist())[:, unit]  # [k, h, w]
    labels = json.loads((Path(run) / CONFIG).read_text()) if (Path(run) / CONFIG).exists() else {}
    size = _label_size(labels.get("data")) or tuple(maps.shape[-2:])
    t = threshold(run, layer)[unit]
    return {"images": images, "activations": maps, "peaks": values[unit],
            "masks": masks_of(maps, t.expand(len(images)), size)}


def _label_size(data: str | None) -> tuple[int, int] | None:
    if not data or not Path(data).is_dir():
        return None
    from unitscope.data import BrodenDataset

    return tuple(BrodenDataset(data, validate="none").mask_size)
