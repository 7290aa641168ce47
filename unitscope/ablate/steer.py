"""Steering through units (Bau et al., PNAS 2020): switch off class A's key units, drive class B's
to a high quantile of their activation, and count how often predictions flip from A to B.

    high = unit_quantiles(train_cache, 0.99)                          # [C]
    rows, edits = steering(cut, val_cache, ranking, high, class_of_output, num_classes, n=5)
    rows[0]   # {"source": A, "target": B, "flip_rate": .., "base_rate": .., "images": ..}

``flip_rate`` is the fraction of class-A images predicted B after the edit; ``base_rate`` the
same fraction without it. Every (A, B) pair runs as one batched edit of the cached layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from unitscope.ablate.cut import FxCut, HookCut
from unitscope.ablate.evaluate import Edits, LayerCache, confusion
from unitscope.stats import Quantile


def unit_quantiles(cache: LayerCache, q: float) -> torch.Tensor:
    """Each unit's ``q`` quantile ``[C]`` over every image and position of ``cache`` (streaming sketch)."""
    stat = Quantile()
    for batch in cache.batches:
        z = batch.layer
        stat.add(z if z.dim() in (2, 4) else z.flatten(2))
    return stat.quantiles(q).float()


def steering_edits(ranking: torch.Tensor, high: torch.Tensor, pairs: Sequence[tuple[int, int]],
                   n: int) -> Edits:
    """One edit per (A, B): A's top-``n`` units to 0, B's top-``n`` to ``high`` (B wins on overlap)."""
    c = ranking.shape[1]
    mask = torch.zeros(len(pairs), c, dtype=torch.bool)
    value = torch.zeros(len(pairs), c)
    for k, (a, b) in enumerate(pairs):
        mask[k, ranking[a, :n]] = True
        value[k, ranking[a, :n]] = 0.0
        mask[k, ranking[b, :n]] = True
        value[k, ranking[b, :n]] = high[ranking[b, :n]]
    return Edits(mask, value)


def all_pairs(num_classes: int) -> list[tuple[int, int]]:
    return [(a, b) for a in range(num_classes) for b in range(num_classes) if a != b]


def steering(cut: FxCut | HookCut, cache: LayerCache, ranking: torch.Tensor, high: torch.Tensor,
             class_of_output: torch.Tensor, num_classes: int, *, n: int = 5,
             pairs: Sequence[tuple[int, int]] | None = None, max_batch: int = 512,
             progress: bool = False) -> tuple[list[dict], Edits]:
    """Rows per (A, B) pair (see the module docstring) and the edits used, in the rows' order."""
    pairs = list(pairs) if pairs is not None else all_pairs(num_classes)
    edits = steering_edits(ranking, high, pairs, n)
    none = Edits(torch.zeros(1, edits.mask.shape[1], dtype=torch.bool), torch.zeros(1, edits.mask.shape[1]))
    both = Edits(torch.cat([none.mask, edits.mask]), torch.cat([none.value, edits.value]))
    conf = confusion(cut, cache, both, class_of_output, num_classes, max_batch=max_batch, progress=progress)
    count = conf[0].sum(1)
    rows = []
    for k, (a, b) in enumerate(pairs):
        images = int(count[a])
        rows.append({"source": a, "target": b, "units": n, "images": images,
                     "flip_rate": float(conf[k + 1, a, b]) / max(images, 1),
                     "base_rate": float(conf[0, a, b]) / max(images, 1)})
    return rows, edits
