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

from unitscope.describe.defaults import LAMBDA
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
        t = evaluate(pool.concepts[start:start + chunk], pool.ops[start:start + chunk], table).t().float()
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
    return Choice(best, ml, pmi[rows, b].float(), log_given[rows, b].float(),
                  log_prior.expand_as(pmi)[rows, b].float())
