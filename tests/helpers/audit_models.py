"""A hand-built classifier whose unit 1 alone carries a spurious cue (tests/audit/test_audit_edit.py).

Input [N, 3, H, W]: channel 0 is the evidence of class 0, channel 2 of class 1, channel 1 a sign
that names class 1. Layer ``relu`` [N, 3, H, W] copies the channels (unit k sees channel k);
logits = (2 u0, 2 u2 + 3 u1 + 0.5) after average pooling. So a class-0 image with the sign is
called class 1; without unit 1 it is called class 0 again; without unit 0 a plain class-0 image
falls to class 1 (unit 0 is the important one).
"""

import torch
from torch import nn

from unitscope.models import ModelInfo, attach_info


class CueNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 2.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, 0.5]))

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


def cue_model():
    return attach_info(
        CueNet(),
        ModelInfo(
            name="cue_model",
            input_size=(3, 4, 4),
            class_names=["zero", "one"],
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
        ),
    )


def images(cls: int, sign: bool, n: int = 4) -> torch.Tensor:
    """``n`` images [n, 3, 4, 4] of class ``cls``, with the sign (naming class 1) or without."""
    x = torch.zeros(n, 3, 4, 4)
    x[:, 0 if cls == 0 else 2] = 1.0
    if sign:
        x[:, 1] = 1.0  # pooled 1: logit 1 gains 3
    return x


class ColourLayers(nn.Module):
    """Two planted layers for the audit count (tests/test_audit_count.py): unit k of ``feat1`` / ``feat2``
    fires (1 + a tiny ramp) exactly where the probe world's colour labelling names the pixel
    ``layers[0][k]`` / ``layers[1][k]``, as ``tests/planted.py``'s colour units."""

    def __init__(self, numbers: tuple[list[int], list[int]]):
        super().__init__()
        self.register_buffer("n1", torch.tensor(numbers[0]))
        self.register_buffer("n2", torch.tensor(numbers[1]))
        self.feat1, self.feat2 = nn.Identity(), nn.Identity()
        self.head = nn.Linear(len(numbers[0]) + len(numbers[1]), 2)

    def forward(self, x):
        import numpy as np
        import torch.nn.functional as F

        from unitscope.world.vocab import color_labels

        rgb = (x * 255).round().clamp(0, 255)
        half = (F.avg_pool2d(rgb, 2) + 0.5).floor().clamp(0, 255).to(torch.uint8)  # as the world names colours
        names = torch.from_numpy(color_labels(half.permute(0, 2, 3, 1).numpy()).astype(np.int64))
        ramp = torch.linspace(0, 1e-3, names.shape[-1]).view(1, 1, 1, -1)
        a = self.feat1((names[:, None] == self.n1.view(1, -1, 1, 1)).float() * (1 + ramp))
        b = self.feat2((names[:, None] == self.n2.view(1, -1, 1, 1)).float() * (1 + ramp))
        return self.head(torch.cat([a.mean(dim=(2, 3)), b.mean(dim=(2, 3))], 1))


def colour_layers(world: str, planted: str = "audited"):
    """``audited``: feat1 (red, red, green), feat2 (red, blue, blue, green) -- 2 and 1 red units;
    ``reference``: feat1 (red, green, green), feat2 (blue, blue, green, green) -- 1 and 0."""
    from unitscope.data import BrodenDataset

    names = BrodenDataset(world, validate="none").label_names
    layers = {
        "audited": (["red", "red", "green"], ["red", "blue", "blue", "green"]),
        "reference": (["red", "green", "green"], ["blue", "blue", "green", "green"]),
    }[planted]
    model = ColourLayers(([names.index(c) for c in layers[0]], [names.index(c) for c in layers[1]]))
    return attach_info(
        model,
        ModelInfo(
            name=f"colour_layers_{planted}",
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            input_size=(3, 64, 64),
            class_names=["a", "b"],
            default_layers=["feat1", "feat2"],
        ),
    )


class Switches(nn.Module):
    """Layer ``relu`` [N, 4, 1, 1] copies the input; class 1's logit is the units' sum, class 0's a
    constant 0.5 (tests/test_audit_analysis.py): an image with one unit on is class 1 while that unit
    is kept; an all-zero image is class 0 whatever is removed."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[0.0] * 4, [1.0] * 4]))
            self.fc.bias.copy_(torch.tensor([0.5, 0.0]))

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(x)), 1))


def switches():
    return attach_info(
        Switches(),
        ModelInfo(
            name="switches",
            input_size=(4, 1, 1),
            class_names=["off", "on"],
            mean=(0.0, 0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0, 1.0),
        ),
    )


class ColourMeans(nn.Module):
    """Layer ``relu`` [N, 3, 1, 1]: each colour channel's mean over the image; logits ``(0.5, r + g + b - 1)``
    (tests/audit/test_audit_features.py: an image classifier of no scene for the fidelity metric)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[0.0] * 3, [1.0] * 3]))
            self.fc.bias.copy_(torch.tensor([0.5, -1.0]))

    def forward(self, x):
        return self.fc(torch.flatten(self.relu(self.pool(x)), 1))


def colour_means():
    return attach_info(
        ColourMeans(),
        ModelInfo(
            name="colour_means",
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            input_size=(3, 32, 32),
            class_names=["dark", "light"],
        ),
    )
