"""EfficientNet-Lite in plain torch, module for module and name for name as timm builds it.

    model = efficientnet_lite(0)        # the same 273 named modules and 296 state tensors as
                                        # timm.create_model("efficientnet_lite0"), and the same outputs

Why not timm itself: importing timm imports torchvision, whose ``torchvision.ops`` imports torch's
compiler stack (``torch._dynamo``, ``torch._inductor``, sympy), doubling the start-up of every
command on the default model although nothing compiles (``benchmarks/bench_startup.py``). The
weights packages' tensors load here in order, as they load into timm's model; timm is still used
for ``timm:<arch>`` models, and ``tests/test_models.py`` checks this module against it.

The architecture (Tan & Le 2019, the "Lite" variant): a 3x3 stride-2 stem of 32 channels, seven
stages of mobile inverted bottlenecks (the first a depthwise-separable block), a 1x1 head of 1,280
channels, average pooling and a linear classifier; ReLU6 everywhere, no squeeze-and-excitation.
Each batch norm is a ``BatchNormAct2d`` with ``drop`` and ``act`` children, so a layer such as
``blocks.4.1.bn2`` (after ReLU6) and its ``.act`` keep the names users know from timm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (block type, repeats, kernel, stride, expansion, output channels) per stage, as timm's arch_def
_STAGES = [
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
]
# variant -> (channel multiplier, depth multiplier)
VARIANTS = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2), 3: (1.2, 1.4), 4: (1.4, 1.8)}


def make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """The nearest multiple of ``divisor`` (at least ``divisor``), never below ``round_limit * v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < round_limit * v else new_v


class BatchNormAct2d(nn.BatchNorm2d):
    """Batch norm, then ``drop`` (Identity) and ``act`` (ReLU6 or Identity) as child modules."""

    def __init__(self, channels: int, act: bool = True):
        super().__init__(channels)
        self.drop = nn.Identity()
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.batch_norm directly (no input-rank check): torch.fx traces through this module, and
        # BatchNorm2d's own check branches on the traced tensor's rank
        track = self.training and self.track_running_stats
        if track:
            self.num_batches_tracked.add_(1)
        x = F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training,
            self.momentum if track else 0.0,
            self.eps,
        )
        return self.act(self.drop(x))


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding=((stride - 1) + (k - 1)) // 2, groups=groups, bias=False)


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int):
        super().__init__()
        self.has_skip = stride == 1 and cin == cout
        self.conv_dw = _conv(cin, cin, k, stride, groups=cin)
        self.bn1 = BatchNormAct2d(cin)
        self.aa, self.se = nn.Identity(), nn.Identity()
        self.conv_pw = _conv(cin, cout, 1)
        self.bn2 = BatchNormAct2d(cout, act=False)
        self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pw(self.se(self.aa(self.bn1(self.conv_dw(x))))))
        return self.drop_path(out) + x if self.has_skip else out


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expansion: int):
        super().__init__()
        mid = make_divisible(cin * expansion)
        self.has_skip = stride == 1 and cin == cout
        self.conv_pw = _conv(cin, mid, 1)
        self.bn1 = BatchNormAct2d(mid)
        self.conv_dw = _conv(mid, mid, k, stride, groups=mid)
        self.bn2 = BatchNormAct2d(mid)
        self.aa, self.se = nn.Identity(), nn.Identity()
        self.conv_pwl = _conv(mid, cout, 1)
        self.bn3 = BatchNormAct2d(cout, act=False)
        self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
        out = self.bn3(self.conv_pwl(self.se(self.aa(out))))
        return self.drop_path(out) + x if self.has_skip else out


class SelectAdaptivePool2d(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool, self.flatten = nn.AdaptiveAvgPool2d(1), nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(x))


@torch.no_grad()
def _init_weights(module: nn.Module) -> None:
    """The TensorFlow EfficientNet initialisation timm uses: convolutions normal with std
    sqrt(2 / fan-out) (per group), batch norms 1 and 0, the classifier uniform in 1/sqrt(fan-out)."""
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        module.weight.normal_(0, math.sqrt(2.0 / fan_out))
    elif isinstance(module, nn.BatchNorm2d):
        module.weight.fill_(1.0)
        module.bias.zero_()
    elif isinstance(module, nn.Linear):
        bound = 1.0 / math.sqrt(module.weight.size(0))
        module.weight.uniform_(-bound, bound)
        module.bias.zero_()


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite ``variant`` (0-4); ``drop_rate``: dropout before the classifier in training."""

    def __init__(self, variant: int = 0, num_classes: int = 1000, drop_rate: float = 0.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"EfficientNet-Lite variants are {sorted(VARIANTS)}, got {variant}")
        width, depth = VARIANTS[variant]
        self.drop_rate = drop_rate
        self.conv_stem = _conv(3, 32, 3, 2)  # stem and head widths are fixed in the Lite variants
        self.bn1 = BatchNormAct2d(32)
        stages, cin = [], 32
        for i, (kind, repeats, k, stride, expansion, cout) in enumerate(_STAGES):
            cout = make_divisible(cout * width)
            if 0 < i < len(_STAGES) - 1:  # first and last stages keep their depth
                repeats = math.ceil(repeats * depth)
            blocks = []
            for r in range(repeats):
                s = stride if r == 0 else 1
                blocks.append(
                    DepthwiseSeparableConv(cin, cout, k, s)
                    if kind == "ds"
                    else InvertedResidual(cin, cout, k, s, expansion)
                )
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.num_features = 1280
        self.conv_head = _conv(cin, self.num_features, 1)
        self.bn2 = BatchNormAct2d(self.num_features)
        self.global_pool = SelectAdaptivePool2d()
        self.classifier = nn.Linear(self.num_features, num_classes)
        for module in self.modules():
            _init_weights(module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))
        x = self.global_pool(x)
        if self.drop_rate > 0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.classifier(x)
