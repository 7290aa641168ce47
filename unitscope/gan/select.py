"""Units chosen jointly: a greedy causal ranking with a specificity bound, and a swap search at a
fixed k that repairs or improves a set (issue 24 item 3).

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

    start = greedy.ranking()                                      # or the IoU top 20
    swap = swap_search(cut, few, segmenter, "tree", start, pool, max_other=0.09, rounds=8, exact=6)
    swap.ranking()                  # the 20 units after the swaps
    swap.summary()                  # "swap 'tree' (20 units, ...): 8 swaps, -62.9% -> -57.8% of its pixels, ..."

:func:`swap_search` keeps ``k`` fixed and never trusts a choice: each round it proposes swaps (one unit
of the set out, one unit of ``pool`` in) and makes the best one that improves the objective (first a
smaller **excess**, the worst other label's ``|change| - max_other`` clipped at 0; at equal excess, a
larger removal; ``repair="gentle"``: beyond the bound, the improving swap that keeps most of the
concept), until none does or after ``rounds``. The k x |pool| swaps are screened by first-order
figures: each unit's leave-one-out set ``S - u`` and each pool unit's add-one set ``S + v`` (``k + |pool
- S|`` sets; a swap's relative changes estimated as ``r(S - u) + r(S + v) - r(S)``), and only the
``exact`` best estimates are evaluated exactly; a round costs ``k + |pool - S| + exact`` sets over the
samples (the start set once more in round 1).
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

__all__ = ["GreedyResult", "SwapResult", "greedy_ranking", "swap_search"]


@dataclass(kw_only=True)
class _Chosen:
    """What both selections give: the ``units`` chosen from ``pool`` for ``concept``, the bound
    ``max_other`` on the watched labels ``others``, per step or round the concept's relative change
    ``change``, the watched label that moved most ``worst_name`` and its change ``worst``, and the cost:
    ``samples``, ``evaluations`` (sets evaluated, each over every sample) and ``seconds`` of CPU."""

    concept: str
    units: list[int]
    pool: list[int]
    max_other: float
    others: list[str]
    change: np.ndarray
    worst: np.ndarray
    worst_name: list[str]
    samples: int
    evaluations: int
    seconds: float

    def ranking(self) -> list[int]:
        """The units chosen, in the result's order."""
        return list(self.units)


@dataclass(kw_only=True)
class GreedyResult(_Chosen):
    """The units chosen (``units``, in order) and, per step ``j`` (the first ``j + 1`` units off, on
    the selection samples): the concept's relative change ``change [k]``, the other label that moved
    most ``worst_name [k]`` and its relative change ``worst [k]``, and whether every other label stayed
    within +-``max_other`` (``within [k]``). ``others``: the labels the bound watched; ``evaluations``:
    the candidate sets tried."""

    within: np.ndarray
    changes: list[dict[str, float]] = field(default_factory=list, repr=False)  # per step: every watched label

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


def _check(units: Sequence[int], c: int, max_other: float) -> None:
    """A clear error for units outside a layer of ``c`` units, or a bound that is not positive."""
    bad = [u for u in units if not 0 <= u < c]
    if bad:
        raise UsageError(f"units {bad[:5]} are not in the layer (it has {c} units, 0..{c - 1})")
    if not max_other > 0:
        raise UsageError(f"max_other must be positive (a relative change, e.g. 0.1), not {max_other!r}")


def _watch(
    cut: FxCut | HookCut,
    samples: LayerCache,
    segmenter: Segmenter,
    concept: str,
    min_share: float,
    output_range: Sequence[float],
    max_batch: int,
) -> tuple[int, torch.Tensor, list[int], list[str]]:
    """``(concept's label, shares before [N, L], watched labels, label names [L])``: the unedited
    samples' pixel shares, and the other labels of the concept's category covering at least
    ``min_share`` of the pixels on average (the labels the bound watches)."""
    number, _, label_cat = concept_label(segmenter, concept)  # a clear error for an unknown concept
    c = samples.batches[0].layer.shape[1]
    base = PixelShares(segmenter, 1, samples.count, output_range)
    run_edits(cut, samples, Edits.ablate(torch.zeros(1, c, dtype=torch.bool)), base, max_batch=max_batch)
    before = base.shares[0]  # [N, L]
    mean = before.mean(0)
    watched = [
        i
        for i, cat in enumerate(label_cat)
        if cat == label_cat[number] and i not in (0, number) and mean[i] >= min_share
    ]
    return number, before, watched, base.names


def _changes(
    cut: FxCut | HookCut,
    samples: LayerCache,
    segmenter: Segmenter,
    mask: torch.Tensor,
    before: torch.Tensor,
    output_range: Sequence[float],
    max_batch: int,
) -> torch.Tensor:
    """``mask [R, C]`` (each row a set of units switched off, all rows stacked in tail passes) ->
    every label's relative change under each set, ``[R, L]`` float64."""
    scorer = PixelShares(segmenter, len(mask), samples.count, output_range)
    run_edits(cut, samples, Edits.ablate(mask), scorer, max_batch=max_batch)
    return relative_change(scorer.shares, before)


def _excess(rel: torch.Tensor, watched: list[int], max_other: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``rel [R, L]`` -> ``(|change| of the watched labels [R, W], worst excess over the bound [R])``."""
    other = rel[:, watched].abs() if watched else torch.zeros(len(rel), 1, dtype=torch.float64)
    return other, (other.max(1).values - max_other).clamp(min=0)


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
    _check(pool, c, max_other)
    if shortlist is not None and shortlist < 1:
        raise UsageError(
            f"shortlist must be at least 1 candidate (or None: every candidate each step), not {shortlist}"
        )
    c0 = time.process_time()
    number, before, watched, names = _watch(cut, samples, segmenter, concept, min_share, output_range, max_batch)
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
        rel = _changes(cut, samples, segmenter, mask, before, output_range, max_batch)  # [R, L]
        tried += len(candidates)
        own = rel[:, number]
        other, excess = _excess(rel, watched, max_other)
        # feasible first (no excess), then the smallest excess, then the largest removal, then pool order
        order = sorted(range(len(candidates)), key=lambda r: (float(excess[r]) > 0, float(excess[r]), float(own[r]), r))
        best = order[0]
        chosen.append(candidates[best])
        w = int(other[best].argmax()) if watched else -1
        change.append(float(own[best]))
        worst.append(float(rel[best, watched[w]]) if watched else 0.0)
        worst_name.append(names[watched[w]] if watched else "")
        within.append(bool(excess[best] == 0))
        rows.append({names[i]: float(rel[best, i]) for i in [number, *watched]})
        tried_now = [candidates[r] for r in order[1:]]
        ranked = tried_now + [u for u in ranked if u not in tried_now and u != chosen[-1]]
        if log is not None:
            log(
                f"  step {step + 1}: unit {chosen[-1]}: {concept} {change[-1]:+.1%}, worst other {worst_name[-1] or '-'} "
                f"{worst[-1]:+.1%} ({'within' if within[-1] else 'beyond'} +-{max_other:.0%}; "
                f"{len(mask)} candidates, {time.process_time() - c0:.0f} s CPU)"
            )
    return GreedyResult(
        concept=concept,
        units=chosen,
        pool=pool,
        max_other=max_other,
        others=[names[i] for i in watched],
        change=np.array(change),
        worst=np.array(worst),
        worst_name=worst_name,
        within=np.array(within, dtype=bool),
        samples=samples.count,
        evaluations=tried,
        seconds=time.process_time() - c0,
        changes=rows,
    )


@dataclass(kw_only=True)
class SwapResult(_Chosen):
    """A set of ``k`` units improved by swaps (:func:`swap_search`): ``units`` (the start's order, each
    swapped-in unit in the place of the one it replaced), ``start``, and per round ``r`` (0: the start
    set; the sets on the selection samples): the concept's relative change ``change [R + 1]``, the
    watched label that moved most ``worst_name`` and its change ``worst [R + 1]``, the worst excess
    over +-``max_other`` ``excess [R + 1]``, and the swap made ``swaps [R]`` (unit out, unit in).
    ``evaluations`` counts the screening sets too. ``changes``: every watched label's change under the
    final set; ``stopped``: why the search ended."""

    start: list[int]
    excess: np.ndarray
    swaps: list[tuple[int, int]]
    stopped: str
    changes: dict[str, float] = field(default_factory=dict)

    @property
    def within(self) -> bool:
        """Whether the final set keeps every watched label within +-``max_other``."""
        return bool(self.excess[-1] == 0)

    def table(self) -> list[dict[str, object]]:
        """One row per round (0: the start): ``{"round", "out", "in", "change", "worst", "worst_name", "excess"}``."""
        return [
            {
                "round": r,
                "out": self.swaps[r - 1][0] if r else None,
                "in": self.swaps[r - 1][1] if r else None,
                "change": float(self.change[r]),
                "worst": float(self.worst[r]),
                "worst_name": self.worst_name[r],
                "excess": float(self.excess[r]),
            }
            for r in range(len(self.change))
        ]

    def summary(self) -> str:
        return (
            f"swap '{self.concept}' ({len(self.units)} units, pool {len(self.pool)}, bound +-{self.max_other:.0%} on "
            f"{len(self.others)} other labels, {self.samples} samples): {len(self.swaps)} swaps, "
            f"{self.change[0]:+.1%} -> {self.change[-1]:+.1%} of its pixels, worst other "
            f"{self.worst_name[0] or '-'} {self.worst[0]:+.1%} -> {self.worst_name[-1] or '-'} {self.worst[-1]:+.1%} "
            f"({'within' if self.within else 'beyond'} the bound; {self.stopped}; {self.evaluations} sets, "
            f"{self.seconds:.0f} s CPU)"
        )


def swap_search(
    cut: FxCut | HookCut,
    samples: LayerCache,
    segmenter: Segmenter,
    concept: str,
    start: Sequence[int],
    pool: Sequence[int],
    *,
    k: int | None = None,
    rounds: int = 10,
    exact: int = 6,
    max_other: float = 0.1,
    repair: str = "steepest",
    min_share: float = 0.005,
    output_range: Sequence[float] = (0.0, 1.0),
    max_batch: int = 256,
    log: Callable[[str], None] | None = None,
) -> SwapResult:
    """Improve the set of the first ``k`` units of ``start`` (default all of it) by swaps with
    ``pool`` (see the module docstring): each round screens every (out, in) pair by first-order
    figures, evaluates the ``exact`` best estimates exactly and makes the best swap if it lowers the
    worst excess of the other labels (mean share before >= ``min_share`` on ``samples``) over
    +-``max_other``, or at equal excess removes more of ``concept``. At most ``rounds`` swaps. Among
    the improving swaps of a set beyond the bound, ``repair="steepest"`` makes the one with the
    smallest excess (then the largest removal), ``"gentle"`` the one with the largest removal (a
    smaller step towards the bound that gives up less of the concept). ``log``: one line per round."""
    c = samples.batches[0].layer.shape[1]
    start = [int(u) for u in start]
    k = len(start) if k is None else k
    if not isinstance(k, int) or k < 1:
        raise UsageError(f"k must be a positive number of units, not {k!r}")
    if k > len(start):
        raise UsageError(f"asked for a set of {k} units, but the start names only {len(start)}: give a longer start")
    current = start[:k]
    if len(set(current)) < k:
        raise UsageError(f"the start's first {k} units repeat a unit: {current}")
    pool = [int(u) for u in dict.fromkeys(int(u) for u in pool)]
    _check(current + pool, c, max_other)
    if not [u for u in pool if u not in current]:
        raise UsageError("the pool has no unit outside the start set: nothing to swap in; give a larger pool")
    if not isinstance(rounds, int) or rounds < 0:
        raise UsageError(f"rounds must be a number of swaps (0 or more), not {rounds!r}")
    if not isinstance(exact, int) or exact < 1:
        raise UsageError(f"exact must be at least 1 swap evaluated exactly per round, not {exact!r}")
    if repair not in ("steepest", "gentle"):
        raise UsageError(f"repair must be 'steepest' or 'gentle', not {repair!r}")
    c0 = time.process_time()
    number, before, watched, names = _watch(cut, samples, segmenter, concept, min_share, output_range, max_batch)

    def masks(sets: list[list[int]]) -> torch.Tensor:
        mask = torch.zeros(len(sets), c, dtype=torch.bool)
        for row, units in enumerate(sets):
            mask[row, units] = True
        return mask

    def key(rel: torch.Tensor) -> tuple[float, float]:  # [L] -> (worst excess, the concept's change): lower is better
        return float(_excess(rel.unsqueeze(0), watched, max_other)[1][0]), float(rel[number])

    rels = [_changes(cut, samples, segmenter, masks([current]), before, output_range, max_batch)[0]]  # r(start)
    swaps: list[tuple[int, int]] = []
    tried = 1
    stopped = f"stopped after {rounds} rounds"
    for rnd in range(rounds):
        incoming = [u for u in pool if u not in current]
        sets = [[u for u in current if u != out] for out in current] + [current + [v] for v in incoming]
        rel = _changes(cut, samples, segmenter, masks(sets), before, output_range, max_batch)
        tried += len(sets)
        base = rels[-1]  # r(S) [L]
        loo, add = rel[:k], rel[k:]  # r(S - u) [k, L], r(S + v) [P, L]
        estimate = loo.unsqueeze(1) + add.unsqueeze(0) - base  # [k, P, L]: r(S - u + v), first order
        flat = estimate.reshape(-1, estimate.shape[-1])
        _, est_excess = _excess(flat, watched, max_other)
        est_own = flat[:, number]
        now = key(base)

        def rank(e: float, own: float) -> tuple[bool, float, float]:  # the swap to prefer: lower is better
            if repair == "gentle" and now[0] > 0:  # beyond the bound: the most removal among those that lower it
                better = (e, own) < now
                return (not better, own, e) if better else (True, e, own)
            return (False, e, own)

        order = sorted(range(len(flat)), key=lambda r: (*rank(float(est_excess[r]), float(est_own[r])), r))[:exact]
        pairs = [(current[r // len(incoming)], incoming[r % len(incoming)]) for r in order]
        proposed = [[v if u == out else u for u in current] for out, v in pairs]
        exact_rel = _changes(cut, samples, segmenter, masks(proposed), before, output_range, max_batch)
        tried += len(proposed)
        best = min(range(len(proposed)), key=lambda r: (*rank(*key(exact_rel[r])), r))
        if not key(exact_rel[best]) < now:
            stopped = f"no swap of the {len(proposed)} best estimates improved in round {rnd + 1}"
            break
        current = proposed[best]
        swaps.append(pairs[best])
        rels.append(exact_rel[best])
        if log is not None:
            e, own = key(exact_rel[best])
            log(
                f"  round {rnd + 1}: unit {pairs[best][0]} out, {pairs[best][1]} in: {concept} {own:+.1%}, "
                f"worst excess {e:.1%} ({len(sets) + len(proposed) + (rnd == 0)} sets, "  # round 1: the start too
                f"{time.process_time() - c0:.0f} s CPU)"
            )
    table = torch.stack(rels)  # [R + 1, L]
    other, excess = _excess(table, watched, max_other)
    worst_col = [watched[int(i)] for i in other.argmax(1)] if watched else []
    return SwapResult(
        concept=concept,
        units=current,
        start=start[:k],
        pool=pool,
        max_other=max_other,
        others=[names[i] for i in watched],
        change=table[:, number].numpy(),
        worst=np.array([float(table[r, i]) for r, i in enumerate(worst_col)] if watched else [0.0] * len(table)),
        worst_name=[names[i] for i in worst_col] if watched else [""] * len(table),
        excess=excess.numpy(),
        swaps=swaps,
        samples=samples.count,
        evaluations=tried,
        seconds=time.process_time() - c0,
        stopped=stopped,
        changes={names[i]: float(table[-1, i]) for i in [number, *watched]},
    )
