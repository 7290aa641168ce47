"""Evaluate many edits of one layer at once: cache the layer, run only the rest of the network.

    cut = cut_model(model, "features.8")
    feats = cache_layer(cut, data, positions, batch_size=64)     # one pass through the head
    edits = Edits.ablate(torch.eye(C, dtype=torch.bool), mode="zero")   # K = C single-unit ablations
    conf = confusion(cut, feats, edits, class_of_output)          # [K, Y, Y + 1] counts
    m = metrics(conf)                                             # accuracy [K], class_accuracy [K, Y], balanced [K, Y]

    scorer = run_edits(cut, feats, edits, MyScorer())            # any scorer: add(rows, output, labels)

An edit (``unitscope.edits.Edits``) replaces the units in ``mask[k]`` of the layer's output
``[N, C, H, W]`` (or ``[N, C]``) by ``value[k]``, optionally only inside a region, plus, for noise,
``std * N(0, 1)`` drawn per element. Zero, mean and noise ablation and steering to fixed values
are all edits. :func:`run_edits` runs them in tail passes and hands each output to a scorer:
:class:`Confusion` (what :func:`confusion` returns: columns are data classes, the last one counts
predictions of a model class the data does not have), :class:`Predictions`, or one's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from unitscope.ablate.cut import CutCache, FxCut, HookCut
from unitscope.edits import Edits

MODES = ("zero", "mean", "noise")  # the removal modes of the ablation stages (unitscope.edits has more)


def apply_edits(z: torch.Tensor, edits: Edits, generator: torch.Generator | None = None) -> torch.Tensor:
    """``z`` ``[N, C, ...]`` -> ``[K * N, C, ...]``: block ``k`` is ``z`` under edit ``k`` (:meth:`Edits.apply`)."""
    return edits.apply(z, generator)


@dataclass
class LayerCache:
    """A data set's pass through the head: per batch the :class:`CutCache` and labels ``[N]``."""

    batches: list[CutCache]
    labels: list[torch.Tensor]

    @property
    def count(self) -> int:
        return sum(len(y) for y in self.labels)

    def layer_output(self) -> torch.Tensor:
        """The layer's output of every image, ``[N, C, ...]``."""
        return torch.cat([b.layer for b in self.batches])


@torch.no_grad()
def cache_layer(
    cut: FxCut | HookCut,
    data: Dataset,
    positions: Sequence[int] | None = None,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    progress: bool = False,
) -> LayerCache:
    """Run the head over ``data`` (``(image, label)`` items, or only ``positions`` of it) once."""
    subset = Subset(data, list(positions)) if positions is not None else data
    loader = DataLoader(subset, batch_size=batch_size, num_workers=num_workers)
    batches, labels = [], []
    for x, y in tqdm(loader, desc=f"cache {cut.layer}", disable=not progress, leave=False):
        batches.append(cut.head(x.to(device)))
        labels.append(torch.as_tensor(y))
    return LayerCache(batches, labels)


def unit_moments(cache: LayerCache) -> tuple[torch.Tensor, torch.Tensor]:
    """Each unit's mean and standard deviation ``[C]`` over every image and position of ``cache``."""
    from unitscope.stats import Moments

    stat = Moments()
    for batch in cache.batches:
        stat.add(batch.layer if batch.layer.dim() in (2, 4) else batch.layer.flatten(2))
    return stat.mean().float(), stat.std().float()


def logits_of(output) -> torch.Tensor:
    """A classifier's logits ``[N, K]`` from its output (the first element of a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output


class Scorer(Protocol):
    """What :func:`run_edits` reports each tail pass to: ``add(rows, output, labels)``, where
    ``output`` is the network's output for ``len(rows) * N`` rows (block ``j`` is edit
    ``rows.start + j`` of the batch), ``labels`` ``[N]`` the batch's labels. A classifier scorer
    counts confusions (:class:`Confusion`); a generator's would tally a concept's pixels."""

    def add(self, rows: range, output: Any, labels: torch.Tensor) -> None: ...


@torch.no_grad()
def run_edits(
    cut: FxCut | HookCut,
    cache: LayerCache,
    edits: Edits,
    scorer: Scorer,
    *,
    max_batch: int | None = 512,
    seed: int = 0,
    progress: bool = False,
) -> Scorer:
    """Every edit on every cached batch, ``max_batch // N`` edits per tail pass (None: all at once),
    each pass's output handed to ``scorer``. Noise is drawn from ``seed`` per batch. Returns ``scorer``."""
    bar = tqdm(
        total=len(cache.batches) * len(edits),
        desc=f"edits of {cut.layer}",
        disable=not progress,
        leave=False,
        unit="edit",
    )
    for b, (batch, labels) in enumerate(zip(cache.batches, cache.labels)):
        n = len(labels)
        per_pass = len(edits) if max_batch is None else max(1, max_batch // n)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + b)
        for start in range(0, len(edits), per_pass):
            part = edits[start : start + per_pass]
            output = cut.tail(batch.repeat(len(part), layer=False), edit=lambda z: part.apply(z, gen))
            scorer.add(range(start, start + len(part)), output, labels)
            bar.update(len(part))
    bar.close()
    return scorer


class Confusion:
    """Scorer: counts ``[K, Y, Y + 1]`` of true data class x predicted class under each edit, and
    optionally ``probability`` ``[K, Y]`` (see :func:`confusion`)."""

    def __init__(
        self, k: int, class_of_output: torch.Tensor, num_classes: int, probability: torch.Tensor | None = None
    ):
        self.class_of_output, self.num_classes, self.probability = class_of_output, num_classes, probability
        self.counts = torch.zeros(k, num_classes, num_classes + 1, dtype=torch.long)

    def add(self, rows: range, output: Any, labels: torch.Tensor) -> None:
        k, n, y, y_cols = len(rows), len(labels), self.num_classes, self.num_classes + 1
        logits = logits_of(output)
        pred = self.class_of_output.to(logits.device)[logits.argmax(1)].cpu().reshape(k, n)
        truth = labels.reshape(1, n).expand(k, n)
        flat = (torch.arange(k).reshape(k, 1) * y + truth) * y_cols + pred
        self.counts[rows.start : rows.stop] += torch.bincount(flat.reshape(-1), minlength=k * y * y_cols).reshape(
            k, y, y_cols
        )
        if self.probability is not None:
            own = _own_class_mass(logits, self.class_of_output, truth.reshape(-1), y_cols).reshape(k, n)
            self.probability[rows.start : rows.stop].index_add_(1, labels.long(), own.cpu())


class Predictions:
    """Scorer: the predicted class ``[K, N]`` of every cached image under each edit, however many tail
    passes a batch takes; ``class_of_output`` maps each output to its data class (None: the output's index)."""

    def __init__(self, class_of_output: torch.Tensor | None = None):
        self.class_of_output = class_of_output
        self.batches: list[list[torch.Tensor]] = []  # per cached batch, its passes' [len(rows), N] blocks

    def add(self, rows: range, output: Any, labels: torch.Tensor) -> None:
        top = logits_of(output).argmax(1)
        if self.class_of_output is not None:
            top = self.class_of_output.to(top.device)[top]
        if rows.start == 0:  # run_edits starts each cached batch at edit 0
            self.batches.append([])
        self.batches[-1].append(top.cpu().reshape(len(rows), -1))

    def result(self) -> torch.Tensor:
        return torch.cat([torch.cat(passes, 0) for passes in self.batches], 1)


def confusion(
    cut: FxCut | HookCut,
    cache: LayerCache,
    edits: Edits,
    class_of_output: torch.Tensor,
    num_classes: int,
    *,
    max_batch: int = 512,
    seed: int = 0,
    progress: bool = False,
    probability: torch.Tensor | None = None,
) -> torch.Tensor:
    """Counts ``[K, Y, Y + 1]``: true data class x predicted class, under each of the ``K`` edits.

    ``class_of_output`` ``[outputs]`` maps a model output to a data class (``Y = num_classes``: other). Each
    batch runs ``max_batch // N`` edits per tail pass. Noise is drawn from ``seed`` per batch. When given,
    ``probability`` ``[K, Y]`` (float64) gets, per edit and true class, the sum over images of the softmax
    mass on the outputs of the image's own class (a continuous companion of the counts).
    """
    scorer = Confusion(len(edits), class_of_output, num_classes, probability)
    return run_edits(cut, cache, edits, scorer, max_batch=max_batch, seed=seed, progress=progress).counts


def _own_class_mass(
    logits: torch.Tensor, class_of_output: torch.Tensor, truth: torch.Tensor, y_cols: int
) -> torch.Tensor:
    """``[R]``: each row's softmax mass on the outputs that stand for its true class."""
    p = logits.double().softmax(1)  # float32 loses the small changes near p = 1
    mass = torch.zeros(p.shape[0], y_cols, dtype=p.dtype, device=p.device)
    mass.index_add_(1, class_of_output.to(p.device), p)
    return mass.gather(1, truth.to(p.device).reshape(-1, 1)).flatten()


def metrics(conf: torch.Tensor) -> dict[str, torch.Tensor]:
    """From counts ``[K, Y, Y + 1]``: ``accuracy`` ``[K]``; per class ``class_accuracy`` (recall) and
    ``balanced`` ((recall + true-negative rate) / 2, the class against the rest) ``[K, Y]``; ``count`` ``[Y]``."""
    conf = conf.double()
    y = conf.shape[1]
    diag = torch.diagonal(conf[:, :, :y], dim1=1, dim2=2)  # [K, Y]
    per_class = conf.sum(2)  # [K, Y] images of each class
    total = per_class.sum(1)
    recall = diag / per_class.clamp(min=1)
    predicted = conf[:, :, :y].sum(1)  # [K, Y] images predicted as each class
    negatives = total.unsqueeze(1) - per_class
    true_neg = negatives - (predicted - diag)
    tnr = true_neg / negatives.clamp(min=1)
    return {
        "accuracy": diag.sum(1) / total.clamp(min=1),
        "class_accuracy": recall,
        "balanced": (recall + tnr) / 2,
        "count": per_class[0],
    }


def predictions(
    cut: FxCut | HookCut, cache: LayerCache, edits: Edits, class_of_output: torch.Tensor, *, seed: int = 0
) -> torch.Tensor:
    """Predicted data class ``[K, N]`` of every cached image under each edit (``Y`` = other)."""
    return run_edits(cut, cache, edits, Predictions(class_of_output), max_batch=None, seed=seed).result()
