"""Classify images with a model's own preprocessing and class names.

from unitscope.models import create_model
from unitscope.classify import classify
model = create_model("efficientnet_lite0")
for name, p in classify(model, ["cat.jpg"])[0]:
    print(f"{p:.3f} {name}")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from unitscope.data.images import load_image
from unitscope.models import get_info

__all__ = ["classify", "load_image"]


@torch.no_grad()
def classify(
    model: nn.Module, images: Sequence, k: int = 5, device: torch.device | str = "cpu"
) -> list[list[tuple[str, float]]]:
    """Top-``k`` ``(class name, probability)`` for each image (a path or a PIL image)."""
    info = get_info(model)
    transform = info.transform()
    batch = torch.stack([transform(load_image(im) if isinstance(im, (str, Path)) else im) for im in images])
    probs = model.to(device)(batch.to(device)).softmax(-1).cpu()
    top = probs.topk(min(k, probs.shape[-1]), dim=-1)
    return [[(info.class_name(int(i)), float(p)) for p, i in zip(ps, idx)] for ps, idx in zip(top.values, top.indices)]
