"""A generator and a segmenter as the dissection engine's two sources.

    acts = GeneratorActivations(create_model("world_generator"), ["relu2", "relu3"], n=10_000, seed=0)
    labels = SegmenterLabels(create_segmenter("world_segmenter"))
    dissect_sources(acts, labels, "runs/gan", Options(quantile=0.01))   # PNAS: each unit's top 1%

Sample ``i`` is row ``i`` of ``randn(n, *input_size)`` drawn from ``seed`` alone (the rows of
``organisms.gan.sample_z(n, seed)`` for the probe-world generator), so the same seed gives the
same samples everywhere. The generator's output is mapped from its declared range
(``ModelInfo.output_range``, default [0, 1]) to [0, 1] and handed to the segmenter in the same
batch; the segmenter's label numbers are the label space (Broden numbering: 0 = none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from unitscope.dissect.sources import ActivationSource, Batch, LabelSource
from unitscope.hooks import TraceDict
from unitscope.models import get_info
from unitscope.segment import Segmenter

__all__ = ["GeneratorActivations", "SegmenterLabels", "latents", "to_unit_range"]


def latents(n: int, seed: int, shape: Sequence[int]) -> torch.Tensor:
    """``[n, *shape]`` latent vectors from ``seed`` alone."""
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def to_unit_range(images: torch.Tensor, output_range: Sequence[float]) -> torch.Tensor:
    """A generator's output in ``output_range`` -> [0, 1] (clamped)."""
    lo, hi = float(output_range[0]), float(output_range[1])
    return ((images.float() - lo) / (hi - lo)).clamp(0, 1)


class GeneratorActivations(ActivationSource):
    """``n`` samples of ``generator`` (z from ``seed``), traced at ``layers``; ``batch["image"]``
    gets the samples in [0, 1] for a label source."""

    def __init__(
        self,
        generator: nn.Module,
        layers: Sequence[str],
        *,
        n: int = 10_000,
        seed: int = 0,
        device: torch.device | str = "cpu",
        key: dict | None = None,
    ):
        info = get_info(generator)
        if info.kind != "generator":
            raise ValueError(
                f"{info.name} is not a generator (its ModelInfo.kind is {info.kind!r}); a generator "
                "declares kind='generator', input_size=(Z, 1, 1) and output_size=(3, H, W)"
            )
        if n < 1:
            raise ValueError(f"a generator dissection needs at least one sample, got n={n}")
        self.generator, self.layers, self.n, self.seed = generator.eval(), list(layers), n, seed
        self.device = torch.device(device)
        self.info, self.model_name = info, info.name
        self.z = latents(n, seed, info.input_size)
        self._key = key

    def __len__(self) -> int:
        return self.n

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        from unitscope.dissect import check_layers

        return check_layers(self.generator, self.layers, self.info.input_size)

    def load(self, pos: int) -> dict[str, Any]:
        return {"z": self.z[pos]}

    @torch.no_grad()
    def activations(self, batch: Batch) -> dict[str, torch.Tensor]:
        with TraceDict(self.generator, self.layers) as td:
            out = self.generator(batch["z"].to(self.device))
        batch["image"] = to_unit_range(out, self.info.output_range)
        return {layer: td[layer].output.float() for layer in self.layers}

    def key(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "layers": self.layers,
            "samples": self.n,
            "seed": self.seed,
            **(self._key or {}),
        }

    @torch.no_grad()
    def images(self, positions: Sequence[int]) -> torch.Tensor:
        """Samples ``positions`` in [0, 1], ``[len(positions), 3, H, W]``."""
        z = self.z[torch.as_tensor(list(positions), dtype=torch.long)].to(self.device)
        return to_unit_range(self.generator(z), self.info.output_range).cpu()

    def picture(self, pos: int) -> Any:
        from PIL import Image

        pixels = (self.images([pos])[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        return Image.fromarray(pixels)


class SegmenterLabels(LabelSource):
    """Labels of each batch's images by ``segmenter`` (one plane per category it labels); pass 2
    runs the generator again for them (``needs_forward``)."""

    needs_forward = True

    def __init__(self, segmenter: Segmenter):
        self.segmenter = segmenter
        self.categories = list(segmenter.categories)
        numbers = {num: (name, cat) for cat in self.categories for name, num in segmenter.labels[cat]}
        if not numbers or min(numbers) < 1:
            raise ValueError("a segmenter's labels are (name, number) pairs with numbers from 1 (0 is 'none')")
        size = max(numbers) + 1
        self.label_names = ["-"] * size
        self.label_category = torch.full((size,), -1, dtype=torch.long)
        for num, (name, cat) in numbers.items():
            self.label_names[num] = name
            self.label_category[num] = self.categories.index(cat)

    def load(self, pos: int) -> dict[str, Any]:
        return {}

    def label_batch(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        maps = self.segmenter.segment(batch["image"])
        labels = torch.stack([maps[c].long() for c in self.categories], 1)  # [N, K, H, W]
        n = labels.shape[0]
        return labels, torch.zeros(n, 0, dtype=torch.long), torch.ones(n, len(self.categories), dtype=torch.bool)
