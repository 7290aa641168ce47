"""GAN Dissection's unit ranking (Bau et al. ICLR 2019, sec. 3.1): per unit, the threshold on its
upsampled map that maximises the information quality ratio with a concept's segmentation, and
units ranked by that ratio (the dissection's own ranking is IoU at each unit's top 1%).

    acts = GeneratorActivations(generator, ["relu1"], n=500, seed=0)
    iqr = iqr_ranking(acts, segmenter, "tree")        # [C] best ratio, its threshold and its IoU
    iqr.ranking()[:20]                                  # units by ratio, best first

For a unit map ``a`` upsampled (bilinear, as the dissection does) to the segmentation's size and a
threshold ``t``, ``U = a > t`` and ``S`` = the concept's pixels are two binary variables over every
pixel of every sample; IQR(t) = I(U; S) / H(U, S) (mutual information over joint entropy, 0 when
either is constant, 1 when they are equal). The thresholds tried are the unit's quantiles at
``1 - q`` for ``q`` from 0.5 down to 1e-4 (``levels`` of them, spaced geometrically).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from unitscope.errors import UsageError
from unitscope.gan.effects import concept_label
from unitscope.gan.sources import GeneratorActivations
from unitscope.segment import Segmenter

__all__ = ["IqrResult", "iqr_ranking", "information_quality_ratio"]


def information_quality_ratio(
    n11: torch.Tensor, n1: torch.Tensor, s1: torch.Tensor | float, total: float
) -> torch.Tensor:
    """IQR = I(U; S) / H(U, S) from counts: ``n11`` pixels in both, ``n1`` in U, ``s1`` in S, of
    ``total`` (tensors broadcast; 0 where U or S is constant)."""
    n11, n1 = n11.double(), n1.double()
    s1 = torch.as_tensor(s1, dtype=torch.float64)
    cells = torch.stack([n11, n1 - n11, s1 - n11, total - n1 - s1 + n11]) / total  # p(u, s) for 11, 10, 01, 00
    pu = torch.stack([n1, n1, total - n1, total - n1]) / total
    ps = torch.stack([s1 + 0 * n1, total - s1 + 0 * n1, s1 + 0 * n1, total - s1 + 0 * n1]) / total
    safe = cells.clamp_min(1e-300)
    mi = torch.where(cells > 0, cells * torch.log(safe / (pu * ps).clamp_min(1e-300)), 0).sum(0)
    h = -torch.where(cells > 0, cells * torch.log(safe), 0).sum(0)
    return torch.where(h > 0, mi / h.clamp_min(1e-300), 0).clamp_min(0)


@dataclass
class IqrResult:
    """Per unit (``[C]``): ``ratio`` (its best IQR with ``concept``), ``threshold`` (where) and ``iou``
    (the IoU of U and S at that threshold); ``share`` the concept's share of all pixels."""

    concept: str
    ratio: np.ndarray
    threshold: np.ndarray
    iou: np.ndarray
    share: float
    samples: int

    def ranking(self) -> list[int]:
        """Units by best IQR, largest first (ties by unit number)."""
        return [int(u) for u in np.argsort(-self.ratio, kind="stable")]

    def summary(self, top: int = 5) -> str:
        units = ", ".join(f"#{u} {self.ratio[u]:.3f} (IoU {self.iou[u]:.3f})" for u in self.ranking()[:top])
        return f"IQR '{self.concept}' ({self.samples} samples, {self.share:.1%} of the pixels): {units}"


@torch.no_grad()
def iqr_ranking(
    acts: GeneratorActivations,
    segmenter: Segmenter,
    concept: str,
    *,
    levels: int = 40,
    batch_size: int = 100,
) -> IqrResult:
    """Rank the units of ``acts``' single layer by their best information quality ratio with
    ``concept`` over all of ``acts``' samples (see the module docstring)."""
    if len(acts.layers) != 1:
        raise UsageError(f"iqr_ranking ranks one layer's units; the source traces {len(acts.layers)}: {acts.layers}")
    number, plane, _ = concept_label(segmenter, concept)
    layer = acts.layers[0]
    maps, masks = [], []
    for start in range(0, len(acts), batch_size):
        batch = {"z": acts.z[start : start + batch_size]}
        maps.append(acts.activations(batch)[layer].cpu())  # [B, C, h, w]
        masks.append(segmenter.segment(batch["image"])[plane].long() == number)  # [B, H, W]
    low, truth = torch.cat(maps), torch.cat(masks)
    size, total = truth.shape[-2:], float(truth.numel())
    s = truth.flatten()
    s1 = float(s.sum())
    qs = 1 - torch.logspace(np.log10(0.5), -4, levels, dtype=torch.float64)
    c = low.shape[1]
    ratio, thresh, iou = np.zeros(c), np.zeros(c), np.zeros(c)
    for u in range(c):
        v = F.interpolate(low[:, u : u + 1], size=size, mode="bilinear", align_corners=False).flatten()
        ts = torch.quantile(v[:: max(1, v.numel() // 200_000)].double(), qs).float()  # ascending
        ts = torch.cummax(ts, 0).values
        bins = torch.bucketize(v, ts)  # v > ts[j] exactly when bins > j
        total_in = torch.bincount(bins, minlength=levels + 1).double()
        hits_in = torch.bincount(bins, weights=s.double(), minlength=levels + 1)
        n1 = total_in.flip(0).cumsum(0).flip(0)[1:]  # values above each threshold
        n11 = hits_in.flip(0).cumsum(0).flip(0)[1:]
        r = information_quality_ratio(n11, n1, s1, total)
        best = int(torch.argmax(r))
        ratio[u], thresh[u] = float(r[best]), float(ts[best])
        union = float(n1[best]) + s1 - float(n11[best])
        iou[u] = float(n11[best]) / union if union else 0.0
    return IqrResult(concept, ratio, thresh, iou, s1 / total, len(acts))
