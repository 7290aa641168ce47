"""Before/after pictures for the report: small PNG strips written atomically into the run folder.

write_strip(run / "ablation/m/l/steer_0.png", [image_a, image_b], size=96)   # PIL images or [3, H, W] in [0, 1]
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from unitscope.runs import atomic_write_bytes


def to_pil(image: Image.Image | torch.Tensor) -> Image.Image:
    """A PIL image, or a tensor ``[3, H, W]`` of pixels in [0, 1], as an RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = (image.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def write_strip(path: str | Path, images: Sequence[Image.Image | torch.Tensor], size: int = 96, gap: int = 4) -> None:
    """Images side by side, each resized to ``size`` x ``size`` (nearest, so pixels stay visible)."""
    tiles = [to_pil(im).resize((size, size), Image.NEAREST) for im in images]
    strip = Image.new("RGB", (len(tiles) * size + (len(tiles) - 1) * gap, size), (255, 255, 255))
    for i, tile in enumerate(tiles):
        strip.paste(tile, (i * (size + gap), 0))
    buf = io.BytesIO()
    strip.save(buf, "PNG")
    atomic_write_bytes(path, buf.getvalue(), fsync=False)


def amplified_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[3, H, W]``: 0.5 + the pixel difference scaled so its largest entry reaches the edge."""
    d = b - a
    return (0.5 + d / (2 * d.abs().max().clamp(min=1e-12))).clamp(0, 1)
