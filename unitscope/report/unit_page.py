"""Data for the report's unit pages (``index.html#model/layer/unit``) read from a dissection's
arrays: each unit's top concepts by IoU over all categories, an activation histogram derived from
the per-unit quantiles the dissection saves, and the unit's rank in its layer.

    from unitscope.catalog import Catalog
    from unitscope.report.unit_page import unit_pages
    with Catalog(run / "catalog.sqlite", create=False) as cat:
        block = unit_pages(cat, "resnet18", "layer4")
    block["units"]["7"]     # {"top": [label numbers], "iou": [...], "rank": 3, "hist": {...}}

``arrays/<tag>.safetensors`` holds ``iou`` [C, L] (label 0 is "unlabelled") and, from runs made
after the unit pages landed, ``quantile_levels`` [Q] and ``quantiles`` [C, Q]; ``labels.json``
names the labels. A run without them still gets its ranks; the page says what is missing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from unitscope.catalog import Catalog
from unitscope.runs import ARRAYS, LABELS, LAYERS, load_arrays

TOP_CONCEPTS = 10  # bars on the unit page's IoU chart
ACTIVATION_BINS = 40  # equal-width bins from the unit's minimum to its maximum activation


def layer_arrays(run_dir: Path, layer: str) -> dict[str, np.ndarray] | None:
    """The dissection arrays saved for ``layer``, or None when the run has none."""
    try:
        tags = json.loads((Path(run_dir) / LAYERS).read_text())
    except (OSError, ValueError):
        return None
    for tag, name in tags.items():
        path = Path(run_dir) / ARRAYS / f"{tag}.safetensors"
        if name == layer and path.is_file():
            return load_arrays(path)
    return None


def label_names(run_dir: Path) -> tuple[list[str], list[str]] | None:
    """``(names, categories)`` per label number from ``labels.json``, or None."""
    try:
        data = json.loads((Path(run_dir) / LABELS).read_text())
        return list(data["names"]), list(data["categories"])
    except (OSError, ValueError, KeyError):
        return None


def top_concepts(iou: np.ndarray, k: int = TOP_CONCEPTS) -> tuple[np.ndarray, np.ndarray]:
    """Per unit the ``k`` labels of highest IoU (label 0, "unlabelled", never): ``[C, L]`` ->
    label numbers ``[C, k]`` and their IoUs ``[C, k]``, best first, ties by label number."""
    scores = np.nan_to_num(np.asarray(iou, dtype=np.float64)[:, 1:], nan=0.0)
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order + 1, np.take_along_axis(scores, order, axis=1)


def cdf(values: np.ndarray, levels: np.ndarray, x: np.ndarray) -> np.ndarray:
    """P(activation <= x) from quantiles ``values`` [Q] at ``levels`` [Q] (both ascending, levels 0
    and 1 the minimum and maximum), linear between quantiles; a run of equal values is a point mass."""
    v = np.maximum.accumulate(np.asarray(values, dtype=np.float64))
    lv = np.asarray(levels, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    i = np.searchsorted(v, x, side="right")  # v[i - 1] <= x < v[i]: the last of equal values counts
    lo, hi = np.clip(i - 1, 0, len(v) - 1), np.clip(i, 0, len(v) - 1)
    span = v[hi] - v[lo]
    frac = np.where(span > 0, (x - v[lo]) / np.where(span > 0, span, 1), 0.0)
    out = lv[lo] + frac * (lv[hi] - lv[lo])
    return np.where(i == 0, 0.0, np.where(i >= len(v), 1.0, out))


def activation_histogram(
    values: np.ndarray, levels: np.ndarray, positions: int, bins: int = ACTIVATION_BINS
) -> dict[str, Any]:
    """Estimated positions per equal-width bin between the unit's minimum and maximum activation:
    ``{"lo", "hi", "counts"}``; the minimum's point mass falls in the first bin."""
    lo, hi = float(values[0]), float(values[-1])
    if not hi > lo:
        return {"lo": _round(lo), "hi": _round(hi), "counts": [int(positions)]}
    f = cdf(values, levels, np.linspace(lo, hi, bins + 1))
    f[-1] = 1.0
    mass = np.diff(f)
    mass[0] += f[0]
    return {"lo": _round(lo), "hi": _round(hi), "counts": [int(c) for c in np.rint(mass * positions)]}


def _round(x: float, digits: int = 5) -> float:
    """``x`` to ``digits`` significant digits (compact JSON)."""
    if x == 0 or not math.isfinite(x):
        return 0.0
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def ranks(ious: dict[int, float | None]) -> dict[int, int]:
    """Rank of each unit in its layer by IoU (1 = best; ties by unit number; no IoU last)."""
    order = sorted(ious, key=lambda u: (-(ious[u] if ious[u] is not None and math.isfinite(ious[u]) else -1.0), u))
    return {u: r + 1 for r, u in enumerate(order)}


def unit_pages(cat: Catalog, model: str, layer: str) -> dict[str, Any] | None:
    """The unit-page block of one layer: ``{"labels": [...], "categories": [...], "positions",
    "units": {unit: {"rank", "top", "iou", "hist"}}}`` (``top`` indexes ``labels``; ``top`` and
    ``iou`` only when the run saved its IoU matrix and label names, ``hist`` its quantiles)."""
    rows = cat.rows("dissection", model=model, layer=layer)
    if not rows:
        return None
    rank = ranks({r["unit"]: r["iou"] for r in rows})
    units: dict[str, dict[str, Any]] = {str(u): {"rank": rank[u]} for u in sorted(rank)}
    out: dict[str, Any] = {"labels": [], "categories": [], "positions": None, "units": units}
    run_dir = Path(cat.path).parent
    arrays, names = layer_arrays(run_dir, layer), label_names(run_dir)
    if arrays is None:
        return out
    if names is not None and "iou" in arrays and arrays["iou"].shape[1] == len(names[0]):
        _add_top(units, arrays["iou"], names, out)
    meta = cat.rows("layers", model=model, layer=layer)
    if "quantiles" in arrays and meta:
        m = meta[0]
        out["positions"] = positions = int(m["images"] * m["height"] * m["width"])
        levels = arrays["quantile_levels"]
        for u, q in enumerate(arrays["quantiles"]):
            if str(u) in units:
                units[str(u)]["hist"] = activation_histogram(q, levels, positions)
    return out


def _add_top(units: dict[str, dict], iou: np.ndarray, names: tuple[list[str], list[str]], out: dict) -> None:
    """Each unit's top concepts as indexes into the layer's compact label list."""
    best, values = top_concepts(iou)
    used = sorted(set(best.ravel().tolist()))
    local = {label: i for i, label in enumerate(used)}
    out["labels"] = [names[0][label] for label in used]
    out["categories"] = [names[1][label] for label in used]
    for u in range(len(best)):
        if str(u) in units:
            units[str(u)]["top"] = [local[int(b)] for b in best[u]]
            units[str(u)]["iou"] = [_round(float(v), 4) for v in values[u]]
