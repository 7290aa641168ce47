"""Artifact units (GAN Dissection, Bau et al. ICLR 2019, sec. 4.3; the part its code lacks): the
units whose removal makes a generator's worst samples look more realistic.

    cut = cut_model(generator, "relu2")
    samples = cache_samples(cut, generator, n=500, seed=1)
    quality = segmenter_confidence(segmenter)                 # images [N, 3, H, W] -> realism [N]
    art = artifact_units(cut, samples, quality, worst=0.1)
    art.ranking()[:5]                                         # units whose removal helps the worst samples most
    art.gain[art.ranking()[:5]]                               # their mean realism gain on those samples
    after = remove_units_quality(cut, samples, quality, art.ranking()[:5])   # [N] with the 5 removed together
    write_grid(before_after_images(cut, samples, art.worst_samples()[:8], art.ranking()[:5]), "artifacts.png")

**The quality score.** Any callable ``images [N, 3, H, W] in [0, 1] -> [N]``, higher = more
realistic: a discriminator wrapped by :func:`discriminator_score` where one exists, or, by default,
:func:`segmenter_confidence`: the mean over pixels (and over the segmenter's categories) of the
segmenter's largest class probability. ``world_generator`` ships no discriminator (its training
keeps it only in the checkpoint), and the Frechet segmentation distance compares two sets of
images, not one sample; the segmenter's confidence is per sample, needs nothing else, and falls
exactly where a generator paints texture that is no class the segmenter knows (a smear, a
blotch, a chimera of two materials): its softmax flattens there.

A unit's **gain** is the mean over the ``worst`` fraction of samples (lowest quality unedited)
of quality(unit removed) - quality(unedited); ``gain_all`` is the same over every sample. The
units with the largest gain are the artifact units. Every single-unit removal runs in tail
passes of the torch.fx cut (``ablate.evaluate.run_edits``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unitscope.ablate.cut import CutCache, FxCut, HookCut
from unitscope.ablate.evaluate import LayerCache, run_edits
from unitscope.edits import Edits, unit_mask
from unitscope.gan.sources import to_unit_range
from unitscope.segment import Segmenter

__all__ = [
    "ArtifactResult",
    "artifact_units",
    "before_after_images",
    "discriminator_score",
    "remove_units_quality",
    "segmenter_confidence",
    "write_grid",
]

Quality = Callable[[torch.Tensor], torch.Tensor]


def segmenter_confidence(segmenter: Segmenter, categories: Sequence[str] | None = None, chunk: int = 64) -> Quality:
    """``images [N, 3, H, W] -> [N]``: the mean largest label probability per pixel, averaged over
    ``categories`` (default every category the segmenter labels); ``chunk`` images at a time."""
    from unitscope.gan.ace import probabilities

    cats = list(categories or segmenter.categories)

    @torch.no_grad()
    def score(images: torch.Tensor) -> torch.Tensor:
        out = []
        for start in range(0, len(images), chunk):
            probs = probabilities(segmenter, images[start : start + chunk], by_number=False)
            out.append(torch.stack([probs[c].max(1).values.flatten(1).mean(1) for c in cats]).mean(0).float().cpu())
        return torch.cat(out) if out else torch.zeros(0)

    return score


def discriminator_score(discriminator: nn.Module) -> Quality:
    """A discriminator ``images in [0, 1] -> realness [N]`` as a quality score."""

    @torch.no_grad()
    def score(images: torch.Tensor) -> torch.Tensor:
        return discriminator(images).reshape(len(images)).float().cpu()

    return score


class _QualityScorer:
    """Scorer for ``run_edits``: ``scores [K, N]``, the quality of every edited sample (labels = sample numbers)."""

    def __init__(self, quality: Quality, k: int, n: int, output_range: Sequence[float]):
        self.quality, self.output_range = quality, output_range
        self.scores = torch.zeros(k, n)

    def add(self, rows: range, output: Any, labels: torch.Tensor) -> None:
        q = self.quality(to_unit_range(output, self.output_range)).reshape(len(rows), len(labels))
        self.scores[rows.start : rows.stop, labels.long()] = q


@dataclass
class ArtifactResult:
    """``before [N]``: each sample's quality; ``after [C, N]``: with unit ``c`` removed; ``gain [C]``
    and ``gain_all [C]`` (see the module docstring); ``worst``: the fraction the gain averages over."""

    before: np.ndarray
    after: np.ndarray
    worst: float

    @property
    def worst_count(self) -> int:
        return max(1, int(round(self.worst * len(self.before))))

    def worst_samples(self) -> list[int]:
        """Sample numbers, least realistic first (the first ``worst_count`` form the gain's set)."""
        return [int(i) for i in np.argsort(self.before, kind="stable")]

    @property
    def gain(self) -> np.ndarray:
        rows = self.worst_samples()[: self.worst_count]
        return (self.after[:, rows] - self.before[rows]).mean(1)

    @property
    def gain_all(self) -> np.ndarray:
        return (self.after - self.before).mean(1)

    def ranking(self) -> list[int]:
        """Units by gain, largest first (ties by unit number)."""
        return [int(u) for u in np.argsort(-self.gain, kind="stable")]

    def summary(self, top: int = 5) -> str:
        units = ", ".join(f"#{u} {self.gain[u]:+.4f}" for u in self.ranking()[:top])
        rows = self.worst_samples()[: self.worst_count]
        return (
            f"artifact units (quality gain on the {self.worst_count} least realistic of {len(self.before)} samples, "
            f"mean quality there {self.before[rows].mean():.3f}, overall {self.before.mean():.3f}): {units}"
        )


def artifact_units(
    cut: FxCut | HookCut,
    samples: LayerCache,
    quality: Quality,
    *,
    worst: float = 0.1,
    output_range: Sequence[float] = (0.0, 1.0),
    max_batch: int = 256,
) -> ArtifactResult:
    """Remove (zero) every unit of the cut layer alone and score every sample's quality before and
    after: the artifact units are those whose removal raises the worst samples' quality most."""
    if not 0 < worst <= 1:
        raise ValueError(f"worst is a fraction of the samples in (0, 1]; got {worst}")
    c = samples.batches[0].layer.shape[1]
    mask = torch.cat([torch.zeros(1, c, dtype=torch.bool), torch.eye(c, dtype=torch.bool)])
    scorer = _QualityScorer(quality, c + 1, samples.count, output_range)
    run_edits(cut, samples, Edits.ablate(mask), scorer, max_batch=max_batch)
    scores = scorer.scores.double().numpy()
    return ArtifactResult(scores[0], scores[1:], worst)


def remove_units_quality(
    cut: FxCut | HookCut,
    samples: LayerCache,
    quality: Quality,
    units: Sequence[int],
    *,
    output_range: Sequence[float] = (0.0, 1.0),
    max_batch: int = 256,
) -> np.ndarray:
    """Each sample's quality ``[N]`` with ``units`` removed together."""
    c = samples.batches[0].layer.shape[1]
    scorer = _QualityScorer(quality, 1, samples.count, output_range)
    run_edits(cut, samples, Edits.ablate(unit_mask(units, c)), scorer, max_batch=max_batch)
    return scorer.scores[0].double().numpy()


def _select(samples: LayerCache, positions: Sequence[int]) -> CutCache:
    """The cached rows of sample numbers ``positions`` as one :class:`CutCache`."""
    where = {}
    for b, labels in enumerate(samples.labels):
        for i, s in enumerate(labels.tolist()):
            where[int(s)] = (b, i)
    missing = [p for p in positions if int(p) not in where]
    if missing:
        raise ValueError(f"samples {missing[:5]} are not in the cache (it holds {samples.count})")
    parts = []
    for p in positions:
        b, i = where[int(p)]
        batch = samples.batches[b]
        n = batch.layer.shape[0]
        pick = lambda v, i=i, n=n: v[i : i + 1] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n else v
        parts.append(CutCache(pick(batch.layer), tuple(pick(v) for v in batch.others), pick(batch.inputs)))
    cat = lambda vs: torch.cat(vs) if isinstance(vs[0], torch.Tensor) and vs[0].dim() else vs[0]
    return CutCache(
        cat([p.layer for p in parts]),
        tuple(cat([p.others[j] for p in parts]) for j in range(len(parts[0].others))),
        None if parts[0].inputs is None else cat([p.inputs for p in parts]),
    )


@torch.no_grad()
def before_after_images(
    cut: FxCut | HookCut,
    samples: LayerCache,
    positions: Sequence[int],
    units: Sequence[int],
    *,
    output_range: Sequence[float] = (0.0, 1.0),
    mode: str = "remove",
    level: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``positions`` unedited and with ``units`` removed (``mode="insert"``: forced to
    ``level [C]``): two ``[len(positions), 3, H, W]`` tensors in [0, 1]."""
    cache = _select(samples, positions)
    c = cache.layer.shape[1]
    mask = unit_mask(units, c)
    edits = Edits.ablate(mask) if mode == "remove" else Edits.ablate(mask, "quantile", value=level)
    before = to_unit_range(cut.tail(cache), output_range)
    after = to_unit_range(cut.tail(cache, edit=lambda z: edits.apply(z)), output_range)
    return before.cpu(), after.cpu()


def write_grid(rows: Sequence[torch.Tensor], path: str | Path, scale: int = 2, gap: int = 2) -> Path:
    """A PNG of image rows (each ``[K, 3, H, W]`` in [0, 1]; e.g. before above after), ``scale``x."""
    from PIL import Image

    from unitscope.runs import atomic_write_bytes

    k, _, h, w = rows[0].shape
    grid = np.full((len(rows) * (h * scale + gap) - gap, k * (w * scale + gap) - gap, 3), 255, np.uint8)
    for r, images in enumerate(rows):
        pixels = (images.clamp(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
        for j, im in enumerate(pixels):
            big = im.repeat(scale, 0).repeat(scale, 1)
            y, x = r * (h * scale + gap), j * (w * scale + gap)
            grid[y : y + h * scale, x : x + w * scale] = big
    import io

    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
