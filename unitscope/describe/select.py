"""Choosing each unit's description by pointwise mutual information (MILAN's rule).

    pool = pool_candidates(found, len(vocab))                 # the candidates of all units, once each
    s = exemplar_scores(counts, pool, sigs.table)             # [U, D]: IoU of every d on every unit's exemplars
    choice = choose(s, lam=0.2)                               # choice.pmi [U], choice.ml [U] (pool indices)

``p(d | E_u)`` is the exemplar IoU of d on unit u normalised over the pool:
``s(d, u) / sum_d' s(d', u)``, a distribution over descriptions for each unit (the normaliser
does not change the unit's own ranking, but it keeps a unit whose masks overlap everything from
dominating ``p(d)``). ``p(d) = mean_u p(d | E_u)`` over all units described: how well d fits a
unit picked at random. The chosen description maximises ``log p(d | E_u) - lam * log p(d)``
(lam = 0.2, as MILAN); ``lam = 0`` is maximum likelihood, the best exemplar IoU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unitscope.describe.defaults import LAMBDA, PRIOR_UNITS
from unitscope.describe.formulas import Found, UnitCounts, canonical_keys, evaluate, iou


@dataclass
class Pool:
    """Distinct formulas ``concepts [D, 3]``, ``ops [D, 3]``; ``index [U, N]`` the pool entry of
    each unit's candidate (-1 where it had none)."""

    concepts: torch.Tensor
    ops: torch.Tensor
    index: torch.Tensor


def pool_candidates(found: Found, num_concepts: int) -> Pool:
    keys = canonical_keys(found.concepts, found.ops, num_concepts)  # [U, N]
    ok = torch.isfinite(found.score)
    uniq, inverse = torch.unique(keys[ok], return_inverse=True)
    first = torch.full((len(uniq),), keys[ok].numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(inverse)), reduce="amin")
    concepts, ops = found.concepts[ok][first], found.ops[ok][first]
    index = torch.full(keys.shape, -1, dtype=torch.long)
    index[ok] = inverse
    return Pool(concepts, ops, index)


def exemplar_scores(counts: UnitCounts, pool: Pool, table: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """``[U, D]``: IoU of every pool formula with every unit's mask on its exemplars (``table [S, K]``
    the concepts of each signature)."""
    u, s = len(counts), table.shape[0]
    rows = torch.arange(u)[:, None].expand_as(counts.sig)
    keep = counts.total > 0
    idx = torch.stack([rows[keep], counts.sig[keep]])
    inside = torch.sparse_coo_tensor(idx, counts.inside[keep], (u, s), check_invariants=False).coalesce()
    total = torch.sparse_coo_tensor(idx, counts.total[keep], (u, s), check_invariants=False).coalesce()
    m = counts.mask_area[:, None]
    out = []
    for start in range(0, len(pool.concepts), chunk):
        t = evaluate(pool.concepts[start : start + chunk], pool.ops[start : start + chunk], table).t().float()
        out.append(iou(torch.sparse.mm(inside, t), torch.sparse.mm(total, t), m))
    return torch.cat(out, 1) if out else torch.zeros(u, 0)


@dataclass
class Choice:
    """Pool indices of each unit's PMI and maximum-likelihood descriptions ``[U]`` (-1: none), the
    PMI of the chosen one, ``log p(d | E_u)`` and ``log p(d)`` of it."""

    pmi: torch.Tensor
    ml: torch.Tensor
    score: torch.Tensor
    log_likelihood: torch.Tensor
    log_prior: torch.Tensor


def choose(scores: torch.Tensor, lam: float = LAMBDA, allowed: torch.Tensor | None = None) -> Choice:
    """``scores [U, D]`` (exemplar IoU, >= 0); ``allowed [U, D]`` bool limits each unit's choice
    (default: the whole pool)."""
    s = scores.double()
    z = s.sum(1, keepdim=True)
    p_given = torch.where(z > 0, s / z.clamp_min(1e-300), torch.zeros_like(s))
    prior = p_given.mean(0, keepdim=True)  # p(d) over the units described
    log_given = torch.log(p_given)
    log_prior = torch.log(prior)
    pmi = log_given - lam * log_prior
    ok = p_given > 0
    if allowed is not None:
        ok &= allowed
    pmi = pmi.masked_fill(~ok, float("-inf"))
    best = pmi.argmax(1)
    ml = log_given.masked_fill(~ok, float("-inf")).argmax(1)
    none = ~ok.any(1)
    best[none], ml[none] = -1, -1
    rows = torch.arange(len(best))
    b = best.clamp_min(0)
    return Choice(best, ml, pmi[rows, b].float(), log_given[rows, b].float(), log_prior.expand_as(pmi)[rows, b].float())


def choose_candidates(
    found: Found,
    pool: Pool,
    counts: UnitCounts,
    table: torch.Tensor,
    lam: float = LAMBDA,
    sample: int = PRIOR_UNITS,
    seed: int = 0,
    rerank: torch.Tensor | None = None,
    top: int = 1,
) -> Choice:
    """Each unit's PMI and maximum-likelihood choice among its own candidates (``found``), with
    ``p(d)`` estimated on at most ``sample`` units of the layer (all of them when fewer).

    For a sampled unit, ``p(d | E_u)`` is its exemplar IoU with d normalised over the pool, and
    ``p(d)`` is their mean over the sample. A unit outside the sample is added to the mean (its
    ``p(d | E_u)`` normalised over its own candidates), so a description that fits no sampled
    unit still has ``p(d) > 0``. The normaliser of a unit's own ``p(d | E_u)`` is a constant for
    that unit: it never changes which description wins.
    """
    u = len(counts)
    g = torch.Generator().manual_seed(seed)
    picked = torch.randperm(u, generator=g)[:sample].sort().values if u > sample else torch.arange(u)
    in_sample = torch.zeros(u, dtype=torch.bool)
    in_sample[picked] = True
    s_m = exemplar_scores(counts.select(picked), pool, table).double()  # [M, D]
    p_m = s_m / s_m.sum(1, keepdim=True).clamp_min(1e-300)
    total = p_m.sum(0)  # [D]
    m = len(picked)
    score = found.score.double()
    ok = torch.isfinite(score) & (score > 0) & (pool.index >= 0)
    idx = pool.index.clamp_min(0)
    # a formula repeated among a unit's candidates (kept at several beam steps) counts once
    first = torch.ones_like(ok)
    same = (
        (idx[:, :, None] == idx[:, None, :])
        & ok[:, None, :]
        & torch.ones(idx.shape[1], idx.shape[1], dtype=torch.bool).tril(-1)
    )
    first &= ~same.any(2)
    ok &= first
    s = torch.where(ok, score, torch.zeros_like(score))
    own = s / s.sum(1, keepdim=True).clamp_min(1e-300)  # [U, N]
    prior = torch.where(in_sample[:, None], total[idx] / m, (total[idx] + own) / (m + 1))
    log_given = torch.log(own)
    log_prior = torch.log(prior.clamp_min(1e-300))
    pmi = (log_given - lam * log_prior).masked_fill(~ok, float("-inf"))
    best = pmi.argmax(1)
    if rerank is not None and top > 1:  # equal scores (often the same mask): the shorter formula
        best = rerank_top(pmi, rerank.double() - 1e-9 * (found.concepts >= 0).sum(-1), top)
    ml = log_given.masked_fill(~ok, float("-inf")).argmax(1)
    rows = torch.arange(u)
    none = ~ok.any(1)
    out = Choice(
        idx[rows, best],
        idx[rows, ml],
        pmi[rows, best].float(),
        log_given[rows, best].float(),
        log_prior[rows, best].float(),
    )
    out.pmi[none], out.ml[none] = -1, -1
    out.exemplar_iou = s[rows, best].float()  # type: ignore[attr-defined]
    out.ml_exemplar_iou = s[rows, ml].float()  # type: ignore[attr-defined]
    out.ml_log_prior = log_prior[rows, ml].float()  # type: ignore[attr-defined]
    return out


def rerank_top(pmi: torch.Tensor, rerank: torch.Tensor, top: int) -> torch.Tensor:
    """``[U]`` column of ``pmi [U, N]`` (-inf: not a candidate) with the best ``rerank [U, N]``
    among each row's ``top`` best by PMI; ties go to the better PMI."""
    k = min(top, pmi.shape[1])
    values, order = pmi.topk(k, dim=1)  # best PMI first
    r = torch.gather(rerank.double(), 1, order).masked_fill(torch.isinf(values), float("-inf"))
    # the first maximum in PMI order: ties keep the better PMI
    pick = (r == r.max(1, keepdim=True).values).to(torch.int8).argmax(1)
    return order[torch.arange(len(order)), pick]
