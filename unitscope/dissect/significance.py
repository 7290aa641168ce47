"""Is a unit's IoU above chance? p-values from the permutation null, and how many images a run needs.

    from unitscope.dissect.significance import unit_p_values, significant, images_needed, null_units
    p = unit_p_values(best_iou, null_iou)          # [C], null_iou [D, C, L] from NullIoUCounts.iou()
    keep = significant(p, level=0.01)              # [C] bool: Benjamini-Hochberg over the layer's units
    need = images_needed(null_iou, n_images, iou_threshold=0.04)
    units = null_units(best_iou, 0.04)             # whose null a dissection draws (candidates + sample)
    p, need = drawn_significance(best_iou, null_iou[:, units], units, 0.04, n_images)  # p NaN elsewhere

**The null.** In pass 2 every batch's unit masks are also matched to the labels of *other* images
of the batch (``D`` random derangements; :func:`unitscope.dissect.iou.in_batch_orders`). That
keeps each unit's mask sizes and each label's areas, and breaks only the link between what a
unit fires on and what is there. Draw d gives a whole data set's IoU matrix ``[C, L]``.

**The p-value** of unit c tests its best IoU (over all labels) against the best IoU the same
masks reach by chance with *any* label (the max over labels of each draw: a max-statistic null,
so choosing the best of L labels is accounted for). With D draws of that max, mean m and sd s,
``t = (iou - m) / (s * sqrt(1 + 1/D))`` follows Student's t with D - 1 degrees of freedom when
the max is normal (a prediction interval: few draws are honest about their own uncertainty).

**Only where a p-value can matter** (pass 3 of the engine, from the activation cache). A p-value
is used only for a *candidate*, a unit whose best IoU is above the detector cut-off
(``iou_threshold``): ``significant_detectors`` is ``detectors & BH``, so no other unit's p-value
can make a detector of it. The null is drawn for the candidates (and the sample below) only, with
the same derangements as a null of every unit (seeded by the batch's first position,
:func:`null_seed`) and against *every* label. Both choices make the candidates' p-values equal to
the full null's, not an approximation: each unit's null counts depend on its own masks only, and
the null statistic is the max over labels per draw, so leaving out any label could lower that max
(a smaller null, a p-value too small). All labels cost no more than a few: the label gather reads
every label under a mask pixel either way, and what the null costs is the number of candidate
mask pixels times the draws. Non-candidates get no p-value (NaN; NULL in the catalog), which
:func:`significant` reads as p = 1. That keeps Benjamini-Hochberg valid over all C units of the
layer (m = C): p' = p for a candidate and 1 otherwise is still a p-value (P(p' <= u) <= P(p <= u)
<= u), and BH is monotone (raising p-values only removes rejections), so the significant
detectors are a subset of those of the full null, equal when no non-candidate's p-value would
have ranked below a candidate's. ``images_needed`` is a quantile over *all* units of a per-unit
need, not a question about candidates: it is computed from a fixed spread sample of
``NULL_SAMPLE`` units (:func:`null_units`), all units of a layer with at most that many, where it
equals the full null's figure.

**Multiple comparisons.** A layer's C p-values are filtered with Benjamini-Hochberg at false
discovery rate ``level`` (0.01): a detector is *significant* when it passes the IoU threshold and
BH at 1%.

**Images needed.** Each draw's IoU is a sum over images of independent terms, so the null's sd
shrinks as 1/sqrt(N) while its mean (the chance IoU of mask and label sizes) stays. Per unit and
label, with null mean m and sd s at N images, chance stays below the IoU threshold T at level
0.01 / L (Bonferroni over labels, z = Phi^-1(1 - 0.01 / L)) once ``N' >= N * (z * s / (T - m))**2``.
The data set is big enough when that holds for 99% of the units. Where chance IoU is already >= T
for more than 1% of the units (masks too large for the threshold) no number of images helps:
:func:`images_needed` returns -1 (lower the quantile or raise the IoU threshold).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

LEVEL = 0.01  # significance level: BH false discovery rate over a layer's units
NULL_SAMPLE = 32  # units per layer whose null is drawn whatever their IoU, for images_needed


def null_seed(seed: int, first_position: int) -> int:
    """The seed of a batch's derangements: the run's ``seed`` and the batch's first data-set position,
    so a resumed or sharded run draws what one uninterrupted process draws."""
    return seed * 1_000_003 + int(first_position)


def sample_units(num_units: int, sample: int | None = None) -> np.ndarray:
    """``[S]``: ``min(C, sample)`` units spread evenly over ``0..C-1`` (all of them for a small layer);
    ``sample`` defaults to ``NULL_SAMPLE``."""
    sample = NULL_SAMPLE if sample is None else sample
    return np.unique(np.linspace(0, num_units - 1, min(num_units, sample)).round().astype(np.int64))


def null_units(best_iou: np.ndarray, iou_threshold: float, sample: int | None = None) -> np.ndarray:
    """``[U]`` sorted: the units whose null is drawn, the candidates (best IoU ``[C]`` above
    ``iou_threshold``) and :func:`sample_units`."""
    candidates = np.nonzero(np.asarray(best_iou) > iou_threshold)[0]
    return np.union1d(candidates, sample_units(len(best_iou), sample)).astype(np.int64)


def drawn_significance(
    best_iou: np.ndarray,
    null_iou: np.ndarray,
    units: np.ndarray,
    iou_threshold: float,
    n_images: int,
    sample: int | None = None,
) -> tuple[np.ndarray, int]:
    """p-values ``[C]`` (NaN for a unit that is not a candidate) and images needed, from the null
    ``null_iou [D, U, L]`` drawn for ``units [U]`` (:func:`null_units`); see the module docstring."""
    best_iou, units = np.asarray(best_iou), np.asarray(units, dtype=np.int64)
    p = np.full(len(best_iou), np.nan)
    drawn = best_iou[units] > iou_threshold
    p[units[drawn]] = unit_p_values(best_iou[units[drawn]], null_iou[:, drawn])
    in_sample = np.isin(units, sample_units(len(best_iou), sample))
    return p, images_needed(null_iou[:, in_sample], n_images, iou_threshold)


def t_sf(t: np.ndarray, df: int) -> np.ndarray:
    """P(T > t) for Student's t with integer ``df >= 1`` (closed forms, Abramowitz & Stegun 26.7.3-4)."""
    t = np.asarray(t, dtype=np.float64)
    theta = np.arctan(np.abs(t) / math.sqrt(df))
    c2 = np.cos(theta) ** 2
    if df % 2:
        term, total = np.cos(theta), np.zeros_like(theta)
        for k in range(1, (df - 1) // 2 + 1):
            total = total + term
            term = term * c2 * (2 * k) / (2 * k + 1)
        inside = 2 / math.pi * (theta + np.sin(theta) * total) if df > 1 else 2 / math.pi * theta
    else:
        term, total = np.ones_like(theta), np.zeros_like(theta)
        for k in range(1, df // 2 + 1):
            total = total + term
            term = term * c2 * (2 * k - 1) / (2 * k)
        inside = np.sin(theta) * total
    tail = np.clip((1 - inside) / 2, 0.0, 0.5)
    return np.where(t >= 0, tail, 1 - tail)


def unit_p_values(best_iou: np.ndarray, null_iou: np.ndarray) -> np.ndarray:
    """``[C]``: p-value of each unit's best IoU ``best_iou [C]`` against the null's best IoU of the
    same unit, ``null_iou [D, C, L]`` (label 0, "unlabelled", left out)."""
    d = null_iou.shape[0]
    null_best = null_iou[:, :, 1:].max(axis=2) if null_iou.shape[2] > 1 else np.zeros(null_iou.shape[:2])
    mean, sd = null_best.mean(axis=0), null_best.std(axis=0, ddof=1)
    scale = sd * math.sqrt(1 + 1 / d)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (best_iou - mean) / scale
    p = t_sf(np.nan_to_num(t, nan=0.0, posinf=1e300, neginf=-1e300), d - 1)
    degenerate = scale <= 0  # every draw scored the same: above it is certain, at or below it is not
    return np.where(degenerate, np.where(best_iou > mean, 0.0, 1.0), p)


def significant(p: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """``[C]`` bool: the p-values ``[C]`` that Benjamini-Hochberg keeps at false discovery rate ``level``
    (over all C; NaN, a p-value not computed, counts as 1)."""
    p = np.nan_to_num(np.asarray(p, dtype=np.float64), nan=1.0)
    m = len(p)
    if not m:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    passed = p[order] <= level * np.arange(1, m + 1) / m
    keep = np.zeros(m, dtype=bool)
    if passed.any():
        keep[order[: int(np.nonzero(passed)[0].max()) + 1]] = True
    return keep


def images_needed(
    null_iou: np.ndarray, n_images: int, iou_threshold: float, level: float = LEVEL, coverage: float = 0.99
) -> int:
    """Images for which a unit with no concept stays below ``iou_threshold`` by chance (see the
    module docstring): the ``coverage`` quantile over units of the per-unit need; -1 when no number
    of images suffices."""
    labels = null_iou[:, :, 1:]
    if labels.shape[2] == 0 or n_images <= 0:
        return 0
    mean, sd = labels.mean(axis=0), labels.std(axis=0, ddof=1)  # [C, L-1]
    z = NormalDist().inv_cdf(1 - level / labels.shape[2])
    room = iou_threshold - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(sd > 0, np.where(room > 0, n_images * (z * sd / room) ** 2, np.inf), 0.0)
    per_unit = need.max(axis=1)
    ranked = np.sort(per_unit)  # inf sorts last; no interpolation between units
    q = float(ranked[min(len(ranked) - 1, max(0, math.ceil(coverage * len(ranked)) - 1))])
    return int(math.ceil(q)) if math.isfinite(q) else -1
