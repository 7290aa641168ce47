"""How far to trust a description: scores on held-out images, each with a base rate and a p-value.

    f1(mask, concept); iou(mask, concept)            # unit mask vs concept mask, bool, any shape
    auprc(activation, positive); pearson(activation, target)   # continuous unit vs concept
    s = heldout_scores(masks, concept, acts, coverage, draws=100)   # many units at once, with nulls
    s["f1"], s["p_f1"], s["base_rate"]                # [U]

Four metrics, the ones NeuronEval (Oikarinen et al., ICML 2025) finds to pass its two sanity
tests (a concept with half its positives dropped, or with as many again added at random, must
score lower; ``tests/describe/test_describe_scores.py`` runs both on every metric here):

- **F1** and **IoU** of the unit's mask (its map upsampled bilinearly to the working resolution,
  above the unit's 0.99 quantile) against the description's concept mask, pooled over pixels;
- **AUPRC**: average precision of the unit's activation, one value per cell of its own map,
  ranking the cells by how much of each the concept covers (soft labels: a cell covered 30% is
  0.3 of a positive and 0.7 of a negative; ties in activation count as one threshold, as
  scikit-learn does). Chance is the base rate;
- **Pearson** correlation of the unit's activation with the activation the description alone
  predicts (simulation): a linear function of the concept's coverage of each cell, fitted by
  least squares. Pearson's r is the same for every such fit, so it is r(activation, coverage).

``base_rate`` is the fraction of held-out pixels the concept covers (AUPRC's chance level; F1 and
IoU of a random mask grow with it). Each p-value compares a score with ``draws`` scores of the
same unit and concept with the held-out images paired at random (image i's unit map against
image pi(i)'s concept mask); sizes of masks and concepts stay as they are, so the null is what
the same description would score by chance on these images. As in the dissection's significance,
the p-value is Student's t (draws - 1 degrees of freedom) on the draws' mean and sd, so 20 draws
give p-values below 1/21.
"""

from __future__ import annotations

import math

import torch

from unitscope.describe.defaults import DRAWS

METRICS = ("f1", "iou", "auprc", "pearson")


def f1(mask: torch.Tensor, concept: torch.Tensor) -> float:
    tp = (mask & concept).sum().item()
    denom = mask.sum().item() + concept.sum().item()
    return 2 * tp / denom if denom else 0.0


def iou(mask: torch.Tensor, concept: torch.Tensor) -> float:
    union = (mask | concept).sum().item()
    return (mask & concept).sum().item() / union if union else 0.0


def auprc(activation: torch.Tensor, positive: torch.Tensor) -> float:
    """Average precision of ``activation`` for ``positive`` (bool, or weights in [0, 1])."""
    return float(_ap(*_sorted(activation.flatten()[None].double(), positive.flatten()[None].double()))[0])


def pearson(activation: torch.Tensor, target: torch.Tensor) -> float:
    a, t = activation.flatten().double(), target.flatten().double()
    a, t = a - a.mean(), t - t.mean()
    denom = (a.norm() * t.norm()).item()
    return float((a @ t).item() / denom) if denom > 0 else 0.0


def _sorted(act: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``[U, n]`` sorted by activation, descending: the positives in that order and where
    each run of tied activations ends."""
    a, order = act.sort(dim=1, descending=True, stable=True)
    ends = torch.ones_like(a, dtype=torch.bool)
    ends[:, :-1] = a[:, :-1] != a[:, 1:]
    return torch.gather(pos, 1, order), ends


def _ap(pos: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """``[U]`` average precision from positives ``[U, n]`` in activation order and tie ends."""
    cum = pos.cumsum(1)
    total = cum[:, -1:]
    seen = torch.arange(1, pos.shape[1] + 1, dtype=pos.dtype)
    precision = cum / seen
    recall = cum / total.clamp_min(1e-300)
    at_end = torch.where(ends, recall, torch.zeros_like(recall))
    before = torch.zeros_like(recall)
    before[:, 1:] = at_end[:, :-1].cummax(1).values
    ap = torch.where(ends, (recall - before) * precision, torch.zeros_like(recall)).sum(1)
    return torch.where(total[:, 0] > 0, ap, torch.zeros_like(ap))


def p_values(score: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """``[U]`` from ``score [U]`` and ``null [U, D]``: Student's t on the draws' mean and sd, as the
    dissection's significance (:func:`unitscope.dissect.significance.unit_p_values`)."""
    from unitscope.dissect.significance import t_sf

    d = null.shape[1]
    mean, sd = null.mean(1), null.std(1, correction=1)
    scale = sd * math.sqrt(1 + 1 / d)
    t = ((score - mean) / scale.clamp_min(1e-300)).numpy()
    p = torch.from_numpy(t_sf(t, d - 1))
    return torch.where(scale > 0, p, torch.where(score > mean, 0.0, 1.0).double())


def heldout_scores(
    masks: torch.Tensor,
    concept: torch.Tensor,
    acts: torch.Tensor,
    coverage: torch.Tensor,
    draws: int = DRAWS,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Scores of U (unit, description) pairs on N held-out images.

    ``masks [U, N, P]`` and ``concept [U, N, P]`` bool at the working resolution; ``acts [U, N, Q]``
    the unit's map and ``coverage [U, N, Q]`` the concept's share of each of its Q cells. Returns
    ``[U]`` tensors: each metric, ``p_<metric>``, ``base_rate``, ``unit_rate``.
    """
    u, n, p = masks.shape
    tp = (masks & concept).sum((1, 2)).double()
    m_area, c_area = masks.sum((1, 2)).double(), concept.sum((1, 2)).double()
    out = {"base_rate": c_area / (n * p), "unit_rate": m_area / (n * p)}
    out["f1"] = torch.where(m_area + c_area > 0, 2 * tp / (m_area + c_area).clamp_min(1), torch.zeros_like(tp))
    out["iou"] = torch.where(m_area + c_area - tp > 0, tp / (m_area + c_area - tp).clamp_min(1), torch.zeros_like(tp))
    a = acts.double().flatten(1)
    c = coverage.double().flatten(1)
    pos, ends = _sorted(a, c)
    out["auprc"] = _ap(pos, ends)
    ac, cc = a - a.mean(1, keepdim=True), c - c.mean(1, keepdim=True)
    denom = ac.norm(dim=1) * cc.norm(dim=1)
    out["pearson"] = torch.where(denom > 0, (ac * cc).sum(1) / denom.clamp_min(1e-300), torch.zeros_like(denom))
    if draws <= 0 or n < 2:
        for name in METRICS:
            out[f"p_{name}"] = torch.full((u,), float("nan"), dtype=torch.float64)
        return out
    g = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(n, generator=g) for _ in range(draws)])  # [R, N]
    unit_e, img_e, pix_e = masks.nonzero(as_tuple=True)
    q = acts.shape[2]
    a_order = a.argsort(dim=1, descending=True, stable=True)
    img_s, cell_s = a_order // q, a_order % q
    cov = coverage.double()
    rows = torch.arange(u)[:, None]
    # Pearson: sum_i <a_i, c_pi(i)> from the Gram matrix of images G[u, i, j] = <a_ui, c_uj>
    gram = torch.bmm(ac.view(u, n, q), cc.view(u, n, q).transpose(1, 2))  # centred: marginals do not move
    null = {name: torch.zeros(u, draws, dtype=torch.float64) for name in METRICS}
    for r, perm in enumerate(perms):
        hit = torch.zeros(u, dtype=torch.float64)
        hit.index_add_(0, unit_e, concept[unit_e, perm[img_e], pix_e].double())
        null["f1"][:, r] = 2 * hit / (m_area + c_area).clamp_min(1)
        null["iou"][:, r] = hit / (m_area + c_area - hit).clamp_min(1)
        null["auprc"][:, r] = _ap(cov[rows, perm[img_s], cell_s], ends)
        null["pearson"][:, r] = gram[:, torch.arange(n), perm].sum(1) / denom.clamp_min(1e-300)
    for name in METRICS:
        out[f"p_{name}"] = p_values(out[name], null[name])
    return out
