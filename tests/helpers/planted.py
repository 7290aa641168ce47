"""Planted models for dissection tests, loadable as ``tests/helpers/planted.py:colour_units``.

Unit k of layer ``feat`` fires (value 1 + a tiny ramp) exactly where the probe world's own colour
labelling names the pixel ``COLOURS[k]``, and is 0 elsewhere: Network Dissection must give it that
colour with an IoU close to 1.
"""

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from unitscope.models import ModelInfo
from unitscope.world.vocab import color_labels

COLOURS = ("red", "green", "blue")


class ColourUnits(nn.Module):
    def __init__(self, label_numbers: list[int]):
        super().__init__()
        self.register_buffer("numbers", torch.tensor(label_numbers))
        self.feat = nn.Identity()
        self.head = nn.Linear(len(label_numbers), 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x * 255).round().clamp(0, 255)
        half = F.avg_pool2d(rgb, 2)  # the world names colours on 2x2 box-averaged pixels
        half = (half + 0.5).floor().clamp(0, 255).to(torch.uint8)  # PIL's BOX filter rounds
        names = torch.from_numpy(color_labels(half.permute(0, 2, 3, 1).numpy()).astype(np.int64))
        fires = (names[:, None] == self.numbers.view(1, -1, 1, 1)).float()
        ramp = torch.linspace(0, 1e-3, fires.shape[-1]).view(1, 1, 1, -1)
        feat = self.feat(fires * (1 + ramp))
        return self.head(feat.mean(dim=(2, 3)))


def colour_units(world: str | None = None) -> nn.Module:
    """``world``: the probe world whose label numbers to use (default: $PLANTED_WORLD)."""
    from unitscope.data import BrodenDataset

    names = BrodenDataset(world or os.environ["PLANTED_WORLD"], validate="none").label_names
    model = ColourUnits([names.index(c) for c in COLOURS])
    object.__setattr__(
        model,
        "unitscope_info",
        ModelInfo(
            name="planted-colours",
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            input_size=(3, 64, 64),
            class_names=["a", "b"],
            default_layers=["feat"],
        ),
    )
    return model


def dissect_planted(model: nn.Module, world, out, **extra):
    """Dissect ``model``'s layer ``feat`` on the probe ``world`` into ``out`` with the settings the
    describe and bases tests share (quantile 0.3, top 4, cache kept, no null); ``extra`` adds options."""
    from unitscope.data import BrodenDataset
    from unitscope.dissect import dissect
    from unitscope.models import get_info

    ds = BrodenDataset(world, transform=get_info(model).transform())
    dissect(
        model,
        ds,
        ["feat"],
        out,
        quantile=0.3,
        topk=4,
        batch_size=10,
        progress=False,
        keep_cache=True,
        null_draws=0,
        exemplar_images=False,
        config={"data": str(world)},
        **extra,
    )
    return out
