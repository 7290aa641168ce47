"""A unit's exemplars: its top images, its maps and its mask, from a dissection run (public as
``unitscope.exemplars``).

    ex = unitscope.exemplars("runs/lite0", "bn2", unit=7, k=10)   # the dissection's top 10 of unit 7
    ex.positions       # [10] run positions, best first
    ex.images          # [10, 3, H, W] float in [0, 1]: the pictures (the run's data set, or source.picture)
    ex.activations     # [10, h, w] the unit's maps there
    ex.masks           # [10, H, W] bool: maps upsampled bilinearly to the images' size, > ex.threshold
    ex.summary()       # "bn2 unit 7: top 10 of 300 images (peaks 4.1 .. 2.9), threshold 1.2, mask 3.1% of pixels"
    unitscope.exemplars("runs/gan", "relu3", 5, source=GeneratorActivations(g, ["relu3"], n=10_000))

The top images are the dissection's own (its top-k, the strips' images) when ``k`` fits them,
else ranked here by map maximum; the maps come from the run's activation cache (``--keep-cache``)
or from ``source``, the :class:`~unitscope.dissect.ActivationSource` the run dissected; the
threshold is the dissection's T_k, or the ``quantile`` level the dissection saved (descriptions
use MILAN's 0.99).

Which values a unit's map has (:func:`unit_maps`) and its threshold (:func:`threshold`) are each
decided in ONE function here, so that they can follow the dissection if it changes them (e.g.
pre-activation values for layers after a bounded activation). The threshold is read from the
dissection's saved quantiles (levels every 0.01), never recomputed: MILAN's setting, the top 1%.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from unitscope.describe.defaults import EXEMPLARS, QUANTILE
from unitscope.dissect.results import load_layer_arrays
from unitscope.runs import CONFIG


def threshold(run: str | Path, layer: str, q: float = QUANTILE) -> torch.Tensor:
    """``[C]``: each unit's ``q`` quantile over all positions of all images, as the dissection saved it."""
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
    up = F.interpolate(
        maps.reshape(-1, 1, *maps.shape[-2:]).float(), size=size, mode="bilinear", align_corners=False
    ).view(*lead, *size)
    return up > thresholds.reshape(*thresholds.shape, 1, 1)


def top_images(
    run: str | Path,
    layer: str,
    positions: torch.Tensor,
    k: int = EXEMPLARS,
    batch: int = 100,
    read: Callable[[list[int]], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [C, k], peaks [C, k])``: each unit's ``k`` positions (among ``positions``) with the
    highest map maximum, best first (maps from ``read(positions)``, default the activation cache)."""
    read = read or (lambda pos: unit_maps(run, layer, pos))
    peaks = []
    for start in range(0, len(positions), batch):
        peaks.append(read(positions[start : start + batch].tolist()).flatten(2).amax(2))
    peak = torch.cat(peaks).t()  # [C, n]
    values, order = peak.topk(min(k, peak.shape[1]), dim=1)
    return positions[order], values


@dataclass
class Exemplars:
    """Unit ``unit`` of ``layer``: its top images, best first, as tensors (see the module docstring)."""

    layer: str
    unit: int
    positions: torch.Tensor  # [k] run positions
    peaks: torch.Tensor  # [k] the map's maximum at each
    activations: torch.Tensor  # [k, h, w] the unit's maps (the values the dissection thresholded)
    threshold: float
    masks: torch.Tensor  # [k, H, W] bool
    images: torch.Tensor | None  # [k, 3, H, W] in [0, 1]; None where the run has no pictures to read
    of: int = 0  # images the top k were chosen from

    def summary(self) -> str:
        k = len(self.positions)
        peaks = f" (peaks {self.peaks.max().item():.4g} .. {self.peaks.min().item():.4g})" if k else ""
        share = f", mask {100 * self.masks.float().mean().item():.3g}% of pixels" if k else ""
        return (
            f"{self.layer} unit {self.unit}: top {k} of {self.of} images{peaks}, threshold {self.threshold:.4g}{share}"
        )


def exemplars(
    run: str | Path,
    layer: str,
    unit: int,
    k: int = EXEMPLARS,
    *,
    positions: Any = None,
    quantile: float | None = None,
    source: Any = None,
    size: tuple[int, int] | None = None,
) -> Exemplars:
    """Unit ``unit``'s top ``k`` images of a dissection run (among ``positions``, default all), its
    maps there and its masks above the threshold, as tensors.

    ``quantile``: threshold at that saved level (e.g. 0.99) instead of the dissection's T_k.
    ``source``: the run's :class:`~unitscope.dissect.ActivationSource` (a model on the data set, a
    generator), for maps when the run kept no activation cache and for pictures when its config
    names no data set. ``size``: the masks' ``(H, W)``, default the images' (else the maps').
    """
    run = Path(run)
    read, n = _map_reader(run, layer, source)
    if unit < 0:
        raise ValueError(f"unit must be >= 0, got {unit}")
    saved = _saved_top(run, layer, unit, k) if positions is None else None
    if saved is not None:
        pos, peaks = saved
    else:
        candidates = torch.arange(n) if positions is None else torch.as_tensor(positions, dtype=torch.long)
        tops, values = top_images(run, layer, candidates, k, read=read)
        pos, peaks = tops[unit], values[unit]
    maps = read(pos.tolist())[:, unit] if len(pos) else torch.zeros(0, 1, 1)
    t = (
        threshold(run, layer, quantile)[unit]
        if quantile is not None
        else torch.as_tensor(load_layer_arrays(run, layer)["thresholds"][unit], dtype=torch.float32)
    )
    images = _pictures(run, pos.tolist(), source)
    if size is None:
        size = tuple(images.shape[-2:]) if images is not None else tuple(maps.shape[-2:])
    return Exemplars(
        layer, unit, pos, peaks.float(), maps, float(t), masks_of(maps, t.expand(len(pos)), size), images, n
    )


def _map_reader(run: Path, layer: str, source: Any) -> tuple[Callable[[list[int]], torch.Tensor], int]:
    """``(read(positions) -> [n, C, h, w], images in the run)``: the activation cache, else ``source``."""
    from unitscope.dissect import open_activation_cache

    try:
        with open_activation_cache(run, layer) as cache:
            n = cache.images
        return (lambda pos: unit_maps(run, layer, pos)), n
    except FileNotFoundError:
        if source is None:
            raise ValueError(
                f"{run} kept no activation cache: pass the run's source (exemplars(..., source=...)) "
                "or dissect again with --keep-cache (keep_cache=True)"
            ) from None
    from unitscope.dissect.sources import Items, collate_items

    def read(pos: list[int]) -> torch.Tensor:
        items = Items(len(source), source)
        return source.activations(collate_items([items[p] for p in pos]))[layer].float().cpu()

    return read, len(source)


def _saved_top(run: Path, layer: str, unit: int, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The dissection's own top-k of ``unit`` (the strips' images) when it kept at least ``k``."""
    arrays = load_layer_arrays(run, layer)
    images, values = np.asarray(arrays["top_images"]), np.asarray(arrays["top_values"])
    if unit >= len(images):
        raise ValueError(f"{layer} has units 0..{len(images) - 1}, not {unit}")
    if images.shape[1] < k:
        return None
    keep = images[unit, :k] >= 0
    return torch.as_tensor(images[unit, :k][keep]), torch.as_tensor(values[unit, :k][keep])


def _pictures(run: Path, positions: list[int], source: Any) -> torch.Tensor | None:
    """``[k, 3, H, W]`` in [0, 1]: ``source.picture`` or the run's data set's images (each resized to
    the first one's size); None when neither is at hand."""
    if source is not None:
        picture = source.picture
    else:
        config = json.loads((run / CONFIG).read_text()) if (run / CONFIG).exists() else {}
        data = config.get("data")
        if not data or not (Path(data) / "index.csv").exists():
            return None
        from unitscope.data import BrodenDataset

        picture = BrodenDataset(data, validate="none").load_image
    pics = [picture(p).convert("RGB") for p in positions]
    if not pics:
        return None
    pics = [im if im.size == pics[0].size else im.resize(pics[0].size) for im in pics]
    return torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32) / 255).permute(2, 0, 1) for im in pics])
