"""Continuous description features that order a layer's units, and the summary of ablation curves.

    from unitscope.audit.features import feature_orders, summarise
    orders = feature_orders(rows, 128, ["length", "f1"], seeds=range(5))   # {"length_high": [[unit, ...] per seed], ...}
    rows = summarise(fractions, correct, ["random", "length_high"])        # AUC, seed range, bootstrap, gap

MILAN's analysis script orders ResNet-18's units by scores of their descriptions (parts of speech,
description length, largest word-vector distance, parse depth), removes them cumulatively and
compares with random orders. The features here are those of our ``pmi`` descriptions:

- ``length``: how many concepts the formula names (``length`` of the description row: negated ones
  count too), MILAN's description length;
- ``f1``: the description's held-out F1 against the unit's mask (how well the words fit the unit);
- ``lift``: how unrelated the concepts a formula asserts are, continuously: the least image-level
  lift between two of them on the run's data set (``lift_low``: the most unrelated first; formulas
  with fewer than two such concepts have none and go last), the continuous twin of the
  ``unrelated`` group and of MILAN's largest word distance.

Each feature gives two orderings, ``FEATURE_high`` (highest value first) and ``FEATURE_low``;
units with no description (NaN) go last in both, and ties follow seed ``s``'s random permutation
(``torch.randperm(units)`` of ``manual_seed(s)``, the one the ``random`` ordering is), so a feature
with many ties (``length``) has a spread over seeds like ``random`` has.

:func:`summarise` turns per-image results ``correct`` ``[O, S, F, N]`` (ordering, seed, fraction,
image) into one row per ordering: the area under the mean curve (``auc``, trapezoid over the
fractions, divided by their span), its range over seeds, a 95 % bootstrap interval over images
(resampling images, the same draws for every ordering), and the gap to ``random``: the difference
of areas with its paired bootstrap interval, and the fraction where the mean curves differ most.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

FEATURES = {
    "length": "number of concepts the description's formula names",
    "f1": "held-out F1 of the description against the unit's mask",
    "lift": "least image-level lift between two concepts the formula asserts (NaN under two)",
}


def least_lift(formula: str | None, presence: dict[str, np.ndarray]) -> float:
    """The smallest image-level lift ``n * both / (n_a * n_b)`` over pairs of the formula's distinct
    positive concepts that the images show (``presence``: ``{concept: bool [N]}``); NaN under two."""
    import itertools

    from unitscope.describe.search import positive_concepts

    concepts = [c for c in dict.fromkeys(positive_concepts(formula)) if c in presence] if formula else []
    if len(concepts) < 2:
        return math.nan
    n = len(presence[concepts[0]])
    return min(
        float((presence[a] & presence[b]).sum()) * n / (float(presence[a].sum()) * float(presence[b].sum()))
        for a, b in itertools.combinations(concepts, 2)
    )


def feature_value(row: dict[str, Any], feature: str, presence: dict[str, np.ndarray] | None = None) -> float:
    """The value of ``feature`` for a ``pmi`` description row (NaN when it has none); ``lift`` needs
    ``presence`` (:func:`unitscope.audit.analysis.image_presence`)."""
    if feature == "lift":
        if presence is None:
            raise ValueError("the lift feature needs which images show each concept (presence)")
        return least_lift(row.get("formula"), presence)
    if feature == "length":
        if row.get("length") is not None:
            return float(row["length"])
        from unitscope.describe.search import positive_concepts

        return float(len(positive_concepts(row.get("formula")))) if row.get("formula") else math.nan
    if feature == "f1":
        return math.nan if row.get("f1") is None else float(row["f1"])
    raise ValueError(f"unknown description feature {feature!r}; known: {', '.join(FEATURES)}")


def feature_orderings(features: Sequence[str]) -> list[str]:
    """The ordering names of ``features``: ``FEATURE_high`` and ``FEATURE_low`` for each."""
    return [f"{f}_{d}" for f in features for d in ("high", "low")]


def ordered_by(values: Sequence[float], high_first: bool, perm: Sequence[int]) -> list[int]:
    """Unit indices by ``values`` [C] (highest first when ``high_first``), NaN last, ties in ``perm``'s order."""
    rank = {int(u): i for i, u in enumerate(perm)}

    def key(u: int) -> tuple[bool, float, int]:
        v = float(values[u])
        if math.isnan(v):
            return (True, 0.0, rank[u])
        return (False, -v if high_first else v, rank[u])

    return sorted(range(len(values)), key=key)


def feature_orders(
    rows: Sequence[dict[str, Any]],
    units: int,
    features: Sequence[str],
    seeds: Sequence[int],
    presence: dict[str, np.ndarray] | None = None,
) -> dict[str, list[list[int]]]:
    """``{FEATURE_high|low: [order per seed]}`` for ``units`` units from their description ``rows``
    (``presence``: for ``lift``)."""
    by_unit = {int(r["unit"]): r for r in rows}
    out: dict[str, list[list[int]]] = {}
    perms = [torch.randperm(units, generator=torch.Generator().manual_seed(int(s))).tolist() for s in seeds]
    for f in features:
        values = [feature_value(by_unit[u], f, presence) if u in by_unit else math.nan for u in range(units)]
        for direction in ("high", "low"):
            out[f"{f}_{direction}"] = [ordered_by(values, direction == "high", p) for p in perms]
    return out


def area_weights(fractions: Sequence[float]) -> np.ndarray:
    """Trapezoid weights ``[F]`` whose dot product with a curve is its area divided by the span."""
    f = np.asarray(fractions, np.float64)
    w = np.zeros(len(f))
    if len(f) < 2:
        return np.ones(len(f))
    d = np.diff(f) / 2 / (f[-1] - f[0])
    w[:-1] += d
    w[1:] += d
    return w


def summarise(
    fractions: Sequence[float],
    correct: np.ndarray,
    orderings: Sequence[str],
    *,
    boot: int = 1000,
    seed: int = 0,
    reference: str = "random",
) -> list[dict[str, Any]]:
    """One row per ordering from ``correct`` ``[O, S, F, N]`` (1 where image ``n`` is right): ``auc``
    (area under the mean curve), ``auc_min``/``auc_max`` (over seeds), ``auc_lo``/``auc_hi`` (95 %
    bootstrap over images), ``gap`` (``auc`` minus ``reference``'s) with ``gap_lo``/``gap_hi``
    (paired bootstrap), ``at_fraction`` where the mean curves differ most from ``reference``'s and
    the mean, seed range of both there (``at_mean``, ``at_min``, ``at_max``, ``ref_mean``,
    ``ref_min``, ``ref_max``)."""
    c = np.asarray(correct, np.float64)
    w = area_weights(fractions)
    per_image = np.einsum("osfn,f->on", c, w) / c.shape[1]  # [O, N]: each image's share of the mean curve's area
    per_seed = np.einsum("osfn,f->os", c, w) / c.shape[3]  # [O, S]
    curves = c.mean(3)  # [O, S, F]
    n = c.shape[3]
    idx = np.random.default_rng(seed).integers(0, n, size=(boot, n))
    r = list(orderings).index(reference) if reference in orderings else None
    rows = []
    for o, name in enumerate(orderings):
        draws = per_image[o][idx].mean(1)
        row: dict[str, Any] = {
            "ordering": name,
            "images": n,
            "auc": float(per_image[o].mean()),
            "auc_min": float(per_seed[o].min()),
            "auc_max": float(per_seed[o].max()),
            "auc_lo": float(np.quantile(draws, 0.025)),
            "auc_hi": float(np.quantile(draws, 0.975)),
        }
        if r is not None:
            diff = per_image[o] - per_image[r]
            gaps = diff[idx].mean(1)
            by_fraction = curves[o].mean(0) - curves[r].mean(0)
            k = int(np.argmax(np.abs(by_fraction)))
            row.update(
                gap=float(diff.mean()),
                gap_lo=float(np.quantile(gaps, 0.025)),
                gap_hi=float(np.quantile(gaps, 0.975)),
                at_fraction=float(fractions[k]),
                at_mean=float(curves[o, :, k].mean()),
                at_min=float(curves[o, :, k].min()),
                at_max=float(curves[o, :, k].max()),
                ref_mean=float(curves[r, :, k].mean()),
                ref_min=float(curves[r, :, k].min()),
                ref_max=float(curves[r, :, k].max()),
            )
        rows.append(row)
    return rows
