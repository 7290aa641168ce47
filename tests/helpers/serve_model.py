"""A tiny network with set weights for the probe server's tests; also ``--model tests/helpers/serve_model.py:colour_net``.

``colour_net()``: input [N, 3, 8, 8] (mean 0, std 1, so x = pixel / 255), layers
  conv  1x1 conv, 4 units: 0 = R, 1 = G, 2 = B, 3 = 0.5 R - B          [N, 4, 8, 8]
  relu  ReLU of conv                                                   [N, 4, 8, 8]
  pool  global average                                                 [N, 4, 1, 1]
  flat, fc   logits (red, green, blue) = 4 x (pooled units 0, 1, 2)     [N, 3]
``red_blue_png(split)``: 8x8 PNG, columns < split pure red, the rest pure blue.
"""

from __future__ import annotations

import io

import torch
from torch import nn

from unitscope.models import ModelInfo


def colour_net() -> nn.Module:
    conv = nn.Conv2d(3, 4, 1)
    fc = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0, -1]]).view(4, 3, 1, 1))
        conv.bias.zero_()
        fc.weight.copy_(4 * torch.eye(3, 4))
    model = nn.Sequential()
    for name, module in [
        ("conv", conv),
        ("relu", nn.ReLU()),
        ("pool", nn.AdaptiveAvgPool2d(1)),
        ("flat", nn.Flatten()),
        ("fc", fc),
    ]:
        model.add_module(name, module)
    info = ModelInfo(
        name="colour",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        input_size=(3, 8, 8),
        class_names=["red", "green", "blue"],
        default_layers=["relu"],
    )
    object.__setattr__(model, "unitscope_info", info)
    return model.eval()


def red_blue_png(split: int = 6) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (8, 8), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, split, 8))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()
