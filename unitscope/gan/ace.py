"""Average causal effect (GAN Dissection, Bau et al. ICLR 2019, sec. 3.2): optimise a soft mask over
a layer's units that removes (or inserts) a concept, rank the units by it, and compare that ranking
with the IoU ranking at the same k.

    cut = cut_model(generator, "relu2")                        # the layers before run once
    samples = cache_samples(cut, generator, n=500, seed=1)
    ace = ace_mask(cut, samples, segmenter, "sky", mode="remove", penalty=0.01, steps=200)
    ace.ranking()[:10]                                         # units by mask value, largest first
    ace.losses[0], ace.losses[-1]                              # the objective falls
    cmp = compare_rankings(cut, samples, segmenter, "sky", {"ACE": ace.ranking(), "IoU": by_iou}, ks=(5, 10, 20))
    cmp.table()                                                # per k: each ranking's relative change, 99% CI

The mask is ``m = sigmoid(logits)`` ``[C]``, one value per unit. Removal edits the layer's output
``z [N, C, H, W]`` to ``z * (1 - m)``; insertion to ``z * (1 - m) + m * level`` (``level [C]``,
e.g. each unit's 99.5th percentile). The objective is the concept's expected pixel share under
the segmenter's softmax (differentiable; :func:`concept_share`), to minimise for removal and to
maximise for insertion, plus ``penalty`` times the mask's size (``sum(m ** 2)`` for L2, the
default, or ``sum(m)`` for L1). The *specific* variant (``specific > 0``) adds ``specific`` times
the sum, over the other labels of the concept's category that cover at least ``min_share`` of the
batch's pixels before, of the absolute relative change of their expected share (batch sum after
minus before, over before): the mask then prefers units that draw the concept alone. Only the
layers after the cut run per step (the torch.fx tail);
gradients go to the mask logits only, never into the generator's weights.

A segmenter takes part when it gives probabilities: :class:`~unitscope.segment.ModelSegmenter`
(the shipped ``world_segmenter``) is differentiated through its network; any other segmenter
defines ``probabilities(images) -> {category: [N, L, H, W]}`` (channel = label number, 0 = none).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unitscope.ablate.cut import FxCut, HookCut
from unitscope.ablate.evaluate import LayerCache
from unitscope.errors import UsageError
from unitscope.gan.effects import RemovalResult, concept_label, removal_curve
from unitscope.gan.sources import to_unit_range
from unitscope.segment import ModelSegmenter, Segmenter

__all__ = ["AceResult", "RankingComparison", "ace_mask", "compare_rankings", "concept_share", "probabilities"]

MODES = ("remove", "insert")


def probabilities(segmenter: Segmenter, images: torch.Tensor, by_number: bool = True) -> dict[str, torch.Tensor]:
    """Differentiable ``{category: [N, L, H, W]}`` label probabilities (channel = label number) of
    ``images [N, 3, H, W]`` in [0, 1]: a segmenter's own ``probabilities`` method, or a
    :class:`ModelSegmenter`'s softmax (``by_number=False``: over its head's classes, in head order,
    without spreading them out to every label number; enough for a largest probability)."""
    own = getattr(segmenter, "probabilities", None)
    if callable(own):
        return own(images)
    if not isinstance(segmenter, ModelSegmenter):
        raise UsageError(
            f"{type(segmenter).__name__} gives no probabilities: a soft mask needs a differentiable "
            "segmenter; define probabilities(images) -> {category: [N, L, H, W]} (L indexed by label "
            "number) or use a unitscope.segment.ModelSegmenter"
        )
    import torch.nn.functional as F

    h, w = images.shape[-2:]
    x = images.float()
    if (h, w) != (segmenter.size, segmenter.size):
        x = F.interpolate(x, size=(segmenter.size, segmenter.size), mode="bilinear", antialias=True)
    out = segmenter.model(((x - segmenter.mean.to(x.device)) / segmenter.std.to(x.device)).to(segmenter.device))
    probs = {}
    for c in segmenter.categories:
        p = F.interpolate(out[c].float(), size=(h, w), mode="bilinear").softmax(1)  # [N, K, H, W] head classes
        if not by_number:
            probs[c] = p
            continue
        numbers = segmenter.numbers[c].to(p.device)
        full = p.new_zeros(p.shape[0], int(numbers.max()) + 1, h, w)
        probs[c] = full.index_add(1, numbers, p)
    return probs


def concept_share(segmenter: Segmenter, images: torch.Tensor, concept: str) -> torch.Tensor:
    """The concept's expected pixel share ``[N]`` of ``images [N, 3, H, W]`` (in [0, 1]) under the
    segmenter's probabilities: the soft version of its argmax pixel share."""
    number, plane, _ = concept_label(segmenter, concept)
    p = probabilities(segmenter, images)[plane]
    return p[:, number].flatten(1).mean(1)


@dataclass
class AceResult:
    """The optimised mask ``[C]`` and the run's trace: ``losses`` and ``shares`` (the concept's mean
    soft pixel share of the step's batch) per step."""

    concept: str
    mode: str
    mask: np.ndarray
    losses: list[float]
    shares: list[float]
    penalty: float
    norm: str
    steps: int
    samples: int

    def ranking(self) -> list[int]:
        """Units by mask value, largest first (ties by unit number)."""
        return [int(u) for u in np.argsort(-self.mask, kind="stable")]

    def summary(self, top: int = 5) -> str:
        units = ", ".join(f"#{u} {self.mask[u]:.2f}" for u in self.ranking()[:top])
        return (
            f"ACE {self.mode} '{self.concept}' ({self.norm} penalty {self.penalty:g}, {self.steps} steps, "
            f"{self.samples} samples): share {self.shares[0]:.3f} -> {self.shares[-1]:.3f}, loss "
            f"{self.losses[0]:.4f} -> {self.losses[-1]:.4f}; top units {units}; "
            f"{int((self.mask > 0.5).sum())} of {len(self.mask)} above 0.5"
        )


def ace_mask(
    cut: FxCut | HookCut,
    samples: LayerCache,
    segmenter: Segmenter,
    concept: str,
    *,
    mode: str = "remove",
    level: torch.Tensor | None = None,
    penalty: float = 0.01,
    norm: str = "l2",
    steps: int = 100,
    lr: float = 0.1,
    init: float = 0.0,
    specific: float = 0.0,
    min_share: float = 0.005,
    output_range: Sequence[float] = (0.0, 1.0),
    device: str | torch.device = "cpu",
) -> AceResult:
    """Optimise a soft unit mask ``sigmoid(logits) [C]`` (logits start at ``init``) with Adam (betas
    0.9, 0.999) for
    ``steps`` steps, one cached batch of ``samples`` per step in turn, to ``mode`` ``concept``
    (see the module docstring); ``level [C]`` is needed for insertion; ``specific > 0`` also
    penalises the other labels' relative change (the specific variant)."""
    if mode not in MODES:
        raise UsageError(f"unknown ACE mode {mode!r}; choose one of {', '.join(MODES)}")
    if norm not in ("l1", "l2"):
        raise UsageError(f"unknown mask penalty {norm!r}; choose l1 or l2")
    if mode == "insert" and level is None:
        raise UsageError("inserting a concept needs each unit's level [C] (e.g. its 99.5th percentile)")
    c = samples.batches[0].layer.shape[1]
    logits = torch.full((c,), float(init), device=device, requires_grad=True)
    lvl = None if level is None else torch.as_tensor(level, dtype=torch.float32, device=device).reshape(-1)
    if lvl is not None and len(lvl) != c:
        raise UsageError(f"level has {len(lvl)} values; the layer has {c} units")
    concept_share(segmenter, torch.zeros(1, 3, 2, 2), concept)  # an unknown concept fails before any step
    number, plane, label_cat = concept_label(segmenter, concept)
    others = [i for i, c in enumerate(label_cat) if c == label_cat[number] and i not in (0, number)]
    unedited: dict[int, torch.Tensor] = {}  # batch index -> [L] summed soft shares before any edit
    moment, square = torch.zeros_like(logits), torch.zeros_like(logits)  # Adam by hand: torch.optim imports dynamo (s)
    losses, shares = [], []
    for step in range(steps):
        index = step % len(samples.batches)
        batch = samples.batches[index].to(device)
        if specific and index not in unedited:
            with torch.no_grad():
                images = to_unit_range(cut.tail(batch), output_range)
                unedited[index] = probabilities(segmenter, images)[plane].mean((2, 3)).sum(0)
        m = torch.sigmoid(logits)
        shape = (1, c) + (1,) * (batch.layer.dim() - 2)

        def edit(z: torch.Tensor, m: torch.Tensor = m) -> torch.Tensor:
            kept = z * (1 - m.view(shape))
            return kept if lvl is None else kept + m.view(shape) * lvl.view(shape)

        with torch.enable_grad():
            images = to_unit_range(cut.tail(batch, edit=edit), output_range)
            p = probabilities(segmenter, images)[plane].mean((2, 3))  # [N, L] expected shares
            share = p[:, number].mean()
            size = (m**2).sum() if norm == "l2" else m.sum()
            loss = (share if mode == "remove" else -share) + penalty * size
            if specific:
                before = unedited[index]
                kept = [i for i in others if before[i] >= min_share * len(p)]
                if kept:
                    rel = (p.sum(0)[kept] - before[kept]) / before[kept]
                    loss = loss + specific * rel.abs().sum()
            (grad,) = torch.autograd.grad(loss, logits)
        moment.mul_(0.9).add_(grad, alpha=0.1)
        square.mul_(0.999).addcmul_(grad, grad, value=0.001)
        with torch.no_grad():
            logits -= lr * (moment / (1 - 0.9 ** (step + 1))) / ((square / (1 - 0.999 ** (step + 1))).sqrt() + 1e-8)
        losses.append(float(loss.detach()))
        shares.append(float(share.detach()))
    mask = torch.sigmoid(logits.detach()).cpu().numpy()
    return AceResult(concept, mode, mask, losses, shares, penalty, norm, steps, samples.count)


@dataclass
class RankingComparison:
    """Per ranking (e.g. ACE and IoU), the relative change of the concept's pixels when its top
    ``k`` units are zeroed, for each of ``ks``: ``change[name] [len(ks)]``, ``ci[name]`` (99%)."""

    concept: str
    ks: list[int]
    change: dict[str, np.ndarray]
    ci: dict[str, np.ndarray]
    orders: dict[str, list[int]]
    results: dict[str, RemovalResult] = field(default_factory=dict, repr=False)

    def table(self) -> list[dict[str, Any]]:
        """One row per k: ``{"k", name: change, name + "_ci": half-width, "better": the ranking that removes more}``."""
        rows = []
        for i, k in enumerate(self.ks):
            row: dict[str, Any] = {"k": k}
            for name in self.change:
                row[name], row[f"{name}_ci"] = float(self.change[name][i]), float(self.ci[name][i])
            row["better"] = min(self.change, key=lambda n: (self.change[n][i], n))
            rows.append(row)
        return rows


def compare_rankings(
    cut: FxCut | HookCut,
    samples: LayerCache,
    segmenter: Segmenter,
    concept: str,
    orders: Mapping[str, Sequence[int]],
    *,
    ks: Sequence[int] = (1, 2, 5, 10, 20),
    output_range: Sequence[float] = (0.0, 1.0),
    max_batch: int = 256,
) -> RankingComparison:
    """Zero the top ``k`` units of each ranking in ``orders`` (``{name: units, best first}``) and
    measure the concept's relative pixel change (``removal_curve``, no random draws)."""
    ks = sorted(int(k) for k in ks)
    results = {
        name: removal_curve(
            cut,
            samples,
            segmenter,
            list(order),
            concept,
            ks=ks,
            random_draws=0,
            output_range=output_range,
            max_batch=max_batch,
        )
        for name, order in orders.items()
    }
    change = {n: r.curve() for n, r in results.items()}
    ci = {n: r.ci[r.rows(), r.names.index(concept)] for n, r in results.items()}
    return RankingComparison(concept, ks, change, ci, {n: [int(u) for u in o] for n, o in orders.items()}, results)
