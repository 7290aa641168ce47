"""A colour classifier with set weights, loadable as ``tests/helpers/ablate_models.py:colour_classifier``.

Unit k of ``act`` (k = 0, 1, 2) is the mean of colour channel ``(2, 1, 0)[k]`` -- blue, green, red,
the classes of an image folder with sub-folders blue/, green/, red/ -- and unit 3 is dead. Class k's
logit is 4 x unit k, so an image whose unit is gone has all-zero logits and is called "blue".
"""

import torch
from torch import nn

from unitscope.models import ModelInfo, attach_info


class ColourClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            w = torch.zeros(4, 3)
            w[0, 2], w[1, 1], w[2, 0] = 1.0, 1.0, 1.0
            self.conv.weight.copy_(w.reshape(4, 3, 1, 1))
            self.fc.weight.copy_(torch.cat([4 * torch.eye(3), torch.zeros(3, 1)], 1))

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def colour_classifier(checkpoint=None, pretrained=None):
    return attach_info(
        ColourClassifier().eval(),
        ModelInfo(
            name="colours",
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            input_size=(3, 8, 8),
            class_names=["blue", "green", "red"],
        ),
    )


def write_colour_folder(root, per_class: int = 10) -> None:
    """``root/{blue,green,red}/NN.png``: 8x8 images of the pure colour at varying brightness."""
    from PIL import Image

    for k, name in enumerate(("blue", "green", "red")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rgb = [0, 0, 0]
            rgb[2 - k] = 120 + 12 * i
            Image.new("RGB", (8, 8), tuple(rgb)).save(root / name / f"{i:02d}.png")


def twin_classifier(checkpoint=None, pretrained=None):
    """The same network with its readout spread over all three colour units (a stand-in twin)."""
    model = ColourClassifier()
    with torch.no_grad():
        model.fc.weight.copy_(torch.cat([torch.full((3, 3), 1.0) + 3 * torch.eye(3), torch.zeros(3, 1)], 1))
    return attach_info(
        model.eval(),
        ModelInfo(
            name="colours_twin",
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            input_size=(3, 8, 8),
            class_names=["blue", "green", "red"],
        ),
    )
