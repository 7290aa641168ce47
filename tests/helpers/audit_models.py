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
    return attach_info(CueNet(), ModelInfo(name="cue_model", input_size=(3, 4, 4), class_names=["zero", "one"],
                                       mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))


def images(cls: int, sign: bool, n: int = 4) -> torch.Tensor:
    """``n`` images [n, 3, 4, 4] of class ``cls``, with the sign (naming class 1) or without."""
    x = torch.zeros(n, 3, 4, 4)
    x[:, 0 if cls == 0 else 2] = 1.0
    if sign:
        x[:, 1] = 1.0  # pooled 1: logit 1 gains 3
    return x
