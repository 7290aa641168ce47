"""Units chosen jointly: a greedy causal ranking with a specificity bound (issue 24 item 3).

    cut = cut_model(generator, "relu2")                           # torch.fx: the layers before run once
    few = cache_samples(cut, generator, n=100, seed=2)            # selection samples (not the held-out seed)
    pool = list(dict.fromkeys(ace.ranking()[:40] + by_iou[:20]))  # candidates, e.g. ACE's and IoU's best
    greedy = greedy_ranking(cut, few, segmenter, "tree", pool, k=20, max_other=0.07)
    greedy.ranking()                                              # the 20 units, in the order chosen
    greedy.summary()                # "greedy 'tree': 20 units ... -58% of its pixels, worst other ..."

Forward selection: step ``j`` tries adding each remaining unit of ``pool`` to the ``j - 1`` units
chosen so far (every candidate set is one edit; all of a step's edits run in stacked tail passes,
``ablate.evaluate.run_edits``), and measures on the cached samples the relative change of every
label's pixels (as :func:`~unitscope.gan.effects.removal_curve`: ``sum(after - before) / sum(before)``).
It keeps the candidate whose set removes most of the concept **among those that keep every other
label of the concept's category covering at least ``min_share`` of the pixels within
+-``max_other``** of its own share; where no candidate keeps the bound, the one with the smallest
worst excess (ties: the larger removal), and the result records the step at which the bound broke.
A step costs ``len(pool) - j + 1`` edits over the samples (``shortlist``: from step 2 on, only the
best ``shortlist`` candidates of the previous step are tried again, a cheaper approximation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from unitscope.ablate.cut import FxCut, HookCut
from unitscope.ablate.evaluate import LayerCache, run_edits
from unitscope.edits import Edits
from unitscope.errors import UsageError
from unitscope.gan.effects import PixelShares, concept_label, relative_change
from unitscope.segment import Segmenter

__all__ = ["GreedyResult", "greedy_ranking"]


@dataclass
class GreedyResult:
    """The units chosen (``units``, in order) and, per step ``j`` (the first ``j + 1`` units off, on
    the selection samples): the concept's relative change ``change [k]``, the other label that moved
    most ``worst_name [k]`` and its relative change ``worst [k]``, and whether every other label stayed
    within +-``max_other`` (``within [k]``). ``others``: the labels the bound watched."""

    concept: str
    units: list[int]
    pool: list[int]
    max_other: float
    others: list[str]
    change: np.ndarray
    worst: np.ndarray
    worst_name: list[str]
    within: np.ndarray
    samples: int
    evaluations: int  # candidate sets tried, each over every sample
    seconds: float  # CPU time of the selection
    changes: list[dict[str, float]] = field(default_factory=list, repr=False)  # per step: every watched label

    def ranking(self) -> list[int]:
        """The units in the order chosen."""
        return list(self.units)

    @property
    def broke_at(self) -> int | None:
        """The first step (1-based: the number of units) whose best set moved another label beyond
        +-``max_other``, or None if the bound held to the end."""
        bad = np.flatnonzero(~self.within)
        return int(bad[0]) + 1 if len(bad) else None

    def table(self) -> list[dict[str, object]]:
        """One row per step: ``{"k", "unit", "change", "worst", "worst_name", "within"}``."""
        return [
            {
                "k": j + 1,
                "unit": u,
                "change": float(self.change[j]),
                "worst": float(self.worst[j]),
                "worst_name": self.worst_name[j],
                "within": bool(self.within[j]),
            }
            for j, u in enumerate(self.units)
        ]

    def summary(self) -> str:
        k = len(self.units)
        broke = self.broke_at
        return (
            f"greedy '{self.concept}' ({k} of a pool of {len(self.pool)}, bound +-{self.max_other:.0%} on "
            f"{len(self.others)} other labels, {self.samples} samples): {self.change[-1]:+.1%} of its pixels, "
            f"worst other {self.worst_name[-1] or '-'} {self.worst[-1]:+.1%}; "
            + (f"the bound broke at step {broke}" if broke else "the bound held at every step")
            + f" ({self.evaluations} sets tried, {self.seconds:.0f} s CPU)"
        )


def greedy_ranking(
    cut: FxCut | HookCut,
    samples: LayerCache,
    segmenter: Segmenter,
    concept: str,
    pool: Sequence[int],
    *,
    k: int = 20,
    max_other: float = 0.07,
    min_share: float = 0.005,
    shortlist: int | None = None,
    output_range: Sequence[float] = (0.0, 1.0),
    max_batch: int = 256,
    log: Callable[[str], None] | None = None,
) -> GreedyResult:
    """Choose ``k`` units of ``pool`` one at a time (see the module docstring): each step adds the
    unit whose set removes most of ``concept`` while every other label of its category (mean share
    before >= ``min_share`` on ``samples``) changes by at most ``max_other`` relative to its share.
    ``log``: called with one line per step (e.g. ``print``)."""
    c = samples.batches[0].layer.shape[1]
    pool = [int(u) for u in dict.fromkeys(int(u) for u in pool)]
    if not isinstance(k, int) or k < 1:
        raise UsageError(f"k must be a positive number of units, not {k!r}")
    if k > len(pool):
        raise UsageError(f"asked for {k} units, but the candidate pool holds only {len(pool)}: give a larger pool")
    bad = [u for u in pool if not 0 <= u < c]
    if bad:
        raise UsageError(f"units {bad[:5]} are not in the layer (it has {c} units, 0..{c - 1})")
    if shortlist is not None and shortlist < 1:
        raise UsageError(
            f"shortlist must be at least 1 candidate (or None: every candidate each step), not {shortlist}"
        )
    if not max_other > 0:
        raise UsageError(f"max_other must be positive (a relative change, e.g. 0.07), not {max_other!r}")
    number, _, label_cat = concept_label(segmenter, concept)  # a clear error for an unknown concept
    c0 = time.process_time()
    base = PixelShares(segmenter, 1, samples.count, output_range)
    run_edits(cut, samples, Edits.ablate(torch.zeros(1, c, dtype=torch.bool)), base, max_batch=max_batch)
    before = base.shares[0]  # [N, L]
    mean = before.mean(0)
    watched = [
        i
        for i, cat in enumerate(label_cat)
        if cat == label_cat[number] and i not in (0, number) and mean[i] >= min_share
    ]
    chosen: list[int] = []
    change: list[float] = []
    worst: list[float] = []
    worst_name: list[str] = []
    within: list[bool] = []
    rows: list[dict[str, float]] = []
    tried = 0
    ranked = list(pool)  # the remaining units, best of the last step first (the shortlist's order)
    for step in range(k):
        candidates = ranked[:shortlist] if shortlist and step else ranked
        mask = torch.zeros(len(candidates), c, dtype=torch.bool)
        mask[:, chosen] = True
        mask[torch.arange(len(candidates)), candidates] = True
        scorer = PixelShares(segmenter, len(candidates), samples.count, output_range)
        run_edits(cut, samples, Edits.ablate(mask), scorer, max_batch=max_batch)
        tried += len(candidates)
        rel = relative_change(scorer.shares, before)  # [R, L]
        own = rel[:, number]
        other = rel[:, watched].abs() if watched else torch.zeros(len(candidates), 1, dtype=torch.float64)
        excess = (other.max(1).values - max_other).clamp(min=0)
        # feasible first (no excess), then the smallest excess, then the largest removal, then pool order
        order = sorted(range(len(candidates)), key=lambda r: (float(excess[r]) > 0, float(excess[r]), float(own[r]), r))
        best = order[0]
        chosen.append(candidates[best])
        w = int(other[best].argmax()) if watched else -1
        change.append(float(own[best]))
        worst.append(float(rel[best, watched[w]]) if watched else 0.0)
        worst_name.append(base.names[watched[w]] if watched else "")
        within.append(bool(excess[best] == 0))
        rows.append({base.names[i]: float(rel[best, i]) for i in [number, *watched]})
        tried_now = [candidates[r] for r in order[1:]]
        ranked = tried_now + [u for u in ranked if u not in tried_now and u != chosen[-1]]
        if log is not None:
            log(
                f"  step {step + 1}: unit {chosen[-1]}: {concept} {change[-1]:+.1%}, worst other {worst_name[-1] or '-'} "
                f"{worst[-1]:+.1%} ({'within' if within[-1] else 'beyond'} +-{max_other:.0%}; "
                f"{len(mask)} candidates, {time.process_time() - c0:.0f} s CPU)"
            )
    return GreedyResult(
        concept,
        chosen,
        pool,
        max_other,
        [base.names[i] for i in watched],
        np.array(change),
        np.array(worst),
        worst_name,
        np.array(within, dtype=bool),
        samples.count,
        tried,
        time.process_time() - c0,
        rows,
    )
