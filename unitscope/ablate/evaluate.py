"""Evaluate many edits of one layer at once: cache the layer, run only the rest of the network.

    cut = cut_model(model, "features.8")
    feats = cache_layer(cut, data, positions, batch_size=64)     # one pass through the head
    edits = Edits.ablate(torch.eye(C, dtype=torch.bool), mode="zero")   # K = C single-unit ablations
    conf = confusion(cut, feats, edits, class_of_output)          # [K, Y, Y + 1] counts
    m = metrics(conf)                                             # accuracy [K], class_accuracy [K, Y], balanced [K, Y]

An edit replaces the units in ``mask[k]`` of the layer's output ``[N, C, H, W]`` (or ``[N, C]``)
by ``value[k]`` plus, for noise, ``std * N(0, 1)`` drawn per element. Zero, mean and noise
ablation and steering to fixed values are all edits. Columns of the confusion matrix are data
classes; the last one counts predictions of a model class the data does not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from unitscope.ablate.cut import CutCache, FxCut, HookCut

MODES = ("zero", "mean", "noise")


@dataclass
class Edits:
    """``K`` edits of a layer with ``C`` units: ``mask`` bool ``[K, C]``, ``value`` ``[K, C]``,
    ``noise_std`` ``[C]`` or None (then no noise)."""

    mask: torch.Tensor
    value: torch.Tensor
    noise_std: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.mask.shape[0]

    @classmethod
    def ablate(cls, mask: torch.Tensor, mode: str = "zero", mean: torch.Tensor | None = None,
               std: torch.Tensor | None = None) -> Edits:
        """Remove the units of each row of ``mask`` ``[K, C]``: ``zero``; ``mean`` (``mean`` ``[C]``);
        ``noise``: Gaussian with each unit's ``mean`` and ``std`` ``[C]`` (the unit's own statistics)."""
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mode not in MODES:
            raise ValueError(f"unknown ablation mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode in ("mean", "noise") and mean is None:
            raise ValueError(f"{mode} ablation needs each unit's mean (mean=[C], e.g. from stats.Moments)")
        if mode == "noise" and std is None:
            raise ValueError("noise ablation needs each unit's standard deviation (std=[C])")
        value = torch.zeros(mask.shape) if mode == "zero" else mean.float().expand(mask.shape).clone()
        return cls(mask, value, std.float() if mode == "noise" else None)

    def __getitem__(self, rows: slice) -> Edits:
        return Edits(self.mask[rows], self.value[rows], self.noise_std)


def apply_edits(z: torch.Tensor, edits: Edits, generator: torch.Generator | None = None) -> torch.Tensor:
    """``z`` ``[N, C, ...]`` -> ``[K * N, C, ...]``: block ``k`` is ``z`` under edit ``k``."""
    k, n, c = len(edits), z.shape[0], z.shape[1]
    if edits.mask.shape[1] != c:
        raise ValueError(f"the edits are for {edits.mask.shape[1]} units; the layer has {c}")
    shape = (k, 1, c) + (1,) * (z.dim() - 2)
    mask = edits.mask.to(z.device).reshape(shape)
    value = edits.value.to(z.device, z.dtype).reshape(shape)
    out = torch.where(mask, value, z.unsqueeze(0))  # [K, N, C, ...]
    if edits.noise_std is not None:
        std = edits.noise_std.to(z.device, z.dtype).reshape((1, 1, c) + (1,) * (z.dim() - 2))
        noise = torch.randn(out.shape, generator=generator, dtype=z.dtype, device="cpu").to(z.device)
        out = out + mask * std * noise
    return out.reshape(k * n, *z.shape[1:])


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
def cache_layer(cut: FxCut | HookCut, data: Dataset, positions: Sequence[int] | None = None, *,
                batch_size: int = 64, device: str | torch.device = "cpu", num_workers: int = 0,
                progress: bool = False) -> LayerCache:
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


@torch.no_grad()
def confusion(cut: FxCut | HookCut, cache: LayerCache, edits: Edits, class_of_output: torch.Tensor,
              num_classes: int, *, max_batch: int = 512, seed: int = 0, progress: bool = False,
              probability: torch.Tensor | None = None) -> torch.Tensor:
    """Counts ``[K, Y, Y + 1]``: true data class x predicted class, under each of the ``K`` edits.

    ``class_of_output`` ``[outputs]`` maps a model output to a data class (``Y = num_classes``: other). Each
    batch runs ``max_batch // N`` edits per tail pass. Noise is drawn from ``seed`` per batch. When given,
    ``probability`` ``[K, Y]`` (float64) gets, per edit and true class, the sum over images of the softmax
    mass on the outputs of the image's own class (a continuous companion of the counts).
    """
    y_cols = num_classes + 1
    out = torch.zeros(len(edits), num_classes, y_cols, dtype=torch.long)
    bar = tqdm(total=len(cache.batches) * len(edits), desc=f"edits of {cut.layer}", disable=not progress,
               leave=False, unit="edit")
    for b, (batch, labels) in enumerate(zip(cache.batches, cache.labels)):
        n = len(labels)
        per_pass = max(1, max_batch // n)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + b)
        for start in range(0, len(edits), per_pass):
            part = edits[start:start + per_pass]
            k = len(part)
            tiled = batch.repeat(k, layer=False)
            logits = logits_of(cut.tail(tiled, edit=lambda z: apply_edits(z, part, gen)))
            pred = class_of_output.to(logits.device)[logits.argmax(1)].cpu().reshape(k, n)
            truth = labels.reshape(1, n).expand(k, n)
            flat = (torch.arange(k).reshape(k, 1) * num_classes + truth) * y_cols + pred
            out[start:start + k] += torch.bincount(flat.reshape(-1), minlength=k * num_classes * y_cols
                                                   ).reshape(k, num_classes, y_cols)
            if probability is not None:
                own = _own_class_mass(logits, class_of_output, truth.reshape(-1), y_cols).reshape(k, n)
                probability[start:start + k].index_add_(1, labels.long(), own.cpu())
            bar.update(k)
    bar.close()
    return out


def _own_class_mass(logits: torch.Tensor, class_of_output: torch.Tensor, truth: torch.Tensor,
                    y_cols: int) -> torch.Tensor:
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
    return {"accuracy": diag.sum(1) / total.clamp(min=1), "class_accuracy": recall,
            "balanced": (recall + tnr) / 2, "count": per_class[0]}


@torch.no_grad()
def predictions(cut: FxCut | HookCut, cache: LayerCache, edits: Edits, class_of_output: torch.Tensor,
                *, seed: int = 0) -> torch.Tensor:
    """Predicted data class ``[K, N]`` of every cached image under each edit (``Y`` = other)."""
    out = []
    for b, batch in enumerate(cache.batches):
        n = batch.layer.shape[0]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + b)
        logits = logits_of(cut.tail(batch.repeat(len(edits), layer=False), edit=lambda z: apply_edits(z, edits, gen)))
        out.append(class_of_output.to(logits.device)[logits.argmax(1)].cpu().reshape(len(edits), n))
    return torch.cat(out, 1)
