"""Tiny hand-weighted models for the featvis and attribution tests; also loadable by the CLI as
``tests/helpers/featvis_models.py:colours`` (its unit k of ``feat`` responds to red, green, blue)."""

from __future__ import annotations

import torch
from torch import nn

from unitscope.models import ModelInfo


def with_info(model: nn.Module, size: int, name: str = "tiny") -> nn.Module:
    object.__setattr__(
        model,
        "unitscope_info",
        ModelInfo(name=name, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), input_size=(3, size, size)),
    )
    return model.eval()


class Tiny(nn.Module):
    """conv 3->4, ReLU, conv 4->4 (1x1), ReLU6, mean pool, linear 4->3: seeded weights."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.relu2 = nn.ReLU6(inplace=True)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x):
        return self.fc(self.relu2(self.conv2(self.relu1(self.conv1(x)))).mean((2, 3)))


class Colours(nn.Module):
    """Unit k of ``feat`` is relu(w_k . (rgb - 0.5)): red, green, blue, in that order."""

    def __init__(self):
        super().__init__()
        self.mix = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.mix.weight.copy_((3 * torch.eye(3) - 1).view(3, 3, 1, 1))  # 2 on own colour, -1 on others
            self.mix.bias.copy_(-self.mix.weight.sum((1, 2, 3)) * 0.5)
        self.feat = nn.ReLU()

    def forward(self, x):
        return self.feat(self.mix(x)).mean((2, 3))


def colours() -> nn.Module:
    """``Colours`` taking 32 px images, named "colours"."""
    return with_info(Colours(), 32, "colours")


class Attr(nn.Module):
    """feat = ReLU(R, G) [N, 2, H, W]; pool = 2x2 average of feat; logits = fc(mean of pool), or of
    its square with ``square=True``. fc: weight [[1, 2], [3, -1]], bias [0.5, 0]."""

    def __init__(self, square: bool = False):
        super().__init__()
        self.square = square
        self.mix = nn.Conv2d(3, 2, 1, bias=False)
        self.feat = nn.ReLU()
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.mix.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).view(2, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
            self.fc.bias.copy_(torch.tensor([0.5, 0.0]))

    def forward(self, x):
        m = self.pool(self.feat(self.mix(x))).mean((2, 3))
        return self.fc(m * m if self.square else m)


def attr(square: bool = False) -> nn.Module:
    return with_info(Attr(square), 4, "attr")


def tiny() -> nn.Module:
    """``Tiny`` taking 16 px images, named "tiny"."""
    return with_info(Tiny(), 16, "tiny")
