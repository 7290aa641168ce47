"""What switching a generator's units off or on does to its images (GAN Dissection, Bau et al.
ICLR 2019; PNAS 2020), measured by a segmenter.

    cut = cut_model(generator, "relu3")                           # torch.fx: the layers before run once
    samples = cache_samples(cut, generator, n=1000, seed=1)
    removal = removal_curve(cut, samples, segmenter, order, concept="tree", ks=range(1, 31))
    removal.summary()                      # "top 20 'tree' units off: -63% of its pixels (99% CI ...)"
    inserted = insertion_in_context(cut, samples, segmenter, units, level, concept="roof")
    inserted.table()                       # per context the segmenter saw there before: trials, appeared, rate

Both run one tail pass per chunk of edits (``ablate.evaluate.run_edits``) with a pixel-share
scorer: what the segmenter labels in every edited sample. A concept's **relative change** under
an edit is the change of its summed pixel share over the samples, relative to the sum before
(sum(after - before) / sum(before)): -1 means every pixel of it is gone. Its 99% interval is
+-2.576 sd(after - before) sqrt(n) / sum(before), the per-sample changes' spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from unitscope.ablate.cut import FxCut, HookCut
from unitscope.ablate.evaluate import LayerCache, cache_layer, run_edits
from unitscope.edits import Edits
from unitscope.errors import UsageError
from unitscope.gan.sources import latents, to_unit_range
from unitscope.models import get_info
from unitscope.segment import Segmenter

__all__ = [
    "PixelShares",
    "RemovalResult",
    "InsertionResult",
    "cache_samples",
    "removal_curve",
    "insertion_in_context",
    "label_space",
    "relative_change",
]

Z99 = 2.5758293035489004  # two-sided 99% normal quantile


def label_space(segmenter: Segmenter) -> tuple[list[str], list[str], list[int]]:
    """``(names [L], categories, category of each label [L] (-1 for none))`` in the segmenter's numbering."""
    from unitscope.gan.sources import SegmenterLabels

    labels = SegmenterLabels(segmenter)
    return labels.label_names, labels.categories, labels.label_category.tolist()


def concept_label(segmenter: Segmenter, concept: str) -> tuple[int, str, list[int]]:
    """``(number, category, category of each label [L])``: ``concept``'s label number and the
    category (plane) it is segmented in, in the segmenter's numbering; a clear error for a name the
    segmenter does not label."""
    names, categories, label_cat = label_space(segmenter)
    if concept not in names or concept == "-":
        raise UsageError(f"the segmenter has no label {concept!r}; it labels {', '.join(n for n in names if n != '-')}")
    number = names.index(concept)
    return number, categories[label_cat[number]], label_cat


def cache_samples(
    cut: FxCut | HookCut,
    generator: nn.Module,
    *,
    n: int = 1000,
    seed: int = 0,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
) -> LayerCache:
    """Samples ``0..n-1`` (z from ``seed``, as :class:`GeneratorActivations` draws them) through the
    layers before the cut, once; each sample's "label" is its number, which the scorers use."""
    z = latents(n, seed, get_info(generator).input_size)
    return cache_layer(cut, list(zip(z, range(n))), batch_size=batch_size, device=device)


class PixelShares:
    """Scorer: ``shares [K, N, L]``, the fraction of each edited sample's pixels the segmenter gives
    each label (within the label's own category plane). Cached "labels" are sample numbers."""

    def __init__(self, segmenter: Segmenter, k: int, n: int, output_range: Sequence[float] = (0.0, 1.0)):
        self.segmenter, self.output_range = segmenter, output_range
        self.names, self.categories, self.label_category = label_space(segmenter)
        self.shares = torch.zeros(k, n, len(self.names))

    def add(self, rows: range, output: Any, labels: torch.Tensor) -> None:
        images = to_unit_range(output, self.output_range)
        maps = self.segmenter.segment(images)
        self.shares[rows.start : rows.stop, labels.long()] = self.of(maps).reshape(len(rows), len(labels), -1)

    def of(self, maps: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[R, L]`` label shares of segmentations ``{category: [R, H, W]}``."""
        size = len(self.names)
        out = None
        for c in self.categories:
            m = maps[c].long()
            r, pixels = m.shape[0], m[0].numel()
            counts = torch.bincount((torch.arange(r).view(r, 1, 1) * size + m).flatten(), minlength=r * size)
            share = counts.reshape(r, size).float() / pixels
            share[:, 0] = 0  # "none" is not a label
            out = share if out is None else out + share
        return out


@dataclass
class RemovalResult:
    """Relative change of every label's pixels (``change [E, L]``, ``ci [E, L]``: the 99% half-width)
    under removing the top ``ks`` units of ``order`` (``top``: rows of ``change``) and as many random
    units (``random [draws, len(ks)]`` rows)."""

    concept: str
    names: list[str]
    categories: list[str]  # [L] each label's category ("" for none)
    ks: list[int]
    order: list[int]
    before: np.ndarray  # [L] mean pixel share before any edit
    change: np.ndarray  # [1 + len(ks) * (1 + draws), L]
    ci: np.ndarray
    draws: int
    samples: int
    units: list[list[int]] = field(default_factory=list)  # the units removed by each row

    def rows(self, random_draw: int | None = None) -> slice:
        """The rows of the top-k removals (None) or of random draw ``random_draw``."""
        first = 1 + (0 if random_draw is None else (random_draw + 1) * len(self.ks))
        return slice(first, first + len(self.ks))

    def curve(self, label: str | None = None) -> np.ndarray:
        """Relative change of ``label`` (default the concept) for k = ``ks``: ``[len(ks)]``."""
        return self.change[self.rows(), self.names.index(label or self.concept)]

    def random_curve(self, label: str | None = None) -> np.ndarray:
        """The mean over random draws, ``[len(ks)]``."""
        col = self.names.index(label or self.concept)
        return (
            np.mean([self.change[self.rows(d), col] for d in range(self.draws)], axis=0)
            if self.draws
            else np.zeros(len(self.ks))
        )

    def largest_other(self, k: int, min_share: float = 0.005, same_category: bool = True) -> tuple[str, float]:
        """The other label whose pixels change most (relatively) when the top ``k`` units are removed,
        among labels covering at least ``min_share`` of the pixels before (and, with
        ``same_category``, of the concept's own category: objects for an object, as the paper counts)."""
        row = self.change[self.rows().start + self.ks.index(k)]
        own = self.categories[self.names.index(self.concept)]
        best, value = "", 0.0
        for i, name in enumerate(self.names):
            if name == self.concept or not i or self.before[i] < min_share:
                continue
            if same_category and self.categories[i] != own:
                continue
            if abs(row[i]) > abs(value):
                best, value = name, float(row[i])
        return best, value

    def summary(self, k: int | None = None) -> str:
        k = k if k is not None else (20 if 20 in self.ks else self.ks[-1])
        i, col = self.ks.index(k), self.names.index(self.concept)
        row = self.rows().start + i
        other, value = self.largest_other(k)
        rand = self.random_curve()[i]
        return (
            f"top {k} '{self.concept}' units off: {self.change[row, col]:+.0%} of its pixels "
            f"(99% CI +-{self.ci[row, col]:.0%}; {k} random units: {rand:+.0%}); largest change of "
            f"another {self.categories[col] or 'concept'}: {other or '-'} {value:+.0%} ({self.samples} samples)"
        )


def relative_change(shares: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
    """``shares [E, N, L]`` under edits, ``before [N, L]`` unedited -> each label's relative change
    ``sum(after - before) / sum(before)`` over the samples, ``[E, L]`` float64."""
    return (shares.double() - before.double().unsqueeze(0)).sum(1) / before.double().sum(0).clamp(min=1e-12)


def _relative_change(shares: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``shares [E, N, L]`` (row 0: no edit) -> relative change and 99% half-width ``[E, L]``."""
    before = shares[0].double()
    delta = shares.double() - before.unsqueeze(0)  # [E, N, L]
    total = before.sum(0).clamp(min=1e-12)  # [L]
    n = shares.shape[1]
    change = relative_change(shares, before)
    sd = delta.std(1, unbiased=True) if n > 1 else torch.zeros_like(change)
    ci = Z99 * sd * math.sqrt(n) / total
    return change.numpy(), ci.numpy()


def removal_curve(
    cut: FxCut | HookCut,
    samples: LayerCache,
    segmenter: Segmenter,
    order: Sequence[int],
    concept: str,
    *,
    ks: Sequence[int] = tuple(range(1, 31)),
    random_draws: int = 3,
    seed: int = 0,
    output_range: Sequence[float] = (0.0, 1.0),
    max_batch: int = 256,
) -> RemovalResult:
    """Zero the first ``k`` units of ``order`` (e.g. a concept's units by IoU) for each ``k`` in ``ks``,
    and ``k`` random units (``random_draws`` draws from ``seed``): every label's relative change."""
    c = samples.batches[0].layer.shape[1]
    order, ks = [int(u) for u in order], sorted(int(k) for k in ks)
    if ks[-1] > len(order):
        raise ValueError(f"asked to remove up to {ks[-1]} units, but the order names only {len(order)}")
    g = torch.Generator().manual_seed(seed)
    sets = [[]] + [order[:k] for k in ks]
    for _ in range(random_draws):
        perm = torch.randperm(c, generator=g).tolist()
        sets += [perm[:k] for k in ks]
    mask = torch.zeros(len(sets), c, dtype=torch.bool)
    for row, units in enumerate(sets):
        mask[row, units] = True
    scorer = PixelShares(segmenter, len(sets), samples.count, output_range)
    if concept not in scorer.names:
        raise ValueError(
            f"the segmenter has no label {concept!r}; it labels {', '.join(n for n in scorer.names if n != '-')}"
        )
    run_edits(cut, samples, Edits.ablate(mask), scorer, max_batch=max_batch)
    change, ci = _relative_change(scorer.shares)
    cats = [scorer.categories[g] if g >= 0 else "" for g in scorer.label_category]
    return RemovalResult(
        concept,
        scorer.names,
        cats,
        ks,
        order,
        scorer.shares[0].mean(0).numpy(),
        change,
        ci,
        random_draws,
        samples.count,
        sets,
    )


@dataclass
class InsertionResult:
    """Per context (the label the segmenter saw in a cell's patch before): ``trials`` (cells where the
    concept was not there yet) and ``appeared`` (cells where it covers at least ``patch_min`` after)."""

    concept: str
    trials: dict[str, int]
    appeared: dict[str, int]
    patch_min: float

    def rate(self, context: str) -> float:
        return self.appeared.get(context, 0) / max(1, self.trials.get(context, 0))

    def table(self, min_trials: int = 1) -> list[dict[str, Any]]:
        rows = [
            {"context": c, "trials": t, "appeared": self.appeared.get(c, 0), "rate": self.rate(c)}
            for c, t in self.trials.items()
            if t >= min_trials
        ]
        return sorted(rows, key=lambda r: (-r["rate"], -r["trials"], r["context"]))


class _InsertionTally:
    """Scorer for :func:`insertion_in_context`: row 0 of each batch is the unedited sample (its
    segmentation is the context); row ``j`` forces the units on in cell ``cells[j - 1]``."""

    def __init__(
        self,
        segmenter: Segmenter,
        concept: str,
        cells: list[tuple[int, int]],
        grid: tuple[int, int],
        patch_min: float,
        output_range: Sequence[float],
    ):
        self.segmenter, self.cells, self.grid, self.patch_min, self.output_range = (
            segmenter,
            cells,
            grid,
            patch_min,
            output_range,
        )
        self.names, self.categories, label_cat = label_space(segmenter)
        self.concept = self.names.index(concept)
        self.plane = self.categories[label_cat[self.concept]]
        self.before: dict[int, dict[str, torch.Tensor]] = {}
        self.trials: dict[str, int] = {}
        self.appeared: dict[str, int] = {}

    def _patch(self, cell: tuple[int, int], h: int, w: int) -> tuple[slice, slice]:
        gy, gx = self.grid
        return slice(cell[0] * h // gy, (cell[0] + 1) * h // gy), slice(cell[1] * w // gx, (cell[1] + 1) * w // gx)

    def _context(self, maps: dict[str, torch.Tensor], ys: slice, xs: slice) -> str:
        """The commonest label in the patch of one sample's ``maps`` ``{category: [H, W]}``: the
        concept's own plane first, then the others in order."""
        for c in [self.plane] + [c for c in self.categories if c != self.plane]:
            patch = maps[c][ys, xs].flatten()
            patch = patch[patch > 0]
            if len(patch):
                return self.names[int(torch.mode(patch).values)]
        return "none"

    def add(self, rows: range, output: Any, labels: torch.Tensor) -> None:
        maps = self.segmenter.segment(to_unit_range(output, self.output_range))
        n = len(labels)
        h, w = maps[self.plane].shape[-2:]
        for j, row in enumerate(rows):
            block = {c: m[j * n : (j + 1) * n] for c, m in maps.items()}
            if row == 0:
                for i, sample in enumerate(labels.tolist()):
                    self.before[sample] = {c: m[i] for c, m in block.items()}
                continue
            ys, xs = self._patch(self.cells[row - 1], h, w)
            for i, sample in enumerate(labels.tolist()):
                before = self.before[sample]
                had = float((before[self.plane][ys, xs] == self.concept).float().mean())
                if had >= self.patch_min:
                    continue  # already there: not a trial
                context = self._context(before, ys, xs)
                now = float((block[self.plane][i, ys, xs] == self.concept).float().mean())
                self.trials[context] = self.trials.get(context, 0) + 1
                if now >= self.patch_min:
                    self.appeared[context] = self.appeared.get(context, 0) + 1


def insertion_in_context(
    cut: FxCut | HookCut,
    samples: LayerCache,
    segmenter: Segmenter,
    units: Sequence[int],
    level: torch.Tensor,
    concept: str,
    *,
    cells: Sequence[tuple[int, int]] | None = None,
    patch_min: float = 0.1,
    output_range: Sequence[float] = (0.0, 1.0),
    max_batch: int = 256,
) -> InsertionResult:
    """Force ``units`` to ``level`` (``[C]``, e.g. each unit's 99.5th percentile) in one cell of the
    layer's map at a time (every cell, or ``cells``), and tally per context how often ``concept``
    appears in the cell's patch of the image (covers at least ``patch_min`` of it, having covered less)."""
    layer = samples.batches[0].layer
    c, gy, gx = layer.shape[1], layer.shape[2], layer.shape[3]
    cells = [(y, x) for y in range(gy) for x in range(gx)] if cells is None else [tuple(cell) for cell in cells]
    mask = torch.zeros(1 + len(cells), c, dtype=torch.bool)
    mask[1:, list(units)] = True
    region = torch.zeros(1 + len(cells), gy, gx, dtype=torch.bool)
    for j, (y, x) in enumerate(cells):
        region[j + 1, y, x] = True
    edits = Edits.ablate(mask, "quantile", value=torch.as_tensor(level, dtype=torch.float32)).within(region)
    tally = _InsertionTally(segmenter, concept, cells, (gy, gx), patch_min, output_range)
    run_edits(cut, samples, edits, tally, max_batch=max(max_batch, samples.batches[0].layer.shape[0]))
    return InsertionResult(concept, tally.trials, tally.appeared, patch_min)
