"""What a dissection finds, per layer, and how it goes into the catalog and the run folder.

from unitscope.dissect import load_layer_arrays
d = result.layers["blocks.6"]               # a LayerDissection
d.summary(), d.concept(7), d.detectors      # "...", "grass" or None, [C] bool (IoU > threshold)
d.p_value, d.significant_detectors          # [C] p-values (permutation null), [C] bool (also BH at 1%)
d.values, d.saturated, d.tied               # "pre-activation: input of ReLU6 at ...", [C] bool, [C] bool
arrays = load_layer_arrays("runs/lite0", "blocks.6")   # thresholds, iou, top-k exemplars
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unitscope.dissect.significance import LEVEL, drawn_significance, images_needed, significant, unit_p_values
from unitscope.runs import ARRAYS, LAYERS, load_arrays


def _named(names: list[str], best: int) -> str | None:
    """``names[best]``, or None for label 0 (unlabelled: no label overlaps the unit's mask)."""
    return names[best] if best > 0 else None


@dataclass
class LayerDissection:
    """Results for one layer: thresholds [C], IoU [C, L], the best label of each unit."""

    layer: str
    shape: tuple[int, int, int]  # [C, h, w]
    thresholds: np.ndarray  # [C]
    iou: np.ndarray  # [C, L]
    best_label: np.ndarray  # [C] label number; -1 for a unit with no concept (every IoU is 0)
    best_iou: np.ndarray  # [C]
    iou_threshold: float
    label_names: list[str]
    label_categories: list[str]  # category name per label number
    p_value: np.ndarray | None = (
        None  # [C] best IoU against the permutation null (None: not computed; NaN: not a candidate)
    )
    images: int = 0  # images dissected
    images_needed: int = 0  # images for which chance IoUs stay below the threshold (significance.py)
    quantile: float = 0.0
    values: str = "layer output"  # which values were thresholded and ranked (unitscope.layers.LayerValues.note)
    saturated: np.ndarray | None = None  # [C] bool: threshold at the unit's largest value (an empty mask)
    tied: np.ndarray | None = None  # [C] bool: all top-k exemplars share one value (which images is arbitrary)
    topk: int = 0

    def add_saturation(self, values: str, top_values: np.ndarray, top_images: np.ndarray) -> None:
        """Flag the units a saturated activation breaks, from the top-k ``[C, k]`` (``top_images`` -1:
        none): a threshold equal to the unit's largest value leaves its mask "> T" empty, and when all
        k exemplars share one value more images reach it than the strip shows, chosen by image order."""
        self.values, self.topk = values, int(top_values.shape[1])
        seen = top_images[:, 0] >= 0
        self.saturated = seen & (self.thresholds >= top_values[:, 0])
        full = (top_images >= 0).all(1) & (self.topk > 1)
        self.tied = full & (top_values[:, 0] == top_values[:, -1])

    def saturation_warning(self) -> str | None:
        """A sentence when some units' thresholds sit at their maximum or their exemplars tie, else None."""
        s = int(self.saturated.sum()) if self.saturated is not None else 0
        t = int(self.tied.sum()) if self.tied is not None else 0
        if not s and not t:
            return None
        c = len(self.thresholds)
        found = [f"{s} of {c} units have their threshold at their largest value (empty masks: no concept)"] if s else []
        if t:
            found.append(f"{t} of {c} units' top-{self.topk} exemplars all tie (the images shown are arbitrary)")
        hint = (
            "; a saturated activation? dissect the values before it (--values pre, or the layer that feeds a "
            "functional clamp)"
            if not self.values.startswith("pre-activation")
            else ""
        )
        return " and ".join(found) + f", reading {self.values}{hint}"

    def add_significance(
        self, null_iou: np.ndarray | None, n_images: int, quantile: float, units: np.ndarray | None = None
    ) -> None:
        """p-values and images needed from the null's IoUs ``[D, C, L]`` (None: no null was drawn), or
        ``[D, U, L]`` drawn for ``units [U]`` only (``significance.null_units``: p-values of the
        candidates, NaN elsewhere)."""
        self.images, self.quantile = int(n_images), float(quantile)
        if null_iou is not None and units is not None:
            self.p_value, self.images_needed = drawn_significance(
                self.best_iou, null_iou, units, self.iou_threshold, n_images
            )
        elif null_iou is not None:
            self.p_value = unit_p_values(self.best_iou, null_iou)
            self.images_needed = images_needed(null_iou, n_images, self.iou_threshold)

    @property
    def significant_detectors(self) -> np.ndarray:
        """``[C]`` bool: detectors whose p-value also passes Benjamini-Hochberg at FDR 1% over the
        layer's units (all detectors when no p-values were computed)."""
        if self.p_value is None:
            return self.detectors
        return self.detectors & significant(self.p_value, LEVEL)

    @property
    def too_few_images(self) -> bool:
        return self.images > 0 and (self.images_needed > self.images or self.images_needed < 0)

    def warning(self) -> str | None:
        """A sentence when the data set is too small for the thresholds, else None (see also
        :meth:`saturation_warning`)."""
        if not self.too_few_images:
            return None
        if self.images_needed < 0:
            return (
                f"units with no concept reach IoU > {self.iou_threshold:g} by chance at quantile "
                f"{self.quantile:g} with any number of images: lower --quantile or raise --iou"
            )
        return (
            f"{self.images} images are too few for IoU > {self.iou_threshold:g} at quantile {self.quantile:g}: "
            f"units with no concept reach it by chance; about {self.images_needed} images are needed"
        )

    @property
    def detectors(self) -> np.ndarray:
        """``[C]`` bool: best IoU strictly above the threshold (the paper's IoU > 0.04)."""
        return self.best_iou > self.iou_threshold

    @property
    def unique_concepts(self) -> int:
        return len(set(self.best_label[self.detectors].tolist()))

    def concept(self, unit: int) -> str | None:
        """The unit's best label, or None when no label overlaps its mask (e.g. its map never
        exceeds its threshold)."""
        return _named(self.label_names, int(self.best_label[unit]))

    def category(self, unit: int) -> str | None:
        return _named(self.label_categories, int(self.best_label[unit]))

    def concepts(self) -> list[str | None]:
        """:meth:`concept` of every unit, in unit order."""
        return [_named(self.label_names, b) for b in self.best_label.tolist()]

    def categories(self) -> list[str | None]:
        """:meth:`category` of every unit, in unit order."""
        return [_named(self.label_categories, b) for b in self.best_label.tolist()]

    def summary(self) -> str:
        text = (
            f"{self.layer}: {int(self.detectors.sum())} of {len(self.best_iou)} units are detectors, "
            f"covering {self.unique_concepts} concepts"
        )
        if self.p_value is not None:
            text += f"; {int(self.significant_detectors.sum())} significant (p < {LEVEL:g}, BH)"
        warnings = [w for w in (self.warning(), self.saturation_warning()) if w]
        return text + "".join(f". Warning: {w}" for w in warnings)


def label_agreement(a: LayerDissection, b: LayerDissection) -> dict[str, float | int]:
    """How far two dissections of the same layer agree (e.g. a mixed-precision run against float32):
    ``same_label`` the fraction of units with the same best label, ``same_detectors`` the fraction
    whose detector verdict and (for detectors) label agree, ``detectors_a``/``detectors_b`` the
    counts, ``max_iou_diff`` the largest change of a unit's best IoU and ``max_threshold_rel``
    the largest relative change of a threshold."""
    if a.iou.shape != b.iou.shape:
        raise ValueError(f"the dissections differ in shape: {a.iou.shape} and {b.iou.shape} (units x labels)")
    da, db = a.detectors, b.detectors
    agree = (da == db) & (~da | (a.best_label == b.best_label))
    scale = np.maximum(np.abs(a.thresholds), 1e-12)
    return {
        "units": int(len(da)),
        "same_label": float((a.best_label == b.best_label).mean()),
        "same_detectors": float(agree.mean()),
        "detectors_a": int(da.sum()),
        "detectors_b": int(db.sum()),
        "max_iou_diff": float(np.abs(a.best_iou - b.best_iou).max()),
        "max_threshold_rel": float((np.abs(a.thresholds - b.thresholds) / scale).max()),
    }


@dataclass
class DissectResult:
    run_dir: Path
    layers: dict[str, LayerDissection] = field(default_factory=dict)
    rotations: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # layer -> [(detectors, concepts)]
    rotated: dict[str, list[LayerDissection]] = field(default_factory=dict)  # layer -> one per random rotation
    bad_images: list[str] = field(default_factory=list)  # unreadable images left out (skip_bad_images)

    def __repr__(self) -> str:
        lines = [f"DissectResult({str(self.run_dir)!r})"] + [f"  {d.summary()}" for d in self.layers.values()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        """In a notebook: each layer's summary and top units with their exemplar strips inline."""
        from unitscope.results import run_html

        return run_html(self.run_dir)


def summarise(
    layer: str,
    shape: tuple[int, int, int],
    thresholds: np.ndarray,
    iou: np.ndarray,
    iou_threshold: float,
    label_names: list[str],
    label_cats: list[str],
) -> LayerDissection:
    """Best label per unit from the IoU matrix ``[C, L]``; -1 (no concept) where every IoU is 0."""
    scored = iou.copy()
    scored[:, 0] = -1  # label 0 means "unlabelled"
    best = scored.argmax(axis=1)
    best_iou = scored[np.arange(len(best)), best]
    best = np.where(best_iou > 0, best, -1)  # all IoUs 0: no concept, not the first label
    return LayerDissection(
        layer, tuple(shape), thresholds, iou, best, np.maximum(best_iou, 0.0), iou_threshold, label_names, label_cats
    )


def write_layer_rows(
    cat: Any,
    model_name: str,
    d: LayerDissection,
    n_images: int,
    quantile: float,
    row_index: np.ndarray,
    top: Sequence[torch.Tensor],
    strip_paths: list[str] | None,
    rotation_rows: list[tuple[int, int]],
) -> None:
    """One layer's rows in the catalog tables layers, dissection, dissection_category, exemplars,
    unit_images and rotations."""
    key = {"model": model_name, "layer": d.layer}
    c, h, w = d.shape
    cat.replace(
        "layers",
        [
            {
                **key,
                "units": c,
                "height": h,
                "width": w,
                "images": n_images,
                "quantile": quantile,
                "iou_threshold": d.iou_threshold,
                "detectors": int(d.detectors.sum()),
                "unique_concepts": d.unique_concepts,
                "detectors_significant": int(d.significant_detectors.sum()) if d.p_value is not None else None,
                "images_needed": d.images_needed if d.p_value is not None else None,
                "activation_values": d.values,
                "saturated_units": int(d.saturated.sum()) if d.saturated is not None else None,
                "tied_units": int(d.tied.sum()) if d.tied is not None else None,
            }
        ],
        **key,
    )
    units = list(range(c))
    p_values = None if d.p_value is None else [float(p) if np.isfinite(p) else None for p in d.p_value.tolist()]
    cat.replace_columns(
        "dissection",
        {
            "unit": units,
            "concept": d.concepts(),
            "category": d.categories(),
            "iou": d.best_iou.astype(np.float64).tolist(),
            "is_detector": d.detectors.astype(np.int64).tolist(),
            "threshold": np.asarray(d.thresholds, dtype=np.float64).tolist(),
            "p_value": [None] * c if p_values is None else p_values,
        },
        **key,
    )
    per_cat: dict[str, list] = {"unit": [], "category": [], "iou": [], "concept": []}
    categories = sorted(set(d.label_categories) - {""})
    cats = np.array(d.label_categories)
    for g in categories:
        cols = np.nonzero(cats == g)[0]
        cols = cols[cols > 0]
        if not len(cols):
            continue
        best_in = cols[d.iou[:, cols].argmax(axis=1)]
        ious = d.iou[np.arange(c), best_in].astype(np.float64)
        per_cat["unit"] += units
        per_cat["category"] += [g] * c
        per_cat["iou"] += ious.tolist()
        per_cat["concept"] += [d.label_names[b] if v > 0 else None for b, v in zip(best_in.tolist(), ious.tolist())]
    cat.replace_columns("dissection_category", per_cat, **key)
    values, images, ys, xs = (x.cpu().numpy() for x in top)
    u_of, r_of = np.nonzero(images >= 0)  # (unit, rank) in unit-major order
    cat.replace_columns(
        "exemplars",
        {
            "unit": u_of.tolist(),
            "rank": r_of.tolist(),
            "image": row_index[images[u_of, r_of]].astype(np.int64).tolist(),
            "activation": values[u_of, r_of].astype(np.float64).tolist(),
            "y": ys[u_of, r_of].astype(np.int64).tolist(),
            "x": xs[u_of, r_of].astype(np.int64).tolist(),
        },
        **key,
    )
    if strip_paths is not None:
        cat.replace_columns("unit_images", {"unit": list(range(len(strip_paths))), "path": list(strip_paths)}, **key)
    cat.replace(
        "rotations",
        [{**key, "rotation": r, "detectors": det, "unique_concepts": uc} for r, (det, uc) in enumerate(rotation_rows)],
        **key,
    )


def load_layer_arrays(run_dir: str | Path, layer: str) -> dict[str, np.ndarray]:
    """The arrays a dissection saved for ``layer`` (thresholds, IoU matrix, top-k exemplars)."""
    run_dir = Path(run_dir)
    tags = json.loads((run_dir / LAYERS).read_text())
    for t, name in tags.items():
        if name == layer:
            return load_arrays(run_dir / ARRAYS / f"{t}.safetensors")
    raise ValueError(f"run {run_dir} has no layer {layer!r}; it has {', '.join(tags.values())}")
