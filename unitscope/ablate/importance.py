"""Per-class importance of single units (Bau et al., PNAS 2020) and the top-N test on held-out data.

    imp = unit_importance(cut, train_cache, class_of_output, num_classes)   # every unit alone
    imp.drop                 # [C, Y] class accuracy with the unit minus without it (positive: it helps)
    imp.probability_drop     # [C, Y] the same for the mean softmax mass on the class (breaks ties)
    ranking = imp.ranking()  # [Y, C] units per class, most important first
    rows = top_n_test(cut, val_cache, ranking, class_of_output, num_classes, ns=[1, 2, 5, 10])

``top_n_test`` removes each class's N most important units (``remove``), keeps only them and
removes the rest (``keep``), and, as a control, removes N units drawn at random (``random``);
each row gives that class's accuracy and the mean accuracy of the other classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unitscope.ablate.cut import FxCut, HookCut
from unitscope.ablate.evaluate import Edits, LayerCache, confusion, metrics

DEFAULT_NS = (1, 2, 3, 4, 5, 10, 20, 50, 100, 200, 500)


@dataclass
class Importance:
    """``drop`` ``[C, Y]``, ``balanced_drop`` ``[C, Y]``, ``overall_drop`` ``[C]``, ``probability_drop``
    ``[C, Y]`` (the class's mean softmax mass on its own outputs with the unit minus without); ``base`` metrics."""

    drop: torch.Tensor
    balanced_drop: torch.Tensor
    overall_drop: torch.Tensor
    base_accuracy: float
    base_class_accuracy: torch.Tensor
    images: int
    probability_drop: torch.Tensor | None = None

    def ranking(self) -> torch.Tensor:
        """``[Y, C]``: per class the units by decreasing drop; see :func:`rank_units` for ties."""
        return rank_units(self.drop, self.probability_drop)


def rank_units(drop: torch.Tensor, probability_drop: torch.Tensor | None = None) -> torch.Tensor:
    """``[Y, C]`` from drops ``[C, Y]``: per class the units by decreasing accuracy drop. Ties (on a
    few hundred images most units change no prediction) go to the larger ``probability_drop``, then
    to the lower unit. Without the tie-break, a class's "top 20" would be its few units with a
    drop followed by units 0, 1, 2, ... -- in effect random units."""
    order = torch.arange(drop.shape[0]).expand(drop.shape[1], -1)
    if probability_drop is not None:
        order = torch.sort(-probability_drop.t(), dim=1, stable=True).indices
    by_drop = torch.sort(-drop.t().gather(1, order), dim=1, stable=True).indices
    return order.gather(1, by_drop)


def unit_importance(
    cut: FxCut | HookCut,
    cache: LayerCache,
    class_of_output: torch.Tensor,
    num_classes: int,
    *,
    mode: str = "zero",
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    max_batch: int = 512,
    seed: int = 0,
    progress: bool = False,
) -> Importance:
    """Ablate every unit of the cut layer alone (and nothing, for the baseline) on ``cache``."""
    c = cache.batches[0].layer.shape[1]
    mask = torch.cat([torch.zeros(1, c, dtype=torch.bool), torch.eye(c, dtype=torch.bool)])
    mass = torch.zeros(c + 1, num_classes, dtype=torch.float64)
    conf = confusion(
        cut,
        cache,
        Edits.ablate(mask, mode, mean, std),
        class_of_output,
        num_classes,
        max_batch=max_batch,
        seed=seed,
        progress=progress,
        probability=mass,
    )
    return importance_from(conf, mass, cache.count)


def importance_from(conf: torch.Tensor, mass: torch.Tensor, images: int) -> Importance:
    """:class:`Importance` from the confusion counts ``[1 + U, Y, Y]`` and summed class probabilities
    ``[1 + U, Y]`` of a baseline (row 0) and ``U`` single removals (units or directions)."""
    m = metrics(conf)
    mass = mass / m["count"].clamp(min=1)
    return Importance(
        probability_drop=(mass[0] - mass[1:]).float(),
        drop=(m["class_accuracy"][0] - m["class_accuracy"][1:]).float(),
        balanced_drop=(m["balanced"][0] - m["balanced"][1:]).float(),
        overall_drop=(m["accuracy"][0] - m["accuracy"][1:]).float(),
        base_accuracy=float(m["accuracy"][0]),
        base_class_accuracy=m["class_accuracy"][0].float(),
        images=images,
    )


def top_n_masks(ranking: torch.Tensor, ns: Sequence[int], seed: int = 0) -> tuple[torch.Tensor, list[dict]]:
    """Masks ``[K, C]`` for every (class, n, kind) and their descriptions, baseline first."""
    y, c = ranking.shape
    gen = torch.Generator().manual_seed(seed)
    masks, keys = [torch.zeros(c, dtype=torch.bool)], [{"class": -1, "n": 0, "kind": "none"}]
    for cls in range(y):
        for n in ns:
            top = torch.zeros(c, dtype=torch.bool)
            top[ranking[cls, :n]] = True
            rand = torch.zeros(c, dtype=torch.bool)
            rand[torch.randperm(c, generator=gen)[:n]] = True
            for kind, m in (("remove", top), ("keep", ~top), ("random", rand)):
                masks.append(m)
                keys.append({"class": cls, "n": n, "kind": kind})
    return torch.stack(masks), keys


def top_n_test(
    cut: FxCut | HookCut,
    cache: LayerCache,
    ranking: torch.Tensor,
    class_of_output: torch.Tensor,
    num_classes: int,
    *,
    ns: Sequence[int] = DEFAULT_NS,
    mode: str = "zero",
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    max_batch: int = 512,
    seed: int = 0,
    progress: bool = False,
) -> list[dict]:
    """Rows ``{class, n, kind, class_accuracy, other_accuracy, class_balanced}``; n=0 is the unablated model."""
    ns = [n for n in ns if 0 < n <= ranking.shape[1]]
    masks, keys = top_n_masks(ranking, ns, seed)
    conf = confusion(
        cut,
        cache,
        Edits.ablate(masks, mode, mean, std),
        class_of_output,
        num_classes,
        max_batch=max_batch,
        seed=seed,
        progress=progress,
    )
    m = metrics(conf)
    acc, bal = m["class_accuracy"], m["balanced"]
    rows = []
    for cls in range(num_classes):
        others = [o for o in range(num_classes) if o != cls]
        rows.append(_row(cls, 0, "none", acc[0], bal[0], others))
        for k, key in enumerate(keys):
            if key["class"] == cls:
                rows.append(_row(cls, key["n"], key["kind"], acc[k], bal[k], others))
    return rows


def _row(cls: int, n: int, kind: str, acc: torch.Tensor, bal: torch.Tensor, others: list[int]) -> dict:
    other = float(acc[others].mean()) if others else float("nan")
    return {
        "class": cls,
        "n": n,
        "kind": kind,
        "class_accuracy": float(acc[cls]),
        "other_accuracy": other,
        "class_balanced": float(bal[cls]),
    }
