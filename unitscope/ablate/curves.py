"""Cumulative ablation curves (Morcos et al., ICLR 2018): remove a growing random fraction of a
layer's units and watch accuracy fall; a network that relies on single directions falls fast.

    curves = ablation_curves(cut, val_cache, class_of_output, num_classes, seeds=5)
    curves["zero"]            # accuracy [seeds, fractions]; curves["fractions"] [F]
    curve_area(curves["fractions"], curves["zero"].mean(0))   # area under the mean curve, in [0, 1]

Seed ``s`` draws one random order of the units; at fraction f its first ``round(f * C)`` units
are removed, so the sets are nested along a curve. ``noise`` replaces them with Gaussian noise
of each unit's own mean and standard deviation. ``orders`` replaces the random orders by given
ones (one curve per order; ``unitscope.audit.analysis`` orders units by their descriptions).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from unitscope.ablate.cut import FxCut, HookCut
from unitscope.ablate.evaluate import Edits, LayerCache, confusion, metrics

DEFAULT_FRACTIONS = tuple(round(f, 2) for f in np.linspace(0, 1, 11))


def curve_masks(units: int, fractions: Sequence[float], seeds: Sequence[int]) -> torch.Tensor:
    """``[S * F, C]``: seed-major nested random masks."""
    return order_masks(
        [torch.randperm(units, generator=torch.Generator().manual_seed(int(s))) for s in seeds], units, fractions
    )


def order_masks(orders: Sequence[Sequence[int] | torch.Tensor], units: int, fractions: Sequence[float]) -> torch.Tensor:
    """``[O * F, C]``: for each order (unit indices, first removed first), its first ``round(f * C)`` units."""
    masks = []
    for order in orders:
        order = torch.as_tensor(order, dtype=torch.long)
        for f in fractions:
            m = torch.zeros(units, dtype=torch.bool)
            m[order[: int(round(f * units))]] = True
            masks.append(m)
    return torch.stack(masks)


def ablation_curves(
    cut: FxCut | HookCut,
    cache: LayerCache,
    class_of_output: torch.Tensor,
    num_classes: int,
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: int | Sequence[int] = 5,
    modes: Sequence[str] = ("zero", "noise"),
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    max_batch: int = 512,
    progress: bool = False,
    orders: Sequence[Sequence[int]] | None = None,
) -> dict[str, np.ndarray]:
    """``{"fractions": [F], "seeds": [S], mode: accuracy [S, F] for each mode}``; with ``orders``
    (each a sequence of unit indices, every unit once) one row per order instead of per seed."""
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    units = cache.batches[0].layer.shape[1]
    if orders is not None:
        bad = [k for k, o in enumerate(orders) if sorted(int(u) for u in o) != list(range(units))]
        if bad:
            raise ValueError(f"order {bad[0]} is not a permutation of the layer's {units} units")
        seeds = list(range(len(orders)))
        masks = order_masks(orders, units, fractions)
    else:
        masks = curve_masks(units, fractions, seeds)
    out: dict[str, np.ndarray] = {"fractions": np.asarray(fractions, np.float64), "seeds": np.asarray(seeds)}
    for mode in modes:
        conf = confusion(
            cut,
            cache,
            Edits.ablate(masks, mode, mean, std),
            class_of_output,
            num_classes,
            max_batch=max_batch,
            seed=seeds[0],
            progress=progress,
        )
        out[mode] = metrics(conf)["accuracy"].numpy().reshape(len(seeds), len(fractions))
    return out


def curve_area(fractions: np.ndarray, accuracy: np.ndarray) -> float:
    """Trapezoid area under accuracy over the fraction axis (1.0: no loss at any fraction)."""
    f = np.asarray(fractions, np.float64)
    a = np.asarray(accuracy, np.float64)
    return float(np.sum((a[1:] + a[:-1]) * np.diff(f)) / 2 / (f[-1] - f[0]))
