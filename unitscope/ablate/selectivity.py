"""Class selectivity (Morcos et al., ICLR 2018) and how it relates to importance.

    means = class_means(cache, num_classes)            # [Y, C] of spatially averaged activations
    si, top = class_selectivity(means)                 # [C] in [0, 1] for non-negative maps; [C] class
    correlation(si, imp.overall_drop)                  # {"pearson": r, "spearman": rho}

SI = (mu_max - mu_-max) / (mu_max + mu_-max): mu_max the unit's largest class mean, mu_-max the
mean over the other classes. A dead unit (all means 0) gets SI 0. Meant for post-ReLU maps.
"""

from __future__ import annotations

import numpy as np
import torch

from unitscope.ablate.evaluate import LayerCache
from unitscope.stats import ClassMeans


def spatial_mean(z: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` (or ``[N, C]``) -> ``[N, C]``."""
    return z.flatten(2).mean(2) if z.dim() > 2 else z


def class_means(cache: LayerCache, num_classes: int) -> torch.Tensor:
    """Per-class means ``[Y, C]`` of each unit's spatially averaged activation over ``cache``."""
    stat = ClassMeans(num_classes)
    for batch, labels in zip(cache.batches, cache.labels):
        stat.add(spatial_mean(batch.layer).float(), labels)
    return stat.mean().float()


def class_selectivity(means: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``means`` ``[Y, C]`` -> (SI ``[C]``, the class of the largest mean ``[C]``); classes without
    images (NaN rows) are left out."""
    seen = torch.nonzero(~means.isnan().any(1)).reshape(-1)
    means = means[seen].double()
    y = means.shape[0]
    top_val, top = means.max(0)
    top = seen[top]
    rest = (means.sum(0) - top_val) / max(y - 1, 1)
    denom = top_val + rest
    si = torch.where(denom != 0, (top_val - rest) / torch.where(denom != 0, denom, 1), torch.zeros_like(denom))
    return si.float(), top


def correlation(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> dict[str, float]:
    """Pearson's r and Spearman's rho (Pearson of average ranks); NaN when either is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return {"pearson": _pearson(a, b), "spearman": _pearson(_ranks(a), _ranks(b))}


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    for v in np.unique(x):  # ties share their average rank
        tie = x == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks
