"""A tiny random convolutional net for multi-process dissection tests: ``tests/helpers/tiny_conv.py:tiny_conv``.

Two ReLU conv layers with weights drawn from a fixed seed: ``relu1`` [N, 6, 32, 32] and ``relu2``
[N, 8, 16, 16] for a 64-px image, so 24 images give every unit of ``relu1`` 24,576 samples (the
quantile sketch compacts: merging per-process sketches would not give the single-process one).
Tests stop a run part-way with fault points (``unitscope.faults``), not by slowing the model.
"""

import torch
from torch import nn

from unitscope.models import ModelInfo


class TinyConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.conv1, self.relu1 = nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU()
        self.head = nn.Linear(8, 2)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.head(x.mean(dim=(2, 3)))


def tiny_conv() -> nn.Module:
    model = TinyConv().eval()
    object.__setattr__(
        model,
        "unitscope_info",
        ModelInfo(
            name="tiny-conv",
            mean=(0.5, 0.5, 0.5),
            std=(0.25, 0.25, 0.25),
            input_size=(3, 64, 64),
            class_names=["a", "b"],
            default_layers=["relu1", "relu2"],
        ),
    )
    return model
