"""Formulas of up to three concepts (AND, OR, AND NOT), found by beam search for many units at once.

    counts = unit_counts(sigs.ids, images, masks, sigs.size)      # per unit: pixels per signature
    found = beam_search(counts, sigs.table, vocab.position, beam=10, length=3)
    found.concepts[u], found.ops[u], found.score[u]               # [N, 3], [N, 3], [N]: unit u's candidates

A formula is read left to right: ``((c0 op1 c1) op2 c2)``; ``ops[j]`` is one of :data:`AND`,
:data:`OR`, :data:`AND_NOT` (``ops[0]`` is :data:`FIRST`, unused slots -1). Its score for a unit is
the IoU of the unit's mask with the formula's mask, pooled over the unit's exemplar images.

Everything is counted per *signature* (a pixel's concept set, :mod:`.concepts`): with ``inside[u, s]``
(mask pixels of unit u with signature s) and ``total[u, s]`` (all its exemplar pixels with s), a
formula ``f`` (true on a set of signatures) has intersection ``inside[u] . f`` and area
``total[u] . f``. Each beam step scores every (unit, beam entry, concept, operator) with two
batched matrix products over the unit's own signatures; nothing loops over units or candidates
in Python. Per unit only the signatures present in its exemplars are kept (``UnitCounts.sig``),
a few hundred of the data set's tens of thousands.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from unitscope.describe.defaults import BEAM, LENGTH, MIN_GAIN

FIRST, AND, OR, AND_NOT = 0, 1, 2, 3
OP_NAMES = {AND: "AND", OR: "OR", AND_NOT: "AND NOT"}


@dataclass
class UnitCounts:
    """Per unit, over its own signatures: ``sig [U, S']`` (global ids; padding has zero counts),
    ``inside [U, S']`` (unit-mask pixels), ``total [U, S']`` (all pixels of its images)."""

    sig: torch.Tensor
    inside: torch.Tensor
    total: torch.Tensor

    @property
    def mask_area(self) -> torch.Tensor:
        return self.inside.sum(1)

    def __len__(self) -> int:
        return self.sig.shape[0]

    def select(self, units: slice | torch.Tensor) -> UnitCounts:
        return UnitCounts(self.sig[units], self.inside[units], self.total[units])


def unit_counts(
    ids: torch.Tensor, images: torch.Tensor, masks: torch.Tensor, num_signatures: int, chunk: int = 64
) -> UnitCounts:
    """``ids [N, P]`` signature of every pixel of N images; ``images [U, E]`` rows of ``ids`` that
    are unit u's exemplars; ``masks [U, E, P]`` bool, the unit's mask on them."""
    parts = []
    for start in range(0, images.shape[0], chunk):
        img, msk = images[start : start + chunk], masks[start : start + chunk]
        u = img.shape[0]
        sig = ids[img].flatten(1)  # [u, E*P]
        code = torch.arange(u)[:, None] * num_signatures + sig
        uniq, inverse, total = torch.unique(code.flatten(), return_inverse=True, return_counts=True)
        inside = torch.bincount(inverse[msk.flatten()], minlength=len(uniq))
        owner = uniq // num_signatures
        first = torch.searchsorted(owner, torch.arange(u))
        local = torch.arange(len(uniq)) - first[owner]
        width = int(local.max()) + 1 if len(local) else 1
        out = [torch.zeros(u, width, dtype=torch.long), torch.zeros(u, width), torch.zeros(u, width)]
        out[0][owner, local] = uniq % num_signatures
        out[1][owner, local] = inside.float()
        out[2][owner, local] = total.float()
        parts.append(out)
    width = max(p[0].shape[1] for p in parts)
    pad = [[torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in p] for p in parts]
    return UnitCounts(*(torch.cat([p[i] for p in pad]) for i in range(3)))


@dataclass
class Found:
    """Candidates per unit: ``concepts [U, N, 3]``, ``ops [U, N, 3]`` (-1: unused), ``score [U, N]``
    (exemplar IoU; -inf: no candidate in that slot)."""

    concepts: torch.Tensor
    ops: torch.Tensor
    score: torch.Tensor


def iou(inter: torch.Tensor, area: torch.Tensor, mask_area: torch.Tensor) -> torch.Tensor:
    """IoU from intersection, formula area and mask area (broadcast); 0 where the union is empty."""
    union = mask_area + area - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(union))


def apply(op: torch.Tensor, f: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Truth of ``f op c`` elementwise (bool tensors; ``op`` broadcasts)."""
    return torch.where(op == AND, f & c, torch.where(op == OR, f | c, f & ~c))


def beam_search(
    counts: UnitCounts,
    table: torch.Tensor,
    modifier: torch.Tensor,
    *,
    beam: int = BEAM,
    length: int = LENGTH,
    min_gain: float = MIN_GAIN,
    chunk: int = 64,
) -> Found:
    """Every unit's best formulas of up to ``length`` concepts (Mu & Andreas 2020's beam search,
    batched over units). ``table [S, K]`` bool: the concepts of each signature; ``modifier [K]``
    bool: concepts that may only be ANDed onto a formula (positions). Returns the beam after each
    step (``beam * length`` candidates per unit)."""
    outs = [
        _search_chunk(counts.select(slice(s, s + chunk)), table, modifier, beam, length, min_gain)
        for s in range(0, len(counts), chunk)
    ]
    return Found(*(torch.cat([getattr(o, f) for o in outs]) for f in ("concepts", "ops", "score")))


def _search_chunk(
    counts: UnitCounts, table: torch.Tensor, modifier: torch.Tensor, beam: int, length: int, min_gain: float
) -> Found:
    t = table[counts.sig]  # [u, s, K] bool
    tf = t.float()
    u, s, k = t.shape
    m = counts.mask_area[:, None]
    inside, total = counts.inside, counts.total
    i1 = torch.bmm(inside[:, None, :], tf)[:, 0]  # [u, K]
    a1 = torch.bmm(total[:, None, :], tf)[:, 0]
    score1 = iou(i1, a1, m)
    score1 = score1.masked_fill(modifier[None, :] | (i1 <= 0), float("-inf"))
    b = min(beam, k)
    score, c0 = score1.topk(b, dim=1)  # [u, B]
    concepts = torch.full((u, b, 3), -1, dtype=torch.long)
    ops = torch.full((u, b, 3), -1, dtype=torch.long)
    concepts[:, :, 0], ops[:, :, 0] = c0, FIRST
    truth = torch.gather(t, 2, c0[:, None, :].expand(u, s, b)).transpose(1, 2)  # [u, B, s]
    found = [(concepts.clone(), ops.clone(), score.clone())]
    weights = torch.randint(-(2**62), 2**62, (s,), generator=torch.Generator().manual_seed(0))
    op_codes = torch.tensor([AND, OR, AND_NOT])
    for step in range(1, length):
        tfb = truth.float()
        ci, ct = inside[:, None, :] * tfb, total[:, None, :] * tfb
        i_and, a_and = torch.bmm(ci, tf), torch.bmm(ct, tf)  # [u, B, K]
        i_f, a_f = ci.sum(-1, keepdim=True), ct.sum(-1, keepdim=True)
        inter = torch.stack([i_and, i_f + i1[:, None] - i_and, i_f - i_and], -1)  # [u, B, K, 3]
        area = torch.stack([a_and, a_f + a1[:, None] - a_and, a_f - a_and], -1)
        ext = iou(inter, area, m[:, :, None, None])
        used = torch.zeros(u, b, k, dtype=torch.bool)
        used.scatter_(2, concepts.clamp_min(0), concepts >= 0)
        bad = used[..., None] | (modifier[None, None, :, None] & (op_codes != AND)) | (inter <= 0)
        bad |= ext < score[:, :, None, None] + min_gain  # a longer formula must earn its length
        bad |= torch.isinf(score)[:, :, None, None] | (concepts >= 0).all(-1)[:, :, None, None]
        ext = ext.masked_fill(bad, float("-inf"))
        # pool: the beam itself (shorter formulas first on ties) and every extension
        pool = torch.cat([score - 1e-9 * (concepts >= 0).sum(-1), ext.flatten(1)], 1)  # [u, B + B*K*3]
        top_score, top = pool.topk(min(2 * b, pool.shape[1]), dim=1)
        is_ext = top >= b
        e = (top - b).clamp_min(0)
        parent = torch.where(is_ext, e // (k * 3), top)
        concept = (e // 3) % k
        op = op_codes[e % 3]
        ptruth = torch.gather(truth, 1, parent[:, :, None].expand(-1, -1, s))  # [u, 2B, s]
        ctruth = torch.gather(t, 2, concept[:, None, :].expand(u, s, -1)).transpose(1, 2)
        cand = torch.where(is_ext[..., None], apply(op[..., None], ptruth, ctruth), ptruth)
        # drop candidates whose mask on the exemplars repeats a better one's
        h = (cand.long() * weights).sum(-1)
        dup = ((h[:, :, None] == h[:, None, :]) & torch.ones(h.shape[1], h.shape[1], dtype=torch.bool).triu(1)).any(1)
        keep = torch.where(dup | torch.isinf(top_score), float("-inf"), top_score)
        _, order = keep.topk(b, dim=1)
        sel = partial(_take, order=order)
        new_concepts = torch.gather(concepts, 1, sel(parent)[:, :, None].expand(-1, -1, 3)).clone()
        new_ops = torch.gather(ops, 1, sel(parent)[:, :, None].expand(-1, -1, 3)).clone()
        ext_sel = sel(is_ext)
        rows = ext_sel.nonzero(as_tuple=True)
        slot = (new_concepts >= 0).sum(-1)[rows]  # the parent's length: its first free slot
        new_concepts[rows[0], rows[1], slot] = sel(concept)[rows]
        new_ops[rows[0], rows[1], slot] = sel(op)[rows]
        sel_score = sel(keep)
        truth = sel(cand)
        concepts, ops = new_concepts, new_ops
        score = torch.where(ext_sel, sel_score, torch.gather(score, 1, sel(parent)))
        score = torch.where(torch.isinf(sel_score), float("-inf"), score)
        found.append((concepts.clone(), ops.clone(), score.clone()))
    return Found(*(torch.cat([f[i] for f in found], 1) for i in range(3)))


def _take(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``x [u, N, ...]`` at ``order [u, B]`` along dim 1."""
    return torch.gather(x, 1, order.view(*order.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:]))


def evaluate(concepts: torch.Tensor, ops: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Truth ``[D, S]`` of formulas ``concepts [D, 3]``, ``ops [D, 3]`` on signatures ``table [S, K]``."""
    out = table[:, concepts[:, 0].clamp_min(0)].t().clone()
    for j in range(1, concepts.shape[1]):
        c = concepts[:, j]
        on = c >= 0
        if on.any():
            col = table[:, c.clamp_min(0)].t()
            out = torch.where(on[:, None], apply(ops[:, j, None], out, col), out)
    return out


def canonical_keys(concepts: torch.Tensor, ops: torch.Tensor, num_concepts: int) -> torch.Tensor:
    """One int64 per formula ``[..., 3]``, equal for formulas equal by commutativity
    (``a AND b`` = ``b AND a``; ``a OR b OR c`` in any order)."""
    c = concepts.clone()
    o1, o2 = ops[..., 1], ops[..., 2]
    sym1 = (o1 == AND) | (o1 == OR)
    pair = torch.sort(c[..., :2], dim=-1).values
    c[..., :2] = torch.where(sym1[..., None], pair, c[..., :2])
    same = sym1 & (o2 == o1)
    c = torch.where(same[..., None], torch.sort(c, dim=-1).values, c)
    k1 = num_concepts + 1
    key = torch.zeros(c.shape[:-1], dtype=torch.long)
    for j in range(3):
        key = (key * 5 + (ops[..., j] + 1)) * k1 + (c[..., j] + 1)
    return key
